/**
 * What server nodes tell each other through Redis, decoded at the boundary as the UDP packets and
 * TLS frames are: the messages on a node's pub/sub channel, the connection request waiting for its
 * device, and a relay offer. Redis is less trusted than a device's verified connection, so every
 * field is checked (type, length, hex, range) and a bad one raises ProtocolError naming it; the
 * caller drops and counts what fails. The wire form is compact JSON with short keys; everything
 * past decode uses the named fields below.
 *
 * Wire keys: t kind, r request ID (hex), d equipment ID, ts registration timestamp (taken), a/p the device's mapping as the sender saw
 * it, from/by the sending node, w wake (hex), why refuse reason, s status (in a verdict) or sealed
 * request (base64, in a pending record), c candidates [kind, address, port], o the client's node,
 * ca/cp client address and port as observed, ap advertised port, at first notification (ms).
 */
import { isIP } from 'node:net';
import { ProtocolError } from '../common/errors.js';
import { REGISTRY_KEY_PATTERN } from './family-key.js';
import { EQUIPMENT_ID_PATTERN, FRAME_MAX_PAYLOAD_BYTES, REQUEST_ID_BYTES } from '../protocol/constants.js';
import { CANDIDATES_MAX, CandidateKind, type Candidate } from '../protocol/frames.js';
import { isStatus, type StatusValue } from '../protocol/status.js';
import { RefuseReason, type RefuseReasonValue } from '../protocol/udp-packets.js';
import { ByteReader } from '../protocol/bytes.js';
import { readWake, WAKE_BYTES, wakeToHex, type Wake } from '../protocol/wake.js';

/** A node ID as `redis.node_id` allows it (settings.ts). */
export const NODE_ID_PATTERN = /^[A-Za-z0-9._:/-]{1,64}$/;
/** Larger texts are dropped before JSON.parse: the largest valid one (a pending record) is under 6 KiB. */
export const NODE_MESSAGE_MAX_BYTES = 8192;

/** Ask the node holding the device to notify it (S205); sent by the client's node every notify retry. */
export interface NotifyMessage {
  readonly kind: 'notify';
  readonly requestId: string;
  readonly equipmentId: string;
  /** The device's mapping as the sender read it from Redis; the receiver notifies its own entry, never this. */
  readonly deviceAddress: string;
  readonly devicePort: number;
  readonly fromNode: string;
  readonly wake: Wake;
}

/** The device attached at `byNode` for the request (S206); sent to the client's node. */
export interface AttachedMessage {
  readonly kind: 'attached';
  readonly requestId: string;
  readonly byNode: string;
}

/** The device refused the request's wake proof at its node (P9); sent to the client's node. */
export interface RefusedMessage {
  readonly kind: 'refused';
  readonly requestId: string;
  readonly byNode: string;
  readonly reason: RefuseReasonValue;
}

/** The device's verdict (S207) and its path candidates for the client; sent to the client's node. */
export interface VerdictMessage {
  readonly kind: 'verdict';
  readonly requestId: string;
  readonly byNode: string;
  readonly status: StatusValue;
  /** PUNCH and LISTEN endpoints only (hole punch, reverse port). */
  readonly candidates: readonly Candidate[];
}

/**
 * `byNode` took the device over in the shared list from the receiver (the device registers there
 * now, with a registration newer than `timestampMs` - 1): the receiver forgets its own entry, so it
 * writes the device again, instead of skipping an unchanged entry, should the device come back.
 */
export interface TakenMessage {
  readonly kind: 'taken';
  readonly equipmentId: string;
  readonly byNode: string;
  readonly timestampMs: number;
}

/** Messages about a request; `requestId` (hex) also keys the logs on every node. */
export type RequestMessage = NotifyMessage | AttachedMessage | RefusedMessage | VerdictMessage;
/** Messages between nodes. */
export type NodeMessage = RequestMessage | TakenMessage;

/** A connection request waiting in Redis for its device, so the device may attach at any node. */
export interface PendingRecord {
  readonly equipmentId: string;
  /** The node holding the client's connection. */
  readonly clientNode: string;
  /** The client's address and port as the server observed them. */
  readonly clientAddress: string;
  readonly clientPort: number;
  readonly advertisedPort: number;
  readonly sealedRequest: Buffer;
  /** When the first notification went out (ms since epoch), for the round-trip metric. */
  readonly notifiedAtMs: number;
}

/** A relay offered at `node`, which other nodes reach at `tlsHost`:`tlsPort` to join it for the device. */
export interface RelayOffer {
  readonly node: string;
  readonly tlsHost: string;
  readonly tlsPort: number;
}

const REQUEST_ID_HEX = new RegExp(`^[0-9a-f]{${REQUEST_ID_BYTES * 2}}$`);
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** A host other nodes can reach: an IP address or a DNS name. */
const HOST = /^[A-Za-z0-9.-]{1,253}$/;
const REFUSE_REASONS: readonly number[] = Object.values(RefuseReason);

type Json = Record<string, unknown>;

function parseObject(text: string, what: string): Json {
  if (Buffer.byteLength(text) > NODE_MESSAGE_MAX_BYTES) throw new ProtocolError(what, `longer than ${NODE_MESSAGE_MAX_BYTES} bytes`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ProtocolError(what, 'not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ProtocolError(what, 'not a JSON object');
  return v as Json;
}

/**
 * Only the keys the kind has, all of them: within a version nothing is added to a message (as for
 * frames). `names` maps each wire key to the field name errors use.
 */
function onlyKeys(o: Json, what: string, names: Readonly<Record<string, string>>): void {
  for (const k of Object.keys(o)) if (!Object.hasOwn(names, k)) throw new ProtocolError(`${what}.${k}`, 'unknown field');
  for (const [k, name] of Object.entries(names)) if (!Object.hasOwn(o, k)) throw new ProtocolError(`${what}.${name}`, 'missing');
}

function str(o: Json, key: string, field: string, pattern: RegExp, expect: string): string {
  const v = o[key];
  if (typeof v !== 'string') throw new ProtocolError(field, 'not a string');
  if (!pattern.test(v)) throw new ProtocolError(field, `not ${expect}`);
  return v;
}

function int(o: Json, key: string, field: string, min: number, max: number): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new ProtocolError(field, 'not an integer');
  if (v < min || v > max) throw new ProtocolError(field, `out of range ${min}..${max}`);
  return v;
}

function ip(o: Json, key: string, field: string): string {
  const v = o[key];
  if (typeof v !== 'string') throw new ProtocolError(field, 'not a string');
  if (isIP(v) === 0) throw new ProtocolError(field, 'not an IP address');
  return v;
}

const requestIdOf = (o: Json, what: string): string =>
  str(o, 'r', `${what}.requestId`, REQUEST_ID_HEX, `${REQUEST_ID_BYTES} bytes in lower-case hex`);
const nodeOf = (o: Json, key: string, field: string): string =>
  str(o, key, field, NODE_ID_PATTERN, 'a node ID (1-64 of A-Z a-z 0-9 . _ : / -)');
const equipmentIdOf = (o: Json, key: string, field: string): string => str(o, key, field, EQUIPMENT_ID_PATTERN, 'an equipment ID');
const portOf = (o: Json, key: string, field: string): number => int(o, key, field, 1, 65535);

function candidatesOf(v: unknown, field: string): Candidate[] {
  if (!Array.isArray(v)) throw new ProtocolError(field, 'not an array');
  if (v.length > CANDIDATES_MAX) throw new ProtocolError(field, `more than ${CANDIDATES_MAX}`);
  return v.map((x: unknown, i) => {
    const f = `${field}[${i}]`;
    if (!Array.isArray(x) || x.length !== 3) throw new ProtocolError(f, 'not [kind, address, port]');
    const [kind, address, port] = x as [unknown, unknown, unknown];
    if (kind !== CandidateKind.PUNCH && kind !== CandidateKind.LISTEN) throw new ProtocolError(`${f}.kind`, 'not PUNCH or LISTEN');
    const t = { address, port } as Json;
    return { kind, endpoint: { address: ip(t, 'address', `${f}.address`), port: portOf(t, 'port', `${f}.port`) } };
  });
}

export function encodeNodeMessage(m: NodeMessage): string {
  switch (m.kind) {
    case 'notify':
      return JSON.stringify({
        t: 'notify',
        r: m.requestId,
        d: m.equipmentId,
        a: m.deviceAddress,
        p: m.devicePort,
        from: m.fromNode,
        w: wakeToHex(m.wake),
      });
    case 'attached':
      return JSON.stringify({ t: 'attached', r: m.requestId, by: m.byNode });
    case 'taken':
      return JSON.stringify({ t: 'taken', d: m.equipmentId, by: m.byNode, ts: m.timestampMs });
    case 'refused':
      return JSON.stringify({ t: 'refused', r: m.requestId, by: m.byNode, why: m.reason });
    case 'verdict':
      return JSON.stringify({
        t: 'verdict',
        r: m.requestId,
        s: m.status,
        by: m.byNode,
        c: m.candidates
          .filter((c) => c.kind === CandidateKind.PUNCH || c.kind === CandidateKind.LISTEN)
          .map((c) => [c.kind, c.endpoint.address, c.endpoint.port]),
      });
  }
}

/** Throws ProtocolError (field `message.<name>`) unless `text` is a well-formed message. */
export function decodeNodeMessage(text: string): NodeMessage {
  const W = 'message';
  const o = parseObject(text, W);
  switch (o['t']) {
    case 'notify': {
      onlyKeys(o, W, { t: 'kind', r: 'requestId', d: 'equipmentId', a: 'deviceAddress', p: 'devicePort', from: 'fromNode', w: 'wake' });
      const w = o['w'];
      if (typeof w !== 'string' || !/^[0-9a-f]*$/.test(w) || w.length !== WAKE_BYTES * 2)
        throw new ProtocolError(`${W}.wake`, `not ${WAKE_BYTES} bytes in lower-case hex`);
      return {
        kind: 'notify',
        requestId: requestIdOf(o, W),
        equipmentId: equipmentIdOf(o, 'd', `${W}.equipmentId`),
        deviceAddress: ip(o, 'a', `${W}.deviceAddress`),
        devicePort: portOf(o, 'p', `${W}.devicePort`),
        fromNode: nodeOf(o, 'from', `${W}.fromNode`),
        wake: readWake(new ByteReader(Buffer.from(w, 'hex'), W), 'wake'),
      };
    }
    case 'taken':
      onlyKeys(o, W, { t: 'kind', d: 'equipmentId', by: 'byNode', ts: 'timestampMs' });
      return {
        kind: 'taken',
        // The registry key: an equipment ID, or with "/6" for its IPv6 mapping (family-key.ts).
        equipmentId: str(o, 'd', `${W}.equipmentId`, REGISTRY_KEY_PATTERN, 'an equipment ID (with /6 for its IPv6 mapping)'),
        byNode: nodeOf(o, 'by', `${W}.byNode`),
        timestampMs: int(o, 'ts', `${W}.timestampMs`, 0, Number.MAX_SAFE_INTEGER),
      };
    case 'attached':
      onlyKeys(o, W, { t: 'kind', r: 'requestId', by: 'byNode' });
      return { kind: 'attached', requestId: requestIdOf(o, W), byNode: nodeOf(o, 'by', `${W}.byNode`) };
    case 'refused': {
      onlyKeys(o, W, { t: 'kind', r: 'requestId', by: 'byNode', why: 'reason' });
      const requestId = requestIdOf(o, W);
      const byNode = nodeOf(o, 'by', `${W}.byNode`);
      const reason = o['why'];
      if (typeof reason !== 'number' || !REFUSE_REASONS.includes(reason))
        throw new ProtocolError(`${W}.reason`, `not one of ${REFUSE_REASONS.join(', ')}`);
      return { kind: 'refused', requestId, byNode, reason: reason as RefuseReasonValue };
    }
    case 'verdict': {
      onlyKeys(o, W, { t: 'kind', r: 'requestId', s: 'status', by: 'byNode', c: 'candidates' });
      const requestId = requestIdOf(o, W);
      const byNode = nodeOf(o, 'by', `${W}.byNode`);
      const status = int(o, 's', `${W}.status`, 0, 255);
      if (!isStatus(status)) throw new ProtocolError(`${W}.status`, 'not a known status');
      return { kind: 'verdict', requestId, byNode, status, candidates: candidatesOf(o['c'], `${W}.candidates`) };
    }
    default:
      throw new ProtocolError(`${W}.kind`, 'not notify, attached, refused, verdict or taken');
  }
}

export function encodePendingRecord(p: PendingRecord): string {
  return JSON.stringify({
    d: p.equipmentId,
    o: p.clientNode,
    ca: p.clientAddress,
    cp: p.clientPort,
    ap: p.advertisedPort,
    s: p.sealedRequest.toString('base64'),
    at: p.notifiedAtMs,
  });
}

/** Throws ProtocolError (field `pending.<name>`) unless `text` is a well-formed pending record. */
export function decodePendingRecord(text: string): PendingRecord {
  const W = 'pending';
  const o = parseObject(text, W);
  onlyKeys(o, W, {
    d: 'equipmentId',
    o: 'clientNode',
    ca: 'clientAddress',
    cp: 'clientPort',
    ap: 'advertisedPort',
    s: 'sealedRequest',
    at: 'notifiedAtMs',
  });
  const s = o['s'];
  if (typeof s !== 'string' || !BASE64.test(s)) throw new ProtocolError(`${W}.sealedRequest`, 'not base64');
  const sealedRequest = Buffer.from(s, 'base64');
  if (sealedRequest.length > FRAME_MAX_PAYLOAD_BYTES)
    throw new ProtocolError(`${W}.sealedRequest`, `longer than ${FRAME_MAX_PAYLOAD_BYTES} bytes`);
  return {
    equipmentId: equipmentIdOf(o, 'd', `${W}.equipmentId`),
    clientNode: nodeOf(o, 'o', `${W}.clientNode`),
    clientAddress: ip(o, 'ca', `${W}.clientAddress`),
    clientPort: portOf(o, 'cp', `${W}.clientPort`),
    advertisedPort: portOf(o, 'ap', `${W}.advertisedPort`),
    sealedRequest,
    notifiedAtMs: int(o, 'at', `${W}.notifiedAtMs`, 0, Number.MAX_SAFE_INTEGER),
  };
}

/** The TLS address as "host:port", an IPv6 host in brackets. */
export function encodeRelayOffer(offer: RelayOffer): string {
  const host = offer.tlsHost.includes(':') ? `[${offer.tlsHost}]` : offer.tlsHost;
  return JSON.stringify({ node: offer.node, tls: `${host}:${offer.tlsPort}` });
}

/** Throws ProtocolError (field `offer.<name>`) unless `text` is a well-formed relay offer. */
export function decodeRelayOffer(text: string): RelayOffer {
  const W = 'offer';
  const o = parseObject(text, W);
  onlyKeys(o, W, { node: 'node', tls: 'tlsAddress' });
  const node = nodeOf(o, 'node', `${W}.node`);
  const tls = o['tls'];
  if (typeof tls !== 'string') throw new ProtocolError(`${W}.tlsAddress`, 'not a string');
  const { host: tlsHost, port: tlsPort } = parseTlsAddress(tls, `${W}.tlsAddress`);
  return { node, tlsHost, tlsPort };
}

/** "host:port" (an IPv6 host in brackets), as `redis.tls_address` is written; throws ProtocolError naming `field`. */
export function parseTlsAddress(text: string, field: string): { host: string; port: number } {
  const at = /^(.*):(\d{1,5})$/.exec(text);
  if (!at) throw new ProtocolError(field, 'not host:port');
  const bracketed = /^\[(.*)\]$/.exec(at[1]!);
  const host = bracketed ? bracketed[1]! : at[1]!;
  if (bracketed ? isIP(host) !== 6 : !HOST.test(host)) throw new ProtocolError(`${field}.host`, 'not an IP address or host name');
  return { host, port: portOf({ p: Number(at[2]) }, 'p', `${field}.port`) };
}

/** A ProtocolError's field, for the debug line of a dropped record. */
export function droppedField(err: unknown): string {
  return err instanceof ProtocolError ? err.field : 'unknown';
}
