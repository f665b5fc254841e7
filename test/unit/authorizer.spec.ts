import test from 'ava';
import { fc, testProp } from '@fast-check/ava';
import type { DialPolicy } from '../../agent/device/address-policy.js';
import type { HostPort } from '../../agent/common/endpoint-parse.js';
import { createAuthorizer, type Forwarded } from '../../agent/device/authorizer.js';
import { ReplayCache } from '../../agent/common/replay-cache.js';
import { deriveRequestTagKey } from '../../agent/protocol/keys.js';
import { sealRequest, type ConnectRequest } from '../../agent/protocol/request.js';
import { Status } from '../../agent/protocol/status.js';
import { bytesArb, keyArb, nonZeroPortArb } from '../helpers/protocol-arbitraries.js';

const ID = 'dev-0042';
const ACCESS_KEY = Buffer.alloc(32, 0xa5);
const TAG_KEY = deriveRequestTagKey(ACCESS_KEY);
const FRESH = 30_000;
const NOW = 1_700_000_000_000;
const HTTP: HostPort = { host: '127.0.0.1', port: 8080 };
const CLIENT = { address: '203.0.113.9', port: 51000 };

let nonceCounter = 0;
function request(over: Partial<ConnectRequest> = {}): ConnectRequest {
  const clientNonce = Buffer.alloc(16);
  clientNonce.writeUInt32BE(++nonceCounter, 12);
  return { clientNonce, timestampMs: NOW, equipmentId: ID, service: 'http', advertisedPort: 40000, ...over };
}

function forwarded(req: ConnectRequest, over: Partial<Forwarded> = {}, tagKey: Buffer = TAG_KEY): Forwarded {
  return { client: CLIENT, advertisedPort: req.advertisedPort, sealedRequest: sealRequest(req, tagKey), ...over };
}

/** Where the device reached its server in these tests (loopback unless a test says otherwise). */
const SERVER_ADDRESS = '127.0.0.1';

function setup(policy: DialPolicy = { allowLoopback: false, allowLinkLocal: false, allowPrivate: false }, cache = new ReplayCache()) {
  const state = { policy, services: new Map<string, HostPort>([['http', HTTP]]), serverAddress: SERVER_ADDRESS };
  const authorizeAt = createAuthorizer({
    equipmentId: ID,
    accessKey: ACCESS_KEY,
    freshnessMs: FRESH,
    replayCache: cache,
    services: () => state.services,
    dialPolicy: () => state.policy,
  });
  const authorize = (fwd: Forwarded, now: number) => authorizeAt(fwd, now, state.serverAddress);
  return { authorize, state, cache };
}

test('OK: a valid request is accepted with its target and the endpoint to dial', (t) => {
  const { authorize } = setup();
  const req = request();
  const d = authorize(forwarded(req), NOW);
  t.deepEqual(d, { status: Status.OK, request: req, target: HTTP, dial: { address: CLIENT.address, port: 40000 } });
});

test('AUTH_FAILED: sealed with another key (wrong password)', (t) => {
  const { authorize } = setup();
  const d = authorize(forwarded(request(), {}, deriveRequestTagKey(Buffer.alloc(32, 0x5a))), NOW);
  t.is(d.status, Status.AUTH_FAILED);
  // The access key itself is not the tag key either.
  t.is(authorize(forwarded(request(), {}, ACCESS_KEY), NOW).status, Status.AUTH_FAILED);
});

test('AUTH_FAILED is decided first: an unauthenticated request learns nothing else', (t) => {
  const { authorize } = setup();
  const wrong = deriveRequestTagKey(Buffer.alloc(32, 1));
  for (const req of [request({ timestampMs: 0 }), request({ service: 'ssh' }), request({ equipmentId: 'other' })]) {
    t.is(authorize(forwarded(req, { client: { address: '127.0.0.1', port: 1 } }, wrong), NOW).status, Status.AUTH_FAILED);
  }
});

test('REQUEST_EXPIRED: stale or future timestamps beyond the freshness window; the window edges are accepted', (t) => {
  const { authorize } = setup();
  t.is(authorize(forwarded(request({ timestampMs: NOW - FRESH - 1 })), NOW).status, Status.REQUEST_EXPIRED);
  t.is(authorize(forwarded(request({ timestampMs: NOW + FRESH + 1 })), NOW).status, Status.REQUEST_EXPIRED);
  t.is(authorize(forwarded(request({ timestampMs: 0 })), NOW).status, Status.REQUEST_EXPIRED);
  t.is(authorize(forwarded(request({ timestampMs: Number.MAX_SAFE_INTEGER })), NOW).status, Status.REQUEST_EXPIRED);
  t.is(authorize(forwarded(request({ timestampMs: NOW - FRESH })), NOW).status, Status.OK);
  t.is(authorize(forwarded(request({ timestampMs: NOW + FRESH })), NOW).status, Status.OK);
});

test('REQUEST_REPLAYED: the same request a second time', (t) => {
  const { authorize } = setup();
  const fwd = forwarded(request());
  t.is(authorize(fwd, NOW).status, Status.OK);
  t.is(authorize(fwd, NOW).status, Status.REQUEST_REPLAYED);
  t.is(authorize(fwd, NOW + 1000).status, Status.REQUEST_REPLAYED);
  // Relayed again from another client address: still the same nonce.
  t.is(authorize({ ...fwd, client: { address: '198.51.100.1', port: 1 } }, NOW + 2000).status, Status.REQUEST_REPLAYED);
});

testProp(
  'a request accepted once is never accepted again, at any later time',
  [fc.integer({ min: -FRESH, max: FRESH }), fc.integer({ min: 0, max: 3 * FRESH })],
  (t, skew, later) => {
    const { authorize } = setup();
    const fwd = forwarded(request({ timestampMs: NOW + skew }));
    t.is(authorize(fwd, NOW).status, Status.OK);
    const again = authorize(fwd, NOW + later).status;
    t.true(again === Status.REQUEST_REPLAYED || again === Status.REQUEST_EXPIRED, `status ${again}`);
  },
);

test('SERVICE_REFUSED: a service not in the allow-list (read at decision time)', (t) => {
  const { authorize, state } = setup();
  t.is(authorize(forwarded(request({ service: 'ssh' })), NOW).status, Status.SERVICE_REFUSED);
  state.services = new Map([['ssh', { host: '127.0.0.1', port: 22 }]]);
  t.is(authorize(forwarded(request({ service: 'http' })), NOW).status, Status.SERVICE_REFUSED);
  t.is(authorize(forwarded(request({ service: 'ssh' })), NOW).status, Status.OK);
});

test('DIAL_REFUSED: a loopback client address with allowLoopback false', (t) => {
  const { authorize, state } = setup();
  for (const address of ['127.0.0.1', '::1', '::ffff:127.0.0.1', '127.3.2.1']) {
    t.is(authorize(forwarded(request(), { client: { address, port: 1 } }), NOW).status, Status.DIAL_REFUSED, address);
  }
  for (const address of ['169.254.1.1', 'fe80::1', '224.0.0.1', '0.0.0.0', '255.255.255.255', '::']) {
    t.is(authorize(forwarded(request(), { client: { address, port: 1 } }), NOW).status, Status.DIAL_REFUSED, address);
  }
  state.policy = { allowLoopback: true, allowLinkLocal: false, allowPrivate: false };
  t.is(authorize(forwarded(request(), { client: { address: '127.0.0.1', port: 1 } }), NOW).status, Status.OK);
  t.is(authorize(forwarded(request(), { client: { address: '169.254.1.1', port: 1 } }), NOW).status, Status.DIAL_REFUSED);
});

test('a refused request does not use up its nonce', (t) => {
  const { authorize, state } = setup();
  const fwd = forwarded(request(), { client: { address: '127.0.0.1', port: 1 } });
  t.is(authorize(fwd, NOW).status, Status.DIAL_REFUSED);
  state.policy = { allowLoopback: true, allowLinkLocal: false, allowPrivate: false };
  t.is(authorize(fwd, NOW).status, Status.OK);
  t.is(authorize(fwd, NOW).status, Status.REQUEST_REPLAYED);
});

test('BAD_REQUEST: the advertised port relayed by the server differs from the sealed one', (t) => {
  const { authorize } = setup();
  const req = request({ advertisedPort: 40000 });
  const d = authorize(forwarded(req, { advertisedPort: 40001 }), NOW);
  t.is(d.status, Status.BAD_REQUEST);
  t.is(authorize(forwarded(req), NOW).status, Status.OK, 'the nonce was not used up');
});

test('BAD_REQUEST: a request for another equipment id', (t) => {
  const { authorize } = setup();
  const d = authorize(forwarded(request({ equipmentId: 'dev-0043' })), NOW);
  t.is(d.status, Status.BAD_REQUEST);
  if (d.status !== Status.OK) t.regex(d.reason, /dev-0043/);
});

test('BAD_REQUEST: malformed sealed bytes', (t) => {
  const { authorize } = setup();
  for (const sealed of [Buffer.alloc(0), Buffer.alloc(10), Buffer.alloc(200), forwarded(request()).sealedRequest.subarray(0, 40)]) {
    t.is(authorize({ client: CLIENT, advertisedPort: 40000, sealedRequest: sealed }, NOW).status, Status.BAD_REQUEST);
  }
});

test('DEVICE_BUSY: the replay cache is full of live nonces', (t) => {
  const { authorize } = setup(undefined, new ReplayCache(2));
  t.is(authorize(forwarded(request()), NOW).status, Status.OK);
  t.is(authorize(forwarded(request()), NOW).status, Status.OK);
  t.is(authorize(forwarded(request()), NOW).status, Status.DEVICE_BUSY);
});

testProp(
  'any single-byte change to the sealed request is refused (never OK)',
  [fc.nat(), fc.integer({ min: 1, max: 255 })],
  (t, pos, mask) => {
    const { authorize } = setup();
    const sealed = Buffer.from(forwarded(request()).sealedRequest);
    const i = pos % sealed.length;
    sealed[i] = sealed[i]! ^ mask;
    const d = authorize({ client: CLIENT, advertisedPort: 40000, sealedRequest: sealed }, NOW);
    t.true(d.status === Status.AUTH_FAILED || d.status === Status.BAD_REQUEST, `byte ${i}: status ${d.status}`);
  },
);

testProp(
  'only the holder of the access key gets OK',
  [keyArb, bytesArb(16), nonZeroPortArb],
  (t, otherAccess, clientNonce, advertisedPort) => {
    fc.pre(!otherAccess.equals(ACCESS_KEY));
    const { authorize } = setup();
    const req = request({ clientNonce, advertisedPort });
    t.is(authorize(forwarded(req, {}, deriveRequestTagKey(otherAccess)), NOW).status, Status.AUTH_FAILED);
    t.is(authorize(forwarded(req), NOW).status, Status.OK);
  },
);

test('DIAL_REFUSED: a private client address while the server is on a public address, unless allowPrivate', (t) => {
  const { authorize, state } = setup();
  state.serverAddress = '198.51.100.80';
  const lan = forwarded(request(), { client: { address: '192.168.1.20', port: 1 } });
  t.is(authorize(lan, NOW).status, Status.DIAL_REFUSED);
  state.serverAddress = '192.168.1.2';
  t.is(authorize(lan, NOW).status, Status.OK, 'the server is in the same private network');
  state.serverAddress = '198.51.100.80';
  state.policy = { allowLoopback: false, allowLinkLocal: false, allowPrivate: true };
  t.is(authorize(forwarded(request(), { client: { address: '10.2.3.4', port: 1 } }), NOW).status, Status.OK);
});
