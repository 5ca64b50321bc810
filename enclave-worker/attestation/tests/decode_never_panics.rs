//! Property tests: decoding and verifying arbitrary or mutated bytes never panics, and a
//! mutated dev document never verifies.

use std::sync::OnceLock;
use std::time::SystemTime;

use proptest::prelude::*;
use zenvelope_attestation::danger::{DevCa, dev_measurements};
use zenvelope_attestation::{
    AttestationDocument, AttestationRequest, Attestor, CoseSign1, TrustAnchor, verify,
};

fn fixture() -> &'static (Vec<u8>, TrustAnchor) {
    static FX: OnceLock<(Vec<u8>, TrustAnchor)> = OnceLock::new();
    FX.get_or_init(|| {
        let ca = DevCa::generate(true).expect("ca");
        let a = ca.issue("p", dev_measurements(b"p")).expect("leaf");
        let doc = a
            .attest(&AttestationRequest {
                nonce: Some(vec![1; 16]),
                ..Default::default()
            })
            .expect("attest");
        (doc, ca.trust_anchor().expect("anchor"))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = CoseSign1::decode(&bytes);
        let _ = AttestationDocument::decode(&bytes);
        let _ = verify(&bytes, &TrustAnchor::aws_nitro_root_g1(), SystemTime::now());
    }

    #[test]
    fn mutated_dev_document_never_verifies(pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let (doc, anchor) = fixture();
        let mut bad = doc.clone();
        let i = pos.index(bad.len());
        bad[i] ^= flip;
        prop_assert!(verify(&bad, anchor, SystemTime::now()).is_err());
    }

    #[test]
    fn truncated_dev_document_never_verifies(cut in any::<prop::sample::Index>()) {
        let (doc, anchor) = fixture();
        let n = cut.index(doc.len());
        prop_assert!(verify(&doc[..n], anchor, SystemTime::now()).is_err());
    }
}

#[test]
fn mutated_fixture_is_valid_before_mutation() {
    let (doc, anchor) = fixture();
    verify(doc, anchor, SystemTime::now()).expect("baseline verifies");
}
