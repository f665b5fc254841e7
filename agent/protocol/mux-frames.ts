/**
 * The stream multiplexer's framing (agent/protocol/README.md, "Sessions with streams"): yamux's
 * layout (hashicorp/yamux spec.md) with peerlink's own version byte and two additions, a stream's
 * open names its service and a refusal carries a peerlink status code. Every frame is a 12-byte
 * header (version, type, flags, stream id, length), then `length` payload bytes for DATA only.
 * Parsing is incremental and bounded: a frame longer than MUX_MAX_FRAME_BYTES, an unknown version
 * or type, or a control frame on the wrong stream id is a MuxProtocolError, which closes the session.
 */
import { ErrorCodes, PeerlinkError } from '../common/errors.js';
// The session service that asks for this framing is MUX_SERVICE (session-streams.ts): an older device refuses it.

export const MUX_VERSION = 1;
export const MUX_HEADER_BYTES = 12;

export const MuxType = { DATA: 0, WINDOW_UPDATE: 1, PING: 2, GO_AWAY: 3 } as const;
export const MuxFlag = {
  /** DATA: opens a stream; the payload is the service's name (a length byte, then the name), then early bytes. */
  SYN: 1,
  /** WINDOW_UPDATE: the device opened the stream (it connected the service). PING: the answer. */
  ACK: 2,
  /** DATA: the sender will send no more on this stream (half-close). */
  FIN: 4,
  /** WINDOW_UPDATE: the stream is gone; `length` is the peerlink status of a refusal, 0 for a plain reset. */
  RST: 8,
} as const;

/** The most DATA payload one frame may carry (the sender splits larger writes). */
export const MUX_MAX_FRAME_BYTES = 64 * 1024;
/**
 * Each stream's window, each way: what a peer may send on a stream before the receiver grants
 * more. A stream whose reader stops holds at most this much; 128 streams hold at most 32 MiB (the
 * HTTP/2 session's window before). yamux's default, too.
 */
export const MUX_STREAM_WINDOW_BYTES = 256 * 1024;
/** A receiver grants credit back once this much was consumed (fewer WINDOW_UPDATE frames). */
export const MUX_GRANT_THRESHOLD_BYTES = MUX_STREAM_WINDOW_BYTES / 4;
/** Stream ids are odd and opened by the client only, increasing; past this the session takes no new streams. */
export const MUX_MAX_STREAM_ID = 0x7fff_ffff;

/** GO_AWAY codes (its length field). */
export const MuxGoAway = { NORMAL: 0, PROTOCOL_ERROR: 1, INTERNAL: 2 } as const;

/** A peer broke the framing: the session is closed (GO_AWAY PROTOCOL_ERROR), never the process. */
export class MuxProtocolError extends PeerlinkError {
  constructor(message: string) {
    super(ErrorCodes.PROTOCOL, `mux: ${message}`);
    this.name = 'MuxProtocolError';
  }
}

export interface MuxFrameHandler {
  /** A DATA frame; `payload` may be a view of the channel's chunk (do not keep it past the call unless copied or written on). */
  data(id: number, flags: number, payload: Buffer): void;
  /** A frame without payload: WINDOW_UPDATE, PING or GO_AWAY (its length field as `value`). */
  control(type: number, flags: number, id: number, value: number): void;
}

/** A frame header, ready to write. */
export function muxHeader(type: number, flags: number, id: number, length: number): Buffer {
  const h = Buffer.allocUnsafe(MUX_HEADER_BYTES);
  h[0] = MUX_VERSION;
  h[1] = type;
  h.writeUInt16BE(flags, 2);
  h.writeUInt32BE(id, 4);
  h.writeUInt32BE(length, 8);
  return h;
}

/** The payload of an opening DATA frame's name part: a length byte, then the name (ASCII). */
export function muxOpenName(service: string): Buffer {
  const b = Buffer.allocUnsafe(1 + service.length);
  b[0] = service.length;
  b.write(service, 1, 'latin1');
  return b;
}

/** The service named by an opening frame's payload and where its early bytes start; null when malformed. */
export function readMuxOpenName(payload: Buffer): { service: string; dataOffset: number } | null {
  if (payload.length < 1) return null;
  const n = payload[0]!;
  if (n === 0 || payload.length < 1 + n) return null;
  return { service: payload.toString('latin1', 1, 1 + n), dataOffset: 1 + n };
}

/** An opening frame may carry its name (up to 255 bytes) on top of a full frame of early bytes. */
const MAX_PAYLOAD_BYTES = MUX_MAX_FRAME_BYTES + 256;

/**
 * Feed channel chunks; it calls the handler per frame. A whole frame inside one chunk is handed
 * over as a view (no copy); only frames split across chunks are assembled.
 */
export class MuxFrameReader {
  // A frame split across chunks: its pieces, joined once the header's length has all arrived (not
  // at every chunk: a 64 KiB frame fed in tiny records would be copied over and over).
  private parts: Buffer[] = [];
  private partBytes = 0;
  private need = MUX_HEADER_BYTES;
  constructor(private readonly handler: MuxFrameHandler) {}

  push(chunk: Buffer): void {
    let buf = chunk;
    if (this.partBytes > 0) {
      this.parts.push(chunk);
      this.partBytes += chunk.length;
      if (this.partBytes < this.need) return;
      buf = Buffer.concat(this.parts, this.partBytes);
      this.parts = [];
      this.partBytes = 0;
    }
    let at = 0;
    const end = buf.length;
    while (end - at >= MUX_HEADER_BYTES) {
      if (buf[at] !== MUX_VERSION) throw new MuxProtocolError(`unknown version ${buf[at]}`);
      const type = buf[at + 1]!;
      const flags = buf.readUInt16BE(at + 2);
      const id = buf.readUInt32BE(at + 4);
      const length = buf.readUInt32BE(at + 8);
      if (type === MuxType.DATA) {
        if (length > MAX_PAYLOAD_BYTES) throw new MuxProtocolError(`a DATA frame of ${length} bytes (at most ${MAX_PAYLOAD_BYTES})`);
        if (id === 0) throw new MuxProtocolError('DATA on stream 0');
        if (end - at - MUX_HEADER_BYTES < length) break;
        const start = at + MUX_HEADER_BYTES;
        at = start + length;
        this.handler.data(id, flags, buf.subarray(start, at));
        continue;
      }
      if (type > MuxType.GO_AWAY) throw new MuxProtocolError(`unknown frame type ${type}`);
      if ((type === MuxType.WINDOW_UPDATE) === (id === 0)) throw new MuxProtocolError(`frame type ${type} on stream ${id}`);
      at += MUX_HEADER_BYTES;
      this.handler.control(type, flags, id, length);
    }
    // Bounded: a header was checked before its frame is waited for.
    if (at < end) {
      this.parts = [buf.subarray(at)];
      this.partBytes = end - at;
      this.need = end - at >= MUX_HEADER_BYTES ? MUX_HEADER_BYTES + buf.readUInt32BE(at + 8) : MUX_HEADER_BYTES;
    }
  }
}
