/**
 * The text transport form: standard base64 (RFC 4648, padded) of the envelope's Avro
 * bytes, for JSON bodies between a browser and its backend. This is the seed system's
 * base64 form of its "Encrypted Data Blob", applied to the whole envelope; the Kafka
 * record itself stays binary (Confluent frame + Avro, docs/envelope-spec.md 4.3).
 *
 * @module
 */

import { fromBase64, toBase64 } from "./bytes.js";
import { DEFAULT_LIMITS } from "./envelope.js";
import { oversized } from "./errors.js";

/** Envelope bytes → transport text. */
export function toTransport(envelope: Uint8Array): string {
  return toBase64(envelope);
}

/**
 * Transport text → envelope bytes. Strict: padding required, no white space, canonical
 * final bits (`invalid_input` otherwise); text longer than the envelope limit's base64
 * length is `oversized` before anything is decoded.
 */
export function fromTransport(text: string, maxEnvelopeBytes: number = DEFAULT_LIMITS.maxEnvelopeBytes): Uint8Array {
  if (text.length > Math.ceil(maxEnvelopeBytes / 3) * 4) throw oversized("envelope", maxEnvelopeBytes);
  return fromBase64(text);
}
