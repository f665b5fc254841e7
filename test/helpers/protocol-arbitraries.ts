/**
 * Structure-aware fast-check arbitraries and assertion helpers shared by the protocol specs.
 * Independent of the code under test on purpose: the IPv6 parser below is the tests' own.
 */
import { fc } from '@fast-check/ava';
import type { ExecutionContext } from 'ava';
import { isIPv4, isIPv6 } from 'node:net';
import { ProtocolError } from '../../agent/common/errors.js';

const ID_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-';
const SERVICE_FIRST = 'abcdefghijklmnopqrstuvwxyz0123456789';
const SERVICE_REST = `${SERVICE_FIRST}._-`;

/** A valid equipment ID (EQUIPMENT_ID_PATTERN), biased towards both the 1- and the 64-character extremes. */
export const equipmentIdArb: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: fc.constantFrom(...ID_CHARS), minLength: 1, maxLength: 64 }),
  fc.string({ unit: fc.constantFrom(...ID_CHARS), minLength: 60, maxLength: 64 }),
  fc.constantFrom(...ID_CHARS),
);

/** A valid service name (SERVICE_NAME_PATTERN). */
export const serviceNameArb: fc.Arbitrary<string> = fc
  .tuple(fc.constantFrom(...SERVICE_FIRST), fc.string({ unit: fc.constantFrom(...SERVICE_REST), maxLength: 31 }))
  .map(([a, b]) => a + b);

export const bytesArb = (n: number): fc.Arbitrary<Buffer> => fc.uint8Array({ minLength: n, maxLength: n }).map((u) => Buffer.from(u));

export const keyArb = bytesArb(32);
export const timestampArb = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
export const portArb = fc.integer({ min: 0, max: 65535 });
export const nonZeroPortArb = fc.integer({ min: 1, max: 65535 });

/** Any IPv4 or IPv6 text form node:net accepts (fc.ipV6 yields compressed, embedded-IPv4 and leading-zero forms). */
export const ipv4Arb = fc.ipV4();
export const ipv6Arb = fc.ipV6().filter((a) => isIPv6(a));
export const endpointArb = fc.record({ address: fc.oneof(ipv4Arb, ipv6Arb), port: portArb });

/** The tests' own IPv4/IPv6 text -> bytes (16 bytes for IPv6, 4 for IPv4). */
export function ipBytes(address: string): Buffer {
  if (isIPv4(address)) return Buffer.from(address.split('.').map((o) => parseInt(o, 10)));
  if (!isIPv6(address)) throw new Error(`test helper: not an IP address: ${address}`);
  let text = address.replace(/%.*$/, '');
  const groups: number[] = [];
  const m = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  let tailV4: number[] = [];
  if (m) {
    text = m[1]!.endsWith('::') ? m[1]! : m[1]!.slice(0, -1);
    const o = [m[2], m[3], m[4], m[5]].map((x) => parseInt(x!, 10));
    tailV4 = [o[0]! * 256 + o[1]!, o[2]! * 256 + o[3]!];
  }
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const dbl = text.indexOf('::');
  if (dbl >= 0) {
    const head = parse(text.slice(0, dbl));
    const tail = [...parse(text.slice(dbl + 2)), ...tailV4];
    groups.push(...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail);
  } else {
    groups.push(...parse(text), ...tailV4);
  }
  if (groups.length !== 8) throw new Error(`test helper: bad group count for ${address}`);
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

/** True when 16 IPv6 bytes are an IPv4-mapped address (::ffff:a.b.c.d). */
export function isV4Mapped(b: Buffer): boolean {
  return b.length === 16 && b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
}

/** Asserts `fn` throws a ProtocolError (and nothing else: no RangeError/TypeError). */
export function throwsProtocolError(t: ExecutionContext, fn: () => unknown, message?: string): ProtocolError | undefined {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof ProtocolError)) {
      t.fail(`${message ?? ''} expected a ProtocolError, got ${(err as Error)?.name}: ${(err as Error)?.message}`);
      return undefined;
    }
    t.is(err.code, 'PEERLINK_ERR_PROTOCOL', message);
    return err;
  }
  t.fail(`${message ?? ''} expected a ProtocolError, nothing was thrown`);
  return undefined;
}

/** Runs `fn`; returns its result, or undefined when it threw a ProtocolError. Any other throw fails the test. */
export function parsesOrProtocolError<T>(t: ExecutionContext, fn: () => T, message?: string): T | undefined {
  try {
    return fn();
  } catch (err) {
    if (err instanceof ProtocolError && err.code === 'PEERLINK_ERR_PROTOCOL') return undefined;
    t.fail(`${message ?? ''} expected success or a ProtocolError, got ${(err as Error)?.name}: ${(err as Error)?.message}`);
    return undefined;
  }
}

export function flipBit(buf: Uint8Array, bit: number): Buffer {
  const out = Buffer.from(buf);
  out[bit >> 3] = out[bit >> 3]! ^ (1 << (bit & 7));
  return out;
}
