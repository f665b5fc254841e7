import test from 'ava';
import { fc, testProp } from '@fast-check/ava';
import { SocketAddress } from 'node:net';
import { classifyAddress, mayDial, type AddressClass, type DialPolicy } from '../../agent/device/address-policy.js';
import { formatEndpoint, normalizeAddress, readEndpoint, writeEndpoint, type Endpoint } from '../../agent/protocol/address.js';
import { ByteReader, ByteWriter } from '../../agent/protocol/bytes.js';
import { ipBytes, ipv4Arb, ipv6Arb, isV4Mapped, portArb, throwsProtocolError } from '../helpers/protocol-arbitraries.js';

function roundTrip(ep: Endpoint): { bytes: Buffer; out: Endpoint } {
  const w = new ByteWriter();
  writeEndpoint(w, ep);
  const bytes = w.toBuffer();
  const r = new ByteReader(bytes, 'test');
  const out = readEndpoint(r, 'ep');
  r.end();
  return { bytes, out };
}

// --- wire form ---

testProp('IPv4 endpoints round-trip: family 4, 4 address bytes, u16 port', [ipv4Arb, portArb], (t, address, port) => {
  const { bytes, out } = roundTrip({ address, port });
  t.deepEqual(out, { address, port });
  t.is(bytes.length, 7);
  t.is(bytes[0], 4);
  t.deepEqual(bytes.subarray(1, 5), ipBytes(address));
  t.is(bytes.readUInt16BE(5), port);
});

testProp(
  'IPv6 endpoints in any text form (compressed, leading zeros, embedded IPv4) round-trip to the same 16 bytes',
  [ipv6Arb, portArb],
  (t, address, port) => {
    const { bytes, out } = roundTrip({ address, port });
    const want = ipBytes(address);
    t.is(out.port, port);
    if (isV4Mapped(want)) {
      t.is(bytes[0], 4);
      t.is(out.address, [...want.subarray(12)].join('.'));
    } else {
      t.is(bytes.length, 19);
      t.is(bytes[0], 6);
      t.deepEqual(bytes.subarray(1, 17), want);
      t.deepEqual(ipBytes(out.address), want);
      // Read back in the canonical compressed form, which is a fixed point.
      t.is(out.address, new SocketAddress({ address, family: 'ipv6' }).address);
      t.deepEqual(roundTrip(out).out, out);
    }
  },
);

test('IPv6 examples: compression and canonical form', (t) => {
  const cases: Array<[string, string]> = [
    ['::', '::'],
    ['::1', '::1'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['2001:DB8::A:B', '2001:db8::a:b'],
    ['fe80::1%eth0', 'fe80::1'],
    ['1::', '1::'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    ['64:ff9b::192.0.2.33', '64:ff9b::c000:221'],
    ['::ffff:10.1.2.3', '10.1.2.3'],
    ['::FFFF:10.1.2.3', '10.1.2.3'],
    ['::ffff:a01:203', '10.1.2.3'],
  ];
  for (const [input, expected] of cases) t.is(roundTrip({ address: input, port: 1 }).out.address, expected, input);
});

test('a bad family byte is a ProtocolError naming the field', (t) => {
  for (const family of [0, 5, 46, 255]) {
    const err = throwsProtocolError(t, () => readEndpoint(new ByteReader(Buffer.of(family, 1, 2, 3, 4, 0, 80), 'x'), 'client'));
    t.is(err?.field, 'client.family', `family ${family}`);
  }
});

test('truncated endpoints are ProtocolErrors', (t) => {
  for (const ep of [
    { address: '192.0.2.1', port: 80 },
    { address: '2001:db8::1', port: 80 },
  ]) {
    const { bytes } = roundTrip(ep);
    for (let n = 0; n < bytes.length; n++)
      throwsProtocolError(t, () => readEndpoint(new ByteReader(bytes.subarray(0, n), 'x'), 'ep'), `${ep.address} prefix ${n}`);
  }
});

test('writeEndpoint refuses something that is not an IP address', (t) => {
  t.throws(() => writeEndpoint(new ByteWriter(), { address: 'example.com', port: 1 }), { instanceOf: RangeError });
  t.throws(() => writeEndpoint(new ByteWriter(), { address: '1.2.3.256', port: 1 }), { instanceOf: RangeError });
});

test('normalizeAddress and formatEndpoint', (t) => {
  t.is(normalizeAddress('::ffff:127.0.0.1'), '127.0.0.1');
  t.is(normalizeAddress('::FFFF:1.2.3.4'), '1.2.3.4');
  t.is(normalizeAddress('2001:db8::1'), '2001:db8::1');
  t.is(normalizeAddress('1.2.3.4'), '1.2.3.4');
  // Every text form of a v4-mapped address (a dual-stack socket reports IPv4 peers so).
  t.is(normalizeAddress('::ffff:7f00:1'), '127.0.0.1');
  t.is(normalizeAddress('0:0:0:0:0:ffff:c0a8:101'), '192.168.1.1');
  t.is(normalizeAddress('0000::FFFF:0a00:0001'), '10.0.0.1');
  t.is(normalizeAddress('::ffff:0:1'), '0.0.0.1');
  t.is(normalizeAddress('::1:ffff:7f00:1'), '::1:ffff:7f00:1');
  t.is(normalizeAddress('64:ff9b::7f00:1'), '64:ff9b::7f00:1');
  t.is(normalizeAddress('0.0.0.0'), '0.0.0.0');
  t.is(formatEndpoint({ address: '2001:db8::1', port: 443 }), '[2001:db8::1]:443');
  t.is(formatEndpoint({ address: '192.0.2.1', port: 443 }), '192.0.2.1:443');
});

// --- address policy (P3) ---

test('classifyAddress', (t) => {
  const cases: Array<[string, AddressClass]> = [
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['127.1.2.3', 'loopback'],
    ['::1', 'loopback'],
    ['0:0:0:0:0:0:0:1', 'loopback'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['169.254.0.1', 'link-local'],
    ['169.254.169.254', 'link-local'],
    ['::ffff:169.254.1.1', 'link-local'],
    ['fe80::1', 'link-local'],
    ['febf:ffff::1', 'link-local'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['ff02::1', 'multicast'],
    ['ff05::fb', 'multicast'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['::', 'unspecified'],
    ['255.255.255.255', 'broadcast'],
    ['8.8.8.8', 'ordinary'],
    ['192.168.1.10', 'private'],
    ['10.0.0.1', 'private'],
    ['10.255.255.255', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['172.15.255.255', 'ordinary'],
    ['172.32.0.0', 'ordinary'],
    ['100.64.0.1', 'private'],
    ['100.127.255.255', 'private'],
    ['100.63.255.255', 'ordinary'],
    ['100.128.0.0', 'ordinary'],
    ['::ffff:192.168.0.1', 'private'],
    ['fd12:3456::1', 'private'],
    ['fc00::1', 'private'],
    ['fe00::1', 'ordinary'],
    ['128.0.0.1', 'ordinary'],
    ['169.253.255.255', 'ordinary'],
    ['223.255.255.255', 'ordinary'],
    ['255.255.255.254', 'ordinary'],
    ['2001:db8::1', 'documentation'],
    ['2001:db8:ffff:ffff::1', 'documentation'],
    ['2001:db9::1', 'ordinary'],
    ['3fff:fff::1', 'documentation'],
    ['3fff:1000::1', 'ordinary'],
    ['2606:4700::1111', 'ordinary'],
    ['fec0::1', 'ordinary'],
    ['::2', 'reserved'],
    ['::10.0.0.1', 'reserved'],
    ['100::1', 'reserved'],
    ['100:0:0:1::1', 'ordinary'],
    // NAT64 (RFC 6052): the IPv4 address the translator delivers to decides.
    ['64:ff9b::8.8.8.8', 'ordinary'],
    ['64:ff9b::808:808', 'ordinary'],
    ['64:ff9b::10.0.0.1', 'private'],
    ['64:ff9b::a00:1', 'private'],
    ['64:ff9b::192.168.1.1', 'private'],
    ['64:ff9b::127.0.0.1', 'loopback'],
    ['64:ff9b::169.254.169.254', 'link-local'],
    ['64:ff9b::224.0.0.1', 'multicast'],
    ['64:ff9b::0.0.0.0', 'unspecified'],
    ['64:ff9b::255.255.255.255', 'reserved'],
    ['64:ff9b:0:0:1::a00:1', 'ordinary'],
    ['64:ff9b:1::1', 'private'],
    ['64:ff9b:1:ffff::10.0.0.1', 'private'],
    // 6to4 (RFC 3056): likewise.
    ['2002:808:808::1', 'ordinary'],
    ['2002:a00:1::1', 'private'],
    ['2002:7f00:1::1', 'loopback'],
    // v4-mapped in every text form.
    ['0:0:0:0:0:ffff:7f00:1', 'loopback'],
    ['::ffff:c0a8:101', 'private'],
    ['::ffff:8.8.8.8', 'ordinary'],
    ['example.com', 'invalid'],
    ['', 'invalid'],
    ['1.2.3', 'invalid'],
  ];
  for (const [address, cls] of cases) t.is(classifyAddress(address), cls, address);
});

const policies: DialPolicy[] = [false, true].flatMap((allowLoopback) =>
  [false, true].flatMap((allowLinkLocal) => [false, true].map((allowPrivate) => ({ allowLoopback, allowLinkLocal, allowPrivate }))),
);
/** Where the device reached its server: on the Internet, in a private deployment, on this machine. */
const SERVERS = { public: '130.74.23.6', private: '192.168.7.2', cgn: '100.70.0.1', ula: 'fd00::5', loopback: '127.0.0.1' } as const;

test('mayDial: ordinary always; never multicast, unspecified, broadcast; link-local only with allowLinkLocal', (t) => {
  for (const policy of policies) {
    for (const server of Object.values(SERVERS)) {
      const tag = `${JSON.stringify(policy)} server ${server}`;
      t.true(mayDial('203.0.113.7', policy, server), tag);
      t.true(mayDial('2606:4700::7', policy, server), tag);
      t.true(mayDial('64:ff9b::8.8.4.4', policy, server), tag);
      // No real host has a documentation or reserved address: nothing legitimate to dial there.
      for (const doc of ['2001:db8::7', '3fff::7', '::1.2.3.4', '100::7']) t.false(mayDial(doc, policy, server), `${doc} ${tag}`);
      t.is(mayDial('169.254.10.10', policy, server), policy.allowLinkLocal, `link-local ${tag}`);
      t.is(mayDial('fe80::1', policy, server), policy.allowLinkLocal, `fe80 ${tag}`);
      for (const never of ['224.0.0.1', 'ff02::1', '0.0.0.0', '::', '255.255.255.255', 'not-an-ip'])
        t.false(mayDial(never, policy, server), `${never} ${tag}`);
    }
  }
});

test('mayDial: loopback only with allowLoopback and the server on loopback', (t) => {
  for (const policy of policies) {
    for (const [kind, server] of Object.entries(SERVERS)) {
      const tag = `${JSON.stringify(policy)} server ${server}`;
      const expected = policy.allowLoopback && kind === 'loopback';
      for (const a of ['127.0.0.1', '::1', '::ffff:127.0.0.1', '127.9.9.9', '64:ff9b::127.0.0.1', '2002:7f00:1::'])
        t.is(mayDial(a, policy, server), expected, `${a} ${tag}`);
    }
  }
});

test('mayDial: private, CGN and ULA only with the server on such an address or loopback, or with allowPrivate', (t) => {
  for (const policy of policies) {
    for (const [kind, server] of Object.entries(SERVERS)) {
      const tag = `${JSON.stringify(policy)} server ${server}`;
      const expected = policy.allowPrivate || kind !== 'public';
      for (const a of [
        '10.0.0.5',
        '172.20.1.1',
        '192.168.1.1',
        '100.64.1.1',
        'fd00::1',
        '::ffff:10.1.1.1',
        '64:ff9b::10.1.1.1',
        '64:ff9b::c0a8:101',
        '64:ff9b:1::5',
        '2002:c0a8:101::1',
      ])
        t.is(mayDial(a, policy, server), expected, `${a} ${tag}`);
    }
  }
  // An unknown server address counts as a public one (fail closed).
  t.false(mayDial('192.168.1.1', { allowLoopback: true, allowLinkLocal: true, allowPrivate: false }, ''));
});

/** The tests' own classifier, on the address bytes. */
function expectedClass(address: string): AddressClass {
  let b = ipBytes(address);
  if (isV4Mapped(b)) b = b.subarray(12);
  // NAT64 64:ff9b::/96 and 6to4 2002::/16 lead to the IPv4 address they carry.
  const nat64 = b.length === 16 && b[0] === 0 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && b.subarray(4, 12).every((x) => x === 0);
  const sixToFour = b.length === 16 && b[0] === 0x20 && b[1] === 0x02;
  if (nat64 || sixToFour) {
    const v4 = nat64 ? b.subarray(12) : b.subarray(2, 6);
    const cls = expectedClass([...v4].join('.'));
    return cls === 'broadcast' ? 'reserved' : cls;
  }
  if (b.length === 4) {
    if (b[0] === 127) return 'loopback';
    if (b[0] === 169 && b[1] === 254) return 'link-local';
    if (b[0]! >= 224 && b[0]! <= 239) return 'multicast';
    if (b[0] === 0) return 'unspecified';
    if (b.every((x) => x === 255)) return 'broadcast';
    if (b[0] === 10 || (b[0] === 172 && (b[1]! & 0xf0) === 16) || (b[0] === 192 && b[1] === 168) || (b[0] === 100 && (b[1]! & 0xc0) === 64))
      return 'private';
    return 'ordinary';
  }
  if (b.subarray(0, 15).every((x) => x === 0) && b[15] === 1) return 'loopback';
  if (b[0] === 0xfe && (b[1]! & 0xc0) === 0x80) return 'link-local';
  if (b[0] === 0xff) return 'multicast';
  if (b.every((x) => x === 0)) return 'unspecified';
  if ((b[0]! & 0xfe) === 0xfc) return 'private';
  if (b[0] === 0 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && b[4] === 0 && b[5] === 1) return 'private';
  if (b[0] === 0x20 && b[1] === 0x01 && b[2] === 0x0d && b[3] === 0xb8) return 'documentation';
  if (b[0] === 0x3f && b[1] === 0xff && (b[2]! & 0xf0) === 0) return 'documentation';
  if (b.subarray(0, 12).every((x) => x === 0)) return 'reserved';
  if (b[0] === 1 && b.subarray(1, 8).every((x) => x === 0)) return 'reserved';
  return 'ordinary';
}

const anyAddressArb = fc.oneof(
  ipv4Arb,
  ipv6Arb,
  ipv4Arb.map((a) => `::ffff:${a}`),
  // Addresses near the special ranges, so each class is hit often.
  fc
    .tuple(fc.constantFrom('127', '169', '224', '239', '0', '255', '240', '10', '172', '192', '100'), fc.nat(255), fc.nat(255), fc.nat(255))
    .map((o) => o.join('.')),
  fc
    .tuple(
      fc.constantFrom(
        'fe80',
        'febf',
        'fec0',
        'ff02',
        'ff00',
        '0',
        '1',
        'fc00',
        'fdff',
        'fe00',
        '2001:db8',
        '3fff',
        '3fff:fff',
        '100',
        '2002:a00',
        '2002:7f00',
        '64:ff9b:1',
      ),
      fc.nat(0xffff),
    )
    .map(([a, b]) => `${a}::${b.toString(16)}`),
  ipv4Arb.map((a) => `64:ff9b::${a}`),
  fc
    .tuple(fc.constantFrom(10, 127, 169, 192, 8, 224, 255, 0), fc.nat(0xffffff))
    .map(([h, l]) => `64:ff9b::${((h << 8) | (l >> 16)).toString(16)}:${(l & 0xffff).toString(16)}`),
  fc.constantFrom('::', '::1', '255.255.255.255', '0.0.0.0'),
);

testProp(
  'classifyAddress and mayDial agree with an independent byte-level classification, for any policy',
  [anyAddressArb, fc.boolean(), fc.boolean(), fc.boolean(), fc.constantFrom(...Object.values(SERVERS))],
  (t, address, allowLoopback, allowLinkLocal, allowPrivate, server) => {
    const cls = expectedClass(address);
    t.is(classifyAddress(address), cls, address);
    const serverCls = expectedClass(server);
    const expected =
      cls === 'ordinary' ||
      (cls === 'loopback' && allowLoopback && serverCls === 'loopback') ||
      (cls === 'link-local' && allowLinkLocal) ||
      (cls === 'private' && (allowPrivate || serverCls === 'private' || serverCls === 'loopback'));
    t.is(mayDial(address, { allowLoopback, allowLinkLocal, allowPrivate }, server), expected, `${address} server ${server}`);
  },
);

testProp('every 127.x.y.z is loopback and every 169.254.x.y link-local', [fc.nat(0xffffff), fc.nat(0xffff)], (t, low24, low16) => {
  t.is(classifyAddress(`127.${low24 >> 16}.${(low24 >> 8) & 255}.${low24 & 255}`), 'loopback');
  t.is(classifyAddress(`169.254.${low16 >> 8}.${low16 & 255}`), 'link-local');
});
