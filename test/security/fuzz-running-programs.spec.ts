/**
 * The "hostile users" issue, short run: the fuzz harness (scripts/fuzz.ts) against the real
 * server and agent on loopback, 20,000 random and mutated packets at every port they open, while
 * the real agent registers and a real client connects. Judged on the harness's last line: no
 * crash, nothing lost, no amplification, bounded descriptor growth. A self-test run kills the
 * server mid-run and must fail, so this spec cannot pass on a harness that sees nothing.
 */
import test from 'ava';
import { join } from 'node:path';
import { DIST } from '../../scripts/lib/program.js';
import { parseLastLine, type FuzzFigures } from '../../scripts/fuzz/report.js';
import { runNode, type Run } from '../helpers/run-process.js';

const FUZZ = join(DIST, 'scripts', 'fuzz.js');
const SHORT_RUN_PACKETS = 20_000;
/** Descriptors may grow a little (timers, lingering closes); a leak per hostile connection would be hundreds. */
const FD_GROWTH_MAX = 20;

interface Outcome {
  readonly run: Run;
  readonly figures: FuzzFigures;
  /** Sockets server and agent still hold after the peer closed them (CLOSE_WAIT or closed): the known leaks, reported apart. */
  readonly closeWait: number;
}

async function fuzz(args: readonly string[]): Promise<Outcome> {
  const run = await runNode(FUZZ, args);
  const figures = parseLastLine(run.stdout);
  if (!figures) throw new Error(`no verdict line; exit ${run.code}\n${run.stdout}\n${run.stderr}`);
  const cw = /^leaked sockets the peer had closed \(CLOSE_WAIT or closed, descriptor still held\): server (-?\d+), agent (-?\d+)$/m.exec(
    run.stdout,
  );
  if (!cw) throw new Error(`no leaked-sockets line\n${run.stdout}`);
  return { run, figures, closeWait: Number(cw[1]) + Number(cw[2]) };
}

let short: Promise<Outcome> | undefined;
const shortRun = (): Promise<Outcome> => (short ??= fuzz(['--packets', String(SHORT_RUN_PACKETS)]));

test.serial('20,000 hostile packets: no crash, no lost registration or connect, no amplification', async (t) => {
  const { run, figures } = await shortRun();
  t.log(run.stdout.trimEnd().split('\n').slice(-8).join('\n'));
  t.true(figures.packets >= SHORT_RUN_PACKETS);
  t.is(figures.crashes, 0);
  t.is(figures.lost, 0);
  t.true(figures.answeredRatio <= 1, `answered/received ${figures.answeredRatio}`);
  t.is(run.code, 0, run.stdout);
});

test.serial('descriptor growth is bounded, and no socket is held after a hostile peer closed it (P10)', async (t) => {
  const { figures, closeWait } = await shortRun();
  t.true(figures.fdGrowth <= FD_GROWTH_MAX, `fds +${figures.fdGrowth}, of which held after the peer closed ${closeWait}`);
  t.true(
    closeWait <= 0,
    `${closeWait} more CLOSE_WAIT or closed sockets held than before (the server once kept CLOSE_WAIT, the reverse port half-closed ones)`,
  );
});

test.serial('self-test: a server killed mid-run is a crash, and the run fails', async (t) => {
  const { run, figures } = await fuzz(['--packets', '2000', '--min-seconds', '4', '--kill', 'server']);
  t.true(figures.crashes >= 1, run.stdout);
  t.not(run.code, 0);
});
