/**
 * Errors. Every failure of this package is a {@link ZenvelopeError} with a stable `code`.
 *
 * The first eight codes are the envelope format's own (docs/envelope-spec.md, 11.1) and
 * match the Rust SDK and the golden vectors. `decrypt_failed` is deliberately opaque: it
 * never says which step failed and never carries key, IV or plaintext material.
 *
 * @module
 */

/** The codes of docs/envelope-spec.md section 11.1, plus the SDK's own. */
export type ErrorCode =
  /** Not a well-formed envelope (spec 4.2). */
  | "malformed"
  /** A field or the whole envelope exceeds the limits (spec 11.2). */
  | "oversized"
  /** The envelope's version is not 1. */
  | "unsupported_version"
  /** No signature, and the policy requires one. */
  | "unsigned"
  /** Signed by a key that is not in the trusted keyring. */
  | "untrusted_signer"
  /** The signature does not verify. */
  | "bad_signature"
  /** No recipient is addressed to a key the opener holds. */
  | "no_matching_recipient"
  /** Unwrap, key commitment or AES-GCM failure: opaque on purpose. */
  | "decrypt_failed"
  /** The caller passed something this SDK refuses (empty passphrase, bad tenant, ...). */
  | "invalid_input"
  /** No key-directory entry verified against the pinned root and measurements. */
  | "no_trusted_fleet_key"
  /** The browser (or runtime) lacks something required, such as WebCrypto. */
  | "unsupported_runtime";

/** An error from this package. `message` is a sentence safe to show or log: no secrets. */
export class ZenvelopeError extends Error {
  /** The stable, machine-readable code. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = "ZenvelopeError";
    this.code = code;
  }
}

/** `malformed`, with what was wrong (never the offending bytes). */
export function malformed(what: string): ZenvelopeError {
  return new ZenvelopeError("malformed", `The envelope is malformed: ${what}.`);
}

/** `oversized`, naming the field and its limit. */
export function oversized(field: string, limit: number): ZenvelopeError {
  return new ZenvelopeError("oversized", `The ${field} exceeds its limit of ${limit} bytes.`);
}

/** The one opaque decryption failure. */
export function decryptFailed(): ZenvelopeError {
  return new ZenvelopeError("decrypt_failed", "The envelope could not be decrypted.");
}

/** `invalid_input`, with the reason. */
export function invalidInput(reason: string): ZenvelopeError {
  return new ZenvelopeError("invalid_input", reason);
}
