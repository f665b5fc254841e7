/**
 * The per-request logger (common/lazy-child.ts): no child logger (no serialised bindings) until a
 * line is written at an enabled level; then its lines carry the bindings and are redacted as any.
 */
import test from 'ava';
import type { Logger } from 'pino';
import { lazyChild } from '../../agent/common/lazy-child.js';
import { memoryLogger } from '../helpers/harness.js';

function counting(level: string): { logger: Logger; lines: string[]; made: () => number } {
  const { logger, lines } = memoryLogger('lazy', level);
  let made = 0;
  const child = logger.child;
  // Not bound: a child's own child() (inherited from here) must run on that child.
  logger.child = function (this: Logger, ...a: Parameters<Logger['child']>) {
    made++;
    return child.apply(this, a);
  } as Logger['child'];
  return { logger, lines, made: () => made };
}

test('lines at a disabled level make no child and write nothing', (t) => {
  const { logger, lines, made } = counting('warn');
  const log = lazyChild(logger, { requestId: 'r1' });
  log.info({ a: 1 }, 'S203 received');
  log.debug('details');
  t.is(made(), 0);
  t.deepEqual(lines, []);
});

test('the first line at an enabled level makes the child once; lines carry the bindings and stay redacted', (t) => {
  const { logger, lines, made } = counting('info');
  const log = lazyChild(logger, { requestId: 'r2', equipmentId: 'TV-1' });
  log.info('one');
  log.warn({ password: 'hunter2' }, 'two');
  t.is(made(), 1);
  const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  t.deepEqual(
    parsed.map((l) => [l.msg, l.requestId, l.equipmentId]),
    [
      ['one', 'r2', 'TV-1'],
      ['two', 'r2', 'TV-1'],
    ],
  );
  t.is(parsed[1]!.password, '[redacted]');
  t.false(lines.join('').includes('hunter2'));
});

test('child() and bindings() of the lazy logger keep its bindings', (t) => {
  const { logger, lines } = counting('info');
  const log = lazyChild(logger, { requestId: 'r3' });
  log.child({ step: 'x' }).info('three');
  t.is(log.bindings().requestId, 'r3');
  const line = JSON.parse(lines[0]!) as Record<string, unknown>;
  t.is(line.requestId, 'r3');
  t.is(line.step, 'x');
});
