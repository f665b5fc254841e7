/**
 * The client's own NAT mapping check (agent/nat/client-mapping.ts): two answers with two external
 * ports give the symmetric hint, the same port none; a missing answer gives no hint after one
 * resend and a bounded wait, and for a while later checks do not wait; answers that are not ours
 * (another nonce, another port) are ignored. Loopback responders stand in for the server's two ports
 * and say what a NAT would have made of the source.
 */
import test from 'ava';
import { createSocket, type Socket } from 'node:dgram';
import { UDP_TYPE_CLIENT_PROBE } from '../../agent/protocol/constants.js';
import { encodeClientProbeAck, parseUdpPacket, type ClientProbe } from '../../agent/protocol/udp-packets.js';
import { clientMappingFor, createClientMapping, CLIENT_MAPPING_LIFETIME_MS } from '../../agent/nat/client-mapping.js';
import { PathHint } from '../../agent/paths/relay-hint.js';
import { isPeerlinkError, ErrorCodes } from '../../agent/common/errors.js';
import { silentLogger } from '../../agent/common/logger.js';

type Answer = 'same' | 'shifted' | 'silent' | 'wrong-nonce';

/** A stand-in for one server port: answers each CLIENT_PROBE as told; counts the probes. */
async function responder(t: { teardown(fn: () => unknown): void }, answer: Answer): Promise<{ port: number; probes: () => number }> {
  const s: Socket = createSocket('udp4');
  let probes = 0;
  s.on('message', (msg, rinfo) => {
    const p = parseUdpPacket(msg).packet;
    if (p.type !== UDP_TYPE_CLIENT_PROBE) return;
    probes++;
    if (answer === 'silent') return;
    const nonce = answer === 'wrong-nonce' ? Buffer.alloc(16, 1) : Buffer.from((p as ClientProbe).nonce);
    const port = answer === 'shifted' ? ((rinfo.port + 1) % 65535) + 1 : rinfo.port;
    s.send(encodeClientProbeAck({ nonce, observed: { address: rinfo.address, port } }), rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
  t.teardown(() => new Promise<void>((resolve) => s.close(() => resolve())));
  return { port: s.address().port, probes: () => probes };
}

/**
 * One check as a request makes it: the probes leave, the TLS connect takes its time (here: until
 * both stand-ins answered and a little more), then the hint is asked for.
 */
async function check(a: { port: number; probes: () => number }, b: { port: number; probes: () => number }, o: { family?: 4 | 6 } = {}) {
  const mapping = createClientMapping({
    host: '127.0.0.1',
    udpPort: a.port,
    probePort: b.port,
    logger: silentLogger(),
    hasGlobalIPv6: () => false,
  });
  const pending = mapping.begin();
  const until = Date.now() + 2000;
  while ((a.probes() === 0 || b.probes() === 0) && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 50));
  return { mapping, hints: await pending.hints(o.family ?? 4) };
}

test('two external ports for one socket: the symmetric hint; one port: none', async (t) => {
  const same = await responder(t, 'same');
  const shifted = await responder(t, 'shifted');
  const sym = await check(same, shifted);
  t.is(sym.hints, PathHint.SYMMETRIC_MAPPING);
  t.is(sym.mapping.last(), 'symmetric');
  const eim = await check(same, await responder(t, 'same'));
  t.is(eim.hints, 0);
  t.is(eim.mapping.last(), 'endpoint-independent');
});

test('no hint where a punch may still meet: a global IPv6 address, or a request over the other family', async (t) => {
  const a = await responder(t, 'same');
  const b = await responder(t, 'shifted');
  const before = a.probes();
  const mapping = createClientMapping({
    host: '127.0.0.1',
    udpPort: a.port,
    probePort: b.port,
    logger: silentLogger(),
    hasGlobalIPv6: () => true,
  });
  t.is(await mapping.begin().hints(4), 0);
  await new Promise((r) => setTimeout(r, 50));
  t.is(a.probes(), before, 'nothing sent with a global IPv6 address');
  t.is((await check(a, b, { family: 6 })).hints, 0);
});

test('no answer: no hint after one resend and a bounded wait; later checks do not wait', async (t) => {
  const a = await responder(t, 'silent');
  const b = await responder(t, 'silent');
  const mapping = createClientMapping({ host: '127.0.0.1', udpPort: a.port, probePort: b.port, logger: silentLogger() });
  const t0 = performance.now();
  t.is(await mapping.begin().hints(4), 0);
  // Bounded by the wait (100 ms at most), far from the check's lifetime.
  t.true(performance.now() - t0 < CLIENT_MAPPING_LIFETIME_MS / 10);
  t.is(mapping.last(), 'unknown');
  t.is(a.probes(), 2, 'sent, and sent again when the hint was due');
  t.is(b.probes(), 2);
  // The next request does not wait for answers (so sends nothing again).
  t.is(await mapping.begin().hints(4), 0);
  await new Promise((r) => setTimeout(r, 100));
  t.true(a.probes() <= 3, `${a.probes()} probes`);
});

test('answers that are not ours count for nothing: another nonce; one port only: no hint', async (t) => {
  const same = await responder(t, 'same');
  t.is((await check(same, await responder(t, 'wrong-nonce'))).hints, 0);
  const one = await check(same, await responder(t, 'silent'));
  t.is(one.hints, 0);
  t.is(one.mapping.last(), 'unknown');
});

test('without the ports nothing is checked; bad ports are an options error', (t) => {
  t.is(clientMappingFor(undefined, { host: 'x', logger: silentLogger() }), null);
  for (const ports of [
    { udpPort: 0, probePort: 7401 },
    { udpPort: 7400, probePort: 65536 },
    { udpPort: 7400, probePort: 7400 },
  ]) {
    const err = t.throws(() => clientMappingFor(ports, { host: 'x', logger: silentLogger() }));
    t.true(isPeerlinkError(err, ErrorCodes.OPTIONS_INVALID), String(ports.probePort));
  }
});
