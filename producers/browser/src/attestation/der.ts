/**
 * A minimal DER reader for X.509 certificates (RFC 5280) as Nitro attestation documents
 * carry them: enough to chain ECDSA P-384 certificates with WebCrypto.
 *
 * Strict DER: single-byte tags, definite and shortest lengths, minimal INTEGERs,
 * BOOLEANs of 0x00 or 0xFF, well-formed OIDs and times, no trailing bytes, no DEFAULT
 * value encoded explicitly in the signed part, RDN sets in DER order without
 * duplicates. Signatures are checked over the `tbsCertificate` bytes exactly as
 * received. Extension contents are decoded only when asked for
 * ({@link Certificate.basicConstraints}, {@link Certificate.keyUsage}), as the Rust
 * verifier (x509-cert) does.
 *
 * @module
 */

/** Why bytes are not the DER this reader accepts. */
export class DerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DerError";
  }
}

/** One DER element: its tag byte, its content and its whole encoding. */
export interface Tlv {
  /** The identifier octet (class, constructed bit and tag number). */
  readonly tag: number;
  /** The content octets. */
  readonly value: Uint8Array;
  /** The whole element: identifier, length and content. */
  readonly raw: Uint8Array;
}

/** DER tags used here. */
export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** Reads consecutive DER elements from a buffer. */
export class DerReader {
  private at = 0;

  constructor(private readonly buf: Uint8Array) {}

  /** Whether every byte has been read. */
  done(): boolean {
    return this.at === this.buf.length;
  }

  /** The next element's tag, or null at the end. */
  peekTag(): number | null {
    return this.done() ? null : (this.buf[this.at] as number);
  }

  /** The next element, whatever its tag. */
  next(what: string): Tlv {
    const start = this.at;
    const byte = () => {
      if (this.at >= this.buf.length) throw new DerError(`${what} runs past the end of its input`);
      return this.buf[this.at++] as number;
    };
    const tag = byte();
    if ((tag & 0x1f) === 0x1f) throw new DerError(`${what} has a multi-byte tag`);
    let len = byte();
    if (len === 0x80) throw new DerError(`${what} has an indefinite length`);
    if (len > 0x80) {
      const n = len & 0x7f;
      if (n > 4) throw new DerError(`${what} is too long`);
      len = 0;
      for (let i = 0; i < n; i++) {
        const b = byte();
        if (i === 0 && b === 0) throw new DerError(`${what} has a length that is not in its shortest form`);
        len = len * 256 + b;
      }
      if (len < 0x80) throw new DerError(`${what} has a length that is not in its shortest form`);
    }
    if (len > this.buf.length - this.at) throw new DerError(`${what} runs past the end of its input`);
    const value = this.buf.subarray(this.at, this.at + len);
    this.at += len;
    return { tag, value, raw: this.buf.subarray(start, this.at) };
  }

  /** The next element, which must have tag `tag`. */
  expect(tag: number, what: string): Tlv {
    if (this.peekTag() !== tag) throw new DerError(`${what} is missing or has the wrong type`);
    return this.next(what);
  }

  /** The next element if it has tag `tag`, else null (nothing is consumed). */
  optional(tag: number, what: string): Tlv | null {
    return this.peekTag() === tag ? this.next(what) : null;
  }

  /** Fails unless every byte has been read. */
  end(what: string): void {
    if (!this.done()) throw new DerError(`${what} has trailing bytes`);
  }
}

/** Reads the sole element of `bytes` (nothing may follow it). */
export function readOne(bytes: Uint8Array, tag: number, what: string): Tlv {
  const r = new DerReader(bytes);
  const t = r.expect(tag, what);
  r.end(what);
  return t;
}

/** A reader over the content of a constructed element. */
export function inside(t: Tlv): DerReader {
  return new DerReader(t.value);
}

/** The dotted form of an OID's content octets (checked to be minimal and complete). */
export function oidToString(content: Uint8Array): string {
  if (content.length === 0 || content.length > 39) throw new DerError("an OID has a bad length");
  const arcs: number[] = [];
  let v = 0;
  let fresh = true;
  for (const b of content) {
    if (fresh && b === 0x80) throw new DerError("an OID is not in its shortest form");
    if (v > 0x1ffffff) throw new DerError("an OID arc is too large");
    v = v * 128 + (b & 0x7f);
    fresh = (b & 0x80) === 0;
    if (fresh) {
      arcs.push(v);
      v = 0;
    }
  }
  if (!fresh) throw new DerError("an OID is truncated");
  const first = arcs[0] as number;
  const head = first < 80 ? [Math.floor(first / 40), first % 40] : [2, first - 80];
  return [...head, ...arcs.slice(1)].join(".");
}

/** Reads an OID element as dotted text. */
export function readOid(r: DerReader, what: string): string {
  return oidToString(r.expect(TAG.OID, what).value);
}

/** The content of a minimal DER INTEGER (two's complement, big-endian). */
export function integerBytes(t: Tlv, what: string): Uint8Array {
  const v = t.value;
  const [a, b] = [v[0], v[1]];
  if (a === undefined) throw new DerError(`${what} is an empty INTEGER`);
  if (b !== undefined && ((a === 0 && b < 0x80) || (a === 0xff && b >= 0x80))) {
    throw new DerError(`${what} is not a minimal INTEGER`);
  }
  return v;
}

/** A small non-negative INTEGER (at most 2^31 - 1). */
export function readSmallUint(r: DerReader, what: string): number {
  const v = integerBytes(r.expect(TAG.INTEGER, what), what);
  if (((v[0] as number) & 0x80) !== 0 || v.length > 5) throw new DerError(`${what} is out of range`);
  let n = 0;
  for (const b of v) n = n * 256 + b;
  if (n > 0x7fffffff) throw new DerError(`${what} is out of range`);
  return n;
}

/** A DER BOOLEAN. */
export function readBoolean(r: DerReader, what: string): boolean {
  const v = r.expect(TAG.BOOLEAN, what).value;
  if (v.length !== 1 || (v[0] !== 0 && v[0] !== 0xff)) throw new DerError(`${what} is not a DER BOOLEAN`);
  return v[0] === 0xff;
}

/** A BIT STRING's unused-bit count and bytes. */
export interface BitString {
  /** Unused bits in the last byte (0 to 7). */
  readonly unusedBits: number;
  /** The bytes, last one including the unused bits. */
  readonly bytes: Uint8Array;
}

/** Reads a BIT STRING element (or one IMPLICITly tagged `tag`). */
export function readBitString(r: DerReader, what: string, tag: number = TAG.BIT_STRING): BitString {
  const v = r.expect(tag, what).value;
  const unused = v[0];
  if (unused === undefined || unused > 7 || (unused !== 0 && v.length === 1)) {
    throw new DerError(`${what} is not a valid BIT STRING`);
  }
  return { unusedBits: unused, bytes: v.subarray(1) };
}

function digits(s: string, from: number, n: number): number {
  const part = s.slice(from, from + n);
  if (!/^[0-9]+$/.test(part) || part.length !== n) throw new DerError("a time is not well formed");
  return Number(part);
}

/** A UTCTime or GeneralizedTime in its DER form (`…Z`, whole seconds) as Unix ms. */
export function readTime(r: DerReader, what: string): number {
  const t = r.next(what);
  let s = "";
  for (const b of t.value) s += String.fromCharCode(b);
  let year: number;
  let rest: number;
  if (t.tag === TAG.UTC_TIME && s.length === 13) {
    const yy = digits(s, 0, 2);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
    rest = 2;
  } else if (t.tag === TAG.GENERALIZED_TIME && s.length === 15) {
    year = digits(s, 0, 4);
    rest = 4;
  } else {
    throw new DerError(`${what} is not a DER UTCTime or GeneralizedTime`);
  }
  if (s[s.length - 1] !== "Z") throw new DerError(`${what} is not in UTC`);
  const [mo, d, h, mi, se] = [0, 2, 4, 6, 8].map((o) => digits(s, rest + o, 2)) as [number, number, number, number, number];
  const days = [31, year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
  if (year < 1970 || mo < 1 || mo > 12 || d < 1 || d > (days[mo - 1] as number) || h > 23 || mi > 59 || se > 59) {
    throw new DerError(`${what} is not a valid date`);
  }
  return Date.UTC(year, mo - 1, d, h, mi, se);
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return (a[i] as number) - (b[i] as number);
  return a.length - b.length;
}

/** Checks a Name (RDNSequence) and returns its DER bytes, the form used to chain. */
function readName(r: DerReader, what: string): Uint8Array {
  const name = r.expect(TAG.SEQUENCE, what);
  const rdns = inside(name);
  while (!rdns.done()) {
    const set = inside(rdns.expect(TAG.SET, what));
    let previous: Uint8Array | null = null;
    while (!set.done()) {
      const atv = set.expect(TAG.SEQUENCE, what);
      const inner = inside(atv);
      readOid(inner, what);
      inner.next(what);
      inner.end(what);
      if (previous && compareBytes(previous, atv.raw) >= 0) {
        throw new DerError(`${what} has a set that is not in DER order`);
      }
      previous = atv.raw;
    }
  }
  return name.raw;
}

/** An AlgorithmIdentifier: its OID and raw parameters (null when absent). */
export interface AlgorithmIdentifier {
  /** Dotted OID. */
  readonly oid: string;
  /** The parameters element, whole, or null. */
  readonly params: Tlv | null;
}

/** Reads an AlgorithmIdentifier. */
export function readAlgorithm(r: DerReader, what: string): AlgorithmIdentifier {
  const s = inside(r.expect(TAG.SEQUENCE, what));
  const oid = readOid(s, what);
  const params = s.done() ? null : s.next(what);
  s.end(what);
  return { oid, params };
}

/** One extension, its value still encoded. */
export interface Extension {
  /** Dotted OID. */
  readonly oid: string;
  /** The critical flag. */
  readonly critical: boolean;
  /** The extnValue OCTET STRING's content. */
  readonly value: Uint8Array;
}

/** basicConstraints (RFC 5280 4.2.1.9). */
export interface BasicConstraints {
  /** cA. */
  readonly ca: boolean;
  /** pathLenConstraint, or null when absent. */
  readonly pathLen: number | null;
}

/** OID of id-ce-basicConstraints. */
export const OID_BASIC_CONSTRAINTS = "2.5.29.19";
/** OID of id-ce-keyUsage. */
export const OID_KEY_USAGE = "2.5.29.15";
/** keyUsage bit keyCertSign, as a mask over bit 0 = digitalSignature. */
export const KEY_USAGE_KEY_CERT_SIGN = 1 << 5;

/** A parsed X.509 certificate. */
export interface Certificate {
  /** The whole certificate. */
  readonly der: Uint8Array;
  /** The tbsCertificate element exactly as received: what the signature covers. */
  readonly tbs: Uint8Array;
  /** Version: 0 (v1), 1 (v2) or 2 (v3). */
  readonly version: number;
  /** The outer signatureAlgorithm. */
  readonly signatureAlgorithm: AlgorithmIdentifier;
  /** The tbsCertificate's signature algorithm. */
  readonly tbsSignatureAlgorithm: AlgorithmIdentifier;
  /** The signature value, or null when its BIT STRING has unused bits. */
  readonly signature: Uint8Array | null;
  /** The issuer Name, DER. */
  readonly issuer: Uint8Array;
  /** The subject Name, DER. */
  readonly subject: Uint8Array;
  /** Start of validity, Unix ms. */
  readonly notBeforeMs: number;
  /** End of validity, Unix ms. */
  readonly notAfterMs: number;
  /** The SubjectPublicKeyInfo element, DER. */
  readonly spki: Uint8Array;
  /** The SubjectPublicKeyInfo's algorithm. */
  readonly spkiAlgorithm: AlgorithmIdentifier;
  /** The subjectPublicKey bits. */
  readonly spkiKey: BitString;
  /** The extensions, in order. */
  readonly extensions: readonly Extension[];
  /**
   * The first basicConstraints extension, decoded; null when it is absent or does not
   * decode (either way the certificate is not a CA).
   */
  readonly basicConstraints: BasicConstraints | null;
  /**
   * The first keyUsage extension as a bit mask (bit 0 = digitalSignature); null when
   * absent, 0 when it does not decode (no usage is granted).
   */
  readonly keyUsage: number | null;
}

function decodeBasicConstraints(value: Uint8Array): BasicConstraints | null {
  try {
    const s = inside(readOne(value, TAG.SEQUENCE, "basicConstraints"));
    const ca = s.peekTag() === TAG.BOOLEAN ? readBoolean(s, "cA") : false;
    const pathLen = s.peekTag() === TAG.INTEGER ? readSmallUint(s, "pathLenConstraint") : null;
    s.end("basicConstraints");
    if (pathLen !== null && pathLen > 255) return null;
    return { ca, pathLen };
  } catch {
    return null;
  }
}

function decodeKeyUsage(value: Uint8Array): number {
  try {
    const r = new DerReader(value);
    const bits = readBitString(r, "keyUsage");
    r.end("keyUsage");
    if (bits.bytes.length * 8 - bits.unusedBits > 16) return 0;
    let mask = 0;
    bits.bytes.forEach((b, i) => {
      for (let j = 0; j < 8; j++) if (b & (0x80 >> j)) mask |= 1 << (8 * i + j);
    });
    return mask;
  } catch {
    return 0;
  }
}

function readExtensions(t: Tlv): Extension[] {
  const r = inside(t);
  const list = inside(r.expect(TAG.SEQUENCE, "extensions"));
  r.end("extensions");
  const out: Extension[] = [];
  while (!list.done()) {
    const e = inside(list.expect(TAG.SEQUENCE, "an extension"));
    const oid = readOid(e, "an extension id");
    let critical = false;
    if (e.peekTag() === TAG.BOOLEAN) {
      critical = readBoolean(e, "an extension's critical flag");
      if (!critical) throw new DerError("an extension encodes the DEFAULT critical flag");
    }
    const value = e.expect(TAG.OCTET_STRING, "an extension value").value;
    e.end("an extension");
    out.push({ oid, critical, value });
  }
  return out;
}

/** Parses a DER X.509 certificate; throws {@link DerError} if it is not one. */
export function parseCertificate(der: Uint8Array): Certificate {
  const cert = inside(readOne(der, TAG.SEQUENCE, "the certificate"));
  const tbsTlv = cert.expect(TAG.SEQUENCE, "tbsCertificate");
  const signatureAlgorithm = readAlgorithm(cert, "signatureAlgorithm");
  const sig = readBitString(cert, "signatureValue");
  cert.end("the certificate");

  const tbs = inside(tbsTlv);
  let version = 0;
  const explicitVersion = tbs.optional(0xa0, "version");
  if (explicitVersion) {
    const v = inside(explicitVersion);
    version = readSmallUint(v, "version");
    v.end("version");
    if (version === 0 || version > 2) throw new DerError("the version is DEFAULT or unknown");
  }
  const serial = integerBytes(tbs.expect(TAG.INTEGER, "serialNumber"), "serialNumber");
  if (serial.length > 21) throw new DerError("the serial number is too long");
  const tbsSignatureAlgorithm = readAlgorithm(tbs, "signature");
  const issuer = readName(tbs, "issuer");
  const validity = inside(tbs.expect(TAG.SEQUENCE, "validity"));
  const notBeforeMs = readTime(validity, "notBefore");
  const notAfterMs = readTime(validity, "notAfter");
  validity.end("validity");
  const subject = readName(tbs, "subject");
  const spkiTlv = tbs.expect(TAG.SEQUENCE, "subjectPublicKeyInfo");
  const spkiReader = inside(spkiTlv);
  const spkiAlgorithm = readAlgorithm(spkiReader, "the key algorithm");
  const spkiKey = readBitString(spkiReader, "subjectPublicKey");
  spkiReader.end("subjectPublicKeyInfo");
  for (const tag of [0x81, 0x82]) {
    if (tbs.peekTag() === tag) readBitString(tbs, "a unique identifier", tag);
  }
  const extTlv = tbs.optional(0xa3, "extensions");
  const extensions = extTlv ? readExtensions(extTlv) : [];
  tbs.end("tbsCertificate");

  const first = (oid: string) => extensions.find((e) => e.oid === oid);
  const bc = first(OID_BASIC_CONSTRAINTS);
  const ku = first(OID_KEY_USAGE);
  return {
    der,
    tbs: tbsTlv.raw,
    version,
    signatureAlgorithm,
    tbsSignatureAlgorithm,
    signature: sig.unusedBits === 0 ? sig.bytes : null,
    issuer,
    subject,
    notBeforeMs,
    notAfterMs,
    spki: spkiTlv.raw,
    spkiAlgorithm,
    spkiKey,
    extensions,
    basicConstraints: bc ? decodeBasicConstraints(bc.value) : null,
    keyUsage: ku ? decodeKeyUsage(ku.value) : null,
  };
}

function positiveInteger(r: DerReader, size: number): Uint8Array | null {
  let v = integerBytes(r.expect(TAG.INTEGER, "an ECDSA signature part"), "an ECDSA signature part");
  if (((v[0] as number) & 0x80) !== 0) return null;
  if (v[0] === 0 && v.length > 1) v = v.subarray(1);
  if (v.length > size) return null;
  const out = new Uint8Array(size);
  out.set(v, size - v.length);
  return out;
}

/**
 * Converts a DER `ECDSA-Sig-Value` (`SEQUENCE { r INTEGER, s INTEGER }`) to the IEEE
 * P1363 form WebCrypto verifies (`r || s`, `size` bytes each: 48 for P-384). Returns null
 * if it is not a strict DER signature with non-negative parts that fit.
 */
export function ecdsaDerToP1363(sig: Uint8Array, size = 48): Uint8Array | null {
  try {
    const s = inside(readOne(sig, TAG.SEQUENCE, "an ECDSA signature"));
    const r = positiveInteger(s, size);
    const t = positiveInteger(s, size);
    s.end("an ECDSA signature");
    if (!r || !t) return null;
    const out = new Uint8Array(2 * size);
    out.set(r, 0);
    out.set(t, size);
    return out;
  } catch {
    return null;
  }
}
