//! The Nitro Enclaves attestation document format: a COSE_Sign1 structure (RFC 8152 §4.2)
//! whose payload is a CBOR map, as AWS documents it in "Verifying the root of trust"
//! (<https://docs.aws.amazon.com/enclaves/latest/user/verify-root.html>).
//!
//! ```text
//! COSE_Sign1 = [ protected: bstr .cbor {1: -35},   ; alg = ES384
//!                unprotected: {},                   ; Nitro sends an empty map
//!                payload: bstr .cbor AttestationDocument,
//!                signature: bstr .size 96 ]         ; r || s, P-384
//! AttestationDocument = {
//!     module_id: text, digest: "SHA384", timestamp: uint .size 8,
//!     pcrs: { + index => pcr }, certificate: cert, cabundle: [* cert],
//!     ? public_key: user_data, ? user_data: user_data, ? nonce: user_data }
//! ```
//!
//! The decoder is strict: definite lengths only, every length checked against a bound
//! before anything is copied, wrong types and unknown, duplicate or missing fields are
//! errors, and nothing may follow a complete item. Decoding borrows from the input
//! (minicbor), so a declared length can never cause an allocation larger than the input.

use std::collections::BTreeMap;

use minicbor::Decoder;
use minicbor::data::Type;

use crate::Error;

/// Largest COSE_Sign1 document accepted (real documents are about 4.5 KiB; the NSM's
/// response buffer is 12 KiB).
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024;
/// Largest module id accepted, in bytes.
pub const MAX_MODULE_ID_BYTES: usize = 256;
/// Certificates are 1..=1024 bytes of DER (AWS: `cert = bytes .size (1..1024)`).
pub const MAX_CERT_BYTES: usize = 1024;
/// Most certificates accepted in `cabundle` (real bundles hold 4).
pub const MAX_CABUNDLE: usize = 16;
/// Most PCRs in a document (AWS: 1..=32).
pub const MAX_PCRS: usize = 32;
/// Largest `public_key` (AWS: 1..=1024 bytes when present).
pub const MAX_PUBLIC_KEY_BYTES: usize = 1024;
/// Largest `user_data` (AWS: 0..=512 bytes).
pub const MAX_USER_DATA_BYTES: usize = 512;
/// Largest `nonce` (AWS: 0..=512 bytes).
pub const MAX_NONCE_BYTES: usize = 512;
/// Length of an ES384 signature, `r || s`.
pub const ES384_SIGNATURE_BYTES: usize = 96;
/// COSE algorithm identifier of ES384 (ECDSA P-384 with SHA-384).
pub const COSE_ALG_ES384: i64 = -35;
/// The CBOR tag of a tagged COSE_Sign1 (RFC 8152); AWS sends the untagged form.
pub const COSE_SIGN1_TAG: u64 = 18;
/// The only digest Nitro documents use.
pub const DIGEST_SHA384: &str = "SHA384";
/// PCR lengths the format allows (SHA-256, SHA-384, SHA-512 sized registers).
pub const PCR_LENGTHS: [usize; 3] = [32, 48, 64];

/// The protected header Nitro uses: the bytes of the CBOR map `{1: -35}`.
pub const ES384_PROTECTED_HEADER: [u8; 4] = [0xa1, 0x01, 0x38, 0x22];

/// A decoded COSE_Sign1 whose protected header has been checked to be `{1: -35}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoseSign1 {
    /// The protected header bytes, exactly as received (they are signed).
    pub protected: Vec<u8>,
    /// The payload bytes, exactly as received (they are signed).
    pub payload: Vec<u8>,
    /// The ES384 signature, `r || s`.
    pub signature: [u8; ES384_SIGNATURE_BYTES],
}

/// The payload of an attestation document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationDocument {
    /// Issuing Nitro hypervisor module id.
    pub module_id: String,
    /// Creation time in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Locked PCRs, index → value (32, 48 or 64 bytes). The digest is always SHA384.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// The DER signing certificate.
    pub certificate: Vec<u8>,
    /// The DER issuing chain, root first.
    pub cabundle: Vec<Vec<u8>>,
    /// Optional public key the enclave asked to have attested (DER for KMS).
    pub public_key: Option<Vec<u8>>,
    /// Optional application data.
    pub user_data: Option<Vec<u8>>,
    /// Optional nonce supplied by the verifier.
    pub nonce: Option<Vec<u8>>,
}

fn cbor(context: &'static str) -> impl Fn(minicbor::decode::Error) -> Error {
    move |_| Error::MalformedCbor { context }
}

fn encode_err<E>(_: minicbor::encode::Error<E>) -> Error {
    Error::Encode
}

/// Reads a definite-length array or map header; indefinite lengths are malformed.
fn definite(len: Option<u64>, context: &'static str) -> Result<u64, Error> {
    len.ok_or(Error::MalformedCbor { context })
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl CoseSign1 {
    /// Decodes a COSE_Sign1 (tagged 18 or untagged) and checks its protected header is
    /// exactly ES384. The payload is not decoded here.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(Error::TooLarge {
                what: "attestation document",
                len: bytes.len(),
                max: MAX_DOCUMENT_BYTES,
            });
        }
        let mut d = Decoder::new(bytes);
        let ty = d.datatype().map_err(cbor("COSE_Sign1"))?;
        if ty == Type::Tag {
            let tag = d.tag().map_err(cbor("COSE_Sign1 tag"))?;
            if tag.as_u64() != COSE_SIGN1_TAG {
                return Err(Error::NotCoseSign1 {
                    reason: "tagged with a tag other than 18",
                });
            }
        }
        if d.datatype().map_err(cbor("COSE_Sign1"))? != Type::Array {
            return Err(Error::NotCoseSign1 {
                reason: "not a definite-length array",
            });
        }
        let n = definite(d.array().map_err(cbor("COSE_Sign1"))?, "COSE_Sign1")?;
        if n != 4 {
            return Err(Error::NotCoseSign1 {
                reason: "not an array of four items",
            });
        }
        let protected = read_bstr(&mut d, "protected header")?;
        check_protected_header(protected)?;
        if d.datatype().map_err(cbor("unprotected header"))? != Type::Map {
            return Err(Error::NotCoseSign1 {
                reason: "the unprotected header is not a map",
            });
        }
        let unprotected = definite(
            d.map().map_err(cbor("unprotected header"))?,
            "unprotected header",
        )?;
        if unprotected != 0 {
            return Err(Error::NotCoseSign1 {
                reason: "the unprotected header is not empty",
            });
        }
        let payload = read_bstr(&mut d, "payload")?;
        let signature = read_bstr(&mut d, "signature")?;
        let signature: [u8; ES384_SIGNATURE_BYTES] =
            signature.try_into().map_err(|_| Error::FieldLength {
                field: "signature",
                len: signature.len(),
                min: ES384_SIGNATURE_BYTES,
                max: ES384_SIGNATURE_BYTES,
            })?;
        if d.position() != bytes.len() {
            return Err(Error::TrailingBytes {
                what: "attestation document",
            });
        }
        Ok(Self {
            protected: protected.to_vec(),
            payload: payload.to_vec(),
            signature,
        })
    }

    /// Encodes the untagged COSE_Sign1, the form the NSM returns.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut e = minicbor::Encoder::new(Vec::with_capacity(self.payload.len() + 128));
        e.array(4)
            .and_then(|e| e.bytes(&self.protected))
            .and_then(|e| e.map(0))
            .and_then(|e| e.bytes(&self.payload))
            .and_then(|e| e.bytes(&self.signature))
            .map_err(encode_err)?;
        Ok(e.into_writer())
    }

    /// The bytes the signature covers: `["Signature1", protected, h'', payload]`.
    pub fn sig_structure(&self) -> Result<Vec<u8>, Error> {
        sig_structure(&self.protected, &self.payload)
    }
}

/// Encodes the COSE Sig_structure for a COSE_Sign1 with empty external AAD.
pub fn sig_structure(protected: &[u8], payload: &[u8]) -> Result<Vec<u8>, Error> {
    let mut e = minicbor::Encoder::new(Vec::with_capacity(payload.len() + 32));
    e.array(4)
        .and_then(|e| e.str("Signature1"))
        .and_then(|e| e.bytes(protected))
        .and_then(|e| e.bytes(&[]))
        .and_then(|e| e.bytes(payload))
        .map_err(encode_err)?;
    Ok(e.into_writer())
}

fn read_bstr<'b>(d: &mut Decoder<'b>, context: &'static str) -> Result<&'b [u8], Error> {
    match d.datatype().map_err(cbor(context))? {
        Type::Bytes => d.bytes().map_err(cbor(context)),
        Type::BytesIndef => Err(Error::MalformedCbor { context }),
        _ => Err(Error::NotCoseSign1 {
            reason: "an item that must be a byte string is not one",
        }),
    }
}

/// Checks the protected header is the map `{1: -35}` and nothing else.
fn check_protected_header(bytes: &[u8]) -> Result<(), Error> {
    if bytes.is_empty() {
        return Err(Error::InvalidProtectedHeader {
            reason: "it is empty, so no algorithm is named",
        });
    }
    let mut d = Decoder::new(bytes);
    if d.datatype().map_err(cbor("protected header"))? != Type::Map {
        return Err(Error::InvalidProtectedHeader {
            reason: "it is not a map",
        });
    }
    let n = definite(
        d.map().map_err(cbor("protected header"))?,
        "protected header",
    )?;
    if n != 1 {
        return Err(Error::InvalidProtectedHeader {
            reason: "it must hold exactly the alg parameter",
        });
    }
    let key = match d.datatype().map_err(cbor("protected header"))? {
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => {
            d.u64().map_err(cbor("protected header"))?
        }
        _ => {
            return Err(Error::InvalidProtectedHeader {
                reason: "its key is not the integer 1 (alg)",
            });
        }
    };
    if key != 1 {
        return Err(Error::InvalidProtectedHeader {
            reason: "its key is not the integer 1 (alg)",
        });
    }
    let alg = match d.datatype().map_err(cbor("protected header"))? {
        Type::U8
        | Type::U16
        | Type::U32
        | Type::U64
        | Type::I8
        | Type::I16
        | Type::I32
        | Type::I64 => d.i64().map_err(|_| Error::InvalidProtectedHeader {
            reason: "the algorithm identifier is out of range",
        })?,
        _ => {
            return Err(Error::InvalidProtectedHeader {
                reason: "the algorithm is not an integer",
            });
        }
    };
    if alg != COSE_ALG_ES384 {
        return Err(Error::UnsupportedAlgorithm { alg });
    }
    if d.position() != bytes.len() {
        return Err(Error::TrailingBytes {
            what: "protected header",
        });
    }
    Ok(())
}

/// The payload's field names, in the order the NSM encodes them.
const FIELDS: [&str; 9] = [
    "module_id",
    "digest",
    "timestamp",
    "pcrs",
    "certificate",
    "cabundle",
    "public_key",
    "user_data",
    "nonce",
];

fn check_len(field: &'static str, len: usize, min: usize, max: usize) -> Result<(), Error> {
    if len < min || len > max {
        return Err(Error::FieldLength {
            field,
            len,
            min,
            max,
        });
    }
    Ok(())
}

fn expect_type(d: &Decoder<'_>, field: &'static str, want: &[Type]) -> Result<Type, Error> {
    let ty = d.datatype().map_err(cbor(field))?;
    if matches!(
        ty,
        Type::BytesIndef | Type::StringIndef | Type::ArrayIndef | Type::MapIndef
    ) {
        return Err(Error::MalformedCbor { context: field });
    }
    if want.contains(&ty) {
        Ok(ty)
    } else {
        Err(Error::WrongType { field })
    }
}

const UINT: [Type; 4] = [Type::U8, Type::U16, Type::U32, Type::U64];

fn bounded_bytes<'b>(
    d: &mut Decoder<'b>,
    field: &'static str,
    min: usize,
    max: usize,
) -> Result<&'b [u8], Error> {
    expect_type(d, field, &[Type::Bytes])?;
    let b = d.bytes().map_err(cbor(field))?;
    check_len(field, b.len(), min, max)?;
    Ok(b)
}

fn optional_bytes(
    d: &mut Decoder<'_>,
    field: &'static str,
    min: usize,
    max: usize,
) -> Result<Option<Vec<u8>>, Error> {
    match expect_type(d, field, &[Type::Bytes, Type::Null])? {
        Type::Null => {
            d.null().map_err(cbor(field))?;
            Ok(None)
        }
        _ => Ok(Some(bounded_bytes(d, field, min, max)?.to_vec())),
    }
}

impl AttestationDocument {
    /// Decodes and syntactically validates a payload (AWS's "syntactical validation").
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(Error::TooLarge {
                what: "payload",
                len: bytes.len(),
                max: MAX_DOCUMENT_BYTES,
            });
        }
        let mut d = Decoder::new(bytes);
        if d.datatype().map_err(cbor("payload"))? != Type::Map {
            return Err(Error::WrongType { field: "payload" });
        }
        let n = to_usize(definite(d.map().map_err(cbor("payload"))?, "payload")?);
        // Each entry takes at least two bytes, so a count beyond the input is malformed;
        // checking it first keeps the loop bounded by the input.
        if n > bytes.len() {
            return Err(Error::MalformedCbor { context: "payload" });
        }
        let mut module_id = None;
        let mut digest_seen = false;
        let mut timestamp_ms = None;
        let mut pcrs = None;
        let mut certificate = None;
        let mut cabundle = None;
        let mut public_key = None;
        let mut user_data = None;
        let mut nonce = None;
        for _ in 0..n {
            if d.datatype().map_err(cbor("payload key"))? != Type::String {
                return Err(Error::UnknownField);
            }
            let key = d.str().map_err(cbor("payload key"))?;
            let field = FIELDS
                .iter()
                .copied()
                .find(|f| *f == key)
                .ok_or(Error::UnknownField)?;
            let dup = Error::DuplicateField { field };
            match field {
                "module_id" => {
                    expect_type(&d, field, &[Type::String])?;
                    let s = d.str().map_err(cbor(field))?;
                    check_len(field, s.len(), 1, MAX_MODULE_ID_BYTES)?;
                    if module_id.replace(s.to_owned()).is_some() {
                        return Err(dup);
                    }
                }
                "digest" => {
                    expect_type(&d, field, &[Type::String])?;
                    let s = d.str().map_err(cbor(field))?;
                    if s != DIGEST_SHA384 {
                        return Err(Error::UnsupportedDigest);
                    }
                    if std::mem::replace(&mut digest_seen, true) {
                        return Err(dup);
                    }
                }
                "timestamp" => {
                    expect_type(&d, field, &UINT)?;
                    let t = d.u64().map_err(cbor(field))?;
                    if t == 0 {
                        return Err(Error::ZeroTimestamp);
                    }
                    if timestamp_ms.replace(t).is_some() {
                        return Err(dup);
                    }
                }
                "pcrs" => {
                    let map = decode_pcrs(&mut d)?;
                    if pcrs.replace(map).is_some() {
                        return Err(dup);
                    }
                }
                "certificate" => {
                    let c = bounded_bytes(&mut d, field, 1, MAX_CERT_BYTES)?;
                    if certificate.replace(c.to_vec()).is_some() {
                        return Err(dup);
                    }
                }
                "cabundle" => {
                    let b = decode_cabundle(&mut d)?;
                    if cabundle.replace(b).is_some() {
                        return Err(dup);
                    }
                }
                "public_key" => {
                    let v = optional_bytes(&mut d, field, 1, MAX_PUBLIC_KEY_BYTES)?;
                    if public_key.replace(v).is_some() {
                        return Err(dup);
                    }
                }
                "user_data" => {
                    let v = optional_bytes(&mut d, field, 0, MAX_USER_DATA_BYTES)?;
                    if user_data.replace(v).is_some() {
                        return Err(dup);
                    }
                }
                _ => {
                    let v = optional_bytes(&mut d, field, 0, MAX_NONCE_BYTES)?;
                    if nonce.replace(v).is_some() {
                        return Err(dup);
                    }
                }
            }
        }
        if d.position() != bytes.len() {
            return Err(Error::TrailingBytes { what: "payload" });
        }
        let missing = |field| Error::MissingField { field };
        if !digest_seen {
            return Err(missing("digest"));
        }
        Ok(Self {
            module_id: module_id.ok_or_else(|| missing("module_id"))?,
            timestamp_ms: timestamp_ms.ok_or_else(|| missing("timestamp"))?,
            pcrs: pcrs.ok_or_else(|| missing("pcrs"))?,
            certificate: certificate.ok_or_else(|| missing("certificate"))?,
            cabundle: cabundle.ok_or_else(|| missing("cabundle"))?,
            public_key: public_key.flatten(),
            user_data: user_data.flatten(),
            nonce: nonce.flatten(),
        })
    }

    /// Encodes the payload exactly as the NSM does: all nine keys in the NSM's order,
    /// absent optional fields as `null`.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut e = minicbor::Encoder::new(Vec::with_capacity(4096));
        let opt = |e: &mut minicbor::Encoder<Vec<u8>>, v: &Option<Vec<u8>>| match v {
            Some(b) => e.bytes(b).map(|_| ()),
            None => e.null().map(|_| ()),
        };
        e.map(FIELDS.len() as u64)
            .and_then(|e| e.str("module_id"))
            .and_then(|e| e.str(&self.module_id))
            .and_then(|e| e.str("digest"))
            .and_then(|e| e.str(DIGEST_SHA384))
            .and_then(|e| e.str("timestamp"))
            .and_then(|e| e.u64(self.timestamp_ms))
            .and_then(|e| e.str("pcrs"))
            .and_then(|e| e.map(self.pcrs.len() as u64))
            .map_err(encode_err)?;
        for (i, v) in &self.pcrs {
            e.u8(*i).and_then(|e| e.bytes(v)).map_err(encode_err)?;
        }
        e.str("certificate")
            .and_then(|e| e.bytes(&self.certificate))
            .and_then(|e| e.str("cabundle"))
            .and_then(|e| e.array(self.cabundle.len() as u64))
            .map_err(encode_err)?;
        for c in &self.cabundle {
            e.bytes(c).map_err(encode_err)?;
        }
        e.str("public_key").map_err(encode_err)?;
        opt(&mut e, &self.public_key).map_err(encode_err)?;
        e.str("user_data").map_err(encode_err)?;
        opt(&mut e, &self.user_data).map_err(encode_err)?;
        e.str("nonce").map_err(encode_err)?;
        opt(&mut e, &self.nonce).map_err(encode_err)?;
        Ok(e.into_writer())
    }
}

fn decode_pcrs(d: &mut Decoder<'_>) -> Result<BTreeMap<u8, Vec<u8>>, Error> {
    let field = "pcrs";
    expect_type(d, field, &[Type::Map])?;
    let n = to_usize(definite(d.map().map_err(cbor(field))?, field)?);
    check_len(field, n, 1, MAX_PCRS)?;
    let mut out = BTreeMap::new();
    for _ in 0..n {
        expect_type(d, field, &UINT)?;
        let index = d.u64().map_err(cbor(field))?;
        let idx = u8::try_from(index)
            .ok()
            .filter(|i| usize::from(*i) < MAX_PCRS)
            .ok_or(Error::PcrIndex { index })?;
        expect_type(d, field, &[Type::Bytes])?;
        let value = d.bytes().map_err(cbor(field))?;
        if !PCR_LENGTHS.contains(&value.len()) {
            return Err(Error::PcrLength {
                index: idx,
                len: value.len(),
            });
        }
        if out.insert(idx, value.to_vec()).is_some() {
            return Err(Error::DuplicateField { field });
        }
    }
    Ok(out)
}

fn decode_cabundle(d: &mut Decoder<'_>) -> Result<Vec<Vec<u8>>, Error> {
    let field = "cabundle";
    expect_type(d, field, &[Type::Array])?;
    let n = to_usize(definite(d.array().map_err(cbor(field))?, field)?);
    check_len(field, n, 1, MAX_CABUNDLE)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(bounded_bytes(d, field, 1, MAX_CERT_BYTES)?.to_vec());
    }
    Ok(out)
}
