/**
 * Sessions with streams, on the wire. A client that wants many streams over one end-to-end
 * channel names SESSION_SERVICE as the service of its sealed request (the layout is unchanged,
 * so an old device answers SERVICE_REFUSED and the client falls back to a tunnel per
 * connection). Over the TLS 1.3 PSK channel that follows (after the path-chosen byte) the client
 * runs an HTTP/2 client session and the device an HTTP/2 server session. Each stream is an
 * HTTP/2 CONNECT whose :authority is the service's name; the device checks that name against its
 * allow-list for each stream and answers 200 (then the stream carries the service's bytes) or
 * a refusal whose `peerlink-status` header holds the peerlink status code.
 */
import { ErrorCodes, PeerlinkError } from '../common/errors.js';
import { Status, STATUS_ERROR, STATUS_TEXT, isStatus, type StatusValue } from './status.js';

/** The sealed request's service for "an HTTP/2 session, streams name their services"; no device may configure it. */
export const SESSION_SERVICE = 'peerlink-session';
/** The same over peerlink's own stream framing (mux-frames.ts); a client asks for it first. */
export const MUX_SERVICE = 'peerlink-mux';
/** Whether a request's service asks for a session (either framing) rather than one service. */
export const isSessionService = (service: string): boolean => service === SESSION_SERVICE || service === MUX_SERVICE;
/** The device's refusal of a stream: the peerlink status code, as decimal text. */
export const STREAM_STATUS_HEADER = 'peerlink-status';
/** Streams open at once on one session (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS, both ends). */
export const SESSION_MAX_STREAMS = 128;
/**
 * Each stream's flow-control window (SETTINGS_INITIAL_WINDOW_SIZE): what a stream may have in
 * flight unread. A stream whose reader stops holds at most this much; the others go on.
 */
export const SESSION_STREAM_WINDOW_BYTES = 1024 * 1024;
/** The whole session's window (set by WINDOW_UPDATE on stream 0): room for many streams at full speed. */
export const SESSION_WINDOW_BYTES = 32 * 1024 * 1024;
/** Header bytes a peer may send on one session (nghttp2's header list limit). */
export const SESSION_MAX_HEADER_BYTES = 4096;

/** The HTTP status a device answers for a peerlink status (200 = the stream is open). */
const HTTP_FOR: Readonly<Partial<Record<StatusValue, number>>> = Object.freeze({
  [Status.OK]: 200,
  [Status.BAD_REQUEST]: 400,
  [Status.SERVICE_REFUSED]: 403,
  [Status.DEVICE_BUSY]: 429,
  [Status.SERVICE_UNAVAILABLE]: 503,
});

export function streamAnswer(status: StatusValue): { ':status': number; 'peerlink-status': string } {
  return { ':status': HTTP_FOR[status] ?? 500, [STREAM_STATUS_HEADER]: String(status) } as { ':status': number; 'peerlink-status': string };
}

/** A stream the device refused (the session itself stays up). */
export class StreamRefusedError extends PeerlinkError {
  readonly status: StatusValue;
  readonly service: string;
  constructor(status: StatusValue, service: string) {
    super(STATUS_ERROR[status] ?? ErrorCodes.INTERNAL, `stream to ${service}: ${STATUS_TEXT[status]}`);
    this.status = status;
    this.service = service;
    this.name = 'StreamRefusedError';
  }
}

/** The device's answer to a CONNECT: null when it opened the stream, else the refusal. */
export function readStreamAnswer(headers: Readonly<Record<string, unknown>>, service: string): StreamRefusedError | null {
  const http = Number(headers[':status']);
  if (http === 200) return null;
  const code = Number(headers[STREAM_STATUS_HEADER]);
  return new StreamRefusedError(Number.isInteger(code) && isStatus(code) && code !== Status.OK ? code : Status.INTERNAL, service);
}
