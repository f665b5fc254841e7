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

test('what the child started goes with it (its process group), even when it ignores SIGTERM', async (t) => {
  // The shell starts a grandchild that ignores SIGTERM and says its pid; both must be gone.
  const r = await runProcess('/bin/sh', ['-c', 'sh -c \'trap "" TERM; echo $$; exec sleep 30\' & wait'], { timeoutMs: 300 });
  t.is(r.code, null);
  const pid = Number(r.stdout.trim());
  t.true(pid > 0, r.stdout);
  let alive = true;
  for (let i = 0; i < 50 && alive; i++) {
    try {
      process.kill(pid, 0);
      await new Promise((res) => setTimeout(res, 100));
    } catch {
      alive = false;
    }
  }
  t.false(alive, 'the grandchild outlived the deadline');
});

test('a child that ends in time keeps its exit code and output', async (t) => {
  const r = await runProcess('/bin/sh', ['-c', 'echo out; echo err >&2; exit 3'], { timeoutMs: 10_000 });
  t.is(r.code, 3);
  t.is(r.stdout, 'out\n');
  t.is(r.stderr, 'err\n');
});
