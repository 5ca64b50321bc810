/**
 * The key directory (docs/key-directory.md): the enclave fleet's public keys as published
 * on the compacted `zenvelope.keys` topic, each with a Nitro attestation document, and
 * the checks made before a DEK is wrapped to one of them.
 *
 * {@link verifyEntry} makes the Rust SDK's checks (`zenvelope_producer::directory::
 * verify_entry`) in the same order and refuses with the same reason names; the
 * cross-language vector `schemas/vectors/key-directory-v1.json` holds both to it.
 * {@link KeyDirectory} keeps the latest record per key, like topic compaction, and
 * re-checks validity windows at every use.
 *
 * @module
 */

import { AvroReader, AvroWriter } from "./avro.js";
import { concat, constantTimeEqual, i32be, i64be, owned, toHex, u32be, utf8 } from "./bytes.js";
import { ZenvelopeError, invalidInput, malformed } from "./errors.js";
import { AWS_NITRO_ROOT_G1_DER } from "./attestation/aws-root.js";
import { DerReader, TAG, oidToString, readAlgorithm, readBitString } from "./attestation/der.js";
import { type AttestationDocument, AttestationError, checkTrustAnchor, expectPcrs, verifyAttestationDocument } from "./attestation/nitro.js";
import { subtle } from "./webcrypto.js";

/** Key purposes (Avro enum `KeyPurpose`), in schema order. */
export const KEY_PURPOSES = ["UNKNOWN", "FLEET_ENCRYPTION", "FLEET_SIGNING", "PRODUCER_SIGNING"] as const;
/** What a key is for. */
export type KeyPurpose = (typeof KEY_PURPOSES)[number];

/** Key algorithms (Avro enum `KeyAlgorithm`), in schema order. */
export const KEY_ALGORITHMS = ["UNKNOWN", "RSA_OAEP_SHA256", "RSA_PSS_SHA256", "ECDSA_P256_SHA256"] as const;
/** The algorithm a key is used with. */
export type KeyAlgorithm = (typeof KEY_ALGORITHMS)[number];

/** Key statuses (Avro enum `KeyStatus`), in schema order. */
export const KEY_STATUSES = ["UNKNOWN", "ACTIVE", "RETIRED"] as const;
/** A key's lifecycle state. */
export type KeyStatus = (typeof KEY_STATUSES)[number];

/** One record of `zenvelope.keys` (`key-directory-entry.avsc`). */
export interface KeyDirectoryEntry {
  /** Key id, as named in envelope recipients and signatures. */
  keyId: string;
  /** Key version (Avro int). */
  keyVersion: number;
  /** What the key is for. */
  purpose: KeyPurpose;
  /** Algorithm the key is used with. */
  algorithm: KeyAlgorithm;
  /** The public key, DER SubjectPublicKeyInfo. */
  publicKeySpkiDer: Uint8Array;
  /** SHA-256 of the SPKI, lowercase hex. */
  fingerprintSha256: string;
  /** Not valid before, Unix ms. */
  notBeforeMs: number;
  /** Not valid after, Unix ms. */
  notAfterMs: number;
  /** Nitro attestation document (COSE_Sign1), or null. */
  attestationDocument: Uint8Array | null;
  /** PCR0 of the enclave image holding the private key, lowercase hex, or null. */
  enclaveMeasurement: string | null;
  /** Lifecycle state. */
  status: KeyStatus;
}

/** The schema id of `KeyDirectoryEntry` in the offline catalog (a registry may assign another). */
export const KEY_DIRECTORY_OFFLINE_SCHEMA_ID = 6;

/** Encodes an entry as a bare Avro datum. */
export function encodeKeyDirectoryEntry(e: KeyDirectoryEntry): Uint8Array {
  return new AvroWriter()
    .string(e.keyId)
    .int(e.keyVersion)
    .enumSymbol(KEY_PURPOSES, e.purpose)
    .enumSymbol(KEY_ALGORITHMS, e.algorithm)
    .bytes(e.publicKeySpkiDer)
    .string(e.fingerprintSha256)
    .long(e.notBeforeMs)
    .long(e.notAfterMs)
    .optional(e.attestationDocument, (w, v) => w.bytes(v))
    .optional(e.enclaveMeasurement, (w, v) => w.string(v))
    .enumSymbol(KEY_STATUSES, e.status)
    .finish();
}

/**
 * Decodes a bare Avro datum strictly (`malformed` on anything else, trailing bytes
 * included). Timestamps must be safe JavaScript integers.
 */
export function decodeKeyDirectoryEntry(bytes: Uint8Array): KeyDirectoryEntry {
  const r = new AvroReader(bytes);
  const max = bytes.length;
  try {
    const entry: KeyDirectoryEntry = {
      keyId: r.string("key_id", max),
      keyVersion: r.int(),
      purpose: r.enumSymbol(KEY_PURPOSES, "purpose"),
      algorithm: r.enumSymbol(KEY_ALGORITHMS, "algorithm"),
      publicKeySpkiDer: r.bytes("public_key_spki_der", max),
      fingerprintSha256: r.string("fingerprint_sha256", max),
      notBeforeMs: r.long("not_before_ms"),
      notAfterMs: r.long("not_after_ms"),
      attestationDocument: r.optional("attestation_document", (x) => x.bytes("attestation_document", max)),
      enclaveMeasurement: r.optional("enclave_measurement", (x) => x.string("enclave_measurement", max)),
      status: r.enumSymbol(KEY_STATUSES, "status"),
    };
    r.end();
    return entry;
  } catch (e) {
    if (!(e instanceof ZenvelopeError)) throw e;
    const detail = e.message.replace(/^The envelope is malformed: /, "").replace(/\.$/, "");
    throw new ZenvelopeError("malformed", `The record does not decode as a key directory entry: ${detail}.`);
  }
}

/** Confluent framing: `0x00 || u32be(schemaId) || datum`. */
export function frame(schemaId: number, datum: Uint8Array): Uint8Array {
  return concat(Uint8Array.of(0), u32be(schemaId), datum);
}

/** Splits a Confluent-framed record; `malformed` if it is shorter than 5 bytes or its first byte is not 0. */
export function unframe(bytes: Uint8Array): { schemaId: number; datum: Uint8Array } {
  if (bytes.length < 5 || bytes[0] !== 0) throw malformed("the record is not Confluent-framed");
  return {
    schemaId: new DataView(bytes.buffer, bytes.byteOffset, 5).getUint32(1, false),
    datum: bytes.subarray(5),
  };
}

/**
 * Decodes a `zenvelope.keys` record value, framed (first byte 0) or a bare datum. The
 * schema id is not checked (without a registry it cannot be resolved); the strict
 * decoder checks the layout. A bare datum whose key id is empty starts with 0 too and
 * is read as framed.
 */
export function decodeKeyDirectoryRecord(bytes: Uint8Array): KeyDirectoryEntry {
  return decodeKeyDirectoryEntry(bytes[0] === 0 ? unframe(bytes).datum : bytes);
}

/** The label that starts an entry's binding. */
export const ATTESTATION_BINDING_LABEL = "zenvelope/v1/key-directory-entry";

async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().digest("SHA-256", owned(data)));
}

function symbol(s: string): Uint8Array {
  const b = utf8(s);
  return concat(Uint8Array.of(b.length), b);
}

/**
 * The 32 bytes an enclave puts in the document's `user_data` for this entry
 * (docs/key-directory.md, "The binding"): SHA-256 over the label, key id, version,
 * purpose, algorithm, SPKI, validity and status.
 */
export async function entryBinding(entry: KeyDirectoryEntry): Promise<Uint8Array> {
  const id = utf8(entry.keyId);
  return sha256(
    concat(
      utf8(ATTESTATION_BINDING_LABEL),
      u32be(id.length),
      id,
      i32be(entry.keyVersion),
      symbol(entry.purpose),
      symbol(entry.algorithm),
      u32be(entry.publicKeySpkiDer.length),
      entry.publicKeySpkiDer,
      i64be(entry.notBeforeMs),
      i64be(entry.notAfterMs),
      symbol(entry.status),
    ),
  );
}

/** What the SDK trusts in the key directory: the attestation root and the enclave measurements. */
export interface KeyDirectoryPolicy {
  /** The pinned root certificate, DER: `cabundle[0]` must equal it. */
  readonly rootDer: Uint8Array;
  /** Pinned PCRs, index → value; all must match. An empty set refuses every entry. */
  readonly pcrs: ReadonlyMap<number, Uint8Array>;
  /** Whether `rootDer` is a local dev CA (proves nothing about an enclave). */
  readonly dangerDevRoot: boolean;
}

/** Allowance for clocks that disagree, before `not_before_ms`: five minutes, as in Rust. */
export const CLOCK_SKEW_MS = 5 * 60 * 1000;

function copyPins(pcrs: ReadonlyMap<number, Uint8Array>): Map<number, Uint8Array> {
  if (pcrs.size === 0) throw invalidInput("No PCR measurements are pinned, so no enclave could be accepted.");
  const out = new Map<number, Uint8Array>();
  for (const [index, value] of pcrs) {
    if (!Number.isInteger(index) || index < 0 || index > 31) throw invalidInput("PCR indices are integers from 0 to 31.");
    out.set(index, new Uint8Array(value));
  }
  return out;
}

/**
 * Production: documents must chain to the AWS Nitro Enclaves root G1 and match `pcrs`
 * (at least PCR0, the image measurement `nitro-cli build-enclave` prints). An empty set
 * of pins is `invalid_input`.
 */
export function awsNitroPolicy(pcrs: ReadonlyMap<number, Uint8Array>): KeyDirectoryPolicy {
  return { rootDer: AWS_NITRO_ROOT_G1_DER, pcrs: copyPins(pcrs), dangerDevRoot: false };
}

/**
 * DANGER: trusts documents signed by a local dev CA (its root certificate, DER), as
 * `enclave-app` writes with `danger_dev_root_out`. Whoever holds that CA can attest any
 * key; local runs only. Logs a DANGER warning; `invalid_input` if the root is not a
 * P-384 ECDSA-SHA384 certificate or no PCR is pinned.
 */
export function dangerDevRootPolicy(rootDer: Uint8Array, pcrs: ReadonlyMap<number, Uint8Array>): KeyDirectoryPolicy {
  try {
    checkTrustAnchor(rootDer);
  } catch (e) {
    if (e instanceof AttestationError) throw invalidInput(`The dev attestation root is not a usable certificate: ${e.message}`);
    throw e;
  }
  const policy = { rootDer: new Uint8Array(rootDer), pcrs: copyPins(pcrs), dangerDevRoot: true };
  console.warn("DANGER: the key directory is verified against a dev attestation root, not AWS Nitro; local runs only.");
  return policy;
}

/** The Rust SDK's `Rejection` variants: why an entry is not used. */
export const REJECTION_REASONS = [
  "Malformed",
  "Unsupported",
  "FingerprintMismatch",
  "NoEvidence",
  "Attestation",
  "Measurement",
  "KeyNotAttested",
  "BindingMismatch",
  "MeasurementLabel",
  "NotYetValid",
  "Expired",
  "BadKey",
] as const;
/** Why an entry is not used; each names one failed check. */
export type RejectionReason = (typeof REJECTION_REASONS)[number];

/** A key that passed {@link verifyEntry}. */
export interface VerifiedKey {
  /** Key id. */
  readonly keyId: string;
  /** Key version. */
  readonly keyVersion: number;
  /** `FLEET_ENCRYPTION` (wrap DEKs to it) or `FLEET_SIGNING` (verify answers with it). */
  readonly purpose: KeyPurpose;
  /** `RSA_OAEP_SHA256`, `RSA_PSS_SHA256` or `ECDSA_P256_SHA256`. */
  readonly algorithm: KeyAlgorithm;
  /** The attested public key, DER SubjectPublicKeyInfo. */
  readonly spki: Uint8Array;
  /** Not valid before, Unix ms. */
  readonly notBeforeMs: number;
  /** Not valid after, Unix ms. */
  readonly notAfterMs: number;
  /** `ACTIVE`, or `RETIRED` for a signing key. */
  readonly status: KeyStatus;
  /** The attested PCR0, lowercase hex ("" if the document has no PCR0). */
  readonly measurement: string;
}

/** The record key of an entry on the topic: `PURPOSE/key_id/version`. */
export function entryName(e: Pick<KeyDirectoryEntry, "purpose" | "keyId" | "keyVersion">): string {
  return `${e.purpose}/${e.keyId}/${e.keyVersion}`;
}

/** An entry was refused. `reason` is the Rust `Rejection` variant's name; `detail` says why. */
export class EntryRefused extends Error {
  /** Which check failed. */
  readonly reason: RejectionReason;
  /** The entry's key id. */
  readonly keyId: string;
  /** The entry's key version. */
  readonly keyVersion: number;
  /** The reason as the Rust SDK words it. */
  readonly detail: string;

  constructor(entry: KeyDirectoryEntry, reason: RejectionReason, detail: string) {
    super(`The key directory entry ${entryName(entry)} is refused: ${detail.replace(/\.$/, "")}.`);
    this.name = "EntryRefused";
    this.reason = reason;
    this.keyId = entry.keyId;
    this.keyVersion = entry.keyVersion;
    this.detail = detail;
  }
}

const DETAIL: Record<Exclude<RejectionReason, "Attestation" | "Measurement" | "BadKey">, string> = {
  Malformed: "the record does not decode as a key directory entry",
  Unsupported: "the purpose, algorithm or status is not one this SDK uses",
  FingerprintMismatch: "the fingerprint does not match the key",
  NoEvidence: "the entry carries no attestation document",
  KeyNotAttested: "the attestation document is for a different public key",
  BindingMismatch: "the entry's fields are not the ones the enclave attested",
  MeasurementLabel: "the entry's enclave_measurement is not the attested PCR0",
  NotYetValid: "the entry is not valid yet",
  Expired: "the entry has expired",
};

interface Refusal {
  readonly reason: RejectionReason;
  readonly detail: string;
}

/** The outcome of every check but the validity window (which depends on the time). */
type Checked = { readonly refusal: Refusal } | { readonly refusal: null; readonly measurement: string; readonly badKey: string | null };

const refuse = (reason: keyof typeof DETAIL): Checked => ({ refusal: { reason, detail: DETAIL[reason] } });

function usable(e: KeyDirectoryEntry): boolean {
  if (e.purpose === "FLEET_ENCRYPTION") return e.algorithm === "RSA_OAEP_SHA256" && e.status === "ACTIVE";
  if (e.purpose === "FLEET_SIGNING") {
    return (e.algorithm === "ECDSA_P256_SHA256" || e.algorithm === "RSA_PSS_SHA256") && (e.status === "ACTIVE" || e.status === "RETIRED");
  }
  return false;
}

const RSA_ENCRYPTION = "1.2.840.113549.1.1.1";
const ID_EC_PUBLIC_KEY = "1.2.840.10045.2.1";
const PRIME256V1 = "1.2.840.10045.3.1.7";
const RSA_BITS = [2048, 3072, 4096];

/** The key type of a DER SPKI: RSA (NULL parameters), EC P-256, or null. */
function spkiType(spki: Uint8Array): "rsa" | "p256" | null {
  try {
    const outer = new DerReader(spki);
    const s = new DerReader(outer.expect(TAG.SEQUENCE, "the key").value);
    outer.end("the key");
    const alg = readAlgorithm(s, "the key algorithm");
    readBitString(s, "the key");
    s.end("the key");
    const p = alg.params;
    if (alg.oid === RSA_ENCRYPTION && p && p.tag === TAG.NULL && p.value.length === 0) return "rsa";
    if (alg.oid === ID_EC_PUBLIC_KEY && p && p.tag === TAG.OID && oidToString(p.value) === PRIME256V1) return "p256";
  } catch {
    // Not DER: not a key this SDK uses.
  }
  return null;
}

/** Why the key does not parse as its entry says (Rust step 10), or null. */
async function badKey(e: KeyDirectoryEntry): Promise<string | null> {
  const type = spkiType(e.publicKeySpkiDer);
  const encryption = e.purpose === "FLEET_ENCRYPTION";
  if (type === null || (encryption && type !== "rsa")) {
    return encryption ? "not an RSA SubjectPublicKeyInfo" : "not an RSA or P-256 EC SubjectPublicKeyInfo";
  }
  const params: RsaHashedImportParams | EcKeyImportParams =
    type === "p256" ? { name: "ECDSA", namedCurve: "P-256" } : { name: encryption ? "RSA-OAEP" : "RSA-PSS", hash: "SHA-256" };
  let key: CryptoKey;
  try {
    key = await subtle().importKey("spki", owned(e.publicKeySpkiDer), params, false, [encryption ? "encrypt" : "verify"]);
  } catch {
    return "the key does not import";
  }
  if (type === "rsa" && !RSA_BITS.includes((key.algorithm as RsaHashedKeyAlgorithm).modulusLength)) {
    return "RSA keys must be 2048, 3072 or 4096 bits";
  }
  if (!encryption && e.algorithm !== (type === "rsa" ? "RSA_PSS_SHA256" : "ECDSA_P256_SHA256")) {
    return "the key type is not the entry's algorithm";
  }
  return null;
}

/** Every check but the validity window, in the Rust order (steps 1 to 8, and 10). */
async function check(entry: KeyDirectoryEntry, policy: KeyDirectoryPolicy): Promise<Checked> {
  if (!usable(entry)) return refuse("Unsupported");
  const spki = entry.publicKeySpkiDer;
  if (toHex(await sha256(spki)) !== entry.fingerprintSha256) return refuse("FingerprintMismatch");
  if (entry.attestationDocument === null) return refuse("NoEvidence");
  let doc: AttestationDocument;
  try {
    doc = await verifyAttestationDocument(entry.attestationDocument, policy.rootDer);
  } catch (e) {
    if (e instanceof AttestationError) {
      return { refusal: { reason: "Attestation", detail: `the attestation document does not verify: ${e.message}` } };
    }
    throw e;
  }
  try {
    expectPcrs(doc, policy.pcrs);
  } catch (e) {
    if (e instanceof AttestationError) {
      return { refusal: { reason: "Measurement", detail: `the enclave measurements do not match the pinned ones: ${e.message}` } };
    }
    throw e;
  }
  if (doc.publicKey === null || !constantTimeEqual(doc.publicKey, spki)) return refuse("KeyNotAttested");
  if (doc.userData === null || !constantTimeEqual(doc.userData, await entryBinding(entry))) return refuse("BindingMismatch");
  const pcr0 = doc.pcrs.get(0);
  const measurement = pcr0 ? toHex(pcr0) : "";
  if (entry.enclaveMeasurement !== null && (!pcr0 || entry.enclaveMeasurement !== measurement)) return refuse("MeasurementLabel");
  const bad = await badKey(entry);
  return { refusal: null, measurement, badKey: bad === null ? null : `the public key does not parse: ${bad}` };
}

/** The verdict at `nowMs` of an entry whose other checks gave `checked` (step 9, then 10). */
function verdictAt(entry: KeyDirectoryEntry, checked: Checked, nowMs: number): VerifiedKey | Refusal {
  if (checked.refusal) return checked.refusal;
  if (nowMs < entry.notBeforeMs - CLOCK_SKEW_MS) return { reason: "NotYetValid", detail: DETAIL.NotYetValid };
  if (nowMs > entry.notAfterMs) return { reason: "Expired", detail: DETAIL.Expired };
  if (checked.badKey !== null) return { reason: "BadKey", detail: checked.badKey };
  return {
    keyId: entry.keyId,
    keyVersion: entry.keyVersion,
    purpose: entry.purpose,
    algorithm: entry.algorithm,
    spki: entry.publicKeySpkiDer,
    notBeforeMs: entry.notBeforeMs,
    notAfterMs: entry.notAfterMs,
    status: entry.status,
    measurement: checked.measurement,
  };
}

const isRefusal = (v: VerifiedKey | Refusal): v is Refusal => "reason" in v;

/**
 * Checks one entry against `policy` at `nowMs`, in the Rust SDK's order (docs/
 * key-directory.md): supported purpose/algorithm/status, fingerprint, evidence present,
 * document verifies against the pinned root (certificates at the document's own time),
 * pinned PCRs, attested key, binding, measurement label, validity window (5 minutes of
 * skew before `not_before_ms`), key parses. Throws {@link EntryRefused}.
 */
export async function verifyEntry(entry: KeyDirectoryEntry, policy: KeyDirectoryPolicy, nowMs: number): Promise<VerifiedKey> {
  const v = verdictAt(entry, await check(entry, policy), nowMs);
  if (isRefusal(v)) throw new EntryRefused(entry, v.reason, v.detail);
  return v;
}

/** An entry of the directory that is not used, and why. */
export interface RefusedEntry {
  /** The entry's purpose, or null if the record did not decode. */
  readonly purpose: KeyPurpose | null;
  /** The entry's key id, or null if the record did not decode. */
  readonly keyId: string | null;
  /** The entry's key version, or null if the record did not decode. */
  readonly keyVersion: number | null;
  /** Which check failed. */
  readonly reason: RejectionReason;
  /** `NAME: reason`, as in the Rust SDK's messages. */
  readonly message: string;
}

interface Slot {
  readonly name: string;
  readonly entry: KeyDirectoryEntry;
  readonly checked: Checked;
  verdict: VerifiedKey | Refusal;
}

function byteOrder(a: string, b: string): number {
  const [x, y] = [utf8(a), utf8(b)];
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return (x[i] as number) - (y[i] as number);
  return x.length - y.length;
}

/**
 * The key directory as read from `zenvelope.keys`: the latest record per
 * `PURPOSE/key_id/version`, each verified once, with validity re-checked at every use.
 */
export class KeyDirectory {
  private constructor(
    private readonly slots: Slot[],
    private readonly malformed: RefusedEntry[],
  ) {}

  /**
   * Reads record values in topic order (framed or bare): a later record for the same
   * purpose, key id and version replaces an earlier one; an undecodable record is
   * refused as `Malformed` (it names no key, so it replaces nothing). Every entry is
   * verified against `policy`; `nowMs` is the time of the first verdicts.
   */
  static async load(records: Uint8Array[], policy: KeyDirectoryPolicy, nowMs: number = Date.now()): Promise<KeyDirectory> {
    const latest = new Map<string, KeyDirectoryEntry>();
    const bad: RefusedEntry[] = [];
    records.forEach((bytes, i) => {
      try {
        const entry = decodeKeyDirectoryRecord(bytes);
        const name = entryName(entry);
        latest.delete(name);
        latest.set(name, entry);
      } catch (e) {
        if (!(e instanceof ZenvelopeError)) throw e;
        const message = `record #${i}: ${DETAIL.Malformed}`;
        bad.push({ purpose: null, keyId: null, keyVersion: null, reason: "Malformed", message });
      }
    });
    const names = [...latest.keys()].sort(byteOrder);
    const slots = await Promise.all(
      names.map(async (name): Promise<Slot> => {
        const entry = latest.get(name)!;
        const checked = await check(entry, policy);
        return { name, entry, checked, verdict: verdictAt(entry, checked, nowMs) };
      }),
    );
    return new KeyDirectory(slots, bad);
  }

  /** The entries not used as of the last verdicts (load, or the last {@link fleetKey} / {@link resultSigningKeys}). */
  get refused(): RefusedEntry[] {
    const out: RefusedEntry[] = [];
    for (const s of this.slots) {
      if (isRefusal(s.verdict)) out.push(this.refusal(s, s.verdict));
    }
    return [...out, ...this.malformed];
  }

  private refusal(s: Slot, r: Refusal): RefusedEntry {
    const { purpose, keyId, keyVersion } = s.entry;
    return { purpose, keyId, keyVersion, reason: r.reason, message: `${s.name}: ${r.detail}` };
  }

  private verified(purpose: KeyPurpose, nowMs: number): VerifiedKey[] {
    const out: VerifiedKey[] = [];
    for (const s of this.slots) {
      if (s.entry.purpose !== purpose) continue;
      s.verdict = verdictAt(s.entry, s.checked, nowMs);
      if (!isRefusal(s.verdict)) out.push(s.verdict);
    }
    return out;
  }

  /**
   * The key requests are wrapped to at `nowMs`: the newest (highest version) verified,
   * ACTIVE, currently valid `FLEET_ENCRYPTION` key. Throws `no_trusted_fleet_key`, naming
   * each refused fleet entry (and undecodable record) and why.
   */
  fleetKey(nowMs: number = Date.now()): VerifiedKey {
    let best: VerifiedKey | null = null;
    for (const k of this.verified("FLEET_ENCRYPTION", nowMs)) if (!best || k.keyVersion > best.keyVersion) best = k;
    if (best) return best;
    const refused = this.slots
      .filter((s) => s.entry.purpose === "FLEET_ENCRYPTION" && isRefusal(s.verdict))
      .map((s) => this.refusal(s, s.verdict as Refusal).message)
      .concat(this.malformed.map((m) => m.message));
    const why = refused.length ? refused.join("; ") : "no fleet key has been published on zenvelope.keys";
    throw new ZenvelopeError(
      "no_trusted_fleet_key",
      `No trusted fleet key: nothing was sealed. Every fleet key must carry an attestation document that verifies against the pinned root and measurements (${why}).`,
    );
  }

  /**
   * Every verified, valid `FLEET_ENCRYPTION` key at `nowMs` (a backend accepts requests
   * wrapped to any of them: a page may have loaded the directory before a rotation).
   */
  fleetKeys(nowMs: number = Date.now()): VerifiedKey[] {
    return this.verified("FLEET_ENCRYPTION", nowMs);
  }

  /** The verified `FLEET_SIGNING` keys (ACTIVE or RETIRED) valid at `nowMs`: answers are verified with these. */
  resultSigningKeys(nowMs: number = Date.now()): VerifiedKey[] {
    return this.verified("FLEET_SIGNING", nowMs);
  }
}
