//! Verification of attestation documents: syntax, certificate chain to a pinned root,
//! the COSE signature, then (separately) PCRs against pinned measurements.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_lc_rs::digest;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_ASN1, ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};
use x509_cert::Certificate;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};

use crate::format::{AttestationDocument, CoseSign1};
use crate::{CertPosition, Error};

/// ecdsa-with-SHA384 (RFC 5758).
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
/// id-ecPublicKey (RFC 5480).
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp384r1 (RFC 5480).
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// id-ce-basicConstraints.
const BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
/// id-ce-keyUsage.
const KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");

/// The public AWS Nitro Enclaves root certificate (G1), DER, as distributed by AWS in
/// `AWS_NitroEnclaves_Root-G1.zip` (`CN=aws.nitro-enclaves`, valid 2019-10-28 to 2049-10-28).
pub const AWS_NITRO_ROOT_G1_DER: &[u8] = include_bytes!("aws_nitro_root_g1.der");

/// The SHA-256 fingerprint AWS publishes for the G1 root
/// (`64:1A:03:21:…:8F:79:BB:5B`); a test checks the embedded DER against it.
pub const AWS_NITRO_ROOT_G1_SHA256: [u8; 32] = [
    0x64, 0x1a, 0x03, 0x21, 0xa3, 0xe2, 0x44, 0xef, 0xe4, 0x56, 0x46, 0x31, 0x95, 0xd6, 0x06, 0x31,
    0x7e, 0xd7, 0xcd, 0xcc, 0x3c, 0x17, 0x56, 0xe0, 0x98, 0x93, 0xf3, 0xc6, 0x8f, 0x79, 0xbb, 0x5b,
];

/// A pinned root certificate: `cabundle[0]` must equal it byte for byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustAnchor {
    root_der: Vec<u8>,
}

impl TrustAnchor {
    /// The production anchor: the AWS Nitro Enclaves root G1.
    pub fn aws_nitro_root_g1() -> Self {
        Self {
            root_der: AWS_NITRO_ROOT_G1_DER.to_vec(),
        }
    }

    /// Pins another root (the dev CA's root in development). The certificate must be a
    /// P-384 ECDSA-SHA384 certificate.
    pub fn from_der(root_der: &[u8]) -> Result<Self, Error> {
        let position = CertPosition::Bundle(0);
        if root_der.is_empty() || root_der.len() > crate::format::MAX_CERT_BYTES {
            return Err(Error::CertificateMalformed { position });
        }
        let cert = parse_cert(root_der, position)?;
        p384_key(&cert, position)?;
        Ok(Self {
            root_der: root_der.to_vec(),
        })
    }

    /// The pinned root, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// SHA-256 fingerprint of the pinned root.
    pub fn sha256_fingerprint(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest::digest(&digest::SHA256, &self.root_der).as_ref());
        out
    }

    /// Whether this anchor is the AWS Nitro Enclaves G1 root (what production must pin).
    pub fn is_aws_nitro_root_g1(&self) -> bool {
        self.sha256_fingerprint() == AWS_NITRO_ROOT_G1_SHA256
    }
}

/// A document whose chain and signature verified. Its fields are authentic; whether
/// they are the *expected* ones (PCRs, nonce, key) is for the caller to check, e.g.
/// with [`expect_pcrs`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedAttestation {
    document: AttestationDocument,
}

impl VerifiedAttestation {
    /// The locked PCRs, index → value.
    pub fn pcrs(&self) -> &BTreeMap<u8, Vec<u8>> {
        &self.document.pcrs
    }

    /// One PCR, if present.
    pub fn pcr(&self, index: u8) -> Option<&[u8]> {
        self.document.pcrs.get(&index).map(Vec::as_slice)
    }

    /// The attested public key, if the enclave asked for one.
    pub fn public_key(&self) -> Option<&[u8]> {
        self.document.public_key.as_deref()
    }

    /// The attested user data, if any.
    pub fn user_data(&self) -> Option<&[u8]> {
        self.document.user_data.as_deref()
    }

    /// The attested nonce, if any.
    pub fn nonce(&self) -> Option<&[u8]> {
        self.document.nonce.as_deref()
    }

    /// The issuing NSM module id.
    pub fn module_id(&self) -> &str {
        &self.document.module_id
    }

    /// Creation time, milliseconds since the Unix epoch.
    pub fn timestamp_ms(&self) -> u64 {
        self.document.timestamp_ms
    }

    /// Whether PCR0 is all zeros, which is what an enclave started in debug mode reports.
    /// Such an enclave's memory is readable by its parent; never release keys to it.
    pub fn is_debug_mode(&self) -> bool {
        self.pcr(0).is_some_and(|v| v.iter().all(|b| *b == 0))
    }

    /// The whole decoded document.
    pub fn document(&self) -> &AttestationDocument {
        &self.document
    }
}

/// Verifies an attestation document at time `now`, in this order:
/// 1. decode the COSE_Sign1 and check its protected header is `{1: -35}` (ES384);
/// 2. decode the payload and check every field's type and bounds;
/// 3. check `cabundle[0]` equals the pinned root;
/// 4. parse every certificate; each must be ECDSA-SHA384 with a P-384 key;
/// 5. walk root → … → leaf: the parent is a CA (basicConstraints, keyCertSign, path
///    length), the child's issuer is the parent's subject, and the child's signature
///    verifies under the parent's key;
/// 6. every certificate, root included, is valid at `now`;
/// 7. the COSE signature over `["Signature1", protected, h'', payload]` verifies under
///    the leaf's key.
pub fn verify(
    doc_bytes: &[u8],
    anchor: &TrustAnchor,
    now: SystemTime,
) -> Result<VerifiedAttestation, Error> {
    let cose = CoseSign1::decode(doc_bytes)?;
    let document = AttestationDocument::decode(&cose.payload)?;

    let root = document
        .cabundle
        .first()
        .ok_or(Error::MissingField { field: "cabundle" })?;
    if root.as_slice() != anchor.root_der() {
        return Err(Error::UntrustedRoot);
    }

    let mut chain = Vec::with_capacity(document.cabundle.len() + 1);
    for (i, der) in document.cabundle.iter().enumerate() {
        chain.push((
            CertPosition::Bundle(i),
            parse_cert(der, CertPosition::Bundle(i))?,
        ));
    }
    chain.push((
        CertPosition::Leaf,
        parse_cert(&document.certificate, CertPosition::Leaf)?,
    ));
    let mut keys = Vec::with_capacity(chain.len());
    for (position, cert) in &chain {
        keys.push(p384_key(cert, *position)?);
    }

    let last_ca = chain.len() - 2;
    for i in 1..chain.len() {
        let (parent_pos, parent) = &chain[i - 1];
        let (child_pos, child) = &chain[i];
        // CAs strictly below the parent, i.e. intermediates between it and the leaf.
        let below = last_ca - (i - 1);
        check_ca(parent, *parent_pos, below)?;
        if child.tbs_certificate.issuer != parent.tbs_certificate.subject {
            return Err(Error::IssuerMismatch {
                position: *child_pos,
            });
        }
        let tbs = child
            .tbs_certificate
            .to_der()
            .map_err(|_| Error::CertificateMalformed {
                position: *child_pos,
            })?;
        let sig = child
            .signature
            .as_bytes()
            .ok_or(Error::CertificateSignature {
                position: *child_pos,
            })?;
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, &keys[i - 1])
            .verify(&tbs, sig)
            .map_err(|_| Error::CertificateSignature {
                position: *child_pos,
            })?;
    }

    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    for (position, cert) in &chain {
        let validity = &cert.tbs_certificate.validity;
        if now < validity.not_before.to_unix_duration()
            || now > validity.not_after.to_unix_duration()
        {
            return Err(Error::CertificateExpired {
                position: *position,
            });
        }
    }

    let leaf_key = keys.last().ok_or(Error::MissingField {
        field: "certificate",
    })?;
    let signed = cose.sig_structure()?;
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, leaf_key)
        .verify(&signed, &cose.signature)
        .map_err(|_| Error::SignatureInvalid)?;

    Ok(VerifiedAttestation { document })
}

fn parse_cert(der: &[u8], position: CertPosition) -> Result<Certificate, Error> {
    let cert = Certificate::from_der(der).map_err(|_| Error::CertificateMalformed { position })?;
    if cert.signature_algorithm.oid != ECDSA_WITH_SHA384
        || cert.tbs_certificate.signature.oid != ECDSA_WITH_SHA384
        || cert.signature_algorithm.parameters.is_some()
    {
        return Err(Error::CertificateAlgorithm { position });
    }
    Ok(cert)
}

/// The certificate's uncompressed SEC1 P-384 public key.
fn p384_key(cert: &Certificate, position: CertPosition) -> Result<Vec<u8>, Error> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if spki.algorithm.oid != ID_EC_PUBLIC_KEY || curve != Some(SECP384R1) {
        return Err(Error::CertificateAlgorithm { position });
    }
    let point = spki
        .subject_public_key
        .as_bytes()
        .filter(|p| p.len() == 97 && p[0] == 0x04)
        .ok_or(Error::CertificateAlgorithm { position })?;
    Ok(point.to_vec())
}

/// Checks `cert` may issue certificates with `below` CA certificates under it.
fn check_ca(cert: &Certificate, position: CertPosition, below: usize) -> Result<(), Error> {
    let not_ca = Error::NotACa { position };
    let exts = cert.tbs_certificate.extensions.as_deref().unwrap_or(&[]);
    let bc = exts
        .iter()
        .find(|e| e.extn_id == BASIC_CONSTRAINTS)
        .and_then(|e| BasicConstraints::from_der(e.extn_value.as_bytes()).ok())
        .ok_or(Error::NotACa { position })?;
    if !bc.ca {
        return Err(not_ca);
    }
    if let Some(max) = bc.path_len_constraint
        && below > usize::from(max)
    {
        return Err(not_ca);
    }
    if let Some(ext) = exts.iter().find(|e| e.extn_id == KEY_USAGE) {
        let ku = KeyUsage::from_der(ext.extn_value.as_bytes())
            .map_err(|_| Error::NotACa { position })?;
        if !ku.key_cert_sign() {
            return Err(not_ca);
        }
    }
    Ok(())
}

/// Expected PCR values (e.g. PCR0 image, PCR1 kernel, PCR2 application, PCR8 signing
/// certificate), as `nitro-cli build-enclave` prints them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PinnedMeasurements {
    pcrs: BTreeMap<u8, Vec<u8>>,
}

impl PinnedMeasurements {
    /// No pins.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pins PCR `index` to `value`.
    #[must_use]
    pub fn with_pcr(mut self, index: u8, value: impl Into<Vec<u8>>) -> Self {
        self.pcrs.insert(index, value.into());
        self
    }

    /// The pinned values.
    pub fn pcrs(&self) -> &BTreeMap<u8, Vec<u8>> {
        &self.pcrs
    }
}

/// Checks every pinned PCR is present in `verified` with exactly the pinned value.
/// PCR values are public measurements, so a plain comparison is fine.
/// An empty set of pins is refused: it would accept any enclave.
pub fn expect_pcrs(
    verified: &VerifiedAttestation,
    pinned: &PinnedMeasurements,
) -> Result<(), Error> {
    if pinned.pcrs.is_empty() {
        return Err(Error::NoPinnedMeasurements);
    }
    for (index, want) in &pinned.pcrs {
        let got = verified
            .pcr(*index)
            .ok_or(Error::PcrMissing { index: *index })?;
        if got != want.as_slice() {
            return Err(Error::PcrMismatch { index: *index });
        }
    }
    Ok(())
}
