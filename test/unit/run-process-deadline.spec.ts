/**
 * The whole-program specs' runner has a deadline: a child that hangs is killed and the run
 * resolves (code null, stderr naming the command), so a spec fails with a message instead of
 * stalling the suite until ava's global timeout.
 */
import test from 'ava';
import { runProcess } from '../helpers/run-process.js';

test('a child past its deadline is killed; the run resolves with code null and names the command', async (t) => {
  const r = await runProcess('/bin/sleep', ['30'], { timeoutMs: 200 });
  t.is(r.code, null);
  t.regex(r.stderr, /killed after 200 ms: \/bin\/sleep 30/);
});

test('a child that ends in time keeps its exit code and output', async (t) => {
  const r = await runProcess('/bin/sh', ['-c', 'echo out; echo err >&2; exit 3'], { timeoutMs: 10_000 });
  t.is(r.code, 3);
  t.is(r.stdout, 'out\n');
  t.is(r.stderr, 'err\n');
});
