//! Nitro Enclaves attestation documents for zenvelope.
//!
//! * [`format`](mod@format): the real AWS Nitro document format (COSE_Sign1 over a CBOR map), with a
//!   strict, bounded decoder and an encoder that writes what the NSM writes.
//! * [`verify()`]: chain to a pinned root ([`TrustAnchor::aws_nitro_root_g1`] in
//!   production), ECDSA P-384/SHA-384 everywhere, validity at a given time, the COSE
//!   signature; then [`expect_pcrs`] against [`PinnedMeasurements`].
//! * [`Attestor`]: how `enclave-app` obtains a document. [`NsmAttestor`] asks the Nitro
//!   Secure Module (`/dev/nsm`) in production; [`danger::DevAttestor`] signs documents in
//!   the same format with a local dev CA for development and tests.
//!
//! See `docs/attestation.md` for the format, the verification order and what was
//! exercised where.

#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

pub mod danger;
mod error;
pub mod format;
mod nsm;
mod verify;

pub use error::{CertPosition, Error};
pub use format::{AttestationDocument, CoseSign1};
pub use nsm::NsmAttestor;
pub use verify::{
    AWS_NITRO_ROOT_G1_DER, AWS_NITRO_ROOT_G1_SHA256, PinnedMeasurements, TrustAnchor,
    VerifiedAttestation, expect_pcrs, verify,
};

/// What the enclave asks to have attested, as in the NSM's `Request::Attestation`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttestationRequest {
    /// Application data to bind into the document (at most 512 bytes).
    pub user_data: Option<Vec<u8>>,
    /// The verifier's nonce (at most 512 bytes).
    pub nonce: Option<Vec<u8>>,
    /// A public key to bind, DER `SubjectPublicKeyInfo` for KMS `Recipient` (1..=1024 bytes).
    pub public_key: Option<Vec<u8>>,
}

impl AttestationRequest {
    /// Checks the request fits the document's bounds, before anything is sent or signed.
    pub fn check(&self) -> Result<(), Error> {
        let check = |field, v: &Option<Vec<u8>>, min, max| match v {
            Some(b) if b.len() > max => Err(Error::RequestTooLarge {
                field,
                len: b.len(),
                max,
            }),
            Some(b) if b.len() < min => Err(Error::FieldLength {
                field,
                len: b.len(),
                min,
                max,
            }),
            _ => Ok(()),
        };
        check("user_data", &self.user_data, 0, format::MAX_USER_DATA_BYTES)?;
        check("nonce", &self.nonce, 0, format::MAX_NONCE_BYTES)?;
        check(
            "public_key",
            &self.public_key,
            1,
            format::MAX_PUBLIC_KEY_BYTES,
        )
    }
}

/// A source of attestation documents (COSE_Sign1 bytes in the Nitro format).
pub trait Attestor: Send + Sync {
    /// Produces a signed document binding `request`.
    fn attest(&self, request: &AttestationRequest) -> Result<Vec<u8>, Error>;
}
