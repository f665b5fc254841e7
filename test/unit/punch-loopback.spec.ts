/**
 * A hole punch towards a loopback address (agent/nat/tcp-punch.ts): a refusal there is the peer's
 * own kernel, not a router's reset, so the next SYN waits PUNCH_RETRY_MS instead of leaving at
 * once. Before issue 15's fix a punch to a loopback port nobody punched from spun: thousands of
 * failed connects (each an error with a stack trace) in the time the device's dial took to win.
 */
import test from 'ava';
import { createServer } from 'node:net';
import { isLoopbackAddress, punchTcp, PUNCH_RETRY_MS } from '../../agent/nat/tcp-punch.js';
import { ErrorCodes, isPeerlinkError } from '../../agent/common/errors.js';

/** A loopback port with nothing on it (listened on once, then closed). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

test('loopback addresses: 127/8, ::1 and their IPv4-mapped form; nothing else', (t) => {
  for (const a of ['127.0.0.1', '127.3.2.1', '::1', '::ffff:127.0.0.1']) t.true(isLoopbackAddress(a), a);
  for (const a of ['10.0.0.1', '192.0.2.7', '::', '2001:db8::1', '::ffff:10.0.0.1', '128.0.0.1']) t.false(isLoopbackAddress(a), a);
});

test('a punch to a refusing loopback port paces its SYNs (PUNCH_RETRY_MS apart) instead of spinning', async (t) => {
  const port = await closedPort();
  const timeoutMs = 4 * PUNCH_RETRY_MS;
  const err = await t.throwsAsync(punchTcp({ localPort: 0, remote: { address: '127.0.0.1', port }, timeoutMs }));
  t.true(isPeerlinkError(err, ErrorCodes.PEER_TIMEOUT), String(err));
  const attempts = Number(/after (\d+) attempt/.exec(err!.message)?.[1]);
  t.true(attempts >= 1, err!.message);
  // One SYN at the start and one per PUNCH_RETRY_MS after (a late timer may make one fewer); at
  // once after each refusal it was thousands.
  t.true(attempts <= timeoutMs / PUNCH_RETRY_MS + 1, err!.message);
  t.regex(err!.message, /ECONNREFUSED/);
});
