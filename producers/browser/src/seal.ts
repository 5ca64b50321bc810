/**
 * Sealing and opening envelopes (docs/envelope-spec.md sections 8 to 11).
 *
 * @module
 */

import { payloadAad, signatureInput, wrapAad } from "./aad.js";
import { concat, constantTimeEqual, owned, u32be, utf8, wipe } from "./bytes.js";
import {
  DEFAULT_LIMITS,
  PURPOSES,
  decodeEnvelope,
  encodeEnvelope,
  uuidToString,
  type Envelope,
  type Header,
  type Kind,
  type Limits,
  type Purpose,
  type Recipient,
} from "./envelope.js";
import { ZenvelopeError, decryptFailed, invalidInput, oversized } from "./errors.js";
import { UserKey, checkTenant, type FleetKey, type FleetPrivateKey, type SigningKey, type VerifyingKey } from "./keys.js";
import { INFO_KEY_COMMITMENT, INFO_PAYLOAD_KEY, INFO_RESPONSE } from "./labels.js";
import { aesKey, hkdf, openBlob, randomBytes, sealBlob, subtle, withSecret } from "./webcrypto.js";

/** The header fields a sealer chooses (spec 9.1). */
export interface HeaderFields {
  /** Tenant id: 1 to 64 visible ASCII characters. */
  tenant: string;
  /** The user's subject pseudonym, as the backend gave it. */
  subject: string;
  /** `REQUEST` (for the enclave) or `RECORD` (for the user alone). */
  kind: "REQUEST" | "RECORD";
  /** Purpose of use. */
  purpose: Purpose;
  /** Media type of the plaintext. */
  contentType: string;
  /** Schema id of the plaintext (0 if it is not an Avro datum). */
  schemaId: number;
}

/** Who can open a sealed envelope: the user (by their KEK) and/or an enclave fleet. */
export type RecipientKey = UserKey | FleetKey;

/** A sealed envelope. */
export interface Sealed {
  /** The envelope's Avro bytes (what goes on Kafka after the Confluent frame). */
  bytes: Uint8Array;
  /** The envelope, decoded. */
  envelope: Envelope;
  /** The message id, as text; answers carry it as their correlation id. */
  messageId: string;
  /** Opens the answers to this request without the user's key (see {@link ResponseKey}). */
  responseKey: ResponseKey;
}

/**
 * The key of every answer to one request (spec 5.5), kept in memory by the page that
 * sealed it so that answers open without deriving the user's key again. Call
 * {@link ResponseKey.forget} when no more answers are expected.
 */
export class ResponseKey {
  #dek: Uint8Array | null;

  /** @internal */
  constructor(
    /** The request's message id (16 bytes). */
    readonly requestId: Uint8Array,
    dek: Uint8Array,
  ) {
    this.#dek = dek;
  }

  /** @internal A copy of the response DEK (wipe it after use). */
  dek(): Uint8Array {
    if (!this.#dek) throw invalidInput("This response key was forgotten; open the answer with the user's key.");
    return new Uint8Array(this.#dek);
  }

  /** Whether {@link forget} was called. */
  get forgotten(): boolean {
    return this.#dek === null;
  }

  /** Wipes the key from memory. */
  forget(): void {
    wipe(this.#dek);
    this.#dek = null;
  }

  /** Never prints key material. */
  toJSON(): object {
    return { requestId: uuidToString(this.requestId) };
  }
}

/** Options of {@link seal}. */
export interface SealOptions {
  /** Signs the envelope (a browser usually leaves signing to its backend; see the README). */
  signer?: SigningKey;
  /** Limits the openers apply; the sealer refuses to exceed them. */
  limits?: Limits;
}

/** @internal The randomness of one seal, fixed only by the golden-vector tests. */
export interface Randomness {
  messageId: Uint8Array;
  createdAtMs: number;
  dek: Uint8Array;
  wrapIvs: Uint8Array[];
  payloadIv: Uint8Array;
}

/** A fresh UUIDv7 (RFC 9562): 48-bit milliseconds, version 7, variant 10, random rest. */
export function newUuidV7(nowMs: number = Date.now()): Uint8Array {
  const id = randomBytes(16);
  let ms = nowMs;
  for (let i = 5; i >= 0; i--) {
    id[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  id[6] = 0x70 | ((id[6] as number) & 0x0f);
  id[8] = 0x80 | ((id[8] as number) & 0x3f);
  return id;
}

/**
 * Seals `plaintext` for `recipients` (spec 9.1): a fresh DEK, one recipient record per
 * key in order, the header bound into the AES-GCM additional data, optionally signed.
 */
export async function seal(
  fields: HeaderFields,
  plaintext: Uint8Array,
  recipients: readonly RecipientKey[],
  options: SealOptions = {},
): Promise<Sealed> {
  const now = Date.now();
  const passphrases = recipients.filter((r) => r instanceof UserKey).length;
  const rand: Randomness = {
    messageId: newUuidV7(now),
    createdAtMs: now,
    dek: randomBytes(32),
    wrapIvs: Array.from({ length: passphrases }, () => randomBytes(12)),
    payloadIv: randomBytes(12),
  };
  try {
    return await sealWith(fields, plaintext, recipients, options, rand);
  } finally {
    wipe(rand.dek);
  }
}

/** @internal {@link seal} with given randomness. */
export async function sealWith(
  fields: HeaderFields,
  plaintext: Uint8Array,
  recipients: readonly RecipientKey[],
  options: SealOptions,
  rand: Randomness,
): Promise<Sealed> {
  const limits = options.limits ?? DEFAULT_LIMITS;
  checkFields(fields, plaintext.length, limits);
  if (recipients.length === 0) throw invalidInput("A sealed envelope needs at least one recipient.");
  if (recipients.length > limits.maxRecipients) throw oversized("recipients count", limits.maxRecipients);
  const records: Recipient[] = [];
  let wrapIv = 0;
  for (const r of recipients) {
    if (r instanceof UserKey) {
      if (r.tenant !== fields.tenant) throw invalidInput("The user key was derived for another tenant.");
      const iv = rand.wrapIvs[wrapIv++];
      if (!iv) throw invalidInput("Missing wrap IV.");
      records.push(await wrapForUser(r, fields.tenant, rand.dek, iv));
    } else {
      records.push(await wrapForFleet(r, rand.dek));
    }
  }
  const env = await sealCore(
    { ...fields, correlationId: null },
    rand.messageId,
    rand.createdAtMs,
    rand.dek,
    records,
    rand.payloadIv,
    plaintext,
    options.signer,
  );
  const responseDek = await hkdf(rand.dek, rand.messageId, utf8(INFO_RESPONSE), 32);
  return {
    bytes: encodeEnvelope(env),
    envelope: env,
    messageId: uuidToString(rand.messageId),
    responseKey: new ResponseKey(rand.messageId, responseDek),
  };
}

function checkFields(fields: HeaderFields, plaintextLen: number, limits: Limits): void {
  checkTenant(fields.tenant);
  if (fields.kind !== "REQUEST" && fields.kind !== "RECORD") {
    throw invalidInput("Only requests and records are sealed here; the enclave seals answers.");
  }
  if (!(PURPOSES as readonly string[]).includes(fields.purpose)) {
    throw invalidInput(`Unknown purpose of use ${JSON.stringify(fields.purpose)}; one of ${PURPOSES.join(", ")}.`);
  }
  for (const [name, v] of [
    ["subject", fields.subject],
    ["content type", fields.contentType],
  ] as const) {
    if (v === "") throw invalidInput(`The ${name} is empty.`);
    if (utf8(v).length > limits.maxStringBytes) throw oversized(name, limits.maxStringBytes);
  }
  if (!Number.isInteger(fields.schemaId) || fields.schemaId < 0 || fields.schemaId > 2 ** 31 - 1) {
    throw invalidInput("A schema id is an integer from 0 to 2^31 - 1.");
  }
  if (plaintextLen + 29 > limits.maxPayloadBytes) throw oversized("payload", limits.maxPayloadBytes);
}

async function wrapForUser(user: UserKey, tenant: string, dek: Uint8Array, iv: Uint8Array): Promise<Recipient> {
  const params = concat(u32be(user.iterations), user.salt);
  const wrapped = await sealBlob(user.kek, iv, wrapAad(tenant, user.kekId, 0, params), dek);
  return { type: "PASSPHRASE", keyId: user.kekId, keyVersion: 0, params, wrappedKey: wrapped };
}

async function wrapForFleet(fleet: FleetKey, dek: Uint8Array): Promise<Recipient> {
  const wrapped = new Uint8Array(await withSecret(dek, (d) => subtle().encrypt({ name: "RSA-OAEP" }, fleet.key, d)));
  return {
    type: "RSA_OAEP_SHA256",
    keyId: fleet.keyId,
    keyVersion: fleet.keyVersion,
    params: new Uint8Array(0),
    wrappedKey: wrapped,
  };
}

/** @internal Spec 9.1 steps 4 to 6 (and 9.3 step 4). */
export async function sealCore(
  fields: Omit<HeaderFields, "kind"> & { kind: Kind; correlationId: Uint8Array | null },
  messageId: Uint8Array,
  createdAtMs: number,
  dek: Uint8Array,
  recipients: Recipient[],
  iv: Uint8Array,
  plaintext: Uint8Array,
  signer: SigningKey | undefined,
): Promise<Envelope> {
  const header: Header = {
    version: 1,
    messageId,
    tenant: fields.tenant,
    subject: fields.subject,
    kind: fields.kind,
    purpose: fields.purpose,
    contentType: fields.contentType,
    createdAtMs,
    correlationId: fields.correlationId,
    schemaId: fields.schemaId,
    keyCommitment: await hkdf(dek, messageId, utf8(INFO_KEY_COMMITMENT), 32),
  };
  const payloadKey = await hkdf(dek, messageId, utf8(INFO_PAYLOAD_KEY), 32);
  const payload = await sealBlob(await aesKey(payloadKey), iv, payloadAad(header, recipients), plaintext);
  wipe(payloadKey);
  const env: Envelope = { header, recipients, payload, signature: null };
  if (signer) env.signature = await sign(env, signer);
  return env;
}

/** Signs `env` (spec 10.1), returning the signature record. */
export async function sign(env: Envelope, signer: SigningKey): Promise<NonNullable<Envelope["signature"]>> {
  const input = owned(
    signatureInput(env.header, env.recipients, env.payload, signer.keyId, signer.keyVersion, signer.algorithm),
  );
  const params =
    signer.algorithm === "RSA_PSS_SHA256"
      ? { name: "RSA-PSS", saltLength: 32 }
      : { name: "ECDSA", hash: "SHA-256" };
  let value: Uint8Array;
  try {
    value = new Uint8Array(await subtle().sign(params, signer.key, input));
  } catch {
    throw invalidInput(`The signing key ${signer.keyId} v${signer.keyVersion} cannot sign as ${signer.algorithm}.`);
  }
  return { keyId: signer.keyId, keyVersion: signer.keyVersion, algorithm: signer.algorithm, value };
}

/** Who the opener trusts (spec 10.2) and what it accepts. */
export interface OpenPolicy {
  /** Trusted signers; a signature by any other key is `untrusted_signer`. */
  trusted: readonly VerifyingKey[];
  /** Refuse unsigned envelopes (`unsigned`). Default true. */
  requireSignature?: boolean;
  /** Limits; default spec 11.2's. */
  limits?: Limits;
}

/** The keys an opener holds. */
export interface OpenerKeys {
  /** The user's key: opens PASSPHRASE records addressed to it. */
  user?: UserKey;
  /** The response key kept from sealing the request (answers only). */
  responseKey?: ResponseKey;
  /** Fleet private keys (tests and tools; never in a browser). */
  fleet?: readonly FleetPrivateKey[];
}

/** An opened envelope. */
export interface Opened {
  /** The authenticated header. */
  header: Header;
  /** The plaintext. Wipe it with `plaintext.fill(0)` when done, if it matters. */
  plaintext: Uint8Array;
  /** The verified signer, or null for an unsigned envelope the policy accepted. */
  signedBy: { keyId: string; keyVersion: number } | null;
}

/** Decodes and opens Avro envelope bytes (spec 11, in its order). */
export async function open(bytes: Uint8Array, policy: OpenPolicy, keys: OpenerKeys): Promise<Opened> {
  const env = decodeEnvelope(bytes, policy.limits ?? DEFAULT_LIMITS);
  const signedBy = await verify(env, policy);
  const h = env.header;
  const response = h.kind === "RESULT" || h.kind === "ERROR";
  let dek: Uint8Array | null = null;
  try {
    const own = keys.responseKey;
    if (response && own && h.correlationId && constantTimeEqual(own.requestId, h.correlationId) && (!own.forgotten || !keys.user)) {
      // Spec 11, last paragraph: the caller holds the request's key already.
      dek = own.dek();
    } else if (response && own && !keys.user && !keys.fleet) {
      throw new ZenvelopeError("no_matching_recipient", "This answer is for another request than the response key's.");
    } else {
      const unwrapped = await unwrap(env, keys);
      if (response && h.correlationId) {
        dek = await hkdf(unwrapped, h.correlationId, utf8(INFO_RESPONSE), 32);
        wipe(unwrapped);
      } else {
        dek = unwrapped;
      }
    }
    const commitment = await hkdf(dek, h.messageId, utf8(INFO_KEY_COMMITMENT), 32);
    if (!constantTimeEqual(commitment, h.keyCommitment)) throw decryptFailed();
    const payloadKey = await hkdf(dek, h.messageId, utf8(INFO_PAYLOAD_KEY), 32);
    const key = await aesKey(payloadKey);
    wipe(payloadKey);
    const plaintext = await openBlob(key, payloadAad(h, env.recipients), env.payload);
    return { header: h, plaintext, signedBy };
  } finally {
    wipe(dek);
  }
}

/** Checks the signature (spec 11 step 2): always when present, required if the policy says so. */
export async function verify(env: Envelope, policy: OpenPolicy): Promise<{ keyId: string; keyVersion: number } | null> {
  const sig = env.signature;
  if (!sig) {
    if (policy.requireSignature ?? true) {
      throw new ZenvelopeError("unsigned", "The envelope is not signed and the policy requires a signature.");
    }
    return null;
  }
  const key = policy.trusted.find((k) => k.keyId === sig.keyId && k.keyVersion === sig.keyVersion);
  if (!key) {
    throw new ZenvelopeError("untrusted_signer", `The envelope is signed by ${sig.keyId} v${sig.keyVersion}, which is not trusted.`);
  }
  const bad = () => new ZenvelopeError("bad_signature", "The envelope's signature does not verify.");
  if (key.algorithm !== sig.algorithm) throw bad();
  const input = owned(signatureInput(env.header, env.recipients, env.payload, sig.keyId, sig.keyVersion, sig.algorithm));
  let ok = false;
  try {
    if (sig.algorithm === "ECDSA_P256_SHA256") {
      ok = sig.value.length === 64 && (await subtle().verify({ name: "ECDSA", hash: "SHA-256" }, key.key, owned(sig.value), input));
    } else {
      const bytes = (key.key.algorithm as RsaHashedKeyAlgorithm).modulusLength / 8;
      ok = sig.value.length === bytes && (await subtle().verify({ name: "RSA-PSS", saltLength: 32 }, key.key, owned(sig.value), input));
    }
  } catch {
    // A key object whose type does not match its label: not a valid signature either.
    ok = false;
  }
  if (!ok) throw bad();
  return { keyId: sig.keyId, keyVersion: sig.keyVersion };
}

/** Spec 11 steps 3 and 4: the DEK from the first selected recipient that unwraps. */
async function unwrap(env: Envelope, keys: OpenerKeys): Promise<Uint8Array> {
  const tenant = env.header.tenant;
  const attempts: (() => Promise<Uint8Array>)[] = [];
  for (const r of env.recipients) {
    if (r.type === "PASSPHRASE" && keys.user && r.keyId === keys.user.kekId && r.keyVersion === 0) {
      const user = keys.user;
      attempts.push(async () => {
        const dek = await openBlob(user.kek, wrapAad(tenant, r.keyId, r.keyVersion, r.params), r.wrappedKey);
        if (dek.length !== 32) throw decryptFailed();
        return dek;
      });
    } else if (r.type === "RSA_OAEP_SHA256") {
      const fleet = keys.fleet?.find((k) => k.keyId === r.keyId && k.keyVersion === r.keyVersion);
      if (fleet) {
        attempts.push(async () => {
          const modulus = (fleet.key.algorithm as RsaHashedKeyAlgorithm).modulusLength / 8;
          if (r.params.length !== 0 || r.wrappedKey.length !== modulus) throw decryptFailed();
          let dek: Uint8Array;
          try {
            dek = new Uint8Array(await subtle().decrypt({ name: "RSA-OAEP" }, fleet.key, owned(r.wrappedKey)));
          } catch {
            throw decryptFailed();
          }
          if (dek.length !== 32) throw decryptFailed();
          return dek;
        });
      }
    }
  }
  if (attempts.length === 0) {
    throw new ZenvelopeError("no_matching_recipient", "No recipient of the envelope is addressed to a key held here.");
  }
  for (const attempt of attempts) {
    try {
      return await attempt();
    } catch {
      // Try the next record; which one failed is not revealed (spec 11).
    }
  }
  throw decryptFailed();
}
