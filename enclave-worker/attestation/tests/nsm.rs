//! The production attestor. It needs `/dev/nsm`, i.e. a Nitro Enclave, so its test is
//! ignored (reported as skipped) unless run inside one with
//! `ZENVELOPE_NSM_TEST=1 cargo test -p zenvelope-attestation --test nsm -- --ignored`.

use std::time::SystemTime;

use zenvelope_attestation::{
    AttestationRequest, Attestor, Error, NsmAttestor, TrustAnchor, verify,
};

const NSM_TEST_ENV: &str = "ZENVELOPE_NSM_TEST";

#[test]
#[ignore = "needs /dev/nsm (a Nitro Enclave); run with ZENVELOPE_NSM_TEST=1 and --ignored"]
fn nsm_attestation_verifies_against_the_aws_root() {
    assert_eq!(
        std::env::var(NSM_TEST_ENV).as_deref(),
        Ok("1"),
        "set {NSM_TEST_ENV}=1 inside a Nitro Enclave to run this test"
    );
    let nsm = NsmAttestor::open().expect("/dev/nsm");
    let nonce = b"zenvelope-nsm-test-nonce".to_vec();
    let doc = nsm
        .attest(&AttestationRequest {
            user_data: Some(b"zenvelope".to_vec()),
            nonce: Some(nonce.clone()),
            public_key: None,
        })
        .expect("attestation");
    let v = verify(&doc, &TrustAnchor::aws_nitro_root_g1(), SystemTime::now()).expect("verifies");
    assert_eq!(v.nonce(), Some(nonce.as_slice()));
    assert_eq!(v.user_data(), Some(&b"zenvelope"[..]));
}

#[test]
fn nsm_is_unavailable_outside_an_enclave() {
    if std::path::Path::new("/dev/nsm").exists() {
        eprintln!("SKIPPED: /dev/nsm exists here.");
        return;
    }
    assert!(matches!(NsmAttestor::open(), Err(Error::NsmUnavailable)));
}
