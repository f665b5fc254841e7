/**
 * Cross-family candidates (issue 14): the server keeps what it observed of each side's companion
 * connection (agent/server/companions.ts) and passes it on only when its family differs from the
 * side's request or attach; the device punches the client's companion only under its dial
 * settings (P3) and only from its own connection of that family (agent/device/punch-targets.ts).
 */
import test from 'ava';
import { createCompanions, COMPANION_TTL_MS, COMPANIONS_MAX, crossFamily } from '../../agent/server/companions.js';
import { punchTargets } from '../../agent/device/punch-targets.js';
import { CandidateKind, type Candidate } from '../../agent/protocol/frames.js';
import { sealRequest } from '../../agent/protocol/request.js';
import { ManualClock } from '../helpers/manual-clock.js';

const V4 = { address: '4.17.168.2', port: 40000 };
const V6 = { address: '2a0a:e5c0:100:a::11', port: 41000 };
const sealed = (nonce: Buffer): Buffer =>
  sealRequest({ clientNonce: nonce, timestampMs: 1, equipmentId: 'TV-1', service: 'echo', advertisedPort: 5000 }, Buffer.alloc(32, 7));

test('crossFamily: a companion counts only when its family differs from the main connection (v4-mapped is IPv4)', (t) => {
  t.deepEqual(crossFamily(V4, V6), V6);
  t.deepEqual(crossFamily(V6, V4), V4);
  t.is(crossFamily(V4, { address: '::ffff:5.6.7.8', port: 1 }), undefined);
  t.is(crossFamily(V6, { address: '2a0a::1', port: 1 }), undefined);
  t.is(crossFamily(undefined, V6), undefined);
});

test("a client's companion is found by its sealed request's nonce, a device's by the request ID; others find nothing", (t) => {
  const clock = new ManualClock(1000);
  const c = createCompanions(clock);
  const nonce = Buffer.alloc(16, 1);
  c.client(nonce, V6);
  t.deepEqual(c.clientFor(sealed(nonce), V4), V6);
  t.is(c.clientFor(sealed(Buffer.alloc(16, 2)), V4), undefined, 'another request');
  t.is(c.clientFor(Buffer.from('not a request'), V4), undefined, 'a malformed request');
  t.is(c.clientFor(sealed(nonce), { address: '2a0a::9', port: 1 }), undefined, 'same family as the request');
  const rid = Buffer.alloc(16, 9);
  c.device(rid, V4);
  t.deepEqual(c.deviceFor(rid, V6), V4);
  t.is(c.deviceFor(Buffer.alloc(16, 8), V6), undefined);
});

test('the first companion for a key wins; entries expire after COMPANION_TTL_MS; at most COMPANIONS_MAX are kept', async (t) => {
  const clock = new ManualClock(1000);
  const c = createCompanions(clock);
  const rid = Buffer.alloc(16, 3);
  c.device(rid, V4);
  c.device(rid, { address: '9.9.9.9', port: 1 });
  t.deepEqual(c.deviceFor(rid, V6), V4, 'a second one does not replace the first');
  await clock.advance(COMPANION_TTL_MS);
  t.is(c.deviceFor(rid, V6), undefined, 'expired');
  for (let i = 0; i < COMPANIONS_MAX + 50; i++) {
    const n = Buffer.alloc(16);
    n.writeUInt32BE(i);
    c.client(n, V6);
  }
  t.is(c.size, COMPANIONS_MAX);
  const first = Buffer.alloc(16);
  t.is(c.clientFor(sealed(first), V4), undefined, 'the oldest went first');
});

const POLICY = { allowLoopback: false, allowLinkLocal: false, allowPrivate: false };
const told = (...c: Candidate[]): Candidate[] => c;

test("the device punches the client's observed endpoint from its attach port and the companion from its own companion's port", (t) => {
  const out = punchTargets(
    told({ kind: CandidateKind.PUNCH, endpoint: V4 }, { kind: CandidateKind.PUNCH, endpoint: V6 }),
    { address: V4.address, port: 5000 },
    { attachLocalPort: 3000, attachRemote: '130.74.23.6', companionLocal: { address: '2a0a:e5c0:200:b::3', port: 3100 } },
    () => POLICY,
  );
  t.deepEqual(out, [
    { localPort: 3000, remote: V4 },
    { localPort: 3100, remote: V6 },
  ]);
  // Attached over IPv6: the client's IPv4 endpoint leaves from the IPv4 companion.
  const swapped = punchTargets(
    told({ kind: CandidateKind.PUNCH, endpoint: V4 }, { kind: CandidateKind.PUNCH, endpoint: V6 }),
    { address: V4.address, port: 5000 },
    { attachLocalPort: 3000, attachRemote: '2a0a:e5c0:0:1::6', companionLocal: { address: '192.168.1.3', port: 3100 } },
    () => POLICY,
  );
  t.deepEqual(swapped, [
    { localPort: 3100, remote: V4 },
    { localPort: 3000, remote: V6 },
  ]);
});

test('P3: a companion endpoint the dial settings refuse (ULA, link-local, loopback, NAT64 of a private address) is not punched; nor one of a family we have no connection of', (t) => {
  const own = { attachLocalPort: 3000, attachRemote: '130.74.23.6', companionLocal: { address: '2a0a:e5c0:200:b::3', port: 3100 } };
  for (const address of ['fd00::1', 'fe80::1', '::1', '64:ff9b::10.0.0.1', '2001:db8::5']) {
    const out = punchTargets(
      told({ kind: CandidateKind.PUNCH, endpoint: V4 }, { kind: CandidateKind.PUNCH, endpoint: { address, port: 41000 } }),
      { address: V4.address, port: 5000 },
      own,
      () => POLICY,
    );
    t.deepEqual(out, [{ localPort: 3000, remote: V4 }], address);
  }
  t.deepEqual(
    punchTargets(
      told({ kind: CandidateKind.PUNCH, endpoint: V6 }),
      { address: V4.address, port: 5000 },
      { ...own, companionLocal: null },
      () => POLICY,
    ),
    [],
    'no IPv6 connection of our own: no IPv6 punch',
  );
  t.deepEqual(
    punchTargets(told({ kind: CandidateKind.PUNCH, endpoint: V6 }), { address: V4.address, port: 5000 }, own, null),
    [],
    'without dial settings only the observed address',
  );
  t.deepEqual(
    punchTargets(told({ kind: CandidateKind.PUNCH, endpoint: V4 }), { address: V4.address, port: 5000 }, own, undefined),
    [],
    'punching off',
  );
});
