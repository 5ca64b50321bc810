/**
 * Byte helpers: UTF-8, hex, strict base64, big-endian integers and the spec's `lp()`.
 *
 * @module
 */

import { invalidInput, malformed } from "./errors.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** UTF-8 bytes of `s`. */
export function utf8(s: string): Uint8Array {
  return encoder.encode(s);
}

/** Decodes UTF-8, failing with `malformed` on invalid sequences. */
export function fromUtf8(b: Uint8Array, what = "a string"): string {
  try {
    return decoder.decode(b);
  } catch {
    throw malformed(`${what} is not valid UTF-8`);
  }
}

/** Concatenation of `parts`. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Lowercase hex. */
export function toHex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/** Parses hex (either case); `invalid_input` on anything else. */
export function fromHex(s: string): Uint8Array {
  if (s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) {
    throw invalidInput("The value is not hex.");
  }
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** `u32be(n)`. */
export function u32be(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n, false);
  return out;
}

/** `i32be(n)`. */
export function i32be(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setInt32(0, n, false);
  return out;
}

/** `i64be(n)` for a safe integer `n`. */
export function i64be(n: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigInt64(0, BigInt(n), false);
  return out;
}

/** `lp(x)`: `u32be(len(x)) || x`; strings are UTF-8 encoded first. */
export function lp(x: Uint8Array | string): Uint8Array {
  const b = typeof x === "string" ? utf8(x) : x;
  return concat(u32be(b.length), b);
}

/** Equality in time independent of where the inputs differ (same-length inputs). */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= (a[i] as number) ^ (b[i] as number);
  return d === 0;
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

function encode64(b: Uint8Array, alphabet: string, pad: boolean): string {
  let s = "";
  let i = 0;
  for (; i + 2 < b.length; i += 3) {
    const n = ((b[i] as number) << 16) | ((b[i + 1] as number) << 8) | (b[i + 2] as number);
    s += alphabet[n >> 18]! + alphabet[(n >> 12) & 63]! + alphabet[(n >> 6) & 63]! + alphabet[n & 63]!;
  }
  const rest = b.length - i;
  if (rest === 1) {
    const n = (b[i] as number) << 16;
    s += alphabet[n >> 18]! + alphabet[(n >> 12) & 63]! + (pad ? "==" : "");
  } else if (rest === 2) {
    const n = ((b[i] as number) << 16) | ((b[i + 1] as number) << 8);
    s += alphabet[n >> 18]! + alphabet[(n >> 12) & 63]! + alphabet[(n >> 6) & 63]! + (pad ? "=" : "");
  }
  return s;
}

function decode64(s: string, alphabet: string, padded: boolean): Uint8Array {
  const fail = () => invalidInput("The text is not canonical base64.");
  let body = s;
  if (padded) {
    if (s.length % 4 !== 0) throw fail();
    if (s.endsWith("==")) body = s.slice(0, -2);
    else if (s.endsWith("=")) body = s.slice(0, -1);
  }
  if (body.length % 4 === 1) throw fail();
  const out = new Uint8Array(Math.floor((body.length * 3) / 4));
  let acc = 0;
  let bits = 0;
  let at = 0;
  for (const ch of body) {
    const v = alphabet.indexOf(ch);
    if (v < 0) throw fail();
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (acc >> bits) & 0xff;
    }
  }
  // Canonical: the unused low bits of the last character are zero.
  if ((acc & ((1 << bits) - 1)) !== 0) throw fail();
  return out;
}

/** Standard base64 (RFC 4648 section 4) with padding. */
export function toBase64(b: Uint8Array): string {
  return encode64(b, B64, true);
}

/** Strict standard base64: padding required, no whitespace, canonical final bits. */
export function fromBase64(s: string): Uint8Array {
  return decode64(s, B64, true);
}

/** base64url without padding (RFC 4648 section 5), as in pseudonyms. */
export function toBase64UrlNoPad(b: Uint8Array): string {
  return encode64(b, B64URL, false);
}

/** Strict base64url without padding. */
export function fromBase64UrlNoPad(s: string): Uint8Array {
  return decode64(s, B64URL, false);
}

/** A copy of `b` whose buffer is exactly its bytes (what WebCrypto should be handed). */
export function owned(b: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(b) as Uint8Array<ArrayBuffer>;
}

/** Overwrites `b` with zeros (best effort: the JavaScript engine may hold copies). */
export function wipe(b: Uint8Array | undefined | null): void {
  if (b) b.fill(0);
}
