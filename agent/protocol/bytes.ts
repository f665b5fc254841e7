/**
 * Length-checked byte reading and writing. Every read names the field it reads, so a
 * malformed packet is rejected with a ProtocolError that says which field was wrong.
 */
import { ProtocolError } from '../common/errors.js';

export class ByteReader {
  private offset = 0;
  constructor(private readonly buf: Uint8Array, private readonly what: string) {}

  get remaining(): number {
    return this.buf.length - this.offset;
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

  u64(field: string): bigint {
    this.need(8, field);
    const v = Buffer.from(this.buf.buffer, this.buf.byteOffset + this.offset, 8).readBigUInt64BE(0);
    this.offset += 8;
    return v;
  }

  /** A u64 millisecond timestamp; must fit a JS number. */
  timeMs(field: string): number {
    const v = this.u64(field);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolError(`${this.what}.${field}`, 'timestamp out of range');
    return Number(v);
  }

  bytes(n: number, field: string): Buffer {
    this.need(n, field);
    const out = Buffer.from(this.buf.subarray(this.offset, this.offset + n));
    this.offset += n;
    return out;
  }

  /** u8 length then that many bytes of UTF-8 matching `pattern`. */
  shortString(field: string, maxBytes: number, pattern: RegExp): string {
    const len = this.u8(`${field}.length`);
    if (len === 0 || len > maxBytes) throw new ProtocolError(`${this.what}.${field}.length`, `expected 1-${maxBytes}, found ${len}`);
    const s = this.bytes(len, field).toString('utf8');
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

export class ByteWriter {
  private readonly parts: Buffer[] = [];
  private size = 0;

  private push(b: Buffer): this {
    this.parts.push(b);
    this.size += b.length;
    return this;
  }

  get length(): number {
    return this.size;
  }

  u8(v: number): this {
    return this.push(Buffer.of(v & 0xff));
  }

  u16(v: number): this {
    const b = Buffer.allocUnsafe(2);
    b.writeUInt16BE(v, 0);
    return this.push(b);
  }

  u64(v: number | bigint): this {
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64BE(BigInt(v), 0);
    return this.push(b);
  }

  /** A millisecond timestamp as u64: whole milliseconds, so any clock (even a fractional one) encodes. */
  timeMs(v: number): this {
    return this.u64(Math.floor(v));
  }

  bytes(b: Uint8Array): this {
    return this.push(Buffer.from(b));
  }

  shortString(s: string): this {
    const b = Buffer.from(s, 'utf8');
    if (b.length > 255) throw new RangeError('string too long for a u8 length');
    return this.u8(b.length).push(b);
  }

  longBytes(b: Uint8Array): this {
    if (b.length > 0xffff) throw new RangeError('bytes too long for a u16 length');
    return this.u16(b.length).bytes(b);
  }

  zeros(n: number): this {
    return this.push(Buffer.alloc(n));
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.parts, this.size);
  }
}
