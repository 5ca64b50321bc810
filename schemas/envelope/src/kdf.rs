//! Key derivations and their labels. Every label lives here and in the spec, once.

use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

use crate::aad::Canon;
use crate::error::Error;
use crate::model::MessageId;
use crate::secret::{Dek, Kek, Passphrase};

/// HKDF `info` for the per-message payload key.
pub const INFO_PAYLOAD_KEY: &[u8] = b"zenvelope/v1/payload-key";
/// HKDF `info` for the key commitment.
pub const INFO_KEY_COMMITMENT: &[u8] = b"zenvelope/v1/key-commitment";
/// HKDF `info` for the response DEK derived from a request DEK.
pub const INFO_RESPONSE: &[u8] = b"zenvelope/v1/response";
/// HKDF `info` for a user KEK's public key id.
pub const INFO_KEK_ID: &[u8] = b"zenvelope/v1/kek-id";
/// Domain label hashed into the deterministic PBKDF2 salt.
pub const LABEL_KEK_SALT: &[u8] = b"zenvelope/v1/kek-salt";

/// Default PBKDF2 iterations (OWASP 2023 for PBKDF2-HMAC-SHA256).
pub const DEFAULT_PBKDF2_ITERATIONS: u32 = 600_000;
/// Fewest PBKDF2 iterations accepted (the seed's legacy format).
pub const MIN_PBKDF2_ITERATIONS: u32 = 100_000;
/// Most PBKDF2 iterations accepted: an envelope cannot make an opener spin for minutes.
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// HKDF-SHA256 (RFC 5869) into `out`; fails only if `out` is longer than 8160 bytes.
pub fn hkdf_sha256(ikm: &[u8], salt: &[u8], info: &[u8], out: &mut [u8]) -> Result<(), Error> {
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, out)
        .map_err(|_| Error::InvalidInput("HKDF-SHA256 output longer than 8160 bytes"))
}

fn hkdf32(ikm: &[u8], salt: &[u8], info: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so this cannot fail.
    let _ = hkdf_sha256(ikm, salt, info, &mut out);
    out
}

/// The AES-256-GCM key for one message's payload: HKDF(DEK, salt = message id).
pub(crate) fn payload_key(dek: &Dek, message_id: &MessageId) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(hkdf32(&dek.0, message_id.as_bytes(), INFO_PAYLOAD_KEY))
}

/// The key commitment stored in the header: HKDF(DEK, salt = message id).
pub fn key_commitment(dek: &Dek, message_id: &MessageId) -> [u8; 32] {
    hkdf32(&dek.0, message_id.as_bytes(), INFO_KEY_COMMITMENT)
}

/// The DEK of a response to the request `request_id` sealed under `request_dek`:
/// HKDF-SHA256(request DEK, salt = request id, info = "zenvelope/v1/response").
pub fn response_dek(request_dek: &Dek, request_id: &MessageId) -> Dek {
    Dek(hkdf32(&request_dek.0, request_id.as_bytes(), INFO_RESPONSE))
}

/// Normalises a login identity (an email address) before it is hashed: Unicode NFKC,
/// then ASCII whitespace trimmed from both ends, then Unicode lower case. NFKC comes first
/// so that, for example, a no-break space (U+00A0) becomes a space and is trimmed.
pub fn normalize_identity(identity: &str) -> String {
    let nfkc: String = identity.nfkc().collect();
    nfkc.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c'))
        .to_lowercase()
}

/// The deterministic PBKDF2 salt for a user: SHA-256 of the label, the tenant and the
/// normalised identity, so any device derives the same KEK and no server stores a salt.
pub fn kek_salt(tenant: &str, identity: &str) -> [u8; 32] {
    let mut c = Canon::new(LABEL_KEK_SALT);
    c.str(tenant).str(&normalize_identity(identity));
    Sha256::digest(c.as_bytes()).into()
}

/// Checks an iteration count against the accepted range.
pub(crate) fn check_iterations(iterations: u32) -> Result<(), Error> {
    if !(MIN_PBKDF2_ITERATIONS..=MAX_PBKDF2_ITERATIONS).contains(&iterations) {
        return Err(Error::InvalidInput(
            "PBKDF2 iterations must be between 100,000 and 10,000,000",
        ));
    }
    Ok(())
}

/// PBKDF2-HMAC-SHA256 of the NFKC-normalised passphrase.
pub(crate) fn derive_kek(
    passphrase: &Passphrase,
    salt: &[u8; 32],
    iterations: u32,
) -> Result<Kek, Error> {
    check_iterations(iterations)?;
    let normalized: Zeroizing<String> = Zeroizing::new(passphrase.expose().nfkc().collect());
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(normalized.as_bytes(), salt, iterations, &mut out);
    Ok(Kek(out))
}

/// A KEK's public id: `kek-` and 16 hex digits of HKDF(KEK, info = "zenvelope/v1/kek-id").
pub(crate) fn kek_id(kek: &Kek) -> String {
    let mut out = [0u8; 8];
    let _ = hkdf_sha256(&kek.0, &[], INFO_KEK_ID, &mut out);
    format!("kek-{}", hex::encode(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_normalisation() {
        assert_eq!(
            normalize_identity("  Alice@Example.COM\n"),
            "alice@example.com"
        );
        // NFKC folds the full-width letters; lower-casing handles non-ASCII.
        assert_eq!(
            normalize_identity("ＡＬＩＣＥ@ÉXAMPLE.com"),
            "alice@éxample.com"
        );
        assert_eq!(kek_salt("t", " A@B.C "), kek_salt("t", "a@b.c"));
        // NFKC before trimming: a no-break space is trimmed like a space.
        assert_eq!(
            normalize_identity("\u{a0}Bob@example.com\u{a0}"),
            "bob@example.com"
        );
        assert_ne!(kek_salt("t1", "a@b.c"), kek_salt("t2", "a@b.c"));
    }

    #[test]
    fn iterations_are_bounded() {
        assert!(check_iterations(99_999).is_err());
        assert!(check_iterations(100_000).is_ok());
        assert!(check_iterations(DEFAULT_PBKDF2_ITERATIONS).is_ok());
        assert!(check_iterations(10_000_001).is_err());
    }

    #[test]
    fn derivations_are_domain_separated() {
        let dek = Dek([7; 32]);
        let id: MessageId = "01937f6e-1a2b-7c3d-8e4f-5a6b7c8d9e0f".parse().expect("id");
        let k = payload_key(&dek, &id);
        let c = key_commitment(&dek, &id);
        let r = response_dek(&dek, &id);
        assert_ne!(*k, c);
        assert_ne!(c, r.0);
        assert_ne!(*k, r.0);
    }
}
