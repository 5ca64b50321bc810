//! Subject pseudonyms: Kafka keys and audit rows carry these, never an email or a name.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::aad::Canon;
use crate::kdf::normalize_identity;

/// Domain label for subject pseudonyms.
pub const LABEL_SUBJECT: &[u8] = b"zenvelope/v1/subject";

/// The tenant's metadata key (from the platform KMS service); HMAC key for pseudonyms.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MetadataKey([u8; 32]);

impl MetadataKey {
    /// Wraps 32 key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The pseudonym of `identity` in `tenant`:
    /// `sp1_` + base64url (no padding) of HMAC-SHA256(key, canon(label, tenant, normalised identity)).
    pub fn pseudonym(&self, tenant: &str, identity: &str) -> String {
        let mut c = Canon::new(LABEL_SUBJECT);
        c.str(tenant).str(&normalize_identity(identity));
        // HMAC accepts keys of any length; 32 bytes cannot fail.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes any key length"),
        };
        mac.update(c.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!(
            "sp1_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_normalised_and_keyed() {
        let k = MetadataKey::from_bytes([1; 32]);
        let p = k.pseudonym("clinic-a", "Alice@Example.com");
        assert_eq!(p, k.pseudonym("clinic-a", " alice@example.com"));
        assert_eq!(p.len(), 4 + 43);
        assert!(!p.contains("alice"));
        assert_ne!(p, k.pseudonym("clinic-b", "alice@example.com"));
        assert_ne!(
            p,
            MetadataKey::from_bytes([2; 32]).pseudonym("clinic-a", "alice@example.com")
        );
    }
}
