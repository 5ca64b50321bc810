// The SDK's own behaviour: round trips with fresh randomness, answers by user key and by
// response key, refusals with clear codes, strict codecs, and no secret in any output.
import assert from "node:assert/strict";
import { test } from "node:test";

import { AvroReader, AvroWriter } from "../src/avro.js";
import { decodeAnalysisResult, encodeAnalysisRequest } from "../src/analysis.js";
import { fromBase64, fromHex, toBase64, toHex } from "../src/bytes.js";
import { dangerSealResponseWithFixedRandomness } from "../src/danger.js";
import { decodeEnvelope, encodeEnvelope, uuidFromString } from "../src/envelope.js";
import { ZenvelopeError } from "../src/errors.js";
import { deriveUserKey, normalizeIdentity } from "../src/keys.js";
import { MEDIA_TYPE_ANALYSIS_RESULT } from "../src/labels.js";
import { countersign, openAnswer, sealAnalysisRequest, type FleetKeySource, type TrustedKey } from "../src/requests.js";
import { open, seal, newUuidV7 } from "../src/seal.js";
import { fromTransport, toTransport } from "../src/transport.js";
import { envelopeVectors, vectorKeys } from "./support.js";

const CANARY = "CANARY-ts-9d41-intrusive-thoughts";
const v = envelopeVectors();
const TENANT: string = v.user.tenant;
const SUBJECT: string = v.pseudonym.expected;

function code(expected: string) {
  return (e: unknown) => {
    assert.ok(e instanceof ZenvelopeError, `not a ZenvelopeError: ${String(e)}`);
    assert.equal(e.code, expected, e.message);
    assert.ok(!e.message.includes(CANARY), "an error message carries the plaintext");
    return true;
  };
}

/** The vector keys as a key source, as a verified key directory would give them. */
function directory(): FleetKeySource {
  const k = v.keys;
  const fleet: TrustedKey = { keyId: k.fleet_key_id, keyVersion: k.fleet_key_version, algorithm: "RSA_OAEP_SHA256", spki: fromHex(k.fleet_public_spki) };
  const signing: TrustedKey = {
    keyId: k.enclave_signing_key_id,
    keyVersion: k.enclave_signing_key_version,
    algorithm: "ECDSA_P256_SHA256",
    spki: fromHex(k.enclave_signing_public_spki),
  };
  return { fleetKey: () => fleet, resultSigningKeys: () => [signing] };
}

/** Seals a request with the SDK, and the enclave's answer to it. */
async function requestAndAnswer(output: string) {
  const keys = await vectorKeys(v);
  const sealed = await sealAnalysisRequest({
    tenant: TENANT,
    subject: SUBJECT,
    user: keys.user,
    directory: directory(),
    request: { instruction: "Summarise.", input: { text: CANARY }, clientReference: "entry-1" },
  });
  // The enclave's side: open with the fleet key, answer (spec 9.3).
  const req = decodeEnvelope(sealed.bytes);
  const inEnclave = await open(sealed.bytes, { trusted: keys.trusted, requireSignature: false }, { fleet: [keys.fleetPrivate] });
  assert.equal(inEnclave.header.contentType, "application/vnd.zenvelope.analysis-request+avro");
  const w = new AvroWriter().string(output).string("offline").string("offline-analyser").optional(null, () => {});
  const result = w.long(1).long(12).optional("entry-1", (w, s) => w.string(s)).finish();
  const answerDek = await unwrapForTest(sealed.bytes);
  const answer = await dangerSealResponseWithFixedRandomness(
    req,
    answerDek,
    [v.keys.fleet_key_id],
    { kind: "RESULT", contentType: MEDIA_TYPE_ANALYSIS_RESULT, schemaId: 3 },
    result,
    keys.enclaveSigning,
    { messageId: newUuidV7(), createdAtMs: Date.now(), payloadIv: crypto.getRandomValues(new Uint8Array(12)) },
  );
  return { keys, sealed, answer };
}

/** The request DEK, as the enclave unwraps it (RSA-OAEP with the vector's fleet key). */
async function unwrapForTest(bytes: Uint8Array): Promise<Uint8Array> {
  const keys = await vectorKeys(v);
  const fleet = decodeEnvelope(bytes).recipients.find((r) => r.type === "RSA_OAEP_SHA256")!;
  return new Uint8Array(await crypto.subtle.decrypt({ name: "RSA-OAEP" }, keys.fleetPrivate.key, new Uint8Array(fleet.wrappedKey)));
}

test("a request opens for the enclave and the user, and its answer opens by user key or response key", async () => {
  const { keys, sealed, answer } = await requestAndAnswer("You slept badly; be gentle with yourself.");
  assert.equal(sealed.transport, toBase64(sealed.bytes));
  const byUser = await open(sealed.bytes, { trusted: [], requireSignature: false }, { user: keys.user });
  assert.deepEqual(byUser.plaintext, encodeAnalysisRequest({ instruction: "Summarise.", input: { text: CANARY }, clientReference: "entry-1" }));
  for (const held of [{ user: keys.user }, { responseKey: sealed.responseKey }]) {
    const a = await openAnswer(toTransport(answer.bytes), { directory: directory(), subject: SUBJECT, ...held });
    assert.equal(a.kind, "RESULT");
    assert.equal(a.text, "You slept badly; be gentle with yourself.");
    assert.equal(a.correlationId, sealed.messageId);
    assert.equal(a.result?.clientReference, "entry-1");
    assert.deepEqual(a.signedBy, { keyId: "fleet-signing", keyVersion: 1 });
  }
  // Once forgotten, the response key opens nothing and says so; the user's key still does.
  sealed.responseKey.forget();
  await assert.rejects(openAnswer(answer.bytes, { directory: directory(), responseKey: sealed.responseKey }), code("invalid_input"));
  const again = await openAnswer(answer.bytes, { directory: directory(), responseKey: sealed.responseKey, user: keys.user });
  assert.equal(again.text, "You slept badly; be gentle with yourself.");
});

test("answers are refused unless signed by a verified result key, for this user, for this request", async () => {
  const { keys, sealed, answer } = await requestAndAnswer("ok");
  const noResultKeys: FleetKeySource = { fleetKey: directory().fleetKey, resultSigningKeys: () => [] };
  await assert.rejects(openAnswer(answer.bytes, { directory: noResultKeys, user: keys.user }), code("untrusted_signer"));
  await assert.rejects(openAnswer(answer.bytes, { directory: directory(), user: keys.user, subject: "sp1_someone-else" }), code("invalid_input"));
  // A response key of another request does not open it; with the user's key as well,
  // the user's recipient record opens it (spec 11 step 3).
  const other = await sealAnalysisRequest({ tenant: TENANT, subject: SUBJECT, user: keys.user, directory: directory(), request: { instruction: "x", input: { text: "y" } } });
  await assert.rejects(openAnswer(answer.bytes, { directory: directory(), responseKey: other.responseKey }), code("no_matching_recipient"));
  assert.equal((await openAnswer(answer.bytes, { directory: directory(), responseKey: other.responseKey, user: keys.user })).kind, "RESULT");
  // Another user's key is not addressed.
  const mallory = await deriveUserKey(TENANT, "mallory@example.org", "another passphrase", { iterations: 100_000 });
  await assert.rejects(openAnswer(answer.bytes, { directory: directory(), user: mallory }), code("no_matching_recipient"));
  // The request itself is not an answer.
  const signedRequest = await countersign(sealed.bytes, { signer: keys.enclaveSigning, tenant: TENANT, subject: SUBJECT, directory: directory() });
  await assert.rejects(openAnswer(signedRequest, { directory: directory(), user: keys.user }), code("invalid_input"));
  // A flipped payload byte: the signature fails first.
  const tampered = decodeEnvelope(new Uint8Array(answer.bytes));
  tampered.payload[10]! ^= 1;
  await assert.rejects(openAnswer(encodeEnvelope(tampered), { directory: directory(), user: keys.user }), code("bad_signature"));
});

test("a wrong passphrase addresses no record, and a damaged wrap fails opaquely", async () => {
  const keys = await vectorKeys(v);
  const sealed = await seal({ tenant: TENANT, subject: SUBJECT, kind: "RECORD", purpose: "INDIVIDUAL_REQUEST", contentType: "text/plain", schemaId: 0 }, new TextEncoder().encode(CANARY), [keys.user]);
  // Same kek_id selection is impossible with another passphrase, so the KEK differs: no matching recipient.
  const wrong = await deriveUserKey(TENANT, v.user.identity, "not the passphrase", { iterations: 100_000 });
  await assert.rejects(open(sealed.bytes, { trusted: [], requireSignature: false }, { user: wrong }), code("no_matching_recipient"));
  // A damaged wrapped key with the right KEK: decrypt_failed, nothing more.
  const env = decodeEnvelope(new Uint8Array(sealed.bytes));
  env.recipients[0]!.wrappedKey[20]! ^= 1;
  await assert.rejects(open(encodeEnvelope(env), { trusted: [], requireSignature: false }, { user: keys.user }), code("decrypt_failed"));
});

test("countersign signs only an unsigned request of this tenant for this user, purpose and fleet", async () => {
  const keys = await vectorKeys(v);
  const { sealed } = await requestAndAnswer("ok");
  const opts = { signer: keys.producer, tenant: TENANT, subject: SUBJECT, directory: directory() };
  const signed = await countersign(sealed.transport, opts);
  const opened = await open(signed, { trusted: keys.trusted }, { fleet: [keys.fleetPrivate] });
  assert.deepEqual(opened.signedBy, { keyId: "journal-backend", keyVersion: 1 });
  await assert.rejects(countersign(signed, opts), code("invalid_input"));
  await assert.rejects(countersign(sealed.bytes, { ...opts, subject: "sp1_other" }), code("invalid_input"));
  await assert.rejects(countersign(sealed.bytes, { ...opts, tenant: "clinic-b" }), code("invalid_input"));
  await assert.rejects(countersign(sealed.bytes.subarray(0, 40), opts), code("malformed"));
  await assert.rejects(countersign("not base64!", opts), code("invalid_input"));
  // A record for the user alone is not a request.
  const record = await seal({ tenant: TENANT, subject: SUBJECT, kind: "RECORD", purpose: "INDIVIDUAL_REQUEST", contentType: "text/plain", schemaId: 0 }, new Uint8Array([1]), [keys.user]);
  await assert.rejects(countersign(record.bytes, opts), (e: unknown) => e instanceof ZenvelopeError && /not a request/.test(e.message));
  // A purpose the backend does not vouch for.
  const research = await seal({ tenant: TENANT, subject: SUBJECT, kind: "REQUEST", purpose: "RESEARCH", contentType: "text/plain", schemaId: 0 }, new Uint8Array([1]), [keys.user, keys.fleet]);
  await assert.rejects(countersign(research.bytes, opts), (e: unknown) => e instanceof ZenvelopeError && /purpose/.test(e.message));
  assert.ok(await countersign(research.bytes, { ...opts, allowedPurposes: ["RESEARCH"] }));
  // Sealed for the user only: the enclave could not open it.
  const userOnly = await seal({ tenant: TENANT, subject: SUBJECT, kind: "REQUEST", purpose: "INDIVIDUAL_REQUEST", contentType: "text/plain", schemaId: 0 }, new Uint8Array([1]), [keys.user]);
  await assert.rejects(countersign(userOnly.bytes, opts), (e: unknown) => e instanceof ZenvelopeError && /fleet key/.test(e.message));
  // An unknown purpose symbol is refused when sealing, with a clear error.
  await assert.rejects(
    seal({ tenant: TENANT, subject: SUBJECT, kind: "REQUEST", purpose: "treatment" as never, contentType: "text/plain", schemaId: 0 }, new Uint8Array([1]), [keys.user]),
    code("invalid_input"),
  );
});

test("credentials are normalised and refused when empty or unassigned", async () => {
  assert.equal(normalizeIdentity("\u00a0 Ａlice@Example.COM\t"), "alice@example.com");
  // Only the six ASCII white-space characters are trimmed (spec 5.1), not U+2028.
  assert.equal(normalizeIdentity("a@b\u2028"), "a@b\u2028");
  const a = await deriveUserKey("clinic-a", " Alice@Example.com", "pass", { iterations: 100_000 });
  const b = await deriveUserKey("clinic-a", "alice@example.com ", "pass", { iterations: 100_000 });
  assert.equal(a.kekId, b.kekId);
  await assert.rejects(deriveUserKey("clinic-a", "   ", "pass", { iterations: 100_000 }), code("invalid_input"));
  await assert.rejects(deriveUserKey("clinic-a", "a@b", "", { iterations: 100_000 }), code("invalid_input"));
  await assert.rejects(deriveUserKey("clinic-a", "a@b\u0378", "pass", { iterations: 100_000 }), code("invalid_input"));
  await assert.rejects(deriveUserKey("clinic a", "a@b", "pass", { iterations: 100_000 }), code("invalid_input"));
  await assert.rejects(deriveUserKey("clinic-a", "a@b", "pass", { iterations: 99_999 }), code("invalid_input"));
  // The key never serialises: no raw key material exists outside WebCrypto.
  const json = JSON.stringify(a);
  assert.deepEqual(JSON.parse(json), { tenant: "clinic-a", kekId: a.kekId, iterations: 100_000 });
  assert.equal(a.kek.extractable, false);
});

test("the Avro reader is strict about varints, lengths and arrays", () => {
  const read = (hex: string) => new AvroReader(fromHex(hex)).longBig();
  assert.equal(read("00"), 0n);
  assert.equal(read("7f"), -64n);
  assert.equal(read("8001"), 64n);
  assert.equal(read("feffffffffffffffff01"), 9223372036854775807n);
  assert.equal(read("ffffffffffffffffff01"), -9223372036854775808n);
  assert.throws(() => read("8000"), code("malformed")); // not the shortest form
  assert.throws(() => read("ffffffffffffffffff02"), code("malformed")); // overflows 64 bits
  assert.throws(() => read("8080808080808080808001"), code("malformed")); // 11 bytes
  assert.throws(() => read("80"), code("malformed")); // truncated
  assert.throws(() => new AvroReader(fromHex("0a6869")).bytes("x", 100), code("malformed")); // past the end
  assert.throws(() => new AvroReader(fromHex("0a6869")).bytes("x", 4), code("oversized")); // over the limit first
  assert.throws(() => new AvroReader(fromHex("03")).bytes("x", 4), code("malformed")); // negative
  for (const n of [0, 1, -1, 63, -64, 64, 2 ** 31 - 1, -(2 ** 31), Number.MAX_SAFE_INTEGER]) {
    assert.equal(new AvroReader(new AvroWriter().long(n).finish()).long(), n);
  }
});

test("base64 transport is strict and bounded", () => {
  const bytes = new Uint8Array([0, 1, 2, 250, 251, 252, 253]);
  assert.equal(toTransport(bytes), Buffer.from(bytes).toString("base64"));
  assert.deepEqual(fromTransport(toTransport(bytes)), bytes);
  for (const bad of ["AAECAvr7/P0", "AAECAvr7/P0=\n", "AA==AA==", "AAECAvr7/P1=", "AAE*"]) {
    assert.throws(() => fromBase64(bad), code("invalid_input"), bad);
  }
  assert.throws(() => fromTransport("A".repeat(100), 10), code("oversized"));
});

test("an AnalysisResult whose finish reason is newer than this SDK reads as UNKNOWN", () => {
  const datum = new AvroWriter().string("out").string("p").string("m").long(0).long(9).long(5).long(0).finish();
  const r = decodeAnalysisResult(datum);
  assert.equal(r.finishReason, "UNKNOWN");
  assert.equal(r.latencyMs, 5);
  assert.throws(() => decodeAnalysisResult(new Uint8Array([...datum, 0])), code("malformed"));
});

test("message ids are UUIDv7 carrying the creation time", () => {
  const now = 1763800000000;
  const id = newUuidV7(now);
  assert.equal((id[6]! >> 4), 7);
  assert.equal(id[8]! & 0xc0, 0x80);
  assert.equal(Number(BigInt("0x" + toHex(id.subarray(0, 6)))), now);
  assert.equal(uuidFromString("019aaaac-2600-7717-9717-171717171717").length, 16);
});
