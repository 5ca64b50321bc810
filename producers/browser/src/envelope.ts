/**
 * The envelope's data model and its Avro wire format (docs/envelope-spec.md section 4).
 *
 * @module
 */

import { AvroReader, AvroWriter } from "./avro.js";
import { ZenvelopeError, malformed, oversized } from "./errors.js";

/** Envelope kinds (Avro enum `Kind`, symbols in index order). */
export const KINDS = ["REQUEST", "RESULT", "ERROR", "RECORD"] as const;
/** What an envelope is. */
export type Kind = (typeof KINDS)[number];

/** Purposes of use (Avro enum `Purpose`). */
export const PURPOSES = [
  "TREATMENT",
  "PAYMENT",
  "OPERATIONS",
  "RESEARCH",
  "PUBLIC_HEALTH",
  "INDIVIDUAL_REQUEST",
] as const;
/** The HIPAA purpose of use, authenticated with the payload and enforced by the enclave. */
export type Purpose = (typeof PURPOSES)[number];

/** Recipient types (Avro enum `RecipientType`). */
export const RECIPIENT_TYPES = ["PASSPHRASE", "RSA_OAEP_SHA256", "AWS_KMS"] as const;
/** How a recipient record wraps the DEK. */
export type RecipientType = (typeof RECIPIENT_TYPES)[number];

/** Signature algorithms (Avro enum `SignatureAlgorithm`). */
export const SIGNATURE_ALGORITHMS = ["RSA_PSS_SHA256", "ECDSA_P256_SHA256"] as const;
/** A signature's algorithm. */
export type SignatureAlgorithm = (typeof SIGNATURE_ALGORITHMS)[number];

/** The authenticated header. Binary ids are 16 raw bytes. */
export interface Header {
  /** Format version: 1. */
  version: number;
  /** UUIDv7, 16 raw bytes. */
  messageId: Uint8Array;
  /** Tenant id (1 to 64 visible ASCII characters when sealed). */
  tenant: string;
  /** Subject pseudonym (`sp1_…`), never an email or a name. */
  subject: string;
  /** What the envelope is. */
  kind: Kind;
  /** Purpose of use. */
  purpose: Purpose;
  /** Media type of the plaintext. */
  contentType: string;
  /** Creation time, milliseconds since the Unix epoch (the UUIDv7's timestamp). */
  createdAtMs: number;
  /** For RESULT and ERROR: the request's message id. */
  correlationId: Uint8Array | null;
  /** Schema id of the plaintext (0 when it is not an Avro datum). */
  schemaId: number;
  /** Commitment to the DEK (spec 5.4). */
  keyCommitment: Uint8Array;
}

/** One wrapped copy of the DEK. */
export interface Recipient {
  /** How the DEK is wrapped. */
  type: RecipientType;
  /** The wrapping key's id (a `kek_id`, a fleet key id, a KMS key ARN). */
  keyId: string;
  /** The wrapping key's version. */
  keyVersion: number;
  /** Type-specific parameters (PASSPHRASE: iterations and salt). */
  params: Uint8Array;
  /** The wrapped DEK. */
  wrappedKey: Uint8Array;
}

/** A signature over header, recipients and payload. */
export interface Signature {
  /** Signing key id. */
  keyId: string;
  /** Signing key version. */
  keyVersion: number;
  /** Algorithm. */
  algorithm: SignatureAlgorithm;
  /** The signature bytes (RSA: modulus length; ECDSA: 64 bytes, r || s). */
  value: Uint8Array;
}

/** A decoded envelope. */
export interface Envelope {
  /** Authenticated header. */
  header: Header;
  /** Recipients, in order. */
  recipients: Recipient[];
  /** The payload blob: `0x01 || IV || tag || ciphertext`. */
  payload: Uint8Array;
  /** The signature, if any. */
  signature: Signature | null;
}

/** Size limits (spec 11.2); the defaults are the reference implementation's. */
export interface Limits {
  /** Whole envelope, bytes. */
  maxEnvelopeBytes: number;
  /** Payload blob, bytes. */
  maxPayloadBytes: number;
  /** Number of recipients. */
  maxRecipients: number;
  /** Each string field, UTF-8 bytes. */
  maxStringBytes: number;
  /** A recipient's params, bytes. */
  maxParamsBytes: number;
  /** A wrapped key or a signature value, bytes. */
  maxKeyBytes: number;
}

/** The reference defaults of spec 11.2. */
export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxEnvelopeBytes: 4 * 1024 * 1024 + 64 * 1024,
  maxPayloadBytes: 4 * 1024 * 1024 + 29,
  maxRecipients: 16,
  maxStringBytes: 256,
  maxParamsBytes: 256,
  maxKeyBytes: 1024,
});

/** Encodes `env` as Avro binary (spec 4.1), the bytes that go on Kafka after the frame. */
export function encodeEnvelope(env: Envelope): Uint8Array {
  const h = env.header;
  const w = new AvroWriter()
    .int(h.version)
    .fixed(checkLen(h.messageId, 16, "message id"))
    .string(h.tenant)
    .string(h.subject)
    .enumSymbol(KINDS, h.kind)
    .enumSymbol(PURPOSES, h.purpose)
    .string(h.contentType)
    .long(h.createdAtMs)
    .optional(h.correlationId, (w, id) => w.fixed(checkLen(id, 16, "correlation id")))
    .int(h.schemaId)
    .fixed(checkLen(h.keyCommitment, 32, "key commitment"))
    .array(env.recipients, (w, r) =>
      w
        .enumSymbol(RECIPIENT_TYPES, r.type)
        .string(r.keyId)
        .int(r.keyVersion)
        .bytes(r.params)
        .bytes(r.wrappedKey),
    )
    .bytes(env.payload)
    .optional(env.signature, (w, s) =>
      w.string(s.keyId).int(s.keyVersion).enumSymbol(SIGNATURE_ALGORITHMS, s.algorithm).bytes(s.value),
    );
  return w.finish();
}

function checkLen(b: Uint8Array, n: number, what: string): Uint8Array {
  if (b.length !== n) throw new RangeError(`The ${what} must be ${n} bytes.`);
  return b;
}

/** Whether 16 bytes are a UUIDv7 (version nibble 7, RFC 4122 variant). */
export function isUuidV7(id: Uint8Array): boolean {
  return id.length === 16 && ((id[6] as number) >> 4) === 7 && ((id[8] as number) & 0xc0) === 0x80;
}

/**
 * Decodes Avro bytes strictly, in the order of spec 4.2: the first failure decides the
 * error (`oversized`, `malformed`, `unsupported_version`). Byte fields of the result are
 * views into `bytes`.
 */
export function decodeEnvelope(bytes: Uint8Array, limits: Limits = DEFAULT_LIMITS): Envelope {
  if (bytes.length > limits.maxEnvelopeBytes) throw oversized("envelope", limits.maxEnvelopeBytes);
  const r = new AvroReader(bytes);
  const version = r.int();
  if (version !== 1) {
    throw new ZenvelopeError("unsupported_version", `Envelope version ${version} is not supported (this SDK reads version 1).`);
  }
  const s = limits.maxStringBytes;
  const messageId = r.fixed(16, "message id");
  if (!isUuidV7(messageId)) throw malformed("the message id is not a UUIDv7");
  const tenant = r.string("tenant", s);
  const subject = r.string("subject", s);
  const kind = r.enumSymbol(KINDS, "kind");
  const purpose = r.enumSymbol(PURPOSES, "purpose");
  const contentType = r.string("content type", s);
  const createdAtMs = r.long("created_at_ms");
  const correlationId = r.optional("correlation id", (r) => r.fixed(16, "correlation id"));
  if (correlationId && !isUuidV7(correlationId)) throw malformed("the correlation id is not a UUIDv7");
  const schemaId = r.int();
  const keyCommitment = r.fixed(32, "key commitment");
  const recipients = r.array("recipients", limits.maxRecipients, (r) => ({
    type: r.enumSymbol(RECIPIENT_TYPES, "recipient type"),
    keyId: r.string("recipient key id", s),
    keyVersion: r.int(),
    params: r.bytes("recipient params", limits.maxParamsBytes),
    wrappedKey: r.bytes("wrapped key", limits.maxKeyBytes),
  }));
  const payload = r.bytes("payload", limits.maxPayloadBytes);
  const signature = r.optional("signature", (r) => ({
    keyId: r.string("signature key id", s),
    keyVersion: r.int(),
    algorithm: r.enumSymbol(SIGNATURE_ALGORITHMS, "signature algorithm"),
    value: r.bytes("signature value", limits.maxKeyBytes),
  }));
  r.end();
  if ((kind === "RESULT" || kind === "ERROR") && correlationId === null) {
    throw malformed("a result or error has no correlation id");
  }
  return {
    header: {
      version,
      messageId,
      tenant,
      subject,
      kind,
      purpose,
      contentType,
      createdAtMs,
      correlationId,
      schemaId,
      keyCommitment,
    },
    recipients,
    payload,
    signature,
  };
}

/** The canonical text form of a 16-byte id: `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`. */
export function uuidToString(id: Uint8Array): string {
  let h = "";
  for (const b of id) h += b.toString(16).padStart(2, "0");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Parses the text form of a UUID; `invalid_input` otherwise. */
export function uuidFromString(s: string): Uint8Array {
  const hex = s.replace(/-/g, "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex) || s.length !== 36) {
    throw new ZenvelopeError("invalid_input", "The value is not a UUID.");
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}
