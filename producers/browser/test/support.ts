// Shared test helpers: repository paths and the golden vectors' keys.
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import { fromHex } from "../src/bytes.js";
import { deriveUserKey, importFleetKey, importFleetPrivateKey, importSigningKey, importVerifyingKey } from "../src/keys.js";
import type { FleetKey, FleetPrivateKey, SigningKey, UserKey, VerifyingKey } from "../src/keys.js";

/** A path in the repository (tests run from dist/test, four levels below the root). */
export function repoPath(rel: string): string {
  const p = fileURLToPath(new URL(`../../../../${rel}`, import.meta.url));
  if (!existsSync(p)) throw new Error(`missing repository file ${rel} (looked at ${p})`);
  return p;
}

/** The golden envelope vectors, parsed. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any;
export function envelopeVectors(): Json {
  return JSON.parse(readFileSync(repoPath("schemas/envelope/vectors/envelope-v1.json"), "utf8"));
}

/** Every key of the vectors, imported. */
export interface VectorKeys {
  user: UserKey;
  fleet: FleetKey;
  fleetPrivate: FleetPrivateKey;
  producer: SigningKey;
  enclaveSigning: SigningKey;
  trusted: VerifyingKey[];
}

let cached: Promise<VectorKeys> | undefined;

/** Imports the vector keys once (the PBKDF2 run takes a moment). */
export function vectorKeys(v: Json): Promise<VectorKeys> {
  cached ??= (async () => {
    const k = v.keys;
    const u = v.user;
    const signingAlgorithm = (name: string) =>
      name === "enclave_signing_public_spki" ? "ECDSA_P256_SHA256" : "RSA_PSS_SHA256";
    return {
      user: await deriveUserKey(u.tenant, u.identity, u.passphrase, { iterations: u.iterations }),
      fleet: await importFleetKey(k.fleet_key_id, k.fleet_key_version, fromHex(k.fleet_public_spki)),
      fleetPrivate: await importFleetPrivateKey(k.fleet_key_id, k.fleet_key_version, fromHex(k.fleet_private_pkcs8)),
      producer: await importSigningKey(k.producer_key_id, k.producer_key_version, "RSA_PSS_SHA256", fromHex(k.producer_private_pkcs8)),
      enclaveSigning: await importSigningKey(
        k.enclave_signing_key_id,
        k.enclave_signing_key_version,
        "ECDSA_P256_SHA256",
        fromHex(k.enclave_signing_private_pkcs8),
      ),
      trusted: await Promise.all(
        k.trusted_signers.map((t: Json) =>
          importVerifyingKey(t.key_id, t.key_version, signingAlgorithm(t.spki), fromHex(k[t.spki])),
        ),
      ),
    };
  })();
  return cached;
}
