/**
 * A strict Avro 1.11 binary codec, just large enough for zenvelope's records.
 *
 * Hand-written on purpose: the package has no runtime dependencies, and the envelope
 * format needs checks stock Avro readers do not make (shortest-form varints, canonical
 * arrays, limits checked before allocation; docs/envelope-spec.md 4.2). The JavaScript
 * Avro library `avsc` accepts every array layout and non-minimal varints, and needs
 * Node's `Buffer` in the browser.
 *
 * @module
 */

import { concat, fromUtf8, utf8 } from "./bytes.js";
import { malformed, oversized } from "./errors.js";

const INT_MIN = -(2 ** 31);
const INT_MAX = 2 ** 31 - 1;

/** Appends Avro-encoded values to a growing buffer. */
export class AvroWriter {
  private parts: Uint8Array[] = [];

  /** A `long` (zig-zag varint). Accepts safe integers and bigints. */
  long(n: number | bigint): this {
    let v = BigInt(n);
    v = BigInt.asUintN(64, (v << 1n) ^ (v >> 63n));
    const out: number[] = [];
    while (v >= 0x80n) {
      out.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    out.push(Number(v));
    this.parts.push(Uint8Array.from(out));
    return this;
  }

  /** An `int`. */
  int(n: number): this {
    if (!Number.isInteger(n) || n < INT_MIN || n > INT_MAX) {
      throw new RangeError("An Avro int must fit in 32 bits.");
    }
    return this.long(n);
  }

  /** `bytes`: a length, then the bytes. */
  bytes(b: Uint8Array): this {
    this.long(b.length);
    this.parts.push(b);
    return this;
  }

  /** `string`: UTF-8 bytes with a length. */
  string(s: string): this {
    return this.bytes(utf8(s));
  }

  /** `fixed`: the raw bytes. */
  fixed(b: Uint8Array): this {
    this.parts.push(b);
    return this;
  }

  /** A `double`, little-endian IEEE 754. */
  double(x: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, x, true);
    this.parts.push(b);
    return this;
  }

  /** An enum: the symbol's index. */
  enumSymbol<T extends string>(symbols: readonly T[], s: T): this {
    const i = symbols.indexOf(s);
    if (i < 0) throw new RangeError(`Unknown enum symbol ${s}.`);
    return this.int(i);
  }

  /** A `["null", T]` union: `write` is called when `value` is not null. */
  optional<T>(value: T | null | undefined, write: (w: this, v: T) => void): this {
    if (value === null || value === undefined) return this.long(0);
    this.long(1);
    write(this, value);
    return this;
  }

  /** An array in the canonical layout: one block with a positive count, then 0. */
  array<T>(items: readonly T[], write: (w: this, item: T) => void): this {
    if (items.length > 0) {
      this.long(items.length);
      for (const it of items) write(this, it);
    }
    return this.long(0);
  }

  /** The bytes written so far. */
  finish(): Uint8Array {
    return concat(...this.parts);
  }
}

/** Reads Avro values from a byte array, strictly (docs/envelope-spec.md 4.2). */
export class AvroReader {
  private at = 0;

  constructor(private readonly buf: Uint8Array) {}

  /** Bytes not read yet. */
  remaining(): number {
    return this.buf.length - this.at;
  }

  /** Fails with `malformed` if bytes remain. */
  end(): void {
    if (this.remaining() !== 0) throw malformed("bytes remain after the last field");
  }

  /** A `long` as a bigint: at most 10 bytes, no 64-bit overflow, shortest form. */
  longBig(): bigint {
    let v = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.at >= this.buf.length) throw malformed("a varint runs past the end of the input");
      const b = this.buf[this.at++] as number;
      if (i === 9 && b > 1) throw malformed("a varint overflows 64 bits");
      v |= BigInt(b & 0x7f) << BigInt(7 * i);
      if ((b & 0x80) === 0) {
        if (b === 0 && i > 0) throw malformed("a varint is not in its shortest form");
        const u = BigInt.asUintN(64, v);
        return BigInt.asIntN(64, (u >> 1n) ^ -(u & 1n));
      }
    }
    throw malformed("a varint is longer than 10 bytes");
  }

  /** A `long` that must be a safe JavaScript integer. */
  long(what = "a long"): number {
    const v = this.longBig();
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw malformed(`${what} is beyond what this SDK represents exactly (2^53)`);
    }
    return Number(v);
  }

  /** An `int`: a `long` that fits in 32 bits. */
  int(): number {
    const v = this.longBig();
    if (v < BigInt(INT_MIN) || v > BigInt(INT_MAX)) throw malformed("an int does not fit in 32 bits");
    return Number(v);
  }

  /**
   * A length prefix: negative is `malformed`, above `limit` is `oversized` (even if the
   * input is also too short), past the end of the input is `malformed`.
   */
  length(field: string, limit: number): number {
    const n = this.longBig();
    if (n < 0n) throw malformed(`the ${field} has a negative length`);
    if (n > BigInt(limit)) throw oversized(field, limit);
    const len = Number(n);
    if (len > this.remaining()) throw malformed(`the ${field} runs past the end of the input`);
    return len;
  }

  /** `bytes` of at most `limit` bytes (a view into the input). */
  bytes(field: string, limit: number): Uint8Array {
    const n = this.length(field, limit);
    return this.take(n, field);
  }

  /** A `string` of at most `limit` UTF-8 bytes. */
  string(field: string, limit: number): string {
    return fromUtf8(this.bytes(field, limit), `the ${field}`);
  }

  /** `fixed` of `n` bytes. */
  fixed(n: number, field: string): Uint8Array {
    return this.take(n, field);
  }

  /** A `double`. */
  double(field: string): number {
    const b = this.take(8, field);
    return new DataView(b.buffer, b.byteOffset, 8).getFloat64(0, true);
  }

  /** An enum symbol; an index out of range is `malformed`. */
  enumSymbol<T extends string>(symbols: readonly T[], field: string): T {
    const i = this.longBig();
    if (i < 0n || i >= BigInt(symbols.length)) throw malformed(`the ${field} is not a known symbol`);
    return symbols[Number(i)] as T;
  }

  /** A union's branch index, in `0..branches`. */
  unionIndex(branches: number, field: string): number {
    const i = this.longBig();
    if (i < 0n || i >= BigInt(branches)) throw malformed(`the ${field} has an unknown union branch`);
    return Number(i);
  }

  /** A `["null", T]` union. */
  optional<T>(field: string, read: (r: this) => T): T | null {
    return this.unionIndex(2, field) === 0 ? null : read(this);
  }

  /**
   * An array in the canonical layout only: `00`, or one block with a positive count
   * (at most `limit`, else `oversized`) followed by `00`.
   */
  array<T>(field: string, limit: number, read: (r: this) => T): T[] {
    const n = this.longBig();
    if (n < 0n) throw malformed(`the ${field} array is not in the canonical layout`);
    if (n > BigInt(limit)) throw oversized(`${field} count`, limit);
    const items: T[] = [];
    if (n === 0n) return items;
    for (let i = 0n; i < n; i++) items.push(read(this));
    if (this.longBig() !== 0n) throw malformed(`the ${field} array is not in the canonical layout`);
    return items;
  }

  private take(n: number, field: string): Uint8Array {
    if (n > this.remaining()) throw malformed(`the ${field} runs past the end of the input`);
    const out = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
}
