/**
 * Length-checked byte reading and writing. Every read names the field it reads, so a
 * malformed packet is rejected with a ProtocolError that says which field was wrong.
 */
import { ProtocolError } from '../common/errors.js';

export class ByteReader {
  private offset = 0;
  private readonly buf: Buffer;
  private readonly limit: number;
  /** Reads `input` up to `limit` bytes (default: all of it). */
  constructor(
    input: Uint8Array,
    private readonly what: string,
    limit: number = input.length,
  ) {
    this.buf = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.length);
    this.limit = limit;
  }

  get remaining(): number {
    return this.limit - this.offset;
  }

  get position(): number {
    return this.offset;
  }

  private need(n: number, field: string): void {
    if (this.remaining < n) {
      throw new ProtocolError(`${this.what}.${field}`, `truncated: need ${n} bytes, ${this.remaining} left`);
    }
  }

  u8(field: string): number {
    this.need(1, field);
    return this.buf[this.offset++]!;
  }

  u16(field: string): number {
    this.need(2, field);
    const v = (this.buf[this.offset]! << 8) | this.buf[this.offset + 1]!;
    this.offset += 2;
    return v;
  }

  u32(field: string): number {
    this.need(4, field);
    const b = this.buf;
    const o = this.offset;
    this.offset += 4;
    return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
  }

  /** A u64 millisecond timestamp; must fit a JS number. */
  timeMs(field: string): number {
    this.need(8, field);
    const hi = this.u32(field);
    const lo = this.u32(field);
    // Two 32-bit halves, not a BigInt: this runs for every registration the server takes.
    if (hi > 0x1f_ffff) throw new ProtocolError(`${this.what}.${field}`, 'timestamp out of range');
    return hi * 0x1_0000_0000 + lo;
  }

  /** A copy of the next n bytes (the result outlives the input buffer). */
  bytes(n: number, field: string): Buffer {
    return Buffer.from(this.view(n, field));
  }

  /** The next n bytes, not copied: for input the caller owns and does not reuse. */
  view(n: number, field: string): Buffer {
    this.need(n, field);
    const out = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }

  /** Whether every remaining byte is zero (padding); consumes them. */
  zeros(): boolean {
    const b = this.buf;
    let any = 0;
    for (let i = this.offset; i < this.limit; i++) any |= b[i]!;
    this.offset = this.limit;
    return any === 0;
  }

  /** u8 length then that many bytes of UTF-8 matching `pattern`. */
  shortString(field: string, maxBytes: number, pattern: RegExp): string {
    // The field's name is built only for an error: this runs for every registration.
    if (this.remaining < 1) throw new ProtocolError(`${this.what}.${field}.length`, `truncated: need 1 byte, ${this.remaining} left`);
    const len = this.buf[this.offset++]!;
    if (len === 0 || len > maxBytes) throw new ProtocolError(`${this.what}.${field}.length`, `expected 1-${maxBytes}, found ${len}`);
    this.need(len, field);
    const s = this.buf.toString('utf8', this.offset, this.offset + len);
    this.offset += len;
    if (!pattern.test(s)) throw new ProtocolError(`${this.what}.${field}`, 'invalid characters');
    return s;
  }

  /** u16 length then that many bytes. */
  longBytes(field: string, maxBytes: number): Buffer {
    const len = this.u16(`${field}.length`);
    if (len > maxBytes) throw new ProtocolError(`${this.what}.${field}.length`, `expected at most ${maxBytes}, found ${len}`);
    return this.bytes(len, field);
  }

  end(): void {
    if (this.remaining !== 0) throw new ProtocolError(`${this.what}`, `${this.remaining} unexpected trailing bytes`);
  }
}

/** Writes into one growing buffer (a packet or frame is built field by field, then sent once). */
export class ByteWriter {
  private buf: Buffer;
  private size = 0;

  constructor(initialBytes = 64) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  /** Make room for n bytes; returns where they go. (It may replace `buf`: call it before reading `this.buf`.) */
  private room(n: number): number {
    const at = this.size;
    if (at + n > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, at + n));
      this.buf.copy(grown, 0, 0, at);
      this.buf = grown;
    }
    this.size = at + n;
    return at;
  }

  get length(): number {
    return this.size;
  }

  u8(v: number): this {
    const at = this.room(1);
    this.buf[at] = v & 0xff;
    return this;
  }

  u16(v: number): this {
    const at = this.room(2);
    this.buf.writeUInt16BE(v, at);
    return this;
  }

  u32(v: number): this {
    const at = this.room(4);
    this.buf.writeUInt32BE(v >>> 0, at);
    return this;
  }

  /** A millisecond timestamp as u64: whole milliseconds, so any clock (even a fractional one) encodes. */
  timeMs(v: number): this {
    const ms = Math.floor(v);
    if (!(ms >= 0 && ms < 2 ** 64)) throw new RangeError(`timestamp out of u64 range: ${v}`);
    // Two 32-bit halves, not a BigInt: the server writes one into every registration ack.
    return this.u32(Math.floor(ms / 0x1_0000_0000)).u32(ms % 0x1_0000_0000);
  }

  bytes(b: Uint8Array): this {
    const at = this.room(b.length);
    this.buf.set(b, at);
    return this;
  }

  shortString(s: string): this {
    const n = Buffer.byteLength(s, 'utf8');
    if (n > 255) throw new RangeError('string too long for a u8 length');
    this.u8(n);
    const at = this.room(n);
    this.buf.write(s, at, n, 'utf8');
    return this;
  }

  longBytes(b: Uint8Array): this {
    if (b.length > 0xffff) throw new RangeError('bytes too long for a u16 length');
    return this.u16(b.length).bytes(b);
  }

  zeros(n: number): this {
    const at = this.room(n);
    // A loop, not Buffer#fill: its argument checks cost more than a few bytes' writes.
    for (let i = at; i < at + n; i++) this.buf[i] = 0;
    return this;
  }

  /** The bytes written; the writer is done with after this. */
  toBuffer(): Buffer {
    return this.buf.subarray(0, this.size);
  }
}
