// The key directory: the binding's known answer, the cross-language vector (every case
// gives the Rust SDK's verdict), and KeyDirectory's choice of keys over time.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { concat, fromHex, toHex } from "../src/bytes.js";
import { AWS_NITRO_ROOT_G1_DER } from "../src/attestation/aws-root.js";
import { ZenvelopeError } from "../src/errors.js";
import {
  CLOCK_SKEW_MS,
  EntryRefused,
  KEY_DIRECTORY_OFFLINE_SCHEMA_ID,
  KeyDirectory,
  type KeyDirectoryEntry,
  type KeyDirectoryPolicy,
  REJECTION_REASONS,
  awsNitroPolicy,
  dangerDevRootPolicy,
  decodeKeyDirectoryEntry,
  decodeKeyDirectoryRecord,
  encodeKeyDirectoryEntry,
  entryBinding,
  frame,
  unframe,
  verifyEntry,
} from "../src/directory.js";

interface VectorCase {
  name: string;
  record: string;
  expect: string;
  root_der_hex?: string;
  pins?: Record<string, string>;
  now_ms?: number;
}
interface Vector {
  root_der_hex: string;
  pins: Record<string, string>;
  now_ms: number;
  records: Record<string, string>;
  cases: VectorCase[];
}

/** dist/test/x.js is four levels below the repository root. */
function vector(): Vector {
  const p = fileURLToPath(new URL("../../../../schemas/vectors/key-directory-v1.json", import.meta.url));
  assert.ok(existsSync(p), `missing ${p}`);
  return JSON.parse(readFileSync(p, "utf8")) as Vector;
}

const pinsOf = (pins: Record<string, string>) => new Map(Object.entries(pins).map(([i, v]) => [Number(i), fromHex(v)]));
const v = vector();
const record = (name: string) => {
  const hex = v.records[name];
  assert.ok(hex !== undefined, name);
  return fromHex(hex);
};
/** The vector's policy, built directly (no DANGER warning, and empty pins allowed). */
const policyOf = (c: Partial<VectorCase> = {}): KeyDirectoryPolicy => ({
  rootDer: fromHex(c.root_der_hex ?? v.root_der_hex),
  pcrs: pinsOf(c.pins ?? v.pins),
  dangerDevRoot: true,
});
const policy = policyOf();
const now = v.now_ms;
const pcr0 = v.pins["0"]!;

async function verdict(bytes: Uint8Array, p: KeyDirectoryPolicy, at: number): Promise<string> {
  let entry: KeyDirectoryEntry;
  try {
    entry = decodeKeyDirectoryRecord(bytes);
  } catch (e) {
    assert.ok(e instanceof ZenvelopeError && e.code === "malformed");
    return "Malformed";
  }
  try {
    const key = await verifyEntry(entry, p, at);
    assert.equal(key.measurement, pcr0);
    assert.deepEqual([key.keyId, key.keyVersion, key.spki], [entry.keyId, entry.keyVersion, entry.publicKeySpkiDer]);
    return "ok";
  } catch (e) {
    assert.ok(e instanceof EntryRefused, String(e));
    assert.deepEqual([e.keyId, e.keyVersion], [entry.keyId, entry.keyVersion]);
    return e.reason;
  }
}

test("the binding matches the documented known answer", async () => {
  const entry: KeyDirectoryEntry = {
    keyId: "fleet",
    keyVersion: 2,
    purpose: "FLEET_ENCRYPTION",
    algorithm: "RSA_OAEP_SHA256",
    publicKeySpkiDer: fromHex("3003020100"),
    fingerprintSha256: "",
    notBeforeMs: 1700000000000,
    notAfterMs: 1800000000000,
    attestationDocument: null,
    enclaveMeasurement: null,
    status: "ACTIVE",
  };
  assert.equal(toHex(await entryBinding(entry)), "e4f87534b90171eda9115e7ffb2c5b1dfc59952557fb9f957efb1f9ff79c44b6");
  // Evidence fields are not bound; every bound field is.
  const base = toHex(await entryBinding(entry));
  assert.equal(toHex(await entryBinding({ ...entry, fingerprintSha256: "ff", enclaveMeasurement: "00", attestationDocument: Uint8Array.of(1) })), base);
  for (const change of [{ keyId: "fleetx" }, { keyVersion: 3 }, { notBeforeMs: 1699999999999 }, { status: "RETIRED" as const }]) {
    assert.notEqual(toHex(await entryBinding({ ...entry, ...change })), base, JSON.stringify(change));
  }
});

test("every case of the cross-language vector gives the Rust SDK's verdict", async () => {
  const seen = new Set<string>();
  for (const c of v.cases) {
    const got = await verdict(record(c.record), policyOf(c), c.now_ms ?? now);
    assert.equal(got, c.expect, c.name);
    seen.add(got);
  }
  // Every refusal is present, and valid keys too.
  assert.deepEqual([...seen].sort(), [...REJECTION_REASONS, "ok"].sort());
});

test("records decode strictly and re-encode to the Rust SDK's bytes", () => {
  for (const name of ["fleet_v1", "signing", "substituted_key", "no_evidence"]) {
    const framed = record(name);
    const { schemaId, datum } = unframe(framed);
    assert.equal(schemaId, KEY_DIRECTORY_OFFLINE_SCHEMA_ID);
    assert.deepEqual(frame(schemaId, encodeKeyDirectoryEntry(decodeKeyDirectoryEntry(datum))), framed);
  }
  const bare = record("fleet_v2_bare");
  assert.deepEqual(encodeKeyDirectoryEntry(decodeKeyDirectoryRecord(bare)), bare);
  const malformed = (b: Uint8Array) =>
    assert.throws(() => decodeKeyDirectoryRecord(b), (e: unknown) => e instanceof ZenvelopeError && e.code === "malformed");
  malformed(concat(record("fleet_v1"), Uint8Array.of(0)));
  malformed(Uint8Array.of(0, 0, 0));
  // The key_id length (first byte of the datum) as a needlessly long varint.
  const datum = unframe(record("fleet_v1")).datum;
  assert.ok(datum[0]! < 0x80);
  malformed(concat(Uint8Array.of(datum[0]! | 0x80, 0), datum.subarray(1)));
});

test("policies: the AWS root for production, a DANGER warning for a dev root, pins required", () => {
  const pins = pinsOf(v.pins);
  const aws = awsNitroPolicy(pins);
  assert.deepEqual([aws.rootDer, aws.dangerDevRoot], [AWS_NITRO_ROOT_G1_DER, false]);
  const warnings: unknown[] = [];
  const warn = console.warn;
  console.warn = (...args: unknown[]) => void warnings.push(args.join(" "));
  try {
    const dev = dangerDevRootPolicy(fromHex(v.root_der_hex), pins);
    assert.equal(dev.dangerDevRoot, true);
    assert.equal(warnings.length, 1);
    assert.match(String(warnings[0]), /^DANGER: /);
    const invalid = (f: () => unknown) =>
      assert.throws(f, (e: unknown) => e instanceof ZenvelopeError && e.code === "invalid_input");
    invalid(() => dangerDevRootPolicy(Uint8Array.of(0x30, 0x00), pins));
    invalid(() => dangerDevRootPolicy(fromHex(v.root_der_hex), new Map()));
    invalid(() => awsNitroPolicy(new Map()));
    invalid(() => awsNitroPolicy(new Map([[32, new Uint8Array(48)]])));
    assert.equal(warnings.length, 1, "no warning for a refused policy");
  } finally {
    console.warn = warn;
  }
});

test("production trust refuses dev-attested entries", async () => {
  const entry = decodeKeyDirectoryRecord(record("fleet_v1"));
  await assert.rejects(verifyEntry(entry, awsNitroPolicy(pinsOf(v.pins)), now), (e: unknown) => {
    assert.ok(e instanceof EntryRefused);
    assert.equal(e.reason, "Attestation");
    assert.match(e.message, /FLEET_ENCRYPTION\/fleet\/1.*not the pinned trust anchor/);
    return true;
  });
});

test("KeyDirectory wraps to the newest verified fleet version and lists result-signing keys", async () => {
  for (const order of [
    ["fleet_v1", "fleet_v2_bare", "signing"],
    ["fleet_v2_bare", "signing", "fleet_v1"],
  ]) {
    const dir = await KeyDirectory.load(order.map(record), policy, now);
    const fleet = dir.fleetKey(now);
    assert.deepEqual([fleet.keyId, fleet.keyVersion, fleet.purpose, fleet.algorithm, fleet.status], ["fleet", 2, "FLEET_ENCRYPTION", "RSA_OAEP_SHA256", "ACTIVE"]);
    const signing = dir.resultSigningKeys(now);
    assert.deepEqual(signing.map((k) => [k.keyId, k.purpose, k.algorithm]), [["fleet-results", "FLEET_SIGNING", "ECDSA_P256_SHA256"]]);
    assert.deepEqual(dir.refused, []);
  }
});

test("a later record for the same key replaces the earlier one", async () => {
  const v2 = decodeKeyDirectoryRecord(record("fleet_v2_bare"));
  const forged = encodeKeyDirectoryEntry({ ...v2, fingerprintSha256: "00".repeat(32) });
  const good = record("fleet_v2_bare");
  const replacedByForgery = await KeyDirectory.load([record("fleet_v1"), good, forged], policy, now);
  assert.equal(replacedByForgery.fleetKey(now).keyVersion, 1);
  assert.deepEqual(
    replacedByForgery.refused.map((r) => [r.purpose, r.keyId, r.keyVersion, r.reason]),
    [["FLEET_ENCRYPTION", "fleet", 2, "FingerprintMismatch"]],
  );
  const repaired = await KeyDirectory.load([record("fleet_v1"), forged, good], policy, now);
  assert.equal(repaired.fleetKey(now).keyVersion, 2);
  assert.deepEqual(repaired.refused, []);
});

test("no trusted fleet key: the error names each refused entry and why", async () => {
  const otherImage = policyOf({ pins: { "0": "42".repeat(48) } });
  const dir = await KeyDirectory.load(
    ["fleet_v1", "fleet_v2_bare", "signing", "truncated"].map(record),
    otherImage,
    now,
  );
  assert.throws(
    () => dir.fleetKey(now),
    (e: unknown) => {
      assert.ok(e instanceof ZenvelopeError);
      assert.equal(e.code, "no_trusted_fleet_key");
      assert.match(e.message, /^No trusted fleet key: nothing was sealed\./);
      assert.match(e.message, /FLEET_ENCRYPTION\/fleet\/1: the enclave measurements do not match the pinned ones: PCR0 does not match/);
      assert.match(e.message, /FLEET_ENCRYPTION\/fleet\/2: the enclave measurements/);
      assert.match(e.message, /record #3: the record does not decode as a key directory entry/);
      assert.doesNotMatch(e.message, /FLEET_SIGNING/);
      return true;
    },
  );
  assert.deepEqual(dir.refused.map((r) => r.reason), ["Measurement", "Measurement", "Measurement", "Malformed"]);
  const empty = await KeyDirectory.load([record("signing")], policy, now);
  assert.throws(() => empty.fleetKey(now), /no fleet key has been published on zenvelope\.keys/);
});

test("validity is re-checked at every use", async () => {
  const dir = await KeyDirectory.load(["fleet_v1", "signing"].map(record), policy, now);
  const key = dir.fleetKey(now);
  assert.equal(dir.fleetKey(key.notAfterMs).keyVersion, 1);
  assert.throws(() => dir.fleetKey(key.notAfterMs + 1), /FLEET_ENCRYPTION\/fleet\/1: the entry has expired/);
  assert.deepEqual(dir.refused.map((r) => r.reason), ["Expired"]);
  assert.deepEqual(dir.resultSigningKeys(key.notAfterMs + 1), []);
  assert.throws(() => dir.fleetKey(key.notBeforeMs - CLOCK_SKEW_MS - 1), /the entry is not valid yet/);
  assert.equal(dir.fleetKey(key.notBeforeMs - CLOCK_SKEW_MS).keyVersion, 1);
  assert.deepEqual(dir.refused.map((r) => [r.purpose, r.reason]), [["FLEET_SIGNING", "Expired"]], "as of its last use");
  assert.equal(dir.resultSigningKeys(now).length, 1);
  assert.deepEqual(dir.refused, []);
  // Loaded before its window: refused then, used once the window opens.
  const early = await KeyDirectory.load([record("fleet_v1")], policy, key.notBeforeMs - 3_600_000);
  assert.deepEqual(early.refused.map((r) => r.reason), ["NotYetValid"]);
  assert.equal(early.fleetKey(now).keyVersion, 1);
});
