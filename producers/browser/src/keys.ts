/**
 * Keys: the user's passphrase-derived key (KEK), subject pseudonyms, the fleet's public
 * key, signing and verifying keys. Secret keys are non-extractable `CryptoKey`s: once
 * derived, their bytes cannot be read back, not even by this package.
 *
 * @module
 */

import { concat, lp, toBase64UrlNoPad, toHex, utf8, wipe, owned } from "./bytes.js";
import { ZenvelopeError, invalidInput } from "./errors.js";
import type { SignatureAlgorithm } from "./envelope.js";
import {
  DEFAULT_PBKDF2_ITERATIONS,
  INFO_KEK_ID,
  LABEL_KEK_SALT,
  LABEL_SUBJECT,
  MAX_PBKDF2_ITERATIONS,
  MIN_PBKDF2_ITERATIONS,
} from "./labels.js";
import { aesKey, hkdf, hmacSha256, sha256, subtle, withSecret } from "./webcrypto.js";

const UNASSIGNED = /\p{Cn}/u;
// Spec 5.1 step 2: only these six characters are trimmed.
const TRIM = /^[\u0020\u0009-\u000d]+|[\u0020\u0009-\u000d]+$/g;

/** Spec 5.1: NFKC, trim the six ASCII white-space characters, lower-case. */
export function normalizeIdentity(identity: string): string {
  return identity.normalize("NFKC").replace(TRIM, "").toLowerCase();
}

function refuseUnassigned(s: string, what: string): void {
  if (UNASSIGNED.test(s)) {
    throw invalidInput(`The ${what} contains a character unassigned in Unicode; use another.`);
  }
}

/** Spec 5.2's deterministic salt for a tenant and identity. */
export async function kekSalt(tenant: string, identity: string): Promise<Uint8Array> {
  return sha256(concat(lp(LABEL_KEK_SALT), lp(tenant), lp(normalizeIdentity(identity))));
}

/**
 * The user's key-encryption key, derived on the device from tenant, identity and
 * passphrase. It holds a non-extractable AES-256-GCM key; no server ever sees it.
 */
export class UserKey {
  /** @internal */
  constructor(
    /** The tenant it was derived for. */
    readonly tenant: string,
    /** `kek-` and 16 hex digits (spec 5.2): names the key in PASSPHRASE recipients. */
    readonly kekId: string,
    /** PBKDF2 iterations. */
    readonly iterations: number,
    /** The 32-byte salt. */
    readonly salt: Uint8Array,
    /** @internal The KEK, non-extractable. */
    readonly kek: CryptoKey,
  ) {}

  /** Never prints key material. */
  toJSON(): object {
    return { tenant: this.tenant, kekId: this.kekId, iterations: this.iterations };
  }
}

/** Options of {@link deriveUserKey}. */
export interface DeriveOptions {
  /** PBKDF2 iterations, 100,000 to 10,000,000; default 600,000. Must match the user's registration. */
  iterations?: number;
}

/**
 * Derives the user's KEK (spec 5.2): PBKDF2-HMAC-SHA256 over the NFKC passphrase, with a
 * salt from the tenant and the normalised identity, so the same credentials give the
 * same key on any device. Takes about a second at 600,000 iterations: call it once per
 * login, not per message.
 */
export async function deriveUserKey(
  tenant: string,
  identity: string,
  passphrase: string,
  options: DeriveOptions = {},
): Promise<UserKey> {
  const iterations = options.iterations ?? DEFAULT_PBKDF2_ITERATIONS;
  if (!Number.isInteger(iterations) || iterations < MIN_PBKDF2_ITERATIONS || iterations > MAX_PBKDF2_ITERATIONS) {
    throw invalidInput(`PBKDF2 iterations must be between ${MIN_PBKDF2_ITERATIONS} and ${MAX_PBKDF2_ITERATIONS}.`);
  }
  checkTenant(tenant);
  refuseUnassigned(identity, "identity");
  refuseUnassigned(passphrase, "passphrase");
  if (normalizeIdentity(identity) === "") throw invalidInput("The identity is empty.");
  if (passphrase === "") throw invalidInput("The passphrase is empty.");
  const salt = await kekSalt(tenant, identity);
  const password = utf8(passphrase.normalize("NFKC"));
  const base = await withSecret(password, (p) => subtle().importKey("raw", p, "PBKDF2", false, ["deriveBits"]));
  wipe(password);
  const raw = new Uint8Array(
    await subtle().deriveBits({ name: "PBKDF2", hash: "SHA-256", salt: owned(salt), iterations }, base, 256),
  );
  try {
    const kekId = "kek-" + toHex(await hkdf(raw, new Uint8Array(0), utf8(INFO_KEK_ID), 8));
    return new UserKey(tenant, kekId, iterations, salt, await aesKey(raw));
  } finally {
    wipe(raw);
  }
}

/** Throws `invalid_input` unless `tenant` is 1 to 64 visible ASCII characters. */
export function checkTenant(tenant: string): void {
  if (!/^[\x21-\x7e]{1,64}$/.test(tenant)) {
    throw invalidInput("A tenant id is 1 to 64 visible ASCII characters.");
  }
}

/**
 * The subject pseudonym (spec 5.3). Needs the tenant's metadata key, which normally
 * only the backend holds: a browser gets its user's pseudonym from the backend.
 */
export async function pseudonym(metadataKey: Uint8Array, tenant: string, identity: string): Promise<string> {
  if (metadataKey.length !== 32) throw invalidInput("A metadata key is 32 bytes.");
  const mac = await hmacSha256(metadataKey, concat(lp(LABEL_SUBJECT), lp(tenant), lp(normalizeIdentity(identity))));
  return "sp1_" + toBase64UrlNoPad(mac);
}

/** An enclave fleet's RSA-OAEP public key, as verified in the key directory. */
export interface FleetKey {
  /** Key id. */
  readonly keyId: string;
  /** Key version. */
  readonly keyVersion: number;
  /** RSA-OAEP-SHA256 public key. */
  readonly key: CryptoKey;
}

/** An RSA-OAEP private fleet key: for tests and tools; a browser never holds one. */
export interface FleetPrivateKey {
  /** Key id. */
  readonly keyId: string;
  /** Key version. */
  readonly keyVersion: number;
  /** RSA-OAEP-SHA256 private key. */
  readonly key: CryptoKey;
}

const RSA_MODULUS_BITS = [2048, 3072, 4096];

function checkModulus(key: CryptoKey): void {
  const bits = (key.algorithm as RsaHashedKeyAlgorithm).modulusLength;
  if (!RSA_MODULUS_BITS.includes(bits)) {
    throw invalidInput("RSA keys must be 2048, 3072 or 4096 bits.");
  }
}

/** Imports a fleet public key from its DER SubjectPublicKeyInfo. */
export async function importFleetKey(keyId: string, keyVersion: number, spki: Uint8Array): Promise<FleetKey> {
  const key = await importOrFail("spki", spki, { name: "RSA-OAEP", hash: "SHA-256" }, ["encrypt"]);
  checkModulus(key);
  return { keyId, keyVersion, key };
}

/** Imports a fleet private key from PKCS#8 DER (tests and tools only). */
export async function importFleetPrivateKey(keyId: string, keyVersion: number, pkcs8: Uint8Array): Promise<FleetPrivateKey> {
  const key = await importOrFail("pkcs8", pkcs8, { name: "RSA-OAEP", hash: "SHA-256" }, ["decrypt"]);
  checkModulus(key);
  return { keyId, keyVersion, key };
}

/** A key that signs envelopes. */
export interface SigningKey {
  /** Key id. */
  readonly keyId: string;
  /** Key version. */
  readonly keyVersion: number;
  /** Algorithm: follows from the key's type. */
  readonly algorithm: SignatureAlgorithm;
  /** Private key. */
  readonly key: CryptoKey;
}

/** A trusted public key that verifies signatures. */
export interface VerifyingKey {
  /** Key id. */
  readonly keyId: string;
  /** Key version. */
  readonly keyVersion: number;
  /** Algorithm the key is used with. */
  readonly algorithm: SignatureAlgorithm;
  /** Public key. */
  readonly key: CryptoKey;
}

function signatureParams(algorithm: SignatureAlgorithm): RsaHashedImportParams | EcKeyImportParams {
  return algorithm === "RSA_PSS_SHA256"
    ? { name: "RSA-PSS", hash: "SHA-256" }
    : { name: "ECDSA", namedCurve: "P-256" };
}

/** Imports a signing key from PKCS#8 DER. */
export async function importSigningKey(
  keyId: string,
  keyVersion: number,
  algorithm: SignatureAlgorithm,
  pkcs8: Uint8Array,
): Promise<SigningKey> {
  const key = await importOrFail("pkcs8", pkcs8, signatureParams(algorithm), ["sign"]);
  if (algorithm === "RSA_PSS_SHA256") checkModulus(key);
  return { keyId, keyVersion, algorithm, key };
}

/** Imports a verifying key from DER SubjectPublicKeyInfo. */
export async function importVerifyingKey(
  keyId: string,
  keyVersion: number,
  algorithm: SignatureAlgorithm,
  spki: Uint8Array,
): Promise<VerifyingKey> {
  const key = await importOrFail("spki", spki, signatureParams(algorithm), ["verify"]);
  if (algorithm === "RSA_PSS_SHA256") checkModulus(key);
  return { keyId, keyVersion, algorithm, key };
}

async function importOrFail(
  format: "spki" | "pkcs8",
  der: Uint8Array,
  params: RsaHashedImportParams | EcKeyImportParams,
  usages: KeyUsage[],
): Promise<CryptoKey> {
  try {
    return await subtle().importKey(format, owned(der), params, false, usages);
  } catch {
    throw new ZenvelopeError("invalid_input", `The key is not a valid ${params.name} ${format === "spki" ? "public" : "private"} key.`);
  }
}
