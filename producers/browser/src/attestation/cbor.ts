/**
 * A minimal strict CBOR decoder (RFC 8949) for Nitro attestation documents: integers,
 * byte and text strings, arrays, maps, tags and the simple values null/true/false.
 *
 * Strict where the Rust verifier (minicbor) is strict: definite lengths only, declared
 * lengths and counts checked against the remaining input before anything is allocated,
 * text must be UTF-8, nesting is bounded, and nothing may follow the item. Like minicbor,
 * it accepts integer arguments that are not in their shortest form (they carry the same
 * value), so the two verifiers reach the same verdict on the same bytes. Floats,
 * `undefined` and other simple values are refused: no Nitro document has them.
 *
 * @module
 */

/** A decoded CBOR item. Maps keep their entries in input order, duplicates included. */
export type CborValue =
  | { readonly type: "uint"; readonly value: bigint }
  | { readonly type: "nint"; readonly value: bigint }
  | { readonly type: "bytes"; readonly value: Uint8Array }
  | { readonly type: "text"; readonly value: string }
  | { readonly type: "array"; readonly items: CborValue[] }
  | { readonly type: "map"; readonly entries: [CborValue, CborValue][] }
  | { readonly type: "tag"; readonly tag: bigint; readonly item: CborValue }
  | { readonly type: "simple"; readonly value: null | boolean };

/** Why bytes are not the CBOR this decoder accepts. */
export class CborError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CborError";
  }
}

/** Deepest nesting accepted by default (a Nitro document nests three levels). */
export const DEFAULT_MAX_DEPTH = 16;

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

class Reader {
  at = 0;
  constructor(
    readonly buf: Uint8Array,
    readonly maxDepth: number,
  ) {}

  private byte(): number {
    if (this.at >= this.buf.length) throw new CborError("the CBOR item runs past the end of the input");
    return this.buf[this.at++] as number;
  }

  private argument(info: number): bigint {
    if (info < 24) return BigInt(info);
    if (info > 27) {
      throw new CborError(info === 31 ? "indefinite lengths are not accepted" : "a reserved CBOR header was found");
    }
    const n = 1 << (info - 24);
    let v = 0n;
    for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(this.byte());
    return v;
  }

  /** A length or count that must fit in what is left, `unit` bytes per element at least. */
  private count(v: bigint, unit: number): number {
    if (v * BigInt(unit) > BigInt(this.buf.length - this.at)) {
      throw new CborError("a declared length runs past the end of the input");
    }
    return Number(v);
  }

  item(depth: number): CborValue {
    if (depth > this.maxDepth) throw new CborError("the CBOR item is nested too deeply");
    const head = this.byte();
    const major = head >> 5;
    const info = head & 0x1f;
    if (major === 7) {
      if (info === 20) return { type: "simple", value: false };
      if (info === 21) return { type: "simple", value: true };
      if (info === 22) return { type: "simple", value: null };
      throw new CborError(info === 31 ? "indefinite lengths are not accepted" : "floats and other simple values are not accepted");
    }
    const arg = this.argument(info);
    switch (major) {
      case 0:
        return { type: "uint", value: arg };
      case 1:
        return { type: "nint", value: -1n - arg };
      case 2:
      case 3: {
        const n = this.count(arg, 1);
        const bytes = this.buf.subarray(this.at, this.at + n);
        this.at += n;
        if (major === 2) return { type: "bytes", value: bytes };
        try {
          return { type: "text", value: utf8.decode(bytes) };
        } catch {
          throw new CborError("a text string is not valid UTF-8");
        }
      }
      case 4: {
        const n = this.count(arg, 1);
        const items: CborValue[] = [];
        for (let i = 0; i < n; i++) items.push(this.item(depth + 1));
        return { type: "array", items };
      }
      case 5: {
        const n = this.count(arg, 2);
        const entries: [CborValue, CborValue][] = [];
        for (let i = 0; i < n; i++) entries.push([this.item(depth + 1), this.item(depth + 1)]);
        return { type: "map", entries };
      }
      default:
        return { type: "tag", tag: arg, item: this.item(depth + 1) };
    }
  }
}

/**
 * Decodes the first CBOR item of `bytes` and says where it ends; throws
 * {@link CborError} on anything malformed, indefinite or nested deeper than `maxDepth`.
 * Byte strings in the result are views into `bytes`.
 */
export function decodeCborPrefix(bytes: Uint8Array, maxDepth = DEFAULT_MAX_DEPTH): { value: CborValue; end: number } {
  const r = new Reader(bytes, maxDepth);
  const value = r.item(0);
  return { value, end: r.at };
}

/** Like {@link decodeCborPrefix}, and nothing may follow the item. */
export function decodeCbor(bytes: Uint8Array, maxDepth = DEFAULT_MAX_DEPTH): CborValue {
  const { value, end } = decodeCborPrefix(bytes, maxDepth);
  if (end !== bytes.length) throw new CborError("bytes follow the CBOR item");
  return value;
}

function head(major: number, n: number): Uint8Array {
  if (n < 24) return Uint8Array.of((major << 5) | n);
  if (n < 0x100) return Uint8Array.of((major << 5) | 24, n);
  if (n < 0x10000) return Uint8Array.of((major << 5) | 25, n >> 8, n & 0xff);
  const out = new Uint8Array(5);
  out[0] = (major << 5) | 26;
  new DataView(out.buffer).setUint32(1, n, false);
  return out;
}

/** The CBOR header (shortest form) of a byte string of `n` bytes, `n < 2^32`. */
export function bytesHead(n: number): Uint8Array {
  return head(2, n);
}

/** The CBOR header (shortest form) of a text string of `n` UTF-8 bytes, `n < 2^32`. */
export function textHead(n: number): Uint8Array {
  return head(3, n);
}

/** The CBOR header (shortest form) of an array of `n` items, `n < 2^32`. */
export function arrayHead(n: number): Uint8Array {
  return head(4, n);
}

/** The CBOR header (shortest form) of a map of `n` entries, `n < 2^32`. */
export function mapHead(n: number): Uint8Array {
  return head(5, n);
}
