/**
 * Frames on the TLS connections to the rendezvous server.
 * Frame: version (u8) | type (u8) | payload length (u16) | payload.
 *
 *   HELLO            server -> any     server time ms (u64)
 *   CONNECT_REQUEST  client -> server  id (u8 len) | advertised port (u16) | wake (40, wake.ts)
 *                                      | sealed request (u16 len)                                      [S203, 217]
 *   CONNECT_RESULT   server -> client  status (u8) | detail (u16 len, UTF-8)
 *   DEVICE_ATTACH    device -> server  id (u8 len) | request id (16) | proof (32)                      [S206]
 *   FORWARD_REQUEST  server -> device  request id (16) | client endpoint as observed by the server
 *                                      | advertised port (u16) | sealed request (u16 len)             [226]
 *   DEVICE_VERDICT   device -> server  request id (16) | status (u8)                                   [S207]
 *
 * A kept device connection (issue 15, agent/server/kept-devices.ts): after its verdict the device
 * may keep the attach connection for a while; the next request then wakes it over that connection.
 *   DEVICE_IDLE      device -> server  idle ms (u32): sent right after DEVICE_VERDICT; the device keeps
 *                                      this connection for that long (the server may close it sooner)
 *   DEVICE_WAKE      server -> device  request id (16) | server time ms (u64) | wake (40, wake.ts):
 *                                      exactly what a NOTIFY carries [S205]; the device checks it as
 *                                      one and answers with a DEVICE_ATTACH for that request on this
 *                                      connection (its proof bound to this TLS session), or refuses
 *                                      it (UDP REFUSE) and closes the connection
 *
 * Relay, the last resort when the device's direct dial fails (beyond the patent):
 *   RELAY_OFFER         server -> client  request id (16) | join token (16): where to meet the device if no
 *                                         direct connection comes; the token is random per request and
 *                                         travels only here, never in the NOTIFY
 *   RELAY_JOIN_CLIENT   client -> server  request id (16) | join token (16), as offered
 *   RELAY_JOIN_DEVICE   device -> server  id (u8 len) | request id (16) | proof (32), as DEVICE_ATTACH
 *   RELAY_PAIRED        server -> both    (empty); from here on the connection carries the peer's bytes:
 *                                         the end-to-end TLS-PSK channel, which the relay cannot read
 *
 * Relay plans (issue 15), only on a connection whose ALPN is RENDEZVOUS_ALPN (constants.ts):
 *   RELAY_PLAN          device -> server  request id (16) | relay in ms (u32): just before its ok DEVICE_VERDICT,
 *                                         when it will join the relay (0: at once)
 *                       server -> client  the same, just after RELAY_OFFER: join then, not before
 *   RELAY_RELEASE       client -> server  request id (16), on the connection that got the offer, at any
 *                                         time after its answer: another path won, the offer's share is free
 *   RELAY_NOW           server -> client  request id (16), on that connection: the device joined the relay
 *                                         before the client (sooner than its plan said): join now
 *
 * The relay without TLS to the server (issue 15, "plain legs"): on a plain TCP connection to the TLS
 * port (its first byte is this version byte, never TLS's 0x16), both sides prove a key they share:
 * the join token (client) or K_reg (device); keys.ts relayLegProof.
 *   RELAY_LEG_HELLO     any -> server     role (u8: 1 client, 2 device) | id (u8 len; empty for a client)
 *                                         | request id (16) | nonce (16)
 *   RELAY_LEG_CHALLENGE server -> it      nonce (16) | proof (32) that the server holds the key
 *   RELAY_LEG_JOIN      it -> server      proof (32) that the joiner holds the key; then RELAY_PAIRED
 *
 * Path candidates, for the strategies beyond the patent's S208 (reverse dial, hole punching):
 *   CANDIDATES          count (u8, at most 8) | count x (kind (u8) | endpoint)
 *       device -> server  before DEVICE_VERDICT: LISTEN endpoints it accepts on (a router mapping,
 *                         or address 0.0.0.0 = "the address you see me from", for a public host)
 *       server -> device  after FORWARD_REQUEST: PUNCH = the client's request connection as observed
 *       server -> client  before CONNECT_RESULT: PUNCH = the device's attach connection as observed,
 *                         and the device's LISTEN endpoints the server checked
 *       server -> either  OBSERVED = the receiver's own address and port as the server sees them
 *       LAN (issue 14): a local address and port on a home LAN; the server passes one on only when it
 *                         sees client and device at the same public address (agent/server/lan-match.ts):
 *       server -> device  the client's, as offered in its sealed request
 *       device -> server  before DEVICE_VERDICT: its own (its reverse port on its LAN address)
 *       server -> client  the device's
 *
 * Companions (issue 14, cross-family candidates): a second connection to the server over the other
 * address family, from a bound port, whose only purpose is to be observed (agent/server/companions.ts):
 *   CLIENT_COMPANION    client -> server  client nonce (16), as in its sealed request; then the server closes
 *   DEVICE_COMPANION    device -> server  as DEVICE_ATTACH (its proof bound to this connection)
 * The server adds what it saw as PUNCH candidates of that family (server -> device, server -> client).
 */
import { ProtocolError } from '../common/errors.js';
import { IDENTITY_NAME_MAX_BYTES, IDENTITY_NAME_PATTERN, identityName, splitIdentityName } from './identity-name.js';
import { ByteReader, ByteWriter } from './bytes.js';
import {
  EQUIPMENT_ID_MAX_BYTES,
  EQUIPMENT_ID_PATTERN,
  FRAME_MAX_PAYLOAD_BYTES,
  PROTOCOL_VERSION,
  RELAY_JOIN_TOKEN_BYTES,
  RELAY_LEG_NONCE_BYTES,
  REQUEST_ID_BYTES,
} from './constants.js';
import { readEndpoint, writeEndpoint, type Endpoint } from './address.js';
import { isStatus, type StatusValue } from './status.js';
import { KEY_BYTES, NONCE_BYTES } from './keys.js';
import { readWake, writeWake, type Wake } from './wake.js';

export const FrameType = {
  HELLO: 1,
  CONNECT_REQUEST: 0x10,
  CONNECT_RESULT: 0x11,
  DEVICE_ATTACH: 0x20,
  FORWARD_REQUEST: 0x21,
  DEVICE_VERDICT: 0x22,
  DEVICE_IDLE: 0x24,
  DEVICE_WAKE: 0x25,
  RELAY_OFFER: 0x12,
  RELAY_JOIN_CLIENT: 0x30,
  RELAY_JOIN_DEVICE: 0x31,
  RELAY_PAIRED: 0x32,
  CANDIDATES: 0x13,
  CLIENT_COMPANION: 0x14,
  DEVICE_COMPANION: 0x23,
  RELAY_LEG_HELLO: 0x33,
  RELAY_LEG_CHALLENGE: 0x34,
  RELAY_LEG_JOIN: 0x35,
  RELAY_PLAN: 0x36,
  RELAY_RELEASE: 0x37,
  RELAY_NOW: 0x38,
} as const;

/** Who joins a plain relay leg (RELAY_LEG_HELLO). */
export const RelayRole = { CLIENT: 1, DEVICE: 2 } as const;
export type RelayRoleValue = (typeof RelayRole)[keyof typeof RelayRole];

/**
 * PUNCH: the source of the peer's rendezvous connection (for TCP simultaneous open from the same local port).
 * LISTEN: a port that accepts TCP. OBSERVED: the receiver's own address as the server sees it (for reports).
 * LAN: a local address and port on a home LAN, for a peer behind the same public address.
 */
export const CandidateKind = { PUNCH: 1, LISTEN: 2, OBSERVED: 3, LAN: 4 } as const;
export type CandidateKindValue = (typeof CandidateKind)[keyof typeof CandidateKind];
export interface Candidate {
  readonly kind: CandidateKindValue;
  readonly endpoint: Endpoint;
}
export const CANDIDATES_MAX = 8;

export const SEALED_REQUEST_MAX_BYTES = 512;
export const DETAIL_MAX_BYTES = 1024;

export type Frame =
  | { readonly type: typeof FrameType.HELLO; readonly serverTimeMs: number }
  | {
      readonly type: typeof FrameType.CONNECT_REQUEST;
      readonly equipmentId: string;
      readonly advertisedPort: number;
      /** The device checks it before it opens TLS (P9); the server passes it on in the NOTIFY. */
      readonly wake: Wake;
      readonly sealedRequest: Buffer;
    }
  | { readonly type: typeof FrameType.CONNECT_RESULT; readonly status: StatusValue; readonly detail: string }
  | {
      readonly type: typeof FrameType.DEVICE_ATTACH;
      readonly equipmentId: string;
      /** The device identity's generation (identity-name.ts); absent: 0. */
      readonly generation?: number;
      readonly requestId: Buffer;
      readonly proof: Buffer;
    }
  | {
      readonly type: typeof FrameType.FORWARD_REQUEST;
      readonly requestId: Buffer;
      readonly client: Endpoint;
      readonly advertisedPort: number;
      readonly sealedRequest: Buffer;
    }
  | { readonly type: typeof FrameType.DEVICE_VERDICT; readonly requestId: Buffer; readonly status: StatusValue }
  | { readonly type: typeof FrameType.DEVICE_IDLE; readonly idleMs: number }
  | { readonly type: typeof FrameType.DEVICE_WAKE; readonly requestId: Buffer; readonly serverTimeMs: number; readonly wake: Wake }
  | { readonly type: typeof FrameType.RELAY_OFFER; readonly requestId: Buffer; readonly joinToken: Buffer }
  | { readonly type: typeof FrameType.RELAY_PLAN; readonly requestId: Buffer; readonly relayInMs: number }
  | { readonly type: typeof FrameType.RELAY_RELEASE; readonly requestId: Buffer }
  | { readonly type: typeof FrameType.RELAY_NOW; readonly requestId: Buffer }
  | { readonly type: typeof FrameType.RELAY_JOIN_CLIENT; readonly requestId: Buffer; readonly joinToken: Buffer }
  | {
      readonly type: typeof FrameType.RELAY_JOIN_DEVICE;
      readonly equipmentId: string;
      readonly generation?: number;
      readonly requestId: Buffer;
      readonly proof: Buffer;
    }
  | { readonly type: typeof FrameType.RELAY_PAIRED }
  | { readonly type: typeof FrameType.CLIENT_COMPANION; readonly clientNonce: Buffer }
  | {
      readonly type: typeof FrameType.DEVICE_COMPANION;
      readonly equipmentId: string;
      readonly generation?: number;
      readonly requestId: Buffer;
      readonly proof: Buffer;
    }
  | {
      readonly type: typeof FrameType.RELAY_LEG_HELLO;
      readonly role: RelayRoleValue;
      /** The device's identity; '' for a client. */
      readonly equipmentId: string;
      readonly generation?: number;
      readonly requestId: Buffer;
      readonly nonce: Buffer;
    }
  | { readonly type: typeof FrameType.RELAY_LEG_CHALLENGE; readonly nonce: Buffer; readonly proof: Buffer }
  | { readonly type: typeof FrameType.RELAY_LEG_JOIN; readonly proof: Buffer }
  | { readonly type: typeof FrameType.CANDIDATES; readonly candidates: readonly Candidate[] };

function port(r: ByteReader, field: string): number {
  const p = r.u16(field);
  if (p === 0) throw new ProtocolError(`frame.${field}`, 'port 0 is not allowed');
  return p;
}

function status(r: ByteReader): StatusValue {
  const s = r.u8('status');
  if (!isStatus(s)) throw new ProtocolError('frame.status', `unknown status ${s}`);
  return s;
}

export function encodeFrame(f: Frame): Buffer {
  const w = new ByteWriter();
  switch (f.type) {
    case FrameType.HELLO:
      w.timeMs(f.serverTimeMs);
      break;
    case FrameType.CONNECT_REQUEST:
      writeWake(w.shortString(f.equipmentId).u16(f.advertisedPort), f.wake).longBytes(f.sealedRequest);
      break;
    case FrameType.CONNECT_RESULT: {
      // encodeInto never splits a character, so a cut detail is still valid UTF-8.
      const detail = new Uint8Array(DETAIL_MAX_BYTES);
      const { written } = new TextEncoder().encodeInto(f.detail, detail);
      w.u8(f.status).longBytes(detail.subarray(0, written));
      break;
    }
    case FrameType.DEVICE_ATTACH:
    case FrameType.RELAY_JOIN_DEVICE:
    case FrameType.DEVICE_COMPANION:
      w.shortString(identityName(f.equipmentId, f.generation)).bytes(f.requestId).bytes(f.proof);
      break;
    case FrameType.FORWARD_REQUEST:
      w.bytes(f.requestId);
      writeEndpoint(w, f.client);
      w.u16(f.advertisedPort).longBytes(f.sealedRequest);
      break;
    case FrameType.DEVICE_VERDICT:
      w.bytes(f.requestId).u8(f.status);
      break;
    case FrameType.DEVICE_IDLE:
      w.u32(f.idleMs);
      break;
    case FrameType.DEVICE_WAKE:
      writeWake(w.bytes(f.requestId).timeMs(f.serverTimeMs), f.wake);
      break;
    case FrameType.RELAY_OFFER:
    case FrameType.RELAY_JOIN_CLIENT:
      w.bytes(f.requestId).bytes(f.joinToken);
      break;
    case FrameType.RELAY_PLAN:
      w.bytes(f.requestId).u32(f.relayInMs);
      break;
    case FrameType.RELAY_RELEASE:
    case FrameType.RELAY_NOW:
      w.bytes(f.requestId);
      break;
    case FrameType.RELAY_PAIRED:
      break;
    case FrameType.CLIENT_COMPANION:
      w.bytes(f.clientNonce);
      break;
    case FrameType.RELAY_LEG_HELLO:
      w.u8(f.role);
      if (f.role === RelayRole.DEVICE) w.shortString(identityName(f.equipmentId, f.generation));
      else w.u8(0);
      w.bytes(f.requestId).bytes(f.nonce);
      break;
    case FrameType.RELAY_LEG_CHALLENGE:
      w.bytes(f.nonce).bytes(f.proof);
      break;
    case FrameType.RELAY_LEG_JOIN:
      w.bytes(f.proof);
      break;
    case FrameType.CANDIDATES:
      if (f.candidates.length > CANDIDATES_MAX) throw new RangeError(`at most ${CANDIDATES_MAX} candidates`);
      w.u8(f.candidates.length);
      for (const c of f.candidates) {
        w.u8(c.kind);
        writeEndpoint(w, c.endpoint);
      }
      break;
  }
  const payload = w.toBuffer();
  if (payload.length > FRAME_MAX_PAYLOAD_BYTES) throw new RangeError('frame payload too large');
  return Buffer.concat([new ByteWriter().u8(PROTOCOL_VERSION).u8(f.type).u16(payload.length).toBuffer(), payload]);
}

/** Decode one frame's payload given its type. */
export function decodeFramePayload(type: number, payload: Uint8Array): Frame {
  const r = new ByteReader(payload, 'frame');
  let f: Frame;
  switch (type) {
    case FrameType.HELLO:
      f = { type, serverTimeMs: r.timeMs('serverTime') };
      break;
    case FrameType.CONNECT_REQUEST:
      f = {
        type,
        equipmentId: r.shortString('equipmentId', EQUIPMENT_ID_MAX_BYTES, EQUIPMENT_ID_PATTERN),
        advertisedPort: port(r, 'advertisedPort'),
        wake: readWake(r, 'wake'),
        sealedRequest: r.longBytes('sealedRequest', SEALED_REQUEST_MAX_BYTES),
      };
      break;
    case FrameType.CONNECT_RESULT:
      f = { type, status: status(r), detail: r.longBytes('detail', DETAIL_MAX_BYTES).toString('utf8') };
      break;
    case FrameType.DEVICE_ATTACH:
    case FrameType.RELAY_JOIN_DEVICE:
    case FrameType.DEVICE_COMPANION: {
      const { equipmentId, generation } = splitIdentityName(r.shortString('equipmentId', IDENTITY_NAME_MAX_BYTES, IDENTITY_NAME_PATTERN));
      f = {
        type,
        equipmentId,
        ...(generation === 0 ? {} : { generation }),
        requestId: r.bytes(REQUEST_ID_BYTES, 'requestId'),
        proof: r.bytes(KEY_BYTES, 'proof'),
      };
      break;
    }
    case FrameType.FORWARD_REQUEST:
      f = {
        type,
        requestId: r.bytes(REQUEST_ID_BYTES, 'requestId'),
        client: readEndpoint(r, 'client'),
        advertisedPort: port(r, 'advertisedPort'),
        sealedRequest: r.longBytes('sealedRequest', SEALED_REQUEST_MAX_BYTES),
      };
      break;
    case FrameType.DEVICE_VERDICT:
      f = { type, requestId: r.bytes(REQUEST_ID_BYTES, 'requestId'), status: status(r) };
      break;
    case FrameType.DEVICE_IDLE:
      f = { type, idleMs: r.u32('idleMs') };
      break;
    case FrameType.DEVICE_WAKE:
      f = { type, requestId: r.bytes(REQUEST_ID_BYTES, 'requestId'), serverTimeMs: r.timeMs('serverTime'), wake: readWake(r, 'wake') };
      break;
    case FrameType.RELAY_OFFER:
    case FrameType.RELAY_JOIN_CLIENT:
      f = { type, requestId: r.bytes(REQUEST_ID_BYTES, 'requestId'), joinToken: r.bytes(RELAY_JOIN_TOKEN_BYTES, 'joinToken') };
      break;
    case FrameType.RELAY_PLAN:
      f = { type, requestId: r.bytes(REQUEST_ID_BYTES, 'requestId'), relayInMs: r.u32('relayInMs') };
      break;
    case FrameType.RELAY_RELEASE:
    case FrameType.RELAY_NOW:
      f = { type, requestId: r.bytes(REQUEST_ID_BYTES, 'requestId') };
      break;
    case FrameType.RELAY_PAIRED:
      f = { type };
      break;
    case FrameType.CLIENT_COMPANION:
      f = { type, clientNonce: r.bytes(NONCE_BYTES, 'clientNonce') };
      break;
    case FrameType.RELAY_LEG_HELLO: {
      const role = r.u8('role');
      if (role !== RelayRole.CLIENT && role !== RelayRole.DEVICE) throw new ProtocolError('frame.role', `expected 1-2, found ${role}`);
      // A client's id is empty (length 0): it proves the join token, not an identity.
      let equipmentId = '';
      let generation = 0;
      if (role === RelayRole.DEVICE)
        ({ equipmentId, generation } = splitIdentityName(r.shortString('equipmentId', IDENTITY_NAME_MAX_BYTES, IDENTITY_NAME_PATTERN)));
      else if (r.u8('equipmentId.length') !== 0) throw new ProtocolError('frame.equipmentId.length', "a client's is empty");
      f = {
        type,
        role,
        equipmentId,
        ...(generation === 0 ? {} : { generation }),
        requestId: r.bytes(REQUEST_ID_BYTES, 'requestId'),
        nonce: r.bytes(RELAY_LEG_NONCE_BYTES, 'nonce'),
      };
      break;
    }
    case FrameType.RELAY_LEG_CHALLENGE:
      f = { type, nonce: r.bytes(RELAY_LEG_NONCE_BYTES, 'nonce'), proof: r.bytes(KEY_BYTES, 'proof') };
      break;
    case FrameType.RELAY_LEG_JOIN:
      f = { type, proof: r.bytes(KEY_BYTES, 'proof') };
      break;
    case FrameType.CANDIDATES: {
      const n = r.u8('candidates.count');
      if (n > CANDIDATES_MAX) throw new ProtocolError('frame.candidates.count', `at most ${CANDIDATES_MAX}, found ${n}`);
      const candidates: Candidate[] = [];
      for (let i = 0; i < n; i++) {
        const kind = r.u8(`candidates[${i}].kind`);
        if (
          kind !== CandidateKind.PUNCH &&
          kind !== CandidateKind.LISTEN &&
          kind !== CandidateKind.OBSERVED &&
          kind !== CandidateKind.LAN
        ) {
          throw new ProtocolError(`frame.candidates[${i}].kind`, `expected 1-4, found ${kind}`);
        }
        const endpoint = readEndpoint(r, `candidates[${i}]`);
        if (endpoint.port === 0) throw new ProtocolError(`frame.candidates[${i}].port`, 'port 0 is not allowed');
        candidates.push({ kind, endpoint });
      }
      f = { type, candidates };
      break;
    }
    default:
      throw new ProtocolError('frame.type', `unknown type ${type}`);
  }
  r.end();
  return f;
}
