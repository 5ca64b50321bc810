// The committed golden vectors (schemas/envelope/vectors/envelope-v1.json), both
// directions, as docs/envelope-spec.md section 13 describes.
import assert from "node:assert/strict";
import { test } from "node:test";

import { fromHex, toHex } from "../src/bytes.js";
import { payloadAad, signatureInput, wrapAad } from "../src/aad.js";
import { dangerSealResponseWithFixedRandomness, dangerSealWithFixedRandomness } from "../src/danger.js";
import { decodeEnvelope, encodeEnvelope, uuidFromString, type Envelope } from "../src/envelope.js";
import { ZenvelopeError } from "../src/errors.js";
import { kekSalt, normalizeIdentity, pseudonym } from "../src/keys.js";
import { open, type OpenerKeys, type RecipientKey } from "../src/seal.js";
import { hkdf } from "../src/webcrypto.js";
import { envelopeVectors, vectorKeys, type Json, type VectorKeys } from "./support.js";

const v = envelopeVectors();

test("user key derivation matches the vector (normalisation, salt, kek_id)", async () => {
  const keys = await vectorKeys(v);
  assert.equal(normalizeIdentity(v.user.identity), v.user.normalized_identity);
  assert.equal(toHex(await kekSalt(v.user.tenant, v.user.identity)), v.user.kek_salt);
  assert.equal(keys.user.kekId, v.user.kek_id);
  assert.equal(keys.user.iterations, v.user.iterations);
});

test("pseudonym matches the vector", async () => {
  const p = v.pseudonym;
  assert.equal(await pseudonym(fromHex(p.metadata_key), p.tenant, p.identity), p.expected);
});

function recipientKeys(keys: VectorKeys, names: string[]): RecipientKey[] {
  return names.map((n) => (n === "user" ? keys.user : keys.fleet));
}

for (const c of v.cases as Json[]) {
  test(`case ${c.name}: opens with every key it is addressed to`, async () => {
    const keys = await vectorKeys(v);
    const bytes = fromHex(c.expected.envelope);
    const holders: OpenerKeys[] = [{ user: keys.user }];
    if (c.type === "seal" && c.inputs.recipients.includes("fleet")) holders.push({ fleet: [keys.fleetPrivate] });
    for (const held of holders) {
      const opened = await open(bytes, { trusted: keys.trusted, requireSignature: false }, held);
      assert.equal(toHex(opened.plaintext), c.inputs.plaintext);
      const signer = c.type === "response" ? "enclave_signing" : c.inputs.signed_by;
      if (signer) {
        assert.deepEqual(opened.signedBy, { keyId: v.keys[`${signer}_key_id`], keyVersion: v.keys[`${signer}_key_version`] });
      } else {
        assert.equal(opened.signedBy, null);
      }
    }
    // Strict decoding re-encodes to exactly the same bytes.
    assert.equal(toHex(encodeEnvelope(decodeEnvelope(bytes))), c.expected.envelope);
  });
}

/** Spec 13: put the vector's randomised values (RSA-OAEP wraps, signature) into ours. */
function substituteRandomised(ours: Envelope, theirs: Envelope): Envelope {
  return {
    ...ours,
    recipients: ours.recipients.map((r, i) =>
      r.type === "RSA_OAEP_SHA256" ? { ...r, wrappedKey: theirs.recipients[i]!.wrappedKey } : r,
    ),
    signature: ours.signature && theirs.signature ? { ...ours.signature, value: theirs.signature.value } : ours.signature,
  };
}

test("seal cases re-seal to the vector's bytes, intermediates included", async () => {
  const keys = await vectorKeys(v);
  for (const c of (v.cases as Json[]).filter((c) => c.type === "seal")) {
    const i = c.inputs;
    const sealed = await dangerSealWithFixedRandomness(
      { tenant: i.tenant, subject: i.subject, kind: i.kind, purpose: i.purpose, contentType: i.content_type, schemaId: i.schema_id },
      fromHex(i.plaintext),
      recipientKeys(keys, i.recipients),
      i.signed_by ? { signer: keys.producer } : {},
      {
        messageId: uuidFromString(i.message_id),
        createdAtMs: i.created_at_ms,
        dek: fromHex(i.dek),
        wrapIvs: i.wrap_ivs.map(fromHex),
        payloadIv: fromHex(i.payload_iv),
      },
    );
    const env = sealed.envelope;
    const e = c.expected;
    assert.equal(toHex(env.header.keyCommitment), e.key_commitment, c.name);
    assert.equal(toHex(await hkdf(fromHex(i.dek), env.header.messageId, new TextEncoder().encode("zenvelope/v1/payload-key"), 32)), e.payload_key);
    assert.equal(toHex(payloadAad(env.header, env.recipients)), e.aad, c.name);
    const passphrase = env.recipients.filter((r) => r.type === "PASSPHRASE");
    assert.deepEqual(passphrase.map((r) => toHex(wrapAad(i.tenant, r.keyId, r.keyVersion, r.params))), e.wrap_aads);
    assert.deepEqual(passphrase.map((r) => toHex(r.wrappedKey)), e.passphrase_wrapped_keys);
    assert.equal(toHex(env.payload), e.payload, c.name);
    // Our own RSA-OAEP wraps decrypt to the DEK and our signature verifies: open ours.
    const mine = await open(sealed.bytes, { trusted: keys.trusted, requireSignature: !!i.signed_by }, i.recipients.includes("fleet") ? { fleet: [keys.fleetPrivate] } : { user: keys.user });
    assert.equal(toHex(mine.plaintext), i.plaintext);
    const theirs = decodeEnvelope(fromHex(e.envelope));
    const substituted = substituteRandomised(env, theirs);
    assert.equal(toHex(encodeEnvelope(substituted)), e.envelope, c.name);
    const sig = substituted.signature;
    assert.equal(
      sig ? toHex(signatureInput(substituted.header, substituted.recipients, substituted.payload, sig.keyId, sig.keyVersion, sig.algorithm)) : null,
      e.signature_input,
    );
  }
});

test("the response case re-seals to the vector's bytes", async () => {
  const keys = await vectorKeys(v);
  const request = v.cases.find((c: Json) => c.type === "seal");
  const c = v.cases.find((c: Json) => c.type === "response");
  const i = c.inputs;
  const req = decodeEnvelope(fromHex(request.expected.envelope));
  const sealed = await dangerSealResponseWithFixedRandomness(
    req,
    fromHex(request.inputs.dek),
    [v.keys.fleet_key_id],
    { kind: i.kind, contentType: i.content_type, schemaId: i.schema_id },
    fromHex(i.plaintext),
    keys.enclaveSigning,
    { messageId: uuidFromString(i.message_id), createdAtMs: i.created_at_ms, payloadIv: fromHex(i.payload_iv) },
  );
  const e = c.expected;
  assert.equal(
    toHex(await hkdf(fromHex(request.inputs.dek), req.header.messageId, new TextEncoder().encode("zenvelope/v1/response"), 32)),
    e.response_dek,
  );
  assert.equal(toHex(sealed.envelope.header.keyCommitment), e.key_commitment);
  assert.equal(toHex(payloadAad(sealed.envelope.header, sealed.envelope.recipients)), e.aad);
  assert.equal(toHex(sealed.envelope.payload), e.payload);
  const substituted = substituteRandomised(sealed.envelope, decodeEnvelope(fromHex(e.envelope)));
  assert.equal(toHex(encodeEnvelope(substituted)), e.envelope);
  // Our ECDSA signature verifies.
  const opened = await open(sealed.bytes, { trusted: keys.trusted }, { user: keys.user });
  assert.equal(toHex(opened.plaintext), i.plaintext);
});

for (const n of v.negative as Json[]) {
  test(`negative ${n.name}: ${n.expected_error}`, async () => {
    const keys = await vectorKeys(v);
    const held: OpenerKeys = n.open_with === "user" ? { user: keys.user } : { fleet: [keys.fleetPrivate] };
    await assert.rejects(
      open(fromHex(n.envelope), { trusted: keys.trusted, requireSignature: n.require_signature }, held),
      (e: unknown) => {
        assert.ok(e instanceof ZenvelopeError, `not a ZenvelopeError: ${String(e)}`);
        assert.equal(e.code, n.expected_error);
        return true;
      },
    );
  });
}
