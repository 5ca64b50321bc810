/**
 * Thin wrappers over the Web Crypto API (`crypto.subtle`), the only cryptography this
 * package uses. Every algorithm of the envelope format is native to WebCrypto.
 *
 * @module
 */

import { concat, owned } from "./bytes.js";
import { ZenvelopeError, decryptFailed } from "./errors.js";

/** The runtime's SubtleCrypto; `unsupported_runtime` without a secure context. */
export function subtle(): SubtleCrypto {
  const s = globalThis.crypto?.subtle;
  if (!s) {
    throw new ZenvelopeError(
      "unsupported_runtime",
      "WebCrypto (crypto.subtle) is not available: the page must be served over HTTPS or from localhost.",
    );
  }
  return s;
}

/** `n` bytes from the platform CSPRNG. */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  globalThis.crypto.getRandomValues(out);
  return out;
}

/** SHA-256. */
export async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().digest("SHA-256", owned(data)));
}

/**
 * Runs `f` on a copy of `secret` that WebCrypto may take (it copies its inputs when called),
 * then wipes the copy: key material is not left behind in buffers of ours.
 */
export async function withSecret<T>(secret: Uint8Array, f: (copy: Uint8Array<ArrayBuffer>) => Promise<T>): Promise<T> {
  const copy = owned(secret);
  try {
    return await f(copy);
  } finally {
    copy.fill(0);
  }
}

/** HKDF-SHA256 (RFC 5869), extract then expand, `length` bytes. */
export async function hkdf(
  ikm: Uint8Array,
  salt: Uint8Array,
  info: Uint8Array,
  length: number,
): Promise<Uint8Array> {
  const key = await withSecret(ikm, (k) => subtle().importKey("raw", k, "HKDF", false, ["deriveBits"]));
  const bits = await subtle().deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: owned(salt), info: owned(info) },
    key,
    length * 8,
  );
  return new Uint8Array(bits);
}

/** HMAC-SHA256. */
export async function hmacSha256(key: Uint8Array, data: Uint8Array): Promise<Uint8Array> {
  const k = await withSecret(key, (c) =>
    subtle().importKey("raw", c, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]),
  );
  return new Uint8Array(await subtle().sign("HMAC", k, owned(data)));
}

/** An AES-256-GCM key for encrypt and decrypt, not extractable. */
export async function aesKey(raw: Uint8Array): Promise<CryptoKey> {
  return withSecret(raw, (c) =>
    subtle().importKey("raw", c, { name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]),
  );
}

/** Blob version byte (spec 6). */
export const BLOB_VERSION = 0x01;
const IV_LEN = 12;
const TAG_LEN = 16;

/** `0x01 || IV || tag || ciphertext` (spec 6): WebCrypto's `ciphertext || tag`, reordered. */
export async function sealBlob(
  key: CryptoKey,
  iv: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array,
): Promise<Uint8Array> {
  if (iv.length !== IV_LEN) throw new RangeError("An AES-GCM IV is 12 bytes.");
  const ctTag = new Uint8Array(
    await withSecret(plaintext, (p) =>
      subtle().encrypt({ name: "AES-GCM", iv: owned(iv), additionalData: owned(aad), tagLength: 128 }, key, p),
    ),
  );
  const ct = ctTag.subarray(0, ctTag.length - TAG_LEN);
  const tag = ctTag.subarray(ctTag.length - TAG_LEN);
  return concat(Uint8Array.of(BLOB_VERSION), iv, tag, ct);
}

/** Opens a blob; every failure is the opaque `decrypt_failed`. */
export async function openBlob(key: CryptoKey, aad: Uint8Array, blob: Uint8Array): Promise<Uint8Array> {
  if (blob.length < 1 + IV_LEN + TAG_LEN || blob[0] !== BLOB_VERSION) throw decryptFailed();
  const iv = blob.subarray(1, 1 + IV_LEN);
  const tag = blob.subarray(1 + IV_LEN, 1 + IV_LEN + TAG_LEN);
  const ct = blob.subarray(1 + IV_LEN + TAG_LEN);
  try {
    return new Uint8Array(
      await subtle().decrypt(
        { name: "AES-GCM", iv: owned(iv), additionalData: owned(aad), tagLength: 128 },
        key,
        owned(concat(ct, tag)),
      ),
    );
  } catch {
    throw decryptFailed();
  }
}
