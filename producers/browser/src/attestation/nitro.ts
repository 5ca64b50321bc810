/**
 * AWS Nitro Enclaves attestation documents: the COSE_Sign1 / CBOR format and a verifier
 * that makes the Rust SDK's checks (`zenvelope-attestation`: `format.rs`, `verify.rs`)
 * in the same order, with WebCrypto:
 *
 * 1. decode the COSE_Sign1 (untagged or tag 18) and check its protected header is
 *    exactly `{1: -35}` (ES384);
 * 2. decode the payload and check every field's type and bounds;
 * 3. `cabundle[0]` must equal the pinned root byte for byte;
 * 4. every certificate must be ECDSA-SHA384 with a P-384 key;
 * 5. walk root → … → leaf: the parent is a CA (basicConstraints, keyCertSign, path
 *    length), the child's issuer is the parent's subject, the child's signature verifies;
 * 6. every certificate, root included, is valid at the verification time (by default
 *    the document's own timestamp);
 * 7. the COSE signature over `["Signature1", protected, h'', payload]` verifies under
 *    the leaf's key.
 *
 * PCRs are compared separately, with {@link expectPcrs}.
 *
 * @module
 */

import { concat, owned, utf8 } from "../bytes.js";
import { CborError, type CborValue, arrayHead, bytesHead, decodeCborPrefix, textHead } from "./cbor.js";
import { type Certificate, DerError, KEY_USAGE_KEY_CERT_SIGN, ecdsaDerToP1363, oidToString, parseCertificate } from "./der.js";
import { subtle } from "../webcrypto.js";

/** Largest COSE_Sign1 document (and payload) accepted, in bytes. */
export const MAX_DOCUMENT_BYTES = 16 * 1024;
/** Largest module id, in UTF-8 bytes. */
export const MAX_MODULE_ID_BYTES = 256;
/** Largest certificate, in bytes. */
export const MAX_CERT_BYTES = 1024;
/** Most certificates in `cabundle`. */
export const MAX_CABUNDLE = 16;
/** Most PCRs in a document. */
export const MAX_PCRS = 32;
/** Largest `public_key`. */
export const MAX_PUBLIC_KEY_BYTES = 1024;
/** Largest `user_data`. */
export const MAX_USER_DATA_BYTES = 512;
/** Largest `nonce`. */
export const MAX_NONCE_BYTES = 512;
/** Length of an ES384 signature, `r || s`. */
export const ES384_SIGNATURE_BYTES = 96;
/** COSE algorithm identifier of ES384. */
export const COSE_ALG_ES384 = -35;
/** CBOR tag of a tagged COSE_Sign1. */
export const COSE_SIGN1_TAG = 18;

const ECDSA_WITH_SHA384 = "1.2.840.10045.4.3.3";
const ID_EC_PUBLIC_KEY = "1.2.840.10045.2.1";
const SECP384R1 = "1.3.132.0.34";
const PCR_LENGTHS = [32, 48, 64];

/** The Rust verifier's error variants (`zenvelope_attestation::Error`), by name. */
export type AttestationErrorKind =
  | "TooLarge"
  | "MalformedCbor"
  | "TrailingBytes"
  | "NotCoseSign1"
  | "InvalidProtectedHeader"
  | "UnsupportedAlgorithm"
  | "MissingField"
  | "DuplicateField"
  | "UnknownField"
  | "WrongType"
  | "FieldLength"
  | "PcrIndex"
  | "PcrLength"
  | "ZeroTimestamp"
  | "UnsupportedDigest"
  | "CertificateMalformed"
  | "CertificateAlgorithm"
  | "UntrustedRoot"
  | "IssuerMismatch"
  | "CertificateSignature"
  | "CertificateExpired"
  | "NotACa"
  | "SignatureInvalid"
  | "PcrMissing"
  | "PcrMismatch"
  | "NoPinnedMeasurements";

/** Why an attestation document was refused. `message` is a sentence; `kind` names the check. */
export class AttestationError extends Error {
  /** Which check failed, named as the Rust verifier's error variant. */
  readonly kind: AttestationErrorKind;

  constructor(kind: AttestationErrorKind, message: string) {
    super(message);
    this.name = "AttestationError";
    this.kind = kind;
  }
}

/** A decoded COSE_Sign1 whose protected header was checked to be `{1: -35}`. */
export interface CoseSign1 {
  /** The protected header bytes, as received (they are signed). */
  readonly protected: Uint8Array;
  /** The payload bytes, as received (they are signed). */
  readonly payload: Uint8Array;
  /** The ES384 signature, `r || s`. */
  readonly signature: Uint8Array;
}

/** The payload of an attestation document. */
export interface AttestationDocument {
  /** Issuing Nitro hypervisor module id. */
  readonly moduleId: string;
  /** Always `"SHA384"`. */
  readonly digest: string;
  /** Creation time, milliseconds since the Unix epoch. */
  readonly timestampMs: number;
  /** Locked PCRs, index → value (32, 48 or 64 bytes). */
  readonly pcrs: Map<number, Uint8Array>;
  /** The DER signing certificate. */
  readonly certificate: Uint8Array;
  /** The DER issuing chain, root first. */
  readonly cabundle: Uint8Array[];
  /** The public key the enclave asked to have attested, if any. */
  readonly publicKey: Uint8Array | null;
  /** Application data, if any. */
  readonly userData: Uint8Array | null;
  /** The verifier's nonce, if any. */
  readonly nonce: Uint8Array | null;
}

const fail = (kind: AttestationErrorKind, message: string) => new AttestationError(kind, message);
const malformedCbor = (context: string) =>
  fail("MalformedCbor", `The attestation document is not well-formed CBOR (${context}).`);
const notCose = (reason: string) =>
  fail("NotCoseSign1", `The attestation document is not a COSE_Sign1 structure (${reason}).`);
const badHeader = (reason: string) =>
  fail("InvalidProtectedHeader", `The COSE protected header is invalid (${reason}).`);
const wrongType = (field: string) =>
  fail("WrongType", `The \`${field}\` field of the attestation document has the wrong type.`);
const duplicate = (field: string) =>
  fail("DuplicateField", `The attestation document has the \`${field}\` field twice.`);

function checkLen(field: string, len: number, min: number, max: number): void {
  if (len < min || len > max) {
    throw fail("FieldLength", `The \`${field}\` field is ${len} long, outside the allowed ${min}..=${max}.`);
  }
}

function checkSize(what: string, bytes: Uint8Array): void {
  if (bytes.length > MAX_DOCUMENT_BYTES) {
    throw fail("TooLarge", `The ${what} is ${bytes.length} bytes, more than the ${MAX_DOCUMENT_BYTES} bytes allowed.`);
  }
}

/** Decodes one CBOR item; `trailing` names the item for the trailing-bytes error. */
function cbor(bytes: Uint8Array, context: string): { value: CborValue; trailing: boolean } {
  try {
    const { value, end } = decodeCborPrefix(bytes);
    return { value, trailing: end !== bytes.length };
  } catch (e) {
    if (e instanceof CborError) throw malformedCbor(context);
    throw e;
  }
}

function checkProtectedHeader(bytes: Uint8Array): void {
  if (bytes.length === 0) throw badHeader("it is empty, so no algorithm is named");
  const { value, trailing } = cbor(bytes, "protected header");
  if (value.type !== "map") throw badHeader("it is not a map");
  const [entry] = value.entries;
  if (!entry || value.entries.length !== 1) throw badHeader("it must hold exactly the alg parameter");
  const [key, alg] = entry;
  if (key.type !== "uint" || key.value !== 1n) throw badHeader("its key is not the integer 1 (alg)");
  if (alg.type !== "uint" && alg.type !== "nint") throw badHeader("the algorithm is not an integer");
  if (alg.value < -(2n ** 63n) || alg.value >= 2n ** 63n) throw badHeader("the algorithm identifier is out of range");
  if (alg.value !== BigInt(COSE_ALG_ES384)) {
    throw fail("UnsupportedAlgorithm", `The COSE algorithm ${alg.value} is not supported; Nitro documents use ES384 (-35).`);
  }
  if (trailing) throw fail("TrailingBytes", "The protected header has trailing bytes after its CBOR item.");
}

/** Decodes a COSE_Sign1 (tagged 18 or untagged) and checks its protected header is ES384. */
export function decodeCoseSign1(bytes: Uint8Array): CoseSign1 {
  checkSize("attestation document", bytes);
  const decoded = cbor(bytes, "COSE_Sign1");
  let value = decoded.value;
  if (value.type === "tag") {
    if (value.tag !== BigInt(COSE_SIGN1_TAG)) throw notCose("tagged with a tag other than 18");
    value = value.item;
  }
  if (value.type !== "array") throw notCose("not a definite-length array");
  const [prot, unprot, payload, signature] = value.items;
  if (!prot || !unprot || !payload || !signature || value.items.length !== 4) {
    throw notCose("not an array of four items");
  }
  const bstr = "an item that must be a byte string is not one";
  if (prot.type !== "bytes") throw notCose(bstr);
  checkProtectedHeader(prot.value);
  if (unprot.type !== "map") throw notCose("the unprotected header is not a map");
  if (unprot.entries.length !== 0) throw notCose("the unprotected header is not empty");
  if (payload.type !== "bytes" || signature.type !== "bytes") throw notCose(bstr);
  checkLen("signature", signature.value.length, ES384_SIGNATURE_BYTES, ES384_SIGNATURE_BYTES);
  if (decoded.trailing) throw fail("TrailingBytes", "The attestation document has trailing bytes after its CBOR item.");
  return { protected: prot.value, payload: payload.value, signature: signature.value };
}

function boundedBytes(v: CborValue, field: string, min: number, max: number): Uint8Array {
  if (v.type !== "bytes") throw wrongType(field);
  checkLen(field, v.value.length, min, max);
  return v.value;
}

function optionalBytes(v: CborValue, field: string, min: number, max: number): Uint8Array | null {
  if (v.type === "simple" && v.value === null) return null;
  return boundedBytes(v, field, min, max);
}

function decodePcrs(v: CborValue): Map<number, Uint8Array> {
  if (v.type !== "map") throw wrongType("pcrs");
  checkLen("pcrs", v.entries.length, 1, MAX_PCRS);
  const out = new Map<number, Uint8Array>();
  for (const [k, value] of v.entries) {
    if (k.type !== "uint") throw wrongType("pcrs");
    if (k.value >= BigInt(MAX_PCRS)) throw fail("PcrIndex", `The PCR index ${k.value} is outside 0..32.`);
    const index = Number(k.value);
    if (value.type !== "bytes") throw wrongType("pcrs");
    if (!PCR_LENGTHS.includes(value.value.length)) {
      throw fail("PcrLength", `PCR${index} is ${value.value.length} bytes long; PCRs are 32, 48 or 64 bytes.`);
    }
    if (out.has(index)) throw duplicate("pcrs");
    out.set(index, value.value);
  }
  return out;
}

/** Decodes and syntactically validates an attestation document's payload. */
export function decodeAttestationPayload(bytes: Uint8Array): AttestationDocument {
  checkSize("payload", bytes);
  const { value, trailing } = cbor(bytes, "payload");
  if (value.type !== "map") throw wrongType("payload");
  let moduleId: string | undefined;
  let digest: string | undefined;
  let timestampMs: number | undefined;
  let pcrs: Map<number, Uint8Array> | undefined;
  let certificate: Uint8Array | undefined;
  let cabundle: Uint8Array[] | undefined;
  const optional = new Map<string, Uint8Array | null>();
  const unknown = () => fail("UnknownField", "The attestation document has a field the Nitro format does not define.");
  for (const [k, v] of value.entries) {
    if (k.type !== "text") throw unknown();
    const field = k.value;
    switch (field) {
      case "module_id": {
        if (v.type !== "text") throw wrongType(field);
        checkLen(field, utf8(v.value).length, 1, MAX_MODULE_ID_BYTES);
        if (moduleId !== undefined) throw duplicate(field);
        moduleId = v.value;
        break;
      }
      case "digest": {
        if (v.type !== "text") throw wrongType(field);
        if (v.value !== "SHA384") throw fail("UnsupportedDigest", "The digest algorithm is not SHA384.");
        if (digest !== undefined) throw duplicate(field);
        digest = v.value;
        break;
      }
      case "timestamp": {
        if (v.type !== "uint") throw wrongType(field);
        if (v.value === 0n) throw fail("ZeroTimestamp", "The attestation document's timestamp is zero.");
        // Past 2^53 ms (year 287396) no certificate is valid, so refusing here changes no verdict.
        if (v.value > BigInt(Number.MAX_SAFE_INTEGER)) throw wrongType(field);
        if (timestampMs !== undefined) throw duplicate(field);
        timestampMs = Number(v.value);
        break;
      }
      case "pcrs": {
        const map = decodePcrs(v);
        if (pcrs !== undefined) throw duplicate(field);
        pcrs = map;
        break;
      }
      case "certificate": {
        const c = boundedBytes(v, field, 1, MAX_CERT_BYTES);
        if (certificate !== undefined) throw duplicate(field);
        certificate = c;
        break;
      }
      case "cabundle": {
        if (v.type !== "array") throw wrongType(field);
        checkLen(field, v.items.length, 1, MAX_CABUNDLE);
        const b = v.items.map((c) => boundedBytes(c, field, 1, MAX_CERT_BYTES));
        if (cabundle !== undefined) throw duplicate(field);
        cabundle = b;
        break;
      }
      case "public_key":
      case "user_data":
      case "nonce": {
        const [min, max] =
          field === "public_key" ? [1, MAX_PUBLIC_KEY_BYTES] : [0, field === "nonce" ? MAX_NONCE_BYTES : MAX_USER_DATA_BYTES];
        const b = optionalBytes(v, field, min, max);
        if (optional.has(field)) throw duplicate(field);
        optional.set(field, b);
        break;
      }
      default:
        throw unknown();
    }
  }
  if (trailing) throw fail("TrailingBytes", "The payload has trailing bytes after its CBOR item.");
  const missing = (field: string) => fail("MissingField", `The attestation document has no \`${field}\` field.`);
  if (digest === undefined) throw missing("digest");
  if (moduleId === undefined) throw missing("module_id");
  if (timestampMs === undefined) throw missing("timestamp");
  if (pcrs === undefined) throw missing("pcrs");
  if (certificate === undefined) throw missing("certificate");
  if (cabundle === undefined) throw missing("cabundle");
  return {
    moduleId,
    digest,
    timestampMs,
    pcrs,
    certificate,
    cabundle,
    publicKey: optional.get("public_key") ?? null,
    userData: optional.get("user_data") ?? null,
    nonce: optional.get("nonce") ?? null,
  };
}

/** The bytes a COSE_Sign1 signature covers: `["Signature1", protected, h'', payload]`. */
export function sigStructure(protectedHeader: Uint8Array, payload: Uint8Array): Uint8Array {
  const label = utf8("Signature1");
  return concat(
    arrayHead(4),
    textHead(label.length),
    label,
    bytesHead(protectedHeader.length),
    protectedHeader,
    bytesHead(0),
    bytesHead(payload.length),
    payload,
  );
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Parses a chain certificate and checks it is ECDSA-SHA384 with a P-384 key. */
function chainCertificate(der: Uint8Array, position: string): Certificate {
  let cert: Certificate;
  try {
    cert = parseCertificate(der);
  } catch (e) {
    if (e instanceof DerError) {
      throw fail("CertificateMalformed", `The certificate at ${position} is not a valid DER X.509 certificate.`);
    }
    throw e;
  }
  if (
    cert.signatureAlgorithm.oid !== ECDSA_WITH_SHA384 ||
    cert.tbsSignatureAlgorithm.oid !== ECDSA_WITH_SHA384 ||
    cert.signatureAlgorithm.params !== null
  ) {
    throw fail("CertificateAlgorithm", `The certificate at ${position} does not use ECDSA P-384 with SHA-384.`);
  }
  return cert;
}

function isP384(cert: Certificate): boolean {
  const params = cert.spkiAlgorithm.params;
  let curve: string | null = null;
  try {
    if (params && params.tag === 0x06) curve = oidToString(params.value);
  } catch {
    curve = null;
  }
  const point = cert.spkiKey;
  return (
    cert.spkiAlgorithm.oid === ID_EC_PUBLIC_KEY &&
    curve === SECP384R1 &&
    point.unusedBits === 0 &&
    point.bytes.length === 97 &&
    point.bytes[0] === 0x04
  );
}

/**
 * Checks a pinned root the way the Rust `TrustAnchor::from_der` does: 1 to 1024 bytes,
 * an ECDSA-SHA384 certificate with a P-384 key. Throws {@link AttestationError}.
 */
export function checkTrustAnchor(rootDer: Uint8Array): void {
  const position = "cabundle[0]";
  if (rootDer.length === 0 || rootDer.length > MAX_CERT_BYTES) {
    throw fail("CertificateMalformed", `The certificate at ${position} is not a valid DER X.509 certificate.`);
  }
  if (!isP384(chainCertificate(rootDer, position))) {
    throw fail("CertificateAlgorithm", `The certificate at ${position} does not use ECDSA P-384 with SHA-384.`);
  }
}

async function verifyP384(cert: Certificate, signature: Uint8Array, data: Uint8Array): Promise<boolean> {
  try {
    const key = await subtle().importKey("spki", owned(cert.spki), { name: "ECDSA", namedCurve: "P-384" }, false, [
      "verify",
    ]);
    return await subtle().verify({ name: "ECDSA", hash: "SHA-384" }, key, owned(signature), owned(data));
  } catch {
    return false;
  }
}

/**
 * Verifies a Nitro attestation document (COSE_Sign1 bytes) against the pinned root
 * certificate `rootDer`, with certificate validity checked at `atMs` (by default the
 * document's own timestamp, as the key directory does). Returns the authentic payload;
 * whether its PCRs, key or user data are the expected ones is for the caller
 * ({@link expectPcrs}). Throws {@link AttestationError}.
 */
export async function verifyAttestationDocument(
  cose: Uint8Array,
  rootDer: Uint8Array,
  atMs?: number,
): Promise<AttestationDocument> {
  const sign1 = decodeCoseSign1(cose);
  const doc = decodeAttestationPayload(sign1.payload);
  const root = doc.cabundle[0];
  if (!root || !equalBytes(root, rootDer)) {
    throw fail("UntrustedRoot", "The root of the certificate bundle is not the pinned trust anchor.");
  }
  const chain = doc.cabundle.map((der, i) => ({ position: `cabundle[${i}]`, cert: chainCertificate(der, `cabundle[${i}]`) }));
  chain.push({ position: "the signing certificate", cert: chainCertificate(doc.certificate, "the signing certificate") });
  for (const { position, cert } of chain) {
    if (!isP384(cert)) {
      throw fail("CertificateAlgorithm", `The certificate at ${position} does not use ECDSA P-384 with SHA-384.`);
    }
  }
  const lastCa = chain.length - 2;
  for (let i = 1; i < chain.length; i++) {
    const parent = chain[i - 1]!;
    const child = chain[i]!;
    // CA certificates strictly below the parent.
    const below = lastCa - (i - 1);
    const bc = parent.cert.basicConstraints;
    const ku = parent.cert.keyUsage;
    if (!bc || !bc.ca || (bc.pathLen !== null && below > bc.pathLen) || (ku !== null && (ku & KEY_USAGE_KEY_CERT_SIGN) === 0)) {
      throw fail("NotACa", `The certificate at ${parent.position} may not issue the certificate below it.`);
    }
    if (!equalBytes(child.cert.issuer, parent.cert.subject)) {
      throw fail("IssuerMismatch", `The issuer of the certificate at ${child.position} does not match its parent's subject.`);
    }
    const sig = child.cert.signature;
    const p1363 = sig ? ecdsaDerToP1363(sig) : null;
    if (!p1363 || !(await verifyP384(parent.cert, p1363, child.cert.tbs))) {
      throw fail("CertificateSignature", `The signature of the certificate at ${child.position} does not verify.`);
    }
  }
  const at = atMs ?? doc.timestampMs;
  for (const { position, cert } of chain) {
    if (at < cert.notBeforeMs || at > cert.notAfterMs) {
      throw fail("CertificateExpired", `The certificate at ${position} is not valid at the verification time.`);
    }
  }
  const leaf = chain[chain.length - 1]!.cert;
  if (!(await verifyP384(leaf, sign1.signature, sigStructure(sign1.protected, sign1.payload)))) {
    throw fail("SignatureInvalid", "The attestation document's signature does not verify.");
  }
  return doc;
}

/**
 * Checks every pinned PCR (index → value) is in the document with exactly that value.
 * An empty set of pins is refused: it would accept any enclave. Throws
 * {@link AttestationError}.
 */
export function expectPcrs(doc: AttestationDocument, pins: ReadonlyMap<number, Uint8Array>): void {
  if (pins.size === 0) {
    throw fail("NoPinnedMeasurements", "No PCR measurements are pinned, so no enclave can be accepted.");
  }
  for (const index of [...pins.keys()].sort((a, b) => a - b)) {
    const got = doc.pcrs.get(index);
    if (!got) throw fail("PcrMissing", `PCR${index} is pinned but absent from the attestation document.`);
    if (!equalBytes(got, pins.get(index)!)) throw fail("PcrMismatch", `PCR${index} does not match its pinned measurement.`);
  }
}
