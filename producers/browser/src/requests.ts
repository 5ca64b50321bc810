/**
 * What a browser app does: seal an analysis request for the user and the attested
 * enclave fleet, and open the answer. Also what its backend does with it: sign it
 * without opening it (`countersign`).
 *
 * @module
 */

import { decodeAnalysisResult, encodeAnalysisRequest, type AnalysisRequest, type AnalysisResult } from "./analysis.js";
import { fromUtf8, toHex } from "./bytes.js";
import { DEFAULT_LIMITS, decodeEnvelope, encodeEnvelope, uuidToString, type Limits, type Purpose } from "./envelope.js";
import { ZenvelopeError, invalidInput } from "./errors.js";
import { importFleetKey, importVerifyingKey, type FleetKey, type SigningKey, type UserKey, type VerifyingKey } from "./keys.js";
import { MEDIA_TYPE_ANALYSIS_REQUEST, MEDIA_TYPE_ANALYSIS_RESULT, OFFLINE_SCHEMA_IDS } from "./labels.js";
import { open, seal, sign, type ResponseKey, type Sealed } from "./seal.js";
import { fromTransport, toTransport } from "./transport.js";

/** A public key the key directory verified (see `KeyDirectory`). */
export interface TrustedKey {
  /** Key id. */
  readonly keyId: string;
  /** Key version. */
  readonly keyVersion: number;
  /** Algorithm symbol (`RSA_OAEP_SHA256`, `ECDSA_P256_SHA256`, `RSA_PSS_SHA256`). */
  readonly algorithm: string;
  /** DER SubjectPublicKeyInfo. */
  readonly spki: Uint8Array;
}

/** Where the fleet's verified keys come from: a loaded `KeyDirectory`. */
export interface FleetKeySource {
  /** The newest verified fleet encryption key valid now; throws `no_trusted_fleet_key` if none. */
  fleetKey(nowMs?: number): TrustedKey;
  /** Every verified fleet encryption key valid now (used by {@link countersign}). */
  fleetKeys?(nowMs?: number): TrustedKey[];
  /** The verified result-signing keys valid now. */
  resultSigningKeys(nowMs?: number): TrustedKey[];
}

// Imported WebCrypto keys, by what identifies a verified key (id, version, algorithm,
// SPKI): the directory hands out fresh objects, the keys stay the same.
const imported = new Map<string, Promise<FleetKey | VerifyingKey>>();

function cacheKey(k: TrustedKey): string {
  return `${k.keyId}\u0000${k.keyVersion}\u0000${k.algorithm}\u0000${toHex(k.spki)}`;
}

function importCached<T extends FleetKey | VerifyingKey>(k: TrustedKey, make: () => Promise<T>): Promise<T> {
  const name = cacheKey(k);
  let p = imported.get(name);
  if (!p) {
    p = make();
    imported.set(name, p);
    // A key that fails to import is not cached.
    p.catch(() => imported.delete(name));
  }
  return p as Promise<T>;
}

function fleetKeyOf(k: TrustedKey): Promise<FleetKey> {
  if (k.algorithm !== "RSA_OAEP_SHA256") throw invalidInput("The fleet key is not an RSA-OAEP key.");
  return importCached(k, () => importFleetKey(k.keyId, k.keyVersion, k.spki));
}

function verifyingKeyOf(k: TrustedKey): Promise<VerifyingKey> | null {
  const algorithm = k.algorithm;
  if (algorithm !== "ECDSA_P256_SHA256" && algorithm !== "RSA_PSS_SHA256") return null;
  return importCached(k, () => importVerifyingKey(k.keyId, k.keyVersion, algorithm, k.spki));
}

/** Options of {@link sealAnalysisRequest}. */
export interface SealRequestOptions {
  /** The tenant (the app's zenvelope tenant id). */
  tenant: string;
  /** The signed-in user's subject pseudonym, as the backend gave it. */
  subject: string;
  /** The user's key, from `deriveUserKey`: the user can always open the request and its answers. */
  user: UserKey;
  /** The verified key directory: the request is wrapped to its newest fleet key. */
  directory: FleetKeySource;
  /** What to analyse and how. */
  request: AnalysisRequest;
  /** Purpose of use; default `INDIVIDUAL_REQUEST` (the individual's own request). */
  purpose?: Purpose;
  /** Schema id of `AnalysisRequest`; default the offline catalog's (2). Use the registry's id where one runs. */
  schemaId?: number;
}

/** A sealed request, ready to send to the backend. */
export interface SealedRequest extends Sealed {
  /** The envelope in transport form (base64), for a JSON body. */
  transport: string;
}

/**
 * Seals an analysis request for the user and the enclave fleet (spec 9.1). Unsigned:
 * the backend signs it with {@link countersign} (or the Rust SDK's `Client::forward`)
 * after checking the user's session. Keep `responseKey` to open the answers without
 * the passphrase; `forget()` it afterwards.
 */
export async function sealAnalysisRequest(options: SealRequestOptions): Promise<SealedRequest> {
  const fleet = await fleetKeyOf(options.directory.fleetKey());
  const plaintext = encodeAnalysisRequest(options.request);
  try {
    const sealed = await seal(
      {
        tenant: options.tenant,
        subject: options.subject,
        kind: "REQUEST",
        purpose: options.purpose ?? "INDIVIDUAL_REQUEST",
        contentType: MEDIA_TYPE_ANALYSIS_REQUEST,
        schemaId: options.schemaId ?? OFFLINE_SCHEMA_IDS.analysisRequest,
      },
      plaintext,
      [options.user, fleet],
    );
    return { ...sealed, transport: toTransport(sealed.bytes) };
  } finally {
    plaintext.fill(0);
  }
}

/** An opened answer. */
export interface Answer {
  /** The request's message id. */
  correlationId: string;
  /** `RESULT` (the model answered) or `ERROR` (it could not; `text` says why, without the request). */
  kind: "RESULT" | "ERROR";
  /** The model's output, or the error's explanation. */
  text: string;
  /** The full result (provider, model, usage, client reference), for `RESULT`. */
  result: AnalysisResult | null;
  /** The fleet key that signed it. */
  signedBy: { keyId: string; keyVersion: number };
}

/** Options of {@link openAnswer}. */
export interface OpenAnswerOptions {
  /** The verified key directory: answers must be signed by one of its result-signing keys. */
  directory: FleetKeySource;
  /** The user's key (opens any of the user's answers). */
  user?: UserKey;
  /** The response key kept from {@link sealAnalysisRequest} (opens that request's answers). */
  responseKey?: ResponseKey;
  /** If given, the answer must be for this subject. */
  subject?: string;
  /** Schema id of `AnalysisResult`; default the offline catalog's (3). */
  resultSchemaId?: number;
  /** Limits; default spec 11.2's. */
  limits?: Limits;
}

/**
 * Verifies and opens an answer (envelope bytes or transport text): its signature must
 * come from a verified result-signing key, then it opens with the response key or the
 * user's key (spec 11).
 */
export async function openAnswer(envelope: Uint8Array | string, options: OpenAnswerOptions): Promise<Answer> {
  const limits = options.limits ?? DEFAULT_LIMITS;
  const bytes = typeof envelope === "string" ? fromTransport(envelope, limits.maxEnvelopeBytes) : envelope;
  const trusted = (
    await Promise.all(options.directory.resultSigningKeys().map((k) => verifyingKeyOf(k)))
  ).filter((k): k is VerifyingKey => k !== null);
  // What the public header says is checked before anything is decrypted.
  const header = decodeEnvelope(bytes, limits).header;
  if (header.kind !== "RESULT" && header.kind !== "ERROR") {
    throw new ZenvelopeError("invalid_input", "The envelope is not an answer.");
  }
  if (options.subject !== undefined && header.subject !== options.subject) {
    throw new ZenvelopeError("invalid_input", "The answer is for another user.");
  }
  const keys = { ...(options.user ? { user: options.user } : {}), ...(options.responseKey ? { responseKey: options.responseKey } : {}) };
  const opened = await open(bytes, { trusted, requireSignature: true, limits }, keys);
  const h = opened.header;
  const kind = header.kind;
  try {
    const correlationId = uuidToString(h.correlationId as Uint8Array);
    const signedBy = opened.signedBy as { keyId: string; keyVersion: number };
    if (h.contentType === MEDIA_TYPE_ANALYSIS_RESULT) {
      const expected = options.resultSchemaId ?? OFFLINE_SCHEMA_IDS.analysisResult;
      if (h.schemaId !== expected) {
        throw new ZenvelopeError("invalid_input", `The answer uses schema ${h.schemaId}, not the AnalysisResult schema ${expected} this page knows.`);
      }
      const result = decodeAnalysisResult(opened.plaintext);
      return { correlationId, kind, text: result.output, result, signedBy };
    }
    return { correlationId, kind, text: fromUtf8(opened.plaintext, "the answer"), result: null, signedBy };
  } finally {
    opened.plaintext.fill(0);
  }
}

/** What a backend checks before it signs a browser's request. */
export interface CountersignOptions {
  /** The backend's producer signing key (the enclave trusts it). */
  signer: SigningKey;
  /** The backend's tenant. */
  tenant: string;
  /** The signed-in user's subject pseudonym. */
  subject: string;
  /** The verified key directory: the request must have a recipient for one of its fleet keys. */
  directory: FleetKeySource;
  /** Purposes of use this backend vouches its users may claim; default `["INDIVIDUAL_REQUEST"]`. */
  allowedPurposes?: readonly Purpose[];
  /** Limits; default spec 11.2's. */
  limits?: Limits;
}

/**
 * For a backend on Node (a Next.js route, say): signs a request its user's browser
 * sealed, without opening it, after checking that it is a strictly encoded, unsigned
 * `REQUEST` of this tenant for this user, with an allowed purpose of use and a recipient
 * for a verified fleet key (the same checks as the Rust SDK's `Client::forward`). Returns the signed envelope's bytes, to be
 * produced to `zenvelope.requests` (Confluent-framed, keyed by `subject`).
 */
export async function countersign(envelope: Uint8Array | string, options: CountersignOptions): Promise<Uint8Array> {
  const limits = options.limits ?? DEFAULT_LIMITS;
  const bytes = typeof envelope === "string" ? fromTransport(envelope, limits.maxEnvelopeBytes) : envelope;
  const env = decodeEnvelope(bytes, limits);
  const refuse = (why: string) => invalidInput(`The browser's request was not signed: ${why}.`);
  if (env.header.kind !== "REQUEST") throw refuse("it is not a request");
  if (env.header.tenant !== options.tenant) throw refuse("it names another tenant");
  if (env.header.subject !== options.subject) throw refuse("its subject is not the signed-in user's");
  if (env.signature) throw refuse("it is already signed");
  if (!(options.allowedPurposes ?? ["INDIVIDUAL_REQUEST"]).includes(env.header.purpose)) {
    throw refuse("its purpose of use is not one this backend vouches for");
  }
  const fleet = options.directory.fleetKeys?.() ?? [options.directory.fleetKey()];
  const forFleet = env.recipients.some(
    (r) => r.type === "RSA_OAEP_SHA256" && fleet.some((k) => k.keyId === r.keyId && k.keyVersion === r.keyVersion),
  );
  if (!forFleet) throw refuse("it has no recipient for a trusted fleet key");
  env.signature = await sign(env, options.signer);
  return encodeEnvelope(env);
}
