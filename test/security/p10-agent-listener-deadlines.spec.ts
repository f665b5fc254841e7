/**
 * P10 (the agent's listeners): every connection to the agent's reverse port is destroyed by its
 * token deadline whatever the stranger does (half-close after a few bytes, silence, one byte at a
 * time, a reset), and at most `max_pending` wait at once. Against the real agent program: 2000
 * half-closing connections plus the other kinds, then the process's open descriptors
 * (/proc/PID/fd) must come back to where they were. Before the fix each half-closed connection
 * stayed open for ever (+1 descriptor each).
 */
import test from 'ava';
import { readdirSync } from 'node:fs';
import type { Socket } from 'node:net';
import { echoService, startFlow } from '../helpers/flow.js';
import { createReverseListener } from '../../agent/device/reverse-listener.js';
import { silentLogger } from '../../agent/common/logger.js';
import { LOOPBACK, sleep, waitUntil } from '../helpers/harness.js';
import { open, settle } from '../helpers/hostile-sockets.js';

const HALF_CLOSERS = 2000;
/** Below the agent's default cap (64), so that every connection of a batch reaches the token wait. */
const BATCH = 50;
const TOKEN_TIMEOUT_MS = 500;

const fdCount = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

test('P10: the real agent’s reverse port: 2000 half-closed, silent, trickling and reset connections leave no descriptor behind', async (t) => {
  const echo = await echoService(t);
  const flow = await startFlow(t, {
    services: { echo: `127.0.0.1:${echo.port}` },
    reverseExtra: `token_timeout_ms = ${TOKEN_TIMEOUT_MS}`,
  });
  const port = (await flow.agent.waitFor((l) => l.msg === 'reverse port listening')).port as number;
  const pid = flow.agent.child.pid!;
  await sleep(200);
  const baseline = fdCount(pid);

  // A few bytes of a token, then a half-close: the peer will never send the rest.
  let leftOpen = 0;
  for (let done = 0; done < HALF_CLOSERS; done += BATCH) {
    const socks = await Promise.all(Array.from({ length: BATCH }, () => open(port)));
    for (const s of socks) {
      s.on('error', () => undefined);
      s.end(Buffer.from([1, 2, 3]));
    }
    leftOpen += await settle(socks, TOKEN_TIMEOUT_MS * 4);
  }
  const afterHalfClose = fdCount(pid);

  // Silence, one byte at a time (never a whole token), and a reset after a byte.
  const silent = await Promise.all(Array.from({ length: BATCH }, () => open(port)));
  const trickle = await Promise.all(Array.from({ length: 5 }, () => open(port)));
  const timers = trickle.map((s) => setInterval(() => s.writable && s.write(Buffer.from([7])), 100));
  t.teardown(() => timers.forEach(clearInterval));
  for (const s of [...silent, ...trickle]) s.on('error', () => undefined);
  const reset = await Promise.all(Array.from({ length: BATCH }, () => open(port)));
  for (const s of reset) {
    s.on('error', () => undefined);
    s.write(Buffer.from([9]));
    s.resetAndDestroy();
  }
  leftOpen += await settle([...silent, ...trickle], TOKEN_TIMEOUT_MS * 20);
  timers.forEach(clearInterval);

  let now = fdCount(pid);
  try {
    await waitUntil(() => (now = fdCount(pid)) <= baseline, 'the agent’s descriptors to come back to the baseline', 10_000, 50);
  } finally {
    t.log(
      `agent fds: baseline ${baseline}, after ${HALF_CLOSERS} half-closes ${afterHalfClose}, at the end ${now}; connections the agent left open: ${leftOpen}`,
    );
  }
  t.is(leftOpen, 0, 'every connection was closed by the agent');
  t.true(now <= baseline);
});

test('P10: connections beyond max_pending (before their token) are destroyed at once and counted; those admitted keep waiting', async (t) => {
  const l = createReverseListener({ host: LOOPBACK, port: 0, logger: silentLogger(), tokenTimeoutMs: 60_000, maxPending: 8 });
  await l.start();
  t.teardown(() => l.stop());
  const socks: Socket[] = [];
  t.teardown(() => socks.forEach((s) => s.destroy()));
  for (let i = 0; i < 20; i++) {
    const s = await open(l.port());
    s.on('error', () => undefined);
    socks.push(s);
  }
  await waitUntil(() => l.counters.get('overCap') === 12, '12 connections over the cap to be counted');
  await waitUntil(() => socks.filter((s) => s.destroyed).length === 12, 'the 12 to be closed by the listener');
  // The first eight were admitted (nothing closes them before their token deadline, a minute away).
  t.deepEqual(
    socks.slice(0, 8).map((s) => s.destroyed),
    Array(8).fill(false),
  );
  t.is(l.counters.get('noToken'), 0);
});

test('P10: a connection that half-closes before its token is dropped at once and counted, not at the deadline', async (t) => {
  const l = createReverseListener({ host: LOOPBACK, port: 0, logger: silentLogger(), tokenTimeoutMs: 60_000 });
  await l.start();
  t.teardown(() => l.stop());
  const s = await open(l.port());
  s.on('error', () => undefined);
  t.teardown(() => s.destroy());
  s.end(Buffer.from([1, 2, 3]));
  // The deadline is a minute away: only the half-close can close it within the wait.
  await waitUntil(() => s.destroyed, 'the listener to close the half-closed connection', 5000);
  t.is(l.counters.get('noToken'), 1);
});
