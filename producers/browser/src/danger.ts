/**
 * DANGER: sealing with caller-chosen randomness, for the golden-vector tests only.
 *
 * Reusing an IV or a DEK with these functions breaks AES-GCM's security. Nothing in the
 * package's public entry point (`index.ts`) exports this module; it is imported by the
 * tests by path.
 *
 * @module
 */

import { utf8 } from "./bytes.js";
import { encodeEnvelope, type Envelope, type Header, type Recipient } from "./envelope.js";
import type { SigningKey } from "./keys.js";
import { INFO_RESPONSE } from "./labels.js";
import { sealCore, sealWith, type HeaderFields, type RecipientKey, type Sealed, type SealOptions } from "./seal.js";
import { hkdf } from "./webcrypto.js";

/** The randomness a seal would draw. */
export interface FixedRandomness {
  /** UUIDv7 bytes. */
  messageId: Uint8Array;
  /** Creation time. */
  createdAtMs: number;
  /** The DEK. */
  dek: Uint8Array;
  /** One IV per PASSPHRASE recipient, in order. */
  wrapIvs: Uint8Array[];
  /** The payload IV. */
  payloadIv: Uint8Array;
}

/** DANGER: {@link seal} with fixed randomness. */
export function dangerSealWithFixedRandomness(
  fields: HeaderFields,
  plaintext: Uint8Array,
  recipients: readonly RecipientKey[],
  options: SealOptions,
  randomness: FixedRandomness,
): Promise<Sealed> {
  return sealWith(fields, plaintext, recipients, options, randomness);
}

/** What the enclave chooses for an answer (spec 9.3). */
export interface ResponseFields {
  /** `RESULT` or `ERROR`. */
  kind: "RESULT" | "ERROR";
  /** Media type of the answer. */
  contentType: string;
  /** Schema id of the answer. */
  schemaId: number;
}

/**
 * DANGER: seals the answer to a request as an enclave would (spec 9.3), with fixed
 * randomness: `requestDek` is the request's DEK, `ownFleetKeyIds` the answering fleet's
 * key ids (their RSA-OAEP records are dropped, the others copied unchanged).
 */
export async function dangerSealResponseWithFixedRandomness(
  request: { header: Header; recipients: readonly Recipient[] },
  requestDek: Uint8Array,
  ownFleetKeyIds: readonly string[],
  fields: ResponseFields,
  plaintext: Uint8Array,
  signer: SigningKey | undefined,
  randomness: { messageId: Uint8Array; createdAtMs: number; payloadIv: Uint8Array },
): Promise<{ bytes: Uint8Array; envelope: Envelope }> {
  const req = request.header;
  const dek = await hkdf(requestDek, req.messageId, utf8(INFO_RESPONSE), 32);
  const recipients = request.recipients.filter(
    (r) => !(r.type === "RSA_OAEP_SHA256" && ownFleetKeyIds.includes(r.keyId)),
  );
  const envelope = await sealCore(
    {
      tenant: req.tenant,
      subject: req.subject,
      purpose: req.purpose,
      kind: fields.kind,
      contentType: fields.contentType,
      schemaId: fields.schemaId,
      correlationId: req.messageId,
    },
    randomness.messageId,
    randomness.createdAtMs,
    dek,
    recipients,
    randomness.payloadIv,
    plaintext,
    signer,
  );
  return { bytes: encodeEnvelope(envelope), envelope };
}
