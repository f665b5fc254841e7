/**
 * Seed packets for the mutator, built with the real codecs (udp-packets.ts, frames.ts, keys.ts):
 * mutants of valid packets get past the first checks and reach the deeper parser paths.
 *
 * Nothing here can register a device or redirect the real one: registrations carry a timestamp
 * older than the agent's own (the server drops them as replays, and `frozen` keeps the retag
 * strategy from touching it), the decoy device's packets are tagged with a key the server does not
 * derive, and connect requests name the decoy, so the fuzzer acts as a stranger, not as the device.
 */
import { createServer } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { randomBytes } from 'node:crypto';
import { deriveAccessKey, deriveRegistrationKey, deriveRequestTagKey, reverseToken } from '../../agent/protocol/keys.js';
import {
  encodeMappingCheck,
  encodeNotify,
  encodeProbe,
  encodeRegister,
  encodeRegisterAck,
  udpKey,
  AckStatus,
  REGISTER_NONCE_BYTES,
} from '../../agent/protocol/udp-packets.js';
import { blake2sMac } from '../../agent/protocol/blake2s.js';
import { MAC_BYTES } from '../../agent/protocol/keys.js';
import { PROBE_FLAG_CHECK_MAPPING, REQUEST_ID_BYTES } from '../../agent/protocol/constants.js';
import { CandidateKind, encodeFrame, FrameType, type Frame } from '../../agent/protocol/frames.js';
import { sealRequest } from '../../agent/protocol/request.js';
import { Status } from '../../agent/protocol/status.js';
import type { Wake } from '../../agent/protocol/wake.js';

/** An equipment ID no device owns: connect requests and badly keyed registrations name it. */
export const DECOY_EQUIPMENT_ID = 'FUZZ-DECOY-0001';
/** Registrations built this long before now: older than the agent's latest, so replays. */
const STALE_REGISTRATION_MS = 30_000;
const CLIENT_HELLO_CAPTURE_TIMEOUT_MS = 5_000;

export interface Seed {
  readonly name: string;
  readonly bytes: Buffer;
  /** Where a wrongType mutation strikes. */
  readonly typeOffset?: number;
  /** Length fields that a lengthOff mutation moves by a few. */
  readonly lengthFields: readonly { readonly offset: number; readonly size: 1 | 2 }[];
  /** Bytes the retag strategy must not change (a registration's timestamp: see the file comment). */
  readonly frozen?: readonly [number, number] | undefined;
  /** Re-sign a mutant in place with the real key (valid tag over wrong contents). */
  readonly retag?: { readonly tagBytes: number; sign(buf: Buffer, length: number): void };
}

export interface SeedKeys {
  readonly equipmentId: string;
  readonly masterKey: Buffer;
  readonly password: string;
}

const UDP_HEADER = { typeOffset: 3 } as const;

/** UDP seeds: every packet type, tagged under the real device's key where that makes sense. */
export function udpSeeds(k: SeedKeys): Seed[] {
  const regKey = deriveRegistrationKey(k.masterKey, k.equipmentId);
  const prepared = udpKey(regKey);
  const retag = {
    tagBytes: MAC_BYTES,
    sign(buf: Buffer, length: number) {
      if (length > MAC_BYTES) blake2sMac(prepared, buf, buf, length - MAC_BYTES, length - MAC_BYTES);
    },
  };
  const now = Date.now();
  const nonce = (): Buffer => randomBytes(REGISTER_NONCE_BYTES);
  const idLen = Buffer.byteLength(k.equipmentId);
  // REGISTER: header(4) | idLen(1) | id | timestamp(8): the timestamp starts right after the id.
  const registerTs: [number, number] = [5 + idLen, 13 + idLen];
  const seeds: Seed[] = [
    {
      name: 'register (stale, real key)',
      ...UDP_HEADER,
      lengthFields: [{ offset: 4, size: 1 }],
      frozen: registerTs,
      retag,
      bytes: encodeRegister({ equipmentId: k.equipmentId, timestampMs: now - STALE_REGISTRATION_MS, nonce: nonce() }, regKey),
    },
    {
      name: 'register (decoy, wrong key)',
      ...UDP_HEADER,
      lengthFields: [{ offset: 4, size: 1 }],
      bytes: encodeRegister({ equipmentId: DECOY_EQUIPMENT_ID, timestampMs: now, nonce: nonce() }, randomBytes(32)),
    },
    {
      name: 'probe',
      ...UDP_HEADER,
      lengthFields: [{ offset: 5, size: 1 }],
      retag,
      bytes: encodeProbe({ flags: 0, equipmentId: k.equipmentId, timestampMs: now, nonce: nonce() }, regKey),
    },
    {
      name: 'probe (check mapping)',
      ...UDP_HEADER,
      lengthFields: [{ offset: 5, size: 1 }],
      retag,
      bytes: encodeProbe({ flags: PROBE_FLAG_CHECK_MAPPING, equipmentId: k.equipmentId, timestampMs: now, nonce: nonce() }, regKey),
    },
    {
      name: 'register ack',
      ...UDP_HEADER,
      lengthFields: [],
      retag,
      bytes: encodeRegisterAck(
        { status: AckStatus.OK, nonce: nonce(), serverTimeMs: now, observed: { address: '127.0.0.1', port: 40000 } },
        regKey,
      ),
    },
    {
      name: 'notify',
      ...UDP_HEADER,
      lengthFields: [],
      retag,
      bytes: encodeNotify({ requestId: randomBytes(REQUEST_ID_BYTES), serverTimeMs: now, wake: anyWake(now) }, regKey),
    },
    {
      name: 'mapping check',
      ...UDP_HEADER,
      lengthFields: [],
      retag,
      bytes: encodeMappingCheck({ nonce: nonce(), serverTimeMs: now }, regKey),
    },
  ];
  return seeds.map((s) => Object.freeze(s));
}

/** Frame header: version(1) | type(1) | length(2). */
const FRAME_SEED = { typeOffset: 1, lengthFields: [{ offset: 2, size: 2 }] } as const;

/** Frames of every type (in both directions: a server must cope with frames it never expects). */
export async function frameSeeds(k: SeedKeys): Promise<Seed[]> {
  const rid = (): Buffer => randomBytes(REQUEST_ID_BYTES);
  const requestTagKey = deriveRequestTagKey(await deriveAccessKey(k.password, DECOY_EQUIPMENT_ID));
  const sealed = sealRequest(
    { clientNonce: randomBytes(16), timestampMs: Date.now(), equipmentId: DECOY_EQUIPMENT_ID, service: 'echo', advertisedPort: 40000 },
    requestTagKey,
  );
  const client = { address: '127.0.0.1', port: 40000 };
  const frames: [string, Frame][] = [
    ['hello', { type: FrameType.HELLO, serverTimeMs: Date.now() }],
    [
      'connect request (decoy)',
      {
        type: FrameType.CONNECT_REQUEST,
        equipmentId: DECOY_EQUIPMENT_ID,
        advertisedPort: 40000,
        wake: anyWake(Date.now()),
        sealedRequest: sealed,
      },
    ],
    ['connect result', { type: FrameType.CONNECT_RESULT, status: Status.OK, detail: 'fuzz' }],
    ['device attach', { type: FrameType.DEVICE_ATTACH, equipmentId: k.equipmentId, requestId: rid(), proof: randomBytes(32) }],
    ['forward request', { type: FrameType.FORWARD_REQUEST, requestId: rid(), client, advertisedPort: 40000, sealedRequest: sealed }],
    ['device verdict', { type: FrameType.DEVICE_VERDICT, requestId: rid(), status: Status.OK }],
    ['relay offer', { type: FrameType.RELAY_OFFER, requestId: rid(), joinToken: randomBytes(16) }],
    ['relay join client', { type: FrameType.RELAY_JOIN_CLIENT, requestId: rid(), joinToken: randomBytes(16) }],
    ['relay join device', { type: FrameType.RELAY_JOIN_DEVICE, equipmentId: k.equipmentId, requestId: rid(), proof: randomBytes(32) }],
    ['relay paired', { type: FrameType.RELAY_PAIRED }],
    [
      'candidates',
      {
        type: FrameType.CANDIDATES,
        candidates: [
          { kind: CandidateKind.LISTEN, endpoint: client },
          { kind: CandidateKind.PUNCH, endpoint: client },
        ],
      },
    ],
  ];
  return frames.map(([name, f]) => Object.freeze({ name, ...FRAME_SEED, bytes: encodeFrame(f) }));
}

/** Reverse-port seeds: a well-formed token for no request, and the token's worth of zeros. */
export async function reverseSeeds(k: SeedKeys): Promise<Seed[]> {
  const accessKey = await deriveAccessKey(k.password, k.equipmentId);
  return [
    Object.freeze({ name: 'reverse token (no such request)', lengthFields: [], bytes: reverseToken(accessKey, randomBytes(16)) }),
    Object.freeze({ name: 'zero token', lengthFields: [], bytes: Buffer.alloc(16) }),
  ];
}

/**
 * A real TLS ClientHello, as Node's client sends it to the server's name: captured by a one-shot
 * listener on loopback, so the TLS port's mutants start from what a client really sends.
 */
export async function clientHelloSeed(): Promise<Seed> {
  const hello = await new Promise<Buffer>((resolve, reject) => {
    const server = createServer((s) => {
      s.once('data', (d: Buffer) => {
        s.destroy();
        server.close();
        resolve(d);
      });
      s.on('error', () => undefined);
    });
    const timer = setTimeout(() => {
      server.close();
      reject(new Error('no ClientHello captured'));
    }, CLIENT_HELLO_CAPTURE_TIMEOUT_MS);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      const c = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false });
      c.on('error', () => clearTimeout(timer));
      c.on('close', () => clearTimeout(timer));
    });
  });
  // Record: type(1) | version(2) | length(2); handshake: type(1) | length(3, its low 2 bytes at 7).
  const seed: Seed = {
    name: 'TLS ClientHello',
    typeOffset: 5,
    lengthFields: [
      { offset: 3, size: 2 },
      { offset: 7, size: 2 },
    ],
    bytes: hello,
  };
  return Object.freeze(seed);
}

/** A well-formed wake proof whose tag verifies under no key (the fuzzer never holds a password's key). */
function anyWake(timestampMs: number): Wake {
  return { nonce: randomBytes(16), timestampMs, tag: randomBytes(16) };
}
