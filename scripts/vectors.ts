#!/usr/bin/env node
/**
 * npm run vectors: test vectors for a reimplementation (a TV's firmware in C, say): every key
 * derivation, UDP packet and TLS frame of protocol version 1, computed by this code from fixed
 * inputs, written to agent/protocol/test-vectors.json. test/unit/test-vectors.spec.ts checks that
 * the code still produces exactly that file, so a change to the wire format cannot go unnoticed.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from './bundle.js';
import { createCookieJar } from '../agent/server/cookie-jar.js';
import { encodeFrame, FrameType, CandidateKind, type Frame } from '../agent/protocol/frames.js';
import {
  attachProof,
  deriveAccessKey,
  deriveRegistrationKey,
  deriveRequestTagKey,
  deriveTunnelPsk,
  reverseToken,
} from '../agent/protocol/keys.js';
import { sealRequest } from '../agent/protocol/request.js';
import { Status } from '../agent/protocol/status.js';
import {
  AckStatus,
  encodeCookie,
  encodeMappingCheck,
  encodeNotify,
  encodeProbe,
  encodeRefuse,
  encodeRegister,
  encodeRegisterAck,
  RefuseReason,
} from '../agent/protocol/udp-packets.js';
import { deriveWakeKey, makeWake } from '../agent/protocol/wake.js';
import { deriveClientKey, PAIR_EXPORTER_LABEL } from '../agent/protocol/pairing.js';

export interface Vector {
  readonly name: string;
  /** The inputs, hex for bytes. */
  readonly inputs: Readonly<Record<string, string | number>>;
  /** The output, hex. */
  readonly output: string;
}

const bytes = (n: number, fill: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (fill + i) & 0xff));
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

export async function computeVectors(): Promise<Vector[]> {
  const master = bytes(32, 0x00);
  const id = 'TV-000123';
  const password = '7KQ2-MZ9T-XH4C-RW8P-3NVB';
  const kReg = deriveRegistrationKey(master, id);
  const access = await deriveAccessKey(password, id);
  const tagKey = deriveRequestTagKey(access);
  const clientNonce = bytes(16, 0x10);
  const deviceNonce = bytes(16, 0x20);
  const nonce8 = bytes(8, 0x30);
  const requestId = bytes(16, 0x40);
  const cookie = bytes(16, 0x50);
  const exporter = bytes(32, 0x60);
  const timeMs = 1_796_000_000_000;
  const wakeKey = deriveWakeKey(access);
  const wake = makeWake(wakeKey, id, clientNonce, timeMs);
  const sealed = sealRequest({ clientNonce, timestampMs: timeMs, equipmentId: id, service: 'http', advertisedPort: 5000 }, tagKey);
  const v: Vector[] = [];
  const add = (name: string, inputs: Record<string, string | number>, output: Uint8Array): void =>
    void v.push({ name, inputs, output: hex(output) });

  add('registration key K_reg', { masterKey: hex(master), equipmentId: id }, kReg);
  add('access key A (scrypt N=2^10, r=8, p=1)', { password, equipmentId: id }, access);
  add('request tag key', { accessKey: hex(access) }, tagKey);
  add(
    'tunnel PSK',
    { accessKey: hex(access), clientNonce: hex(clientNonce), deviceNonce: hex(deviceNonce), equipmentId: id, service: 'http' },
    deriveTunnelPsk(access, clientNonce, deviceNonce, id, 'http'),
  );
  add('reverse token', { accessKey: hex(access), clientNonce: hex(clientNonce) }, reverseToken(access, clientNonce));
  add(
    'attach proof',
    { registrationKey: hex(kReg), requestId: hex(requestId), tlsExporter: hex(exporter) },
    attachProof(kReg, requestId, exporter),
  );
  add('wake key', { accessKey: hex(access) }, wakeKey);
  add(
    'wake (nonce | timestamp | tag)',
    { wakeKey: hex(wakeKey), equipmentId: id, clientNonce: hex(clientNonce), timestampMs: timeMs },
    Buffer.concat([wake.nonce, Buffer.from(BigInt(timeMs).toString(16).padStart(16, '0'), 'hex'), wake.tag]),
  );
  add(
    'cookie (epoch of timestampMs)',
    { masterKey: hex(master), equipmentId: id, address: '202.204.16.13', port: 43210, timestampMs: timeMs },
    createCookieJar(master).issue(id, { address: '202.204.16.13', port: 43210 }, timeMs),
  );
  // Pairing (issue 19): the per-client key, and a paired client's wake key and wake (its key stands in for A).
  const clientId = bytes(16, 0x70);
  const pairExporter = bytes(32, 0x80);
  const clientKey = deriveClientKey(pairExporter, clientId, id);
  add(
    'client key (pairing)',
    { tlsExporter: hex(pairExporter), exporterLabel: PAIR_EXPORTER_LABEL, clientId: hex(clientId), equipmentId: id },
    clientKey,
  );
  const clientWake = makeWake(deriveWakeKey(clientKey), id, clientNonce, timeMs);
  add(
    'wake of a paired client (nonce | timestamp | tag)',
    { clientKey: hex(clientKey), equipmentId: id, clientNonce: hex(clientNonce), timestampMs: timeMs },
    Buffer.concat([clientWake.nonce, Buffer.from(BigInt(timeMs).toString(16).padStart(16, '0'), 'hex'), clientWake.tag]),
  );
  add(
    'sealed connect request',
    {
      clientNonce: hex(clientNonce),
      timestampMs: timeMs,
      equipmentId: id,
      service: 'http',
      advertisedPort: 5000,
      requestTagKey: hex(tagKey),
    },
    sealed,
  );

  const udp = { registrationKey: hex(kReg) };
  add(
    'UDP REGISTER (no cookie)',
    { ...udp, equipmentId: id, timestampMs: timeMs, nonce: hex(nonce8) },
    encodeRegister({ equipmentId: id, timestampMs: timeMs, nonce: nonce8 }, kReg),
  );
  add(
    'UDP REGISTER (with cookie)',
    { ...udp, equipmentId: id, timestampMs: timeMs, nonce: hex(nonce8), cookie: hex(cookie) },
    encodeRegister({ equipmentId: id, timestampMs: timeMs, nonce: nonce8, cookie }, kReg),
  );
  add(
    'UDP REGISTER_ACK (IPv4)',
    { ...udp, status: AckStatus.OK, nonce: hex(nonce8), serverTimeMs: timeMs, address: '202.204.16.13', port: 43210 },
    encodeRegisterAck(
      { status: AckStatus.OK, nonce: nonce8, serverTimeMs: timeMs, observed: { address: '202.204.16.13', port: 43210 } },
      kReg,
    ),
  );
  add(
    'UDP REGISTER_ACK (IPv6, clock skew)',
    { ...udp, status: AckStatus.CLOCK_SKEW, nonce: hex(nonce8), serverTimeMs: timeMs, address: '2001:db8::7', port: 43210 },
    encodeRegisterAck(
      { status: AckStatus.CLOCK_SKEW, nonce: nonce8, serverTimeMs: timeMs, observed: { address: '2001:db8::7', port: 43210 } },
      kReg,
    ),
  );
  add(
    'UDP NOTIFY',
    { ...udp, requestId: hex(requestId), serverTimeMs: timeMs, wake: 'the wake vector' },
    encodeNotify({ requestId, serverTimeMs: timeMs, wake }, kReg),
  );
  add(
    'UDP PROBE (check my mapping)',
    { ...udp, flags: 1, equipmentId: id, timestampMs: timeMs, nonce: hex(nonce8), cookie: hex(cookie) },
    encodeProbe({ flags: 1, equipmentId: id, timestampMs: timeMs, nonce: nonce8, cookie }, kReg),
  );
  add(
    'UDP MAPPING_CHECK',
    { ...udp, nonce: hex(nonce8), serverTimeMs: timeMs },
    encodeMappingCheck({ nonce: nonce8, serverTimeMs: timeMs }, kReg),
  );
  add(
    'UDP COOKIE',
    { ...udp, nonce: hex(nonce8), serverTimeMs: timeMs, cookie: hex(cookie) },
    encodeCookie({ nonce: nonce8, serverTimeMs: timeMs, cookie }, kReg),
  );
  add(
    'UDP REFUSE (revoked)',
    { ...udp, equipmentId: id, requestId: hex(requestId), reason: RefuseReason.REVOKED },
    encodeRefuse({ equipmentId: id, requestId, reason: RefuseReason.REVOKED }, kReg),
  );
  add(
    'UDP REFUSE (bad tag)',
    { ...udp, equipmentId: id, requestId: hex(requestId), reason: RefuseReason.BAD_TAG },
    encodeRefuse({ equipmentId: id, requestId, reason: RefuseReason.BAD_TAG }, kReg),
  );

  const frames: [string, Frame][] = [
    ['HELLO', { type: FrameType.HELLO, serverTimeMs: timeMs }],
    ['CONNECT_REQUEST', { type: FrameType.CONNECT_REQUEST, equipmentId: id, advertisedPort: 5000, wake, sealedRequest: sealed }],
    ['CONNECT_RESULT', { type: FrameType.CONNECT_RESULT, status: Status.AUTH_FAILED, detail: 'wrong password' }],
    ['DEVICE_ATTACH', { type: FrameType.DEVICE_ATTACH, equipmentId: id, requestId, proof: attachProof(kReg, requestId, exporter) }],
    [
      'FORWARD_REQUEST',
      {
        type: FrameType.FORWARD_REQUEST,
        requestId,
        client: { address: '4.17.168.2', port: 40001 },
        advertisedPort: 5000,
        sealedRequest: sealed,
      },
    ],
    ['DEVICE_VERDICT', { type: FrameType.DEVICE_VERDICT, requestId, status: Status.OK }],
    [
      'CANDIDATES',
      {
        type: FrameType.CANDIDATES,
        candidates: [
          { kind: CandidateKind.PUNCH, endpoint: { address: '4.17.168.2', port: 40001 } },
          { kind: CandidateKind.LISTEN, endpoint: { address: '0.0.0.0', port: 43319 } },
        ],
      },
    ],
    ['RELAY_JOIN_DEVICE', { type: FrameType.RELAY_JOIN_DEVICE, equipmentId: id, requestId, proof: attachProof(kReg, requestId, exporter) }],
    ['RELAY_OFFER', { type: FrameType.RELAY_OFFER, requestId, joinToken: cookie }],
    ['RELAY_JOIN_CLIENT', { type: FrameType.RELAY_JOIN_CLIENT, requestId, joinToken: cookie }],
    ['RELAY_PAIRED', { type: FrameType.RELAY_PAIRED }],
  ];
  for (const [name, f] of frames)
    add(
      `frame ${name}`,
      {
        frame: JSON.stringify(f, (_k, val: unknown) =>
          val && typeof val === 'object' && (val as { type?: string }).type === 'Buffer'
            ? hex(Buffer.from((val as { data: number[] }).data))
            : val,
        ),
      },
      encodeFrame(f),
    );
  return v;
}

export const VECTORS_FILE = join(REPO_ROOT, 'agent', 'protocol', 'test-vectors.json');

export const formatVectors = (v: readonly Vector[]): string => `${JSON.stringify({ protocolVersion: 1, vectors: v }, null, 2)}\n`;

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const v = await computeVectors();
  await writeFile(VECTORS_FILE, formatVectors(v));
  process.stdout.write(`vectors: ${v.length} written to agent/protocol/test-vectors.json\n`);
}
