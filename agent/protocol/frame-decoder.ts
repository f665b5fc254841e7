/**
 * The frame layer of a byte stream to or from the rendezvous server (frames.ts): push chunks,
 * get whole frames. A bad version or an oversized length is rejected before its payload is
 * buffered; the bytes after RELAY_PAIRED are the peer's, left for takeRest().
 */
import { ProtocolError } from '../common/errors.js';
import { FRAME_HEADER_BYTES, FRAME_MAX_PAYLOAD_BYTES, PROTOCOL_VERSION } from './constants.js';
import { decodeFramePayload, FrameType, type Frame } from './frames.js';

/**
 * Incremental frame decoder for a byte stream: push chunks, get whole frames.
 * Rejects a bad version or an oversized length before buffering the payload.
 */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);
  private done = false;

  push(chunk: Uint8Array): Frame[] {
    this.buf = this.buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buf, chunk]);
    const out: Frame[] = [];
    while (!this.done && this.buf.length >= FRAME_HEADER_BYTES) {
      const version = this.buf[0]!;
      if (version !== PROTOCOL_VERSION) throw new ProtocolError('frame.version', `unsupported version ${version}`);
      const type = this.buf[1]!;
      const len = this.buf.readUInt16BE(2);
      if (len > FRAME_MAX_PAYLOAD_BYTES) throw new ProtocolError('frame.length', `${len} > ${FRAME_MAX_PAYLOAD_BYTES}`);
      if (this.buf.length < FRAME_HEADER_BYTES + len) break;
      const payload = this.buf.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + len);
      this.buf = this.buf.subarray(FRAME_HEADER_BYTES + len);
      const frame = decodeFramePayload(type, payload);
      out.push(frame);
      // What follows RELAY_PAIRED is the peer's raw bytes, not frames: leave it for takeRest().
      if (frame.type === FrameType.RELAY_PAIRED) {
        this.done = true;
        break;
      }
    }
    return out;
  }

  /** Bytes received after the last whole frame (a partial frame). */
  get pending(): number {
    return this.buf.length;
  }

  /** Hand over what is buffered beyond the last frame (the connection now carries raw bytes). */
  takeRest(): Buffer {
    const rest = this.buf;
    this.buf = Buffer.alloc(0);
    return rest;
  }
}
