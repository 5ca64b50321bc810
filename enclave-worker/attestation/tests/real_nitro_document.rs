//! A real AWS Nitro Enclaves attestation document (see `data/README.md` for its
//! provenance) parses with the strict decoder and chains to the embedded AWS root.

use std::time::{Duration, SystemTime};

use aws_lc_rs::digest;
use base64::Engine;
use zenvelope_attestation::{
    AWS_NITRO_ROOT_G1_DER, AWS_NITRO_ROOT_G1_SHA256, AttestationDocument, CertPosition, CoseSign1,
    Error, TrustAnchor, verify,
};

fn real_document() -> Vec<u8> {
    let b64 = include_str!("data/nitro_debug_enclave.b64");
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .expect("base64")
}

#[test]
fn embedded_root_matches_the_fingerprint_aws_publishes() {
    let fp = digest::digest(&digest::SHA256, AWS_NITRO_ROOT_G1_DER);
    assert_eq!(fp.as_ref(), AWS_NITRO_ROOT_G1_SHA256);
    assert_eq!(
        hex::encode(AWS_NITRO_ROOT_G1_SHA256),
        "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
    );
    let anchor = TrustAnchor::aws_nitro_root_g1();
    assert!(anchor.is_aws_nitro_root_g1());
    assert_eq!(
        TrustAnchor::from_der(AWS_NITRO_ROOT_G1_DER).expect("parses"),
        anchor
    );
}

#[test]
fn real_document_has_the_documented_shape() {
    let doc = real_document();
    assert_eq!(
        &doc[..5],
        &[0x84, 0x44, 0xa1, 0x01, 0x38],
        "untagged, {{1: -35}}"
    );
    let cose = CoseSign1::decode(&doc).expect("COSE_Sign1");
    let payload = AttestationDocument::decode(&cose.payload).expect("payload");
    assert_eq!(payload.cabundle[0], AWS_NITRO_ROOT_G1_DER);
    assert_eq!(payload.pcrs.len(), 16);
    assert!(payload.pcrs.values().all(|v| v.len() == 48));
    assert!(payload.module_id.starts_with("i-"));
    // Our encoder writes what the NSM wrote, byte for byte.
    assert_eq!(payload.encode().expect("encode"), cose.payload);
    assert_eq!(cose.encode().expect("encode"), doc);
}

#[test]
fn real_document_chains_to_the_aws_root_at_its_own_time() {
    let doc = real_document();
    let cose = CoseSign1::decode(&doc).expect("COSE_Sign1");
    let ts = AttestationDocument::decode(&cose.payload)
        .expect("payload")
        .timestamp_ms;
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(ts);
    let v = verify(&doc, &TrustAnchor::aws_nitro_root_g1(), at).expect("real document verifies");
    assert_eq!(v.timestamp_ms(), ts);
    // It came from an enclave in debug mode: all-zero PCRs. Never release keys to that.
    assert!(v.is_debug_mode());
    println!(
        "real Nitro document: module {}, {} PCRs, cabundle of {}",
        v.module_id(),
        v.pcrs().len(),
        v.document().cabundle.len()
    );

    // Today its short-lived leaf has long expired.
    assert!(matches!(
        verify(&doc, &TrustAnchor::aws_nitro_root_g1(), SystemTime::now()),
        Err(Error::CertificateExpired { .. })
    ));
    // One byte of its signature flipped: rejected.
    let mut bad = doc.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(
        verify(&bad, &TrustAnchor::aws_nitro_root_g1(), at),
        Err(Error::SignatureInvalid)
    ));
    // Pinning a dev root instead: untrusted.
    let dev = zenvelope_attestation::danger::DevCa::generate(false).expect("ca");
    assert!(matches!(
        verify(&doc, &dev.trust_anchor().expect("anchor"), at),
        Err(Error::UntrustedRoot)
    ));
    let _ = CertPosition::Leaf;
}
