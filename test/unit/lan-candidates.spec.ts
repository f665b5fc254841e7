/**
 * LAN candidates (issue 14): the server passes them on only between client and device it sees at
 * one public address; the device dials one only when the server vouched for that, the client
 * offered it in its sealed request, and it lies inside the device's own interface's subnet (P3b);
 * the client dials the device's only inside its own subnet. The request carries them sealed,
 * with their address family.
 */
import test from 'ava';
import type { NetworkInterfaceInfo } from 'node:os';
import { deviceLanOffer, lanDialTarget } from '../../agent/device/lan-candidate.js';
import { clientLanOffer, deviceLanTargets } from '../../agent/client/lan-candidates.js';
import { isLanAddress, lanDialRefusal } from '../../agent/nat/lan-address.js';
import { clientLanForDevice, deviceLanForClient } from '../../agent/server/lan-match.js';
import { CandidateKind, decodeFramePayload, encodeFrame, FrameType, type Candidate } from '../../agent/protocol/frames.js';
import { deriveRequestTagKey } from '../../agent/protocol/keys.js';
import { parseRequest, sealRequest, verifyRequestTag, type ConnectRequest } from '../../agent/protocol/request.js';
import type { Endpoint } from '../../agent/protocol/address.js';

const KEY = deriveRequestTagKey(Buffer.alloc(32, 7));
const HOME = '202.204.16.13';
const CLIENT_LAN: Endpoint = { address: '192.168.1.11', port: 5000 };

function request(lan: readonly Endpoint[] = [CLIENT_LAN]): ConnectRequest {
  return {
    clientNonce: Buffer.alloc(16, 1),
    timestampMs: 1_700_000_000_000,
    equipmentId: 'TV-1',
    service: 'echo',
    advertisedPort: 5000,
    lan,
  };
}

/** The device's interfaces: eth0 192.168.1.3/24 (and loopback). */
const IFACES: NodeJS.Dict<NetworkInterfaceInfo[]> = {
  lo: [{ address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' }],
  eth0: [
    { address: '192.168.1.3', netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:03', internal: false, cidr: '192.168.1.3/24' },
  ],
};

/** What the server tells the device: client's observed endpoint, ours, and (maybe) the client's LAN candidate. */
function told(clientPublic: string, devicePublic: string, lan: readonly Endpoint[] = [CLIENT_LAN]): Candidate[] {
  return [
    { kind: CandidateKind.PUNCH, endpoint: { address: clientPublic, port: 40001 } },
    { kind: CandidateKind.OBSERVED, endpoint: { address: devicePublic, port: 40002 } },
    ...lan.map((endpoint) => ({ kind: CandidateKind.LAN, endpoint })),
  ];
}

test('the sealed request carries LAN candidates with their family (IPv4 and IPv6) and the tag covers them', (t) => {
  const lan = [CLIENT_LAN, { address: 'fd00::11', port: 5000 }];
  const sealed = sealRequest(request(lan), KEY);
  const parsed = parseRequest(sealed);
  t.deepEqual(parsed.request.lan, lan);
  t.true(verifyRequestTag(parsed, KEY));
  // The server cannot swap the candidate: the tag no longer verifies.
  const forged = Buffer.from(sealed);
  forged[sealed.length - 32 - 3]! ^= 1; // a byte of the last endpoint's address
  t.false(verifyRequestTag(parseRequest(forged), KEY));
  // Without the field the request is as before.
  t.is(parseRequest(sealRequest(request([]), KEY)).request.lan, undefined);
  t.throws(() => sealRequest(request([CLIENT_LAN, CLIENT_LAN, CLIENT_LAN]), KEY), { instanceOf: RangeError });
});

test('a CANDIDATES frame carries the LAN kind', (t) => {
  const frame = encodeFrame({ type: FrameType.CANDIDATES, candidates: [{ kind: CandidateKind.LAN, endpoint: CLIENT_LAN }] });
  t.deepEqual(decodeFramePayload(FrameType.CANDIDATES, frame.subarray(4)), {
    type: FrameType.CANDIDATES,
    candidates: [{ kind: CandidateKind.LAN, endpoint: CLIENT_LAN }],
  });
});

test('LAN addresses: home private ranges and ULA; never CGN space, loopback, link-local or public', (t) => {
  for (const a of ['192.168.1.11', '10.0.0.2', '172.16.9.9', 'fd00::1', '::ffff:192.168.0.5']) t.true(isLanAddress(a), a);
  for (const a of ['100.64.0.2', '127.0.0.1', '169.254.1.1', 'fe80::1', '8.8.8.8', '224.0.0.1', '2001:db8::1', 'nonsense'])
    t.false(isLanAddress(a), a);
});

test('server: LAN candidates pass only between client and device seen at one public address, one each', (t) => {
  const sealed = sealRequest(request(), KEY);
  t.deepEqual(clientLanForDevice(sealed, { address: HOME, port: 1 }, { address: HOME, port: 2 }), [
    { kind: CandidateKind.LAN, endpoint: CLIENT_LAN },
  ]);
  // Two homes, both 192.168.1.0/24, different public addresses: stripped.
  t.deepEqual(clientLanForDevice(sealed, { address: '4.17.168.2', port: 1 }, { address: HOME, port: 2 }), []);
  t.deepEqual(clientLanForDevice(sealed, { address: HOME, port: 1 }, undefined), []);
  t.deepEqual(clientLanForDevice(Buffer.from('garbage'), { address: HOME, port: 1 }, { address: HOME, port: 2 }), []);
  const fromDevice: Candidate[] = [
    { kind: CandidateKind.LAN, endpoint: { address: '8.8.8.8', port: 9 } },
    { kind: CandidateKind.LAN, endpoint: { address: '192.168.1.3', port: 34245 } },
    { kind: CandidateKind.LAN, endpoint: { address: '192.168.1.4', port: 34245 } },
  ];
  t.deepEqual(deviceLanForClient(fromDevice, { address: HOME, port: 1 }, { address: HOME, port: 2 }), [
    { kind: CandidateKind.LAN, endpoint: { address: '192.168.1.3', port: 34245 } },
  ]);
  t.deepEqual(deviceLanForClient(fromDevice, { address: '4.17.168.2', port: 1 }, { address: HOME, port: 2 }), []);
});

test('device: dials the client LAN candidate when vouched, sealed and inside its own subnet', (t) => {
  t.deepEqual(lanDialTarget(told(HOME, HOME), request(), '192.168.1.3', IFACES), { dial: CLIENT_LAN });
  t.deepEqual(lanDialTarget(told(HOME, HOME, []), request(), '192.168.1.3', IFACES), { dial: null, reason: null });
});

test('device (P3b): never dials a LAN candidate the server did not vouch for, the client did not seal, or outside its subnet', (t) => {
  const refused = (why: string, decision: ReturnType<typeof lanDialTarget>): void => {
    t.is(decision.dial, null, why);
    t.truthy(decision.dial === null && decision.reason, why);
  };
  // Two homes (different public addresses): a server that forwards anyway is not believed.
  refused('different public addresses', lanDialTarget(told('4.17.168.2', HOME), request(), '192.168.1.3', IFACES));
  // A server that aims the device elsewhere on its LAN: not the client's sealed candidate.
  refused('not sealed', lanDialTarget(told(HOME, HOME, [{ address: '192.168.1.1', port: 80 }]), request(), '192.168.1.3', IFACES));
  refused('port changed', lanDialTarget(told(HOME, HOME, [{ address: '192.168.1.11', port: 22 }]), request(), '192.168.1.3', IFACES));
  refused(
    'more than one',
    lanDialTarget(
      told(HOME, HOME, [CLIENT_LAN, { address: '192.168.1.12', port: 5000 }]),
      request([CLIENT_LAN, { address: '192.168.1.12', port: 5000 }]),
      '192.168.1.3',
      IFACES,
    ),
  );
  // Sealed by a client (who holds the password) but outside the device's own subnet or not a LAN address.
  for (const ep of [
    { address: '192.168.2.11', port: 5000 },
    { address: '10.0.0.5', port: 5000 },
    { address: '127.0.0.1', port: 5000 },
    { address: '100.64.0.9', port: 5000 },
    { address: '192.168.1.3', port: 5000 },
    { address: '192.168.1.255', port: 5000 },
    { address: '192.168.1.0', port: 5000 },
  ]) {
    refused(ep.address, lanDialTarget(told(HOME, HOME, [ep]), request([ep]), '192.168.1.3', IFACES));
  }
  refused('no interface holds the local address', lanDialTarget(told(HOME, HOME), request(), '192.168.9.9', IFACES));
});

test('device offers its own LAN candidate only when vouched; client offers its own and dials only inside its subnet', (t) => {
  t.deepEqual(deviceLanOffer(told(HOME, HOME), '192.168.1.3', 34245), [
    { kind: CandidateKind.LAN, endpoint: { address: '192.168.1.3', port: 34245 } },
  ]);
  t.deepEqual(deviceLanOffer(told('4.17.168.2', HOME), '192.168.1.3', 34245), []);
  t.deepEqual(deviceLanOffer(told(HOME, HOME), '133.1.1.3', 34245), [], 'a public device has no LAN candidate');
  t.deepEqual(clientLanOffer('192.168.1.11', { address: '0.0.0.0', port: 5000 }), [CLIENT_LAN]);
  t.deepEqual(
    clientLanOffer('192.168.1.11', { address: '127.0.0.1', port: 5000 }),
    [],
    'a listener on loopback is not reachable from the LAN',
  );
  t.deepEqual(clientLanOffer('8.117.12.109', { address: '0.0.0.0', port: 5000 }), []);
  // Client on this machine: only a candidate inside one of its own subnets passes.
  t.deepEqual(deviceLanTargets([{ kind: CandidateKind.LAN, endpoint: { address: '192.168.1.3', port: 1 } }], '203.0.113.9'), []);
  t.is(lanDialRefusal({ address: '192.168.1.20', port: 1 }, '192.168.1.3', IFACES), null);
});
