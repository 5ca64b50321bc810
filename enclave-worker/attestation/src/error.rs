//! The crate's one error type.

use std::fmt;

/// Where in the certificate chain of a document a certificate sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertPosition {
    /// `cabundle[i]`; index 0 is the root.
    Bundle(usize),
    /// The document's signing (leaf) certificate, the `certificate` field.
    Leaf,
}

impl fmt::Display for CertPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bundle(i) => write!(f, "cabundle[{i}]"),
            Self::Leaf => f.write_str("the signing certificate"),
        }
    }
}

/// Errors from decoding, verifying or producing attestation documents.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is larger than the bound for what is being decoded; nothing was allocated.
    #[error("The {what} is {len} bytes, more than the {max} bytes allowed.")]
    TooLarge {
        /// What was being decoded.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The bytes are not well-formed CBOR of the expected shape.
    #[error("The attestation document is not well-formed CBOR ({context}).")]
    MalformedCbor {
        /// Which part was being read.
        context: &'static str,
    },
    /// Bytes follow the end of a complete CBOR item.
    #[error("The {what} has trailing bytes after its CBOR item.")]
    TrailingBytes {
        /// Which item.
        what: &'static str,
    },
    /// The outer structure is not a COSE_Sign1 array of four items (optionally tag 18).
    #[error("The attestation document is not a COSE_Sign1 structure ({reason}).")]
    NotCoseSign1 {
        /// What was wrong.
        reason: &'static str,
    },
    /// The protected header is not the map `{1: -35}` (alg = ES384).
    #[error("The COSE protected header is invalid ({reason}).")]
    InvalidProtectedHeader {
        /// What was wrong.
        reason: &'static str,
    },
    /// The protected header names an algorithm other than ES384 (-35).
    #[error("The COSE algorithm {alg} is not supported; Nitro documents use ES384 (-35).")]
    UnsupportedAlgorithm {
        /// The COSE algorithm identifier found.
        alg: i64,
    },
    /// A required payload field is missing.
    #[error("The attestation document has no `{field}` field.")]
    MissingField {
        /// The field name.
        field: &'static str,
    },
    /// A payload field appears twice.
    #[error("The attestation document has the `{field}` field twice.")]
    DuplicateField {
        /// The field name.
        field: &'static str,
    },
    /// The payload has a key that the Nitro format does not define.
    #[error("The attestation document has a field the Nitro format does not define.")]
    UnknownField,
    /// A payload field has the wrong CBOR type.
    #[error("The `{field}` field of the attestation document has the wrong type.")]
    WrongType {
        /// The field name.
        field: &'static str,
    },
    /// A payload field's length is outside its documented bounds.
    #[error("The `{field}` field is {len} long, outside the allowed {min}..={max}.")]
    FieldLength {
        /// The field name.
        field: &'static str,
        /// Its length (bytes, characters or entries).
        len: usize,
        /// Smallest allowed length.
        min: usize,
        /// Largest allowed length.
        max: usize,
    },
    /// A PCR index is outside 0..32.
    #[error("The PCR index {index} is outside 0..32.")]
    PcrIndex {
        /// The index found.
        index: u64,
    },
    /// A PCR value is not 32, 48 or 64 bytes long.
    #[error("PCR{index} is {len} bytes long; PCRs are 32, 48 or 64 bytes.")]
    PcrLength {
        /// The PCR index.
        index: u8,
        /// Its length.
        len: usize,
    },
    /// The `timestamp` field is zero.
    #[error("The attestation document's timestamp is zero.")]
    ZeroTimestamp,
    /// The `digest` field is not "SHA384".
    #[error("The digest algorithm is not SHA384.")]
    UnsupportedDigest,
    /// A certificate is not valid DER X.509.
    #[error("The certificate at {position} is not a valid DER X.509 certificate.")]
    CertificateMalformed {
        /// The certificate.
        position: CertPosition,
    },
    /// A certificate is not signed with ECDSA-SHA384 or does not hold a P-384 key.
    #[error("The certificate at {position} does not use ECDSA P-384 with SHA-384.")]
    CertificateAlgorithm {
        /// The certificate.
        position: CertPosition,
    },
    /// `cabundle[0]` is not the pinned root certificate.
    #[error("The root of the certificate bundle is not the pinned trust anchor.")]
    UntrustedRoot,
    /// A certificate's issuer name does not match its parent's subject.
    #[error("The issuer of the certificate at {position} does not match its parent's subject.")]
    IssuerMismatch {
        /// The certificate.
        position: CertPosition,
    },
    /// A certificate's signature does not verify under its parent's key.
    #[error("The signature of the certificate at {position} does not verify.")]
    CertificateSignature {
        /// The certificate.
        position: CertPosition,
    },
    /// `now` is outside a certificate's validity period.
    #[error("The certificate at {position} is not valid at the verification time.")]
    CertificateExpired {
        /// The certificate.
        position: CertPosition,
    },
    /// An issuing certificate is not a CA, or the chain is longer than a path length allows.
    #[error("The certificate at {position} may not issue the certificate below it.")]
    NotACa {
        /// The certificate.
        position: CertPosition,
    },
    /// The COSE signature does not verify under the signing certificate's key.
    #[error("The attestation document's signature does not verify.")]
    SignatureInvalid,
    /// A pinned PCR is absent from the document.
    #[error("PCR{index} is pinned but absent from the attestation document.")]
    PcrMissing {
        /// The PCR index.
        index: u8,
    },
    /// A PCR differs from its pinned value.
    #[error("PCR{index} does not match its pinned measurement.")]
    PcrMismatch {
        /// The PCR index.
        index: u8,
    },
    /// `expect_pcrs` was given no measurements, which would accept any enclave.
    #[error("No PCR measurements are pinned, so no enclave can be accepted.")]
    NoPinnedMeasurements,
    /// An attestation request field is larger than the NSM accepts.
    #[error("The attestation request's `{field}` is {len} bytes, more than the {max} allowed.")]
    RequestTooLarge {
        /// The field name.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Encoding a document failed.
    #[error("Encoding the attestation document failed.")]
    Encode,
    /// Generating the dev CA or a dev certificate failed.
    #[error("Generating a dev attestation certificate failed: {reason}.")]
    DevCertificate {
        /// What failed.
        reason: String,
    },
    /// Signing failed.
    #[error("Signing the attestation document failed.")]
    SigningFailed,
    /// The Nitro Secure Module device could not be opened.
    #[error(
        "The Nitro Secure Module device /dev/nsm could not be opened; this is not a Nitro Enclave."
    )]
    NsmUnavailable,
    /// The Nitro Secure Module answered with an error.
    #[error("The Nitro Secure Module refused the attestation request: {code}.")]
    Nsm {
        /// The NSM error code.
        code: String,
    },
}
