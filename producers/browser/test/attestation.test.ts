// The Nitro attestation verifier: a real AWS document, tampered copies of it, and the
// strictness of the CBOR and DER readers underneath.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { concat, fromBase64, fromHex, toHex, utf8 } from "../src/bytes.js";
import { AWS_NITRO_ROOT_G1_DER, AWS_NITRO_ROOT_G1_SHA256_HEX } from "../src/attestation/aws-root.js";
import { type CborValue, CborError, decodeCbor } from "../src/attestation/cbor.js";
import { DerError, KEY_USAGE_KEY_CERT_SIGN, ecdsaDerToP1363, parseCertificate } from "../src/attestation/der.js";
import {
  AttestationError,
  type AttestationErrorKind,
  decodeAttestationPayload,
  decodeCoseSign1,
  expectPcrs,
  verifyAttestationDocument,
} from "../src/attestation/nitro.js";

/** A file of the repository: dist/test/x.js is four levels below the repository root. */
function repoFile(rel: string): Uint8Array {
  const p = fileURLToPath(new URL(`../../../../${rel}`, import.meta.url));
  assert.ok(existsSync(p), `missing repository file ${rel} (looked at ${p})`);
  return new Uint8Array(readFileSync(p));
}

const realDocument = () =>
  fromBase64(new TextDecoder().decode(repoFile("enclave-worker/attestation/tests/data/nitro_debug_enclave.b64")).trim());

const sha256Hex = async (b: Uint8Array) => toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(b))));

async function refusedWith(p: Promise<unknown>, kind: AttestationErrorKind): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof AttestationError, String(e));
    assert.equal(e.kind, kind, e.message);
    return true;
  });
}

function throwsKind(f: () => unknown, kind: AttestationErrorKind): void {
  assert.throws(f, (e: unknown) => e instanceof AttestationError && e.kind === kind);
}

/** A shortest-form CBOR encoder for the tests (the NSM writes shortest forms). */
function encodeCbor(v: CborValue): Uint8Array {
  const head = (major: number, n: bigint): Uint8Array => {
    if (n < 24n) return Uint8Array.of((major << 5) | Number(n));
    const size = n < 0x100n ? 1 : n < 0x10000n ? 2 : n < 0x100000000n ? 4 : 8;
    const out = new Uint8Array(1 + size);
    out[0] = (major << 5) | (24 + Math.log2(size));
    for (let i = 0; i < size; i++) out[size - i] = Number((n >> BigInt(8 * i)) & 0xffn);
    return out;
  };
  switch (v.type) {
    case "uint":
      return head(0, v.value);
    case "nint":
      return head(1, -1n - v.value);
    case "bytes":
      return concat(head(2, BigInt(v.value.length)), v.value);
    case "text": {
      const b = utf8(v.value);
      return concat(head(3, BigInt(b.length)), b);
    }
    case "array":
      return concat(head(4, BigInt(v.items.length)), ...v.items.map(encodeCbor));
    case "map":
      return concat(head(5, BigInt(v.entries.length)), ...v.entries.flatMap(([k, x]) => [encodeCbor(k), encodeCbor(x)]));
    case "tag":
      return concat(head(6, v.tag), encodeCbor(v.item));
    case "simple":
      return Uint8Array.of(v.value === null ? 0xf6 : v.value ? 0xf5 : 0xf4);
  }
}

const text = (value: string): CborValue => ({ type: "text", value });
const bytes = (value: Uint8Array): CborValue => ({ type: "bytes", value });
const uint = (value: number | bigint): CborValue => ({ type: "uint", value: BigInt(value) });

type Entries = [CborValue, CborValue][];

/** The real payload's map entries, to rewrite. */
function realEntries(): { cose: CborValue[]; entries: Entries } {
  const top = decodeCbor(realDocument());
  assert.equal(top.type, "array");
  if (top.type !== "array") throw new Error("unreachable");
  const payload = top.items[2];
  assert.ok(payload && payload.type === "bytes");
  const map = decodeCbor(payload.value);
  assert.ok(map.type === "map");
  return { cose: top.items, entries: map.entries };
}

/** A document with the real header and signature around a rewritten payload. */
function withPayload(rewrite: (entries: Entries) => Entries): Uint8Array {
  const { cose, entries } = realEntries();
  const payload = encodeCbor({ type: "map", entries: rewrite(entries) });
  return encodeCbor({ type: "array", items: [cose[0]!, cose[1]!, bytes(payload), cose[3]!] });
}

const field = (entries: Entries, name: string) => entries.find(([k]) => k.type === "text" && k.value === name);
const replace = (entries: Entries, name: string, value: CborValue): Entries =>
  entries.map(([k, v]) => [k, k.type === "text" && k.value === name ? value : v]);
function cabundle(entries: Entries): Uint8Array[] {
  const b = field(entries, "cabundle")?.[1];
  assert.ok(b && b.type === "array");
  return b.items.map((c) => (c.type === "bytes" ? c.value : new Uint8Array()));
}
const bundleValue = (certs: Uint8Array[]): CborValue => ({ type: "array", items: certs.map(bytes) });

test("the embedded AWS root is the G1 root AWS publishes, byte for byte as the Rust SDK embeds it", async () => {
  assert.equal(await sha256Hex(AWS_NITRO_ROOT_G1_DER), AWS_NITRO_ROOT_G1_SHA256_HEX);
  assert.deepEqual(AWS_NITRO_ROOT_G1_DER, repoFile("enclave-worker/attestation/src/aws_nitro_root_g1.der"));
  const root = parseCertificate(AWS_NITRO_ROOT_G1_DER);
  assert.deepEqual(root.subject, root.issuer);
  assert.deepEqual(root.basicConstraints, { ca: true, pathLen: null });
  assert.equal(new Date(root.notBeforeMs).toISOString(), "2019-10-28T13:28:05.000Z");
  assert.equal(new Date(root.notAfterMs).toISOString(), "2049-10-28T14:28:05.000Z");
});

test("a real Nitro document verifies against the AWS root at its own time", async () => {
  const doc = realDocument();
  assert.deepEqual([...doc.subarray(0, 5)], [0x84, 0x44, 0xa1, 0x01, 0x38], "untagged, {1: -35}");
  const payload = decodeAttestationPayload(decodeCoseSign1(doc).payload);
  const v = await verifyAttestationDocument(doc, AWS_NITRO_ROOT_G1_DER);
  assert.equal(v.timestampMs, payload.timestampMs);
  assert.ok(v.moduleId.startsWith("i-"), v.moduleId);
  assert.equal(v.digest, "SHA384");
  assert.equal(v.pcrs.size, 16);
  assert.ok([...v.pcrs.values()].every((p) => p.length === 48));
  // It came from an enclave in debug mode: PCR0 is all zeros.
  assert.ok(v.pcrs.get(0)?.every((b) => b === 0));
  assert.deepEqual(v.publicKey, utf8("dummy"));
  assert.equal(v.cabundle.length, 4);
  assert.deepEqual(v.cabundle[0], AWS_NITRO_ROOT_G1_DER);
  // The real NSM payload is what a shortest-form encoder writes.
  assert.deepEqual(encodeCbor(decodeCbor(decodeCoseSign1(doc).payload)), decodeCoseSign1(doc).payload);
  // Pinned PCRs: its own match, another image's do not, no pins accept nothing.
  expectPcrs(v, new Map([[0, new Uint8Array(48)]]));
  throwsKind(() => expectPcrs(v, new Map([[0, new Uint8Array(48).fill(1)]])), "PcrMismatch");
  throwsKind(() => expectPcrs(v, new Map([[20, new Uint8Array(48)]])), "PcrMissing");
  throwsKind(() => expectPcrs(v, new Map()), "NoPinnedMeasurements");
});

test("tampered, truncated or foreign-rooted documents are refused", async () => {
  const doc = realDocument();
  const root = AWS_NITRO_ROOT_G1_DER;
  // Today its short-lived leaf has long expired.
  await refusedWith(verifyAttestationDocument(doc, root, Date.now()), "CertificateExpired");
  // One byte of its signature flipped.
  const sig = doc.slice();
  sig[sig.length - 1]! ^= 1;
  await refusedWith(verifyAttestationDocument(sig, root), "SignatureInvalid");
  // One byte of its payload flipped (the module id's first letter).
  const payload = doc.slice();
  const id = utf8(decodeAttestationPayload(decodeCoseSign1(doc).payload).moduleId);
  const at = Buffer.from(doc).indexOf(Buffer.from(id));
  assert.ok(at > 0);
  payload[at]! ^= 1;
  await refusedWith(verifyAttestationDocument(payload, root), "SignatureInvalid");
  // Truncated, or with a byte after it.
  await refusedWith(verifyAttestationDocument(doc.subarray(0, doc.length - 1), root), "MalformedCbor");
  await refusedWith(verifyAttestationDocument(doc.subarray(0, 100), root), "MalformedCbor");
  await refusedWith(verifyAttestationDocument(concat(doc, Uint8Array.of(0)), root), "TrailingBytes");
  // Another root pinned: a dev CA's, from the key-directory vector.
  const vector = JSON.parse(new TextDecoder().decode(repoFile("schemas/vectors/key-directory-v1.json")));
  await refusedWith(verifyAttestationDocument(doc, fromHex(vector.root_der_hex)), "UntrustedRoot");
  // The root's bytes must match exactly, not only its name.
  const other = root.slice();
  other[other.length - 1]! ^= 1;
  await refusedWith(verifyAttestationDocument(doc, other), "UntrustedRoot");
});

test("COSE_Sign1 framing: tag 18 accepted, anything else refused", async () => {
  const doc = realDocument();
  await verifyAttestationDocument(concat(Uint8Array.of(0xd2), doc), AWS_NITRO_ROOT_G1_DER);
  await refusedWith(verifyAttestationDocument(concat(Uint8Array.of(0xd3), doc), AWS_NITRO_ROOT_G1_DER), "NotCoseSign1");
  const otherAlg = doc.slice();
  otherAlg[5] = 0x23; // {1: -36}: ES512
  await refusedWith(verifyAttestationDocument(otherAlg, AWS_NITRO_ROOT_G1_DER), "UnsupportedAlgorithm");
  const { cose } = realEntries();
  const rebuild = (items: CborValue[]) => encodeCbor({ type: "array", items });
  const [p, u, pl, s] = cose as [CborValue, CborValue, CborValue, CborValue];
  throwsKind(() => decodeCoseSign1(rebuild([p, u, pl])), "NotCoseSign1");
  throwsKind(() => decodeCoseSign1(rebuild([p, { type: "map", entries: [[uint(4), bytes(new Uint8Array(1))]] }, pl, s])), "NotCoseSign1");
  throwsKind(() => decodeCoseSign1(rebuild([bytes(new Uint8Array()), u, pl, s])), "InvalidProtectedHeader");
  throwsKind(() => decodeCoseSign1(rebuild([bytes(Uint8Array.of(0xa1, 0x01, 0x38, 0x22, 0x00)), u, pl, s])), "TrailingBytes");
  throwsKind(() => decodeCoseSign1(rebuild([bytes(Uint8Array.of(0xa1, 0x02, 0x38, 0x22)), u, pl, s])), "InvalidProtectedHeader");
  throwsKind(() => decodeCoseSign1(rebuild([p, u, pl, bytes(new Uint8Array(95))])), "FieldLength");
  throwsKind(() => decodeCoseSign1(new Uint8Array(16 * 1024 + 1)), "TooLarge");
});

test("the payload is decoded strictly, field by field", () => {
  const decode = (rewrite: (e: Entries) => Entries) => () => decodeAttestationPayload(decodeCoseSign1(withPayload(rewrite)).payload);
  decode((e) => e)();
  throwsKind(decode((e) => [...e, [text("module_id"), text("x")]]), "DuplicateField");
  throwsKind(decode((e) => [...e, [text("extra"), text("x")]]), "UnknownField");
  throwsKind(decode((e) => [...e, [uint(1), text("x")]]), "UnknownField");
  throwsKind(decode((e) => e.filter(([k]) => !(k.type === "text" && k.value === "digest"))), "MissingField");
  throwsKind(decode((e) => e.filter(([k]) => !(k.type === "text" && k.value === "cabundle"))), "MissingField");
  throwsKind(decode((e) => replace(e, "digest", text("SHA256"))), "UnsupportedDigest");
  throwsKind(decode((e) => replace(e, "timestamp", uint(0))), "ZeroTimestamp");
  throwsKind(decode((e) => replace(e, "timestamp", text("now"))), "WrongType");
  throwsKind(decode((e) => replace(e, "module_id", text(""))), "FieldLength");
  throwsKind(decode((e) => replace(e, "user_data", bytes(new Uint8Array(513)))), "FieldLength");
  throwsKind(decode((e) => replace(e, "public_key", bytes(new Uint8Array()))), "FieldLength");
  throwsKind(decode((e) => replace(e, "nonce", uint(1))), "WrongType");
  throwsKind(decode((e) => replace(e, "cabundle", bundleValue([]))), "FieldLength");
  throwsKind(decode((e) => replace(e, "certificate", bytes(new Uint8Array(1025)))), "FieldLength");
  const pcrs = (entries: Entries): CborValue => ({ type: "map", entries });
  throwsKind(decode((e) => replace(e, "pcrs", pcrs([[uint(32), bytes(new Uint8Array(48))]]))), "PcrIndex");
  throwsKind(decode((e) => replace(e, "pcrs", pcrs([[uint(0), bytes(new Uint8Array(47))]]))), "PcrLength");
  throwsKind(decode((e) => replace(e, "pcrs", pcrs([]))), "FieldLength");
  throwsKind(
    decode((e) => replace(e, "pcrs", pcrs([[uint(1), bytes(new Uint8Array(32))], [uint(1), bytes(new Uint8Array(32))]]))),
    "DuplicateField",
  );
  const ok = decodeAttestationPayload(
    decodeCoseSign1(withPayload((e) => replace(replace(e, "user_data", bytes(Uint8Array.of(7))), "nonce", { type: "simple", value: null }))).payload,
  );
  assert.deepEqual(ok.userData, Uint8Array.of(7));
  assert.equal(ok.nonce, null);
});

test("the certificate chain is walked root to leaf with CA, name and signature checks", async () => {
  const root = AWS_NITRO_ROOT_G1_DER;
  const { entries } = realEntries();
  const bundle = cabundle(entries);
  const leaf = field(entries, "certificate")![1];
  assert.ok(leaf.type === "bytes");
  // A CA signature byte flipped (the last byte of cabundle[2] is in its signature).
  const badSig = bundle.map((c) => c.slice());
  badSig[2]![badSig[2]!.length - 1]! ^= 1;
  await refusedWith(verifyAttestationDocument(withPayload((e) => replace(e, "cabundle", bundleValue(badSig))), root), "CertificateSignature");
  // Intermediates out of order: the issuer is not the parent.
  const swapped = [bundle[0]!, bundle[2]!, bundle[1]!, bundle[3]!];
  await refusedWith(verifyAttestationDocument(withPayload((e) => replace(e, "cabundle", bundleValue(swapped))), root), "IssuerMismatch");
  // The leaf itself as a CA below cabundle[3]: one CA too many for the path lengths, and
  // the first CA whose pathLenConstraint (2) is exceeded is cabundle[1].
  const longer = [...bundle, leaf.value];
  await assert.rejects(verifyAttestationDocument(withPayload((e) => replace(e, "cabundle", bundleValue(longer))), root), (e: unknown) => {
    assert.ok(e instanceof AttestationError && e.kind === "NotACa");
    assert.match(e.message, /cabundle\[1\] may not issue/);
    return true;
  });
  // A certificate that is not DER.
  const garbage = [...bundle.slice(0, 3), Uint8Array.of(0x30, 0x03, 0x02, 0x01, 0x00)];
  await refusedWith(verifyAttestationDocument(withPayload((e) => replace(e, "cabundle", bundleValue(garbage))), root), "CertificateMalformed");
  // The intact chain, with a payload the signature does not cover: only the COSE signature fails.
  await refusedWith(verifyAttestationDocument(withPayload((e) => replace(e, "nonce", bytes(Uint8Array.of(1)))), root), "SignatureInvalid");
  // Outside a certificate's validity.
  const ts = decodeAttestationPayload(decodeCoseSign1(realDocument()).payload).timestampMs;
  await verifyAttestationDocument(realDocument(), root, ts + 60_000);
  await refusedWith(verifyAttestationDocument(realDocument(), root, ts - 86_400_000), "CertificateExpired");
});

test("CBOR: definite lengths, bounded, no trailing bytes, no floats", () => {
  const bad = (hex: string) => assert.throws(() => decodeCbor(fromHex(hex)), CborError, hex);
  bad("9f01ff"); // indefinite array
  bad("5f4101ff"); // indefinite byte string
  bad("bf0101ff"); // indefinite map
  bad("0000"); // trailing byte
  bad("5affffffff00"); // length past the end
  bad("9affffffff"); // count past the end
  bad("62c328"); // invalid UTF-8
  bad("f93c00"); // half float
  bad("f7"); // undefined
  bad("1c"); // reserved additional information
  bad("ff"); // a lone break
  bad("");
  bad("81".repeat(17) + "00"); // nested too deeply
  assert.deepEqual(decodeCbor(fromHex("81".repeat(16) + "00")).type, "array");
  assert.deepEqual(decodeCbor(fromHex("3822")), { type: "nint", value: -35n });
  assert.deepEqual(decodeCbor(fromHex("1b001fffffffffffff")), { type: "uint", value: 2n ** 53n - 1n });
  // Not-shortest arguments carry the same value, as minicbor reads them.
  assert.deepEqual(decodeCbor(fromHex("1805")), { type: "uint", value: 5n });
  assert.deepEqual(decodeCbor(fromHex("f6")), { type: "simple", value: null });
  const map = decodeCbor(fromHex("a2616101616102"));
  assert.ok(map.type === "map" && map.entries.length === 2, "duplicate keys are kept for the caller to refuse");
  const tagged = decodeCbor(fromHex("d28100"));
  assert.ok(tagged.type === "tag" && tagged.tag === 18n);
});

test("DER: strict lengths and integers; ECDSA signatures convert to P1363", () => {
  const root = AWS_NITRO_ROOT_G1_DER;
  assert.throws(() => parseCertificate(concat(root, Uint8Array.of(0))), DerError);
  assert.throws(() => parseCertificate(root.subarray(0, root.length - 1)), DerError);
  // The outer length (0x82 0x02 0x10) re-encoded with a needless leading zero byte.
  assert.equal(root[1], 0x82);
  const long = concat(Uint8Array.of(0x30, 0x83, 0x00), root.subarray(2));
  assert.throws(() => parseCertificate(long), DerError);
  // Extensions of the real chain: CAs may sign certificates, the leaf may not.
  const { entries } = realEntries();
  const leafValue = field(entries, "certificate")![1];
  assert.ok(leafValue.type === "bytes");
  const leaf = parseCertificate(leafValue.value);
  assert.deepEqual(leaf.basicConstraints, { ca: false, pathLen: null });
  assert.equal((leaf.keyUsage ?? 0) & KEY_USAGE_KEY_CERT_SIGN, 0);
  assert.deepEqual(
    cabundle(entries).map((c) => {
      const cert = parseCertificate(c);
      return [cert.basicConstraints?.pathLen, ((cert.keyUsage ?? 0) & KEY_USAGE_KEY_CERT_SIGN) !== 0, cert.version];
    }),
    [[null, true, 2], [2, true, 2], [1, true, 2], [0, true, 2]],
  );
  const p = ecdsaDerToP1363(fromHex("3008020300ff01020101"), 48);
  assert.ok(p);
  assert.equal(p.length, 96);
  assert.equal(toHex(p.subarray(45, 48)), "00ff01");
  assert.equal(p[95], 1);
  assert.equal(ecdsaDerToP1363(fromHex("30090204000000ff020101")), null, "non-minimal INTEGER");
  assert.equal(ecdsaDerToP1363(fromHex("3006020180020101")), null, "negative INTEGER");
  assert.equal(ecdsaDerToP1363(fromHex("3006020101020101" + "00")), null, "trailing byte");
});
