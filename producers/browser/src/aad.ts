/**
 * Canonical byte strings the cryptography binds: the payload AAD (spec 7), the passphrase
 * wrap AAD (8.1) and the signature input (10.1).
 *
 * @module
 */

import { concat, i32be, i64be, lp, u32be } from "./bytes.js";
import type { Header, Recipient, SignatureAlgorithm } from "./envelope.js";
import { LABEL_AAD, LABEL_SIGNATURE, LABEL_WRAP } from "./labels.js";

/** The payload's additional data (spec 7). */
export function payloadAad(h: Header, recipients: readonly Recipient[]): Uint8Array {
  const parts: Uint8Array[] = [
    lp(LABEL_AAD),
    i32be(h.version),
    h.messageId,
    lp(h.tenant),
    lp(h.subject),
    lp(h.kind),
    lp(h.purpose),
    lp(h.contentType),
    i64be(h.createdAtMs),
    h.correlationId ? concat(Uint8Array.of(1), h.correlationId) : Uint8Array.of(0),
    i32be(h.schemaId),
    h.keyCommitment,
    u32be(recipients.length),
  ];
  for (const r of recipients) parts.push(lp(r.type), lp(r.keyId), i32be(r.keyVersion));
  return concat(...parts);
}

/** The additional data of a PASSPHRASE recipient's wrapped key (spec 8.1). */
export function wrapAad(tenant: string, keyId: string, keyVersion: number, params: Uint8Array): Uint8Array {
  return concat(lp(LABEL_WRAP), lp(tenant), lp("PASSPHRASE"), lp(keyId), i32be(keyVersion), lp(params));
}

/** The bytes a signature covers (spec 10.1). */
export function signatureInput(
  h: Header,
  recipients: readonly Recipient[],
  payload: Uint8Array,
  keyId: string,
  keyVersion: number,
  algorithm: SignatureAlgorithm,
): Uint8Array {
  const parts: Uint8Array[] = [
    lp(LABEL_SIGNATURE),
    lp(algorithm),
    lp(keyId),
    i32be(keyVersion),
    lp(payloadAad(h, recipients)),
    u32be(recipients.length),
  ];
  for (const r of recipients) parts.push(lp(r.params), lp(r.wrappedKey));
  parts.push(lp(payload));
  return concat(...parts);
}
