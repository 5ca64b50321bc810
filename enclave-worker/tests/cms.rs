//! Tests for opening the KMS `CiphertextForRecipient` (CMS EnvelopedData, BER).
//!
//! Independent oracle: the `openssl-*.cms.der` files in `tests/data` were made with the
//! `openssl cms` CLI (see `tests/data/README.md`), not with our builder.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
use proptest::prelude::*;
use zenvelope_enclave::kms::danger::{
    Encoding, build_recipient_ciphertext, build_recipient_ciphertext_with,
};
use zenvelope_enclave::kms::{
    KmsError, MAX_CIPHERTEXT_BYTES, MAX_DEPTH, open_recipient_ciphertext,
};

const OID_ENVELOPED_DATA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03,
];
const OID_DATA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01,
];
const OID_RSAES_OAEP: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07,
];
const OID_MGF1: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08,
];
const OID_SHA256: &[u8] = &[
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
];
const OID_AES256_CBC: &[u8] = &[
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a,
];

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn read_data(name: &str) -> Vec<u8> {
    std::fs::read(data_dir().join(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

/// The throwaway recipient key committed under tests/data (openssl made the oracle files
/// for it).
fn key() -> &'static PrivateDecryptingKey {
    static KEY: OnceLock<PrivateDecryptingKey> = OnceLock::new();
    KEY.get_or_init(|| {
        PrivateDecryptingKey::from_pkcs8(&read_data("recipient-key.pk8.der")).expect("pkcs8 key")
    })
}

fn spki() -> Vec<u8> {
    key().public_key().as_der().expect("spki").as_ref().to_vec()
}

fn build(plaintext: &[u8]) -> Vec<u8> {
    build_recipient_ciphertext(plaintext, &spki(), &SystemRandom::new()).expect("build")
}

fn build_with(plaintext: &[u8], encoding: Encoding) -> Vec<u8> {
    build_recipient_ciphertext_with(plaintext, &spki(), &SystemRandom::new(), encoding)
        .expect("build")
}

fn open(ber: &[u8]) -> Result<Vec<u8>, KmsError> {
    open_recipient_ciphertext(ber, key()).map(|p| p.to_vec())
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}

fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// Offset of the 256-byte wrapped key (RSA-2048) inside the message.
fn wrapped_key_offset(ber: &[u8]) -> usize {
    find(ber, &[0x04, 0x82, 0x01, 0x00]) + 4
}

/// Offset of the 16-byte IV.
fn iv_offset(ber: &[u8]) -> usize {
    find(ber, OID_AES256_CBC) + OID_AES256_CBC.len() + 2
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

// ---------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------

#[test]
fn round_trip_kms_shape() {
    for len in [0usize, 1, 15, 16, 17, 121, 1024, 1025, 4096, 5000] {
        let message = plaintext(len);
        let ber = build(&message);
        // Indefinite-length ContentInfo, [0], EnvelopedData as KMS sends it...
        assert_eq!(&ber[..2], &[0x30, 0x80]);
        assert_eq!(&ber[13..17], &[0xa0, 0x80, 0x30, 0x80]);
        // ...closed by five end-of-contents.
        assert!(ber.ends_with(&[0u8; 10]));
        assert_eq!(open(&ber).expect("open"), message, "len {len}");
    }
}

/// Segment lengths of the constructed encryptedContent (short-form lengths only).
fn segment_lengths(ber: &[u8]) -> Vec<usize> {
    let mut at = find(ber, &[0xa0, 0x80, 0x04]) + 2;
    let mut lengths = Vec::new();
    while ber[at] == 0x04 {
        let len = usize::from(ber[at + 1]);
        assert!(len < 0x80, "test helper handles short-form lengths only");
        lengths.push(len);
        at += 2 + len;
    }
    assert_eq!(&ber[at..at + 2], &[0, 0]);
    lengths
}

#[test]
fn round_trip_small_chunks() {
    let message = plaintext(100); // 112 bytes of ciphertext
    for chunk_bytes in [1usize, 7, 16, 112, 113] {
        let ber = build_with(&message, Encoding::Indefinite { chunk_bytes });
        let lengths = segment_lengths(&ber);
        assert_eq!(
            lengths.len(),
            112usize.div_ceil(chunk_bytes),
            "chunk {chunk_bytes}"
        );
        assert_eq!(lengths.iter().sum::<usize>(), 112);
        assert_eq!(open(&ber).expect("open"), message, "chunk {chunk_bytes}");
    }
}

#[test]
fn round_trip_definite_lengths() {
    let message = plaintext(300);
    let ber = build_with(&message, Encoding::Definite);
    assert_eq!(&ber[..2], &[0x30, 0x82]);
    assert!(
        !ber.windows(2)
            .any(|w| w == [0xa0, 0x80] || w == [0x30, 0x80])
    );
    assert_eq!(open(&ber).expect("open"), message);
}

#[test]
fn builder_rejects_bad_inputs() {
    let rng = SystemRandom::new();
    assert!(matches!(
        build_recipient_ciphertext(b"x", b"not a key", &rng),
        Err(KmsError::InvalidRecipientKey)
    ));
    assert!(matches!(
        build_recipient_ciphertext_with(
            b"x",
            &spki(),
            &rng,
            Encoding::Indefinite { chunk_bytes: 0 }
        ),
        Err(KmsError::BuildFailed)
    ));
}

// ---------------------------------------------------------------------------------------
// Independent oracle: openssl cms
// ---------------------------------------------------------------------------------------

#[test]
fn opens_openssl_cms_subject_key_identifier() {
    // `-keyid`: KeyTransRecipientInfo version 2 with subjectKeyIdentifier, as KMS sends.
    assert_eq!(
        open(&read_data("openssl-ski-fleet-key.cms.der")).expect("open"),
        read_data("plaintext-fleet-key.pk8.der")
    );
    assert_eq!(
        open(&read_data("openssl-ski-5000.cms.der")).expect("open"),
        read_data("plaintext-5000.bin")
    );
}

#[test]
fn opens_openssl_cms_issuer_and_serial() {
    // Default openssl: version 0 with issuerAndSerialNumber.
    assert_eq!(
        open(&read_data("openssl-issuer-fleet-key.cms.der")).expect("open"),
        read_data("plaintext-fleet-key.pk8.der")
    );
    assert_eq!(
        open(&read_data("openssl-issuer-5000.cms.der")).expect("open"),
        read_data("plaintext-5000.bin")
    );
}

#[test]
fn openssl_files_are_indefinite_length_and_chunked() {
    // Guards the oracle itself: -stream must have produced BER with indefinite lengths,
    // and the 5000-byte file a multi-segment encryptedContent.
    let ber = read_data("openssl-ski-5000.cms.der");
    assert_eq!(&ber[..2], &[0x30, 0x80]);
    assert!(ber.ends_with(&[0u8; 10]));
    let content = find(&ber, &[0xa0, 0x80, 0x04]);
    assert!(find_all(&ber[content..], &[0x04, 0x82]).len() >= 2);
}

#[test]
fn rejects_openssl_variants_we_do_not_accept() {
    assert!(matches!(
        open(&read_data("openssl-oaep-sha1.cms.der")),
        Err(KmsError::UnsupportedOaepParameters)
    ));
    assert!(matches!(
        open(&read_data("openssl-pkcs1v15.cms.der")),
        Err(KmsError::UnsupportedKeyEncryption)
    ));
    assert!(matches!(
        open(&read_data("openssl-aes128.cms.der")),
        Err(KmsError::UnsupportedContentEncryption)
    ));
    assert!(matches!(
        open(&read_data("openssl-two-recipients.cms.der")),
        Err(KmsError::RecipientCount { count: 2 })
    ));
}

/// Our builder's output must open with `openssl cms -decrypt`. Skipped (with a message)
/// when the openssl CLI is not on PATH.
#[test]
fn openssl_decrypts_our_builder_output() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIPPED openssl_decrypts_our_builder_output: openssl CLI not on PATH");
        return;
    }
    for (name, encoding) in [
        ("indefinite", Encoding::Indefinite { chunk_bytes: 1024 }),
        ("chunk7", Encoding::Indefinite { chunk_bytes: 7 }),
        ("definite", Encoding::Definite),
    ] {
        let message = plaintext(2500);
        let ber = build_with(&message, encoding);
        let path =
            std::env::temp_dir().join(format!("zenvelope-cms-{}-{name}.der", std::process::id()));
        std::fs::write(&path, &ber).expect("write temp");
        let output = Command::new("openssl")
            .args(["cms", "-decrypt", "-binary", "-inform", "DER", "-in"])
            .arg(&path)
            .args(["-keyform", "DER", "-inkey"])
            .arg(data_dir().join("recipient-key.pk8.der"))
            .output()
            .expect("run openssl");
        let _ = std::fs::remove_file(&path);
        assert!(
            output.status.success(),
            "openssl rejected {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(output.stdout, message, "openssl plaintext for {name}");
    }
}

// ---------------------------------------------------------------------------------------
// Tampering: decryption failures are opaque
// ---------------------------------------------------------------------------------------

#[test]
fn wrong_key_is_opaque() {
    let other = PrivateDecryptingKey::generate(KeySize::Rsa2048).expect("generate");
    let ber = build(b"fleet key");
    assert!(matches!(
        open_recipient_ciphertext(&ber, &other),
        Err(KmsError::DecryptFailed)
    ));
}

#[test]
fn tampered_wrapped_key_is_opaque() {
    let ber = build(&plaintext(64));
    let start = wrapped_key_offset(&ber);
    for offset in [0usize, 1, 100, 255] {
        let mut tampered = ber.clone();
        tampered[start + offset] ^= 0x01;
        assert!(
            matches!(open(&tampered), Err(KmsError::DecryptFailed)),
            "offset {offset}"
        );
    }
}

#[test]
fn tampered_ciphertext_is_opaque() {
    // 48 bytes of plaintext: the last ciphertext block is a full block of padding, so a
    // flip in the block before it always breaks the PKCS#7 padding.
    let message = plaintext(48);
    let ber = build(&message);
    let last_byte = ber.len() - 11; // five end-of-contents follow the ciphertext
    for flip in [last_byte - 16, last_byte - 20, last_byte - 31] {
        let mut tampered = ber.clone();
        tampered[flip] ^= 0x01;
        assert!(
            matches!(open(&tampered), Err(KmsError::DecryptFailed)),
            "flip {flip}"
        );
    }
    // Elsewhere CBC garbles a block instead (no authentication); never the original.
    let mut tampered = ber.clone();
    tampered[last_byte - 40] ^= 0x01;
    assert_ne!(open(&tampered).ok(), Some(message));
}

#[test]
fn tampered_iv_is_opaque_or_never_the_plaintext() {
    // Empty plaintext: the only block is padding, so any IV flip breaks it.
    let ber = build(b"");
    let iv = iv_offset(&ber);
    for offset in [0usize, 7, 15] {
        let mut tampered = ber.clone();
        tampered[iv + offset] ^= 0x80;
        assert!(
            matches!(open(&tampered), Err(KmsError::DecryptFailed)),
            "iv {offset}"
        );
    }
    // With data, CBC turns an IV flip into a changed first block.
    let message = plaintext(40);
    let mut tampered = build(&message);
    let iv = iv_offset(&tampered);
    tampered[iv] ^= 0x80;
    assert_ne!(open(&tampered).ok(), Some(message));
}

#[test]
fn decrypt_failed_says_nothing() {
    let text = KmsError::DecryptFailed.to_string();
    assert_eq!(text, "The KMS recipient ciphertext could not be decrypted.");
}

// ---------------------------------------------------------------------------------------
// Structural errors are specific
// ---------------------------------------------------------------------------------------

fn replace_last_byte_of(ber: &[u8], needle: &[u8], nth: usize, value: u8) -> Vec<u8> {
    let at = find_all(ber, needle)[nth] + needle.len() - 1;
    let mut out = ber.to_vec();
    out[at] = value;
    out
}

#[test]
fn wrong_oids_are_specific() {
    let ber = build(b"fleet key");
    // id-signedData instead of id-envelopedData.
    let signed = replace_last_byte_of(&ber, OID_ENVELOPED_DATA, 0, 0x02);
    assert!(matches!(open(&signed), Err(KmsError::NotEnvelopedData)));
    // rsaEncryption (PKCS#1 v1.5) instead of RSAES-OAEP.
    let pkcs1 = replace_last_byte_of(&ber, OID_RSAES_OAEP, 0, 0x01);
    assert!(matches!(
        open(&pkcs1),
        Err(KmsError::UnsupportedKeyEncryption)
    ));
    // aes128-CBC instead of aes256-CBC.
    let aes128 = replace_last_byte_of(&ber, OID_AES256_CBC, 0, 0x02);
    assert!(matches!(
        open(&aes128),
        Err(KmsError::UnsupportedContentEncryption)
    ));
    // id-signedData as the encrypted content type.
    let content_type = replace_last_byte_of(&ber, OID_DATA, 0, 0x02);
    assert!(matches!(
        open(&content_type),
        Err(KmsError::UnsupportedContentType)
    ));
}

#[test]
fn wrong_oaep_parameters_are_specific() {
    let ber = build(b"fleet key");
    assert_eq!(find_all(&ber, OID_SHA256).len(), 2);
    // SHA-384 as the OAEP hash, then as the MGF1 hash.
    for nth in 0..2 {
        let tampered = replace_last_byte_of(&ber, OID_SHA256, nth, 0x02);
        assert!(
            matches!(open(&tampered), Err(KmsError::UnsupportedOaepParameters)),
            "sha256 occurrence {nth}"
        );
    }
    // A mask generation function other than MGF1.
    let tampered = replace_last_byte_of(&ber, OID_MGF1, 0, 0x0a);
    assert!(matches!(
        open(&tampered),
        Err(KmsError::UnsupportedOaepParameters)
    ));
}

#[test]
fn unsupported_versions_are_specific() {
    let ber = build(b"fleet key");
    // EnvelopedData version 2 -> 3.
    let at = find(&ber, &[0x02, 0x01, 0x02]);
    let mut tampered = ber.clone();
    tampered[at + 2] = 3;
    assert!(matches!(
        open(&tampered),
        Err(KmsError::UnsupportedVersion {
            field: "EnvelopedData",
            version: 3
        })
    ));
    // EnvelopedData version 0 while the recipient is version 2.
    tampered[at + 2] = 0;
    assert!(matches!(
        open(&tampered),
        Err(KmsError::UnsupportedVersion {
            field: "EnvelopedData",
            version: 0
        })
    ));
}

#[test]
fn bad_iv_length_is_specific() {
    // An IV of 15 bytes in an otherwise valid indefinite-length message.
    let ber = build(b"fleet key");
    let iv = iv_offset(&ber);
    let mut short = ber[..iv - 2].to_vec();
    // contentEncryptionAlgorithm SEQUENCE length shrinks by one.
    let seq_len_at = find(&ber, OID_AES256_CBC) - 1;
    short[seq_len_at] -= 1;
    short.extend_from_slice(&[0x04, 15]);
    short.extend_from_slice(&ber[iv..iv + 15]);
    short.extend_from_slice(&ber[iv + 16..]);
    assert!(matches!(open(&short), Err(KmsError::InvalidIv)));
}

#[test]
fn missing_encrypted_content_is_specific() {
    let ber = build(b"fleet key");
    let content = find(&ber, &[0xa0, 0x80, 0x04]);
    let mut tampered = ber[..content].to_vec();
    tampered.extend_from_slice(&[0u8; 8]); // close EncryptedContentInfo and outer layers
    assert!(matches!(
        open(&tampered),
        Err(KmsError::MissingEncryptedContent)
    ));
}

// ---------------------------------------------------------------------------------------
// Hostile BER: errors, never panics
// ---------------------------------------------------------------------------------------

#[test]
fn every_truncation_fails() {
    let ber = build(&plaintext(40));
    for len in 0..ber.len() {
        assert!(open(&ber[..len]).is_err(), "prefix {len}");
    }
    let ber = build_with(&plaintext(40), Encoding::Definite);
    for len in 0..ber.len() {
        assert!(open(&ber[..len]).is_err(), "definite prefix {len}");
    }
}

#[test]
fn missing_end_of_contents_fails() {
    let ber = build(b"fleet key");
    let result = open(&ber[..ber.len() - 2]);
    assert!(
        matches!(
            result,
            Err(KmsError::Malformed {
                reason: "missing end-of-contents"
            })
        ),
        "{result:?}"
    );
}

#[test]
fn trailing_garbage_fails() {
    let mut ber = build(b"fleet key");
    ber.push(0x00);
    assert!(matches!(open(&ber), Err(KmsError::Malformed { .. })));
    let mut ber = build(b"fleet key");
    ber.extend_from_slice(&[0x05, 0x00]);
    assert!(matches!(
        open(&ber),
        Err(KmsError::Malformed {
            reason: "trailing bytes after the ContentInfo"
        })
    ));
}

#[test]
fn nesting_too_deep_fails() {
    let mut ber = Vec::new();
    for _ in 0..=MAX_DEPTH + 1 {
        ber.extend_from_slice(&[0x30, 0x80]);
    }
    for _ in 0..=MAX_DEPTH + 1 {
        ber.extend_from_slice(&[0x00, 0x00]);
    }
    assert!(matches!(open(&ber), Err(KmsError::TooDeep { .. })));
    // Deep constructed OCTET STRING segments inside encryptedContent.
    let base = build(b"fleet key");
    let content = find(&base, &[0xa0, 0x80, 0x04]) + 2;
    let mut deep = base[..content].to_vec();
    for _ in 0..MAX_DEPTH {
        deep.extend_from_slice(&[0x24, 0x80]);
    }
    deep.extend_from_slice(&[0x04, 0x00]);
    for _ in 0..MAX_DEPTH {
        deep.extend_from_slice(&[0x00, 0x00]);
    }
    deep.extend_from_slice(&[0u8; 10]);
    assert!(matches!(open(&deep), Err(KmsError::TooDeep { .. })));
}

#[test]
fn length_overflow_fails() {
    for ber in [
        vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x00],
        vec![0x30, 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        vec![0x30, 0xff],
        vec![0x30, 0x82, 0x01],
    ] {
        assert!(
            matches!(open(&ber), Err(KmsError::Malformed { .. })),
            "{ber:02x?}"
        );
    }
    // An inner length running past its parent.
    let mut ber = build(b"fleet key");
    let at = wrapped_key_offset(&ber) - 2;
    ber[at] = 0x7f;
    assert!(matches!(open(&ber), Err(KmsError::Malformed { .. })));
}

#[test]
fn oversize_fails() {
    let ber = vec![0u8; MAX_CIPHERTEXT_BYTES + 1];
    assert!(matches!(
        open(&ber),
        Err(KmsError::TooLarge { len, max: MAX_CIPHERTEXT_BYTES }) if len == MAX_CIPHERTEXT_BYTES + 1
    ));
    // A well-formed envelope that is simply too big.
    let ber = build(&plaintext(MAX_CIPHERTEXT_BYTES));
    assert!(matches!(open(&ber), Err(KmsError::TooLarge { .. })));
}

#[test]
fn not_cms_fails() {
    for ber in [&b""[..], b"\x30\x00", b"\x04\x01\x00", b"hello world"] {
        assert!(open(ber).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = open(&bytes);
    }

    #[test]
    fn mutated_envelopes_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        static BASE: OnceLock<Vec<u8>> = OnceLock::new();
        let base = BASE.get_or_init(|| build(&plaintext(100)));
        let mut ber = base.clone();
        for (index, value) in &edits {
            let i = index.index(ber.len());
            ber[i] = *value;
        }
        let _ = open(&ber);
        let _ = open(&ber[..cut.index(ber.len())]);
    }
}
