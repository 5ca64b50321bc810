//! C2SP signed notes and tlog checkpoints: published vectors, round trips and
//! tampering.
//!
//! Vectors (data only):
//! * `golang.org/x/mod`, file `sumdb/note/note_test.go` (`TestNewVerifier`,
//!   `TestNewSigner`, `TestSign`, `TestOpen`): the PeterNeumann and EnochRoot keys,
//!   the Peter Neumann quote and its signatures;
//! * `github.com/transparency-dev/formats`, file `log/note_test.go`
//!   (`TestSumDBNoteParsing`, package variables): a real signed tree head of
//!   sum.golang.org with its verifier key, and the "Log"/"Known" key pairs.

use zenvelope_audit::merkle::{Hash, empty_root};
use zenvelope_audit::note::{
    Checkpoint, MAX_SIGNATURES, NoteError, NoteSignature, Signer, Verifier, key_id, open_note,
    sign_note,
};

const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

const SUMDB_VKEY: &str = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";
const SUMDB_NOTE: &str = "go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\n— sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n";

/// transparency-dev/formats key pairs: (verifier key, private key).
const TD_KEYS: [(&str, &str); 4] = [
    (
        "Log+2271c621+AemuH5ooBpEPcr+W8onrjA1NfuzBVHdezakU81Ekarvs",
        "PRIVATE+KEY+Log+2271c621+AdEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKgvQ",
    ),
    (
        "Known+451c786d+AXAQ0T7lbwuY4ABJ9/MYY9bWV3hmSyOGVt2x42NkmdUH",
        "PRIVATE+KEY+Known+451c786d+AQPRoE2+Z+Ed1HaHBA9F/FfracvcZ2rDU39kCecMEoci",
    ),
    (
        "KnownAgain+4893b26c+AQ+LR7BFF/F/dkpIBjBpSvT0crkteizuUkavAoGeaYMj",
        "PRIVATE+KEY+KnownAgain+4893b26c+ARhZda/l25zjGZswYLDZsLNRzNpmv5wYTN9IoTr1OJ2+",
    ),
    (
        "Unknown+fdbb2e08+AWgRIYZ+8x1Vl+1Q+sR8zciNHiYI1SdlBjNw+RV0rots",
        "PRIVATE+KEY+Unknown+fdbb2e08+Aav2knTC6orbhXX8pMWuNiWgO+Wwk2DB+h1eU2Q1W1nU",
    ),
];

fn peter() -> Verifier {
    Verifier::from_vkey(PETER_VKEY).expect("the Go test verifier key parses")
}

fn enoch() -> Verifier {
    Verifier::from_vkey(ENOCH_VKEY).expect("the Go test verifier key parses")
}

fn peter_signer() -> Signer {
    Signer::from_private_key_text(PETER_SKEY).expect("the Go test private key parses")
}

// ---------------------------------------------------------------------------------
// Keys.
// ---------------------------------------------------------------------------------

#[test]
fn go_keys_parse_and_round_trip() {
    let v = peter();
    assert_eq!(v.name(), "PeterNeumann");
    assert_eq!(v.key_id(), 0xc74f_20a3);
    assert_eq!(key_id(v.name(), v.public_key()), 0xc74f_20a3);
    assert_eq!(v.to_vkey(), PETER_VKEY);
    assert_eq!(v.to_string(), PETER_VKEY);

    let s = peter_signer();
    assert_eq!(s.name(), "PeterNeumann");
    assert_eq!(s.key_id(), 0xc74f_20a3);
    assert_eq!(s.verifier(), v);
    assert_eq!(s.to_private_key_text().as_str(), PETER_SKEY);

    assert_eq!(enoch().key_id(), 0xaf0c_fe78);
    for (vkey, skey) in TD_KEYS {
        let signer = Signer::from_private_key_text(skey).expect("private key parses");
        assert_eq!(signer.verifier().to_vkey(), vkey);
        assert_eq!(signer.to_private_key_text().as_str(), skey);
        assert_eq!(Verifier::from_vkey(vkey), Ok(signer.verifier()));
    }
    let sumdb = Verifier::from_vkey(SUMDB_VKEY).expect("the sum.golang.org key parses");
    assert_eq!(sumdb.key_id(), 0x033d_e0ae);
}

/// Go's `TestNewVerifier`: every proper substring and every single-byte increment
/// of the key must be rejected.
#[test]
fn mangled_verifier_keys_are_rejected() {
    let b = PETER_VKEY.as_bytes();
    for i in 0..=b.len() {
        for j in i + 1..=b.len() {
            if i == 0 && j == b.len() {
                continue;
            }
            let s = std::str::from_utf8(&b[i..j]).expect("ASCII");
            assert!(Verifier::from_vkey(s).is_err(), "accepted {s:?}");
        }
    }
    let mut m = b.to_vec();
    for i in 0..m.len() {
        m[i] += 1;
        let s = std::str::from_utf8(&m).expect("ASCII");
        assert!(Verifier::from_vkey(s).is_err(), "accepted {s:?}");
        m[i] -= 1;
    }
    // Wrong key length and unknown algorithm, each with a key id recomputed by Go.
    assert!(matches!(
        Verifier::from_vkey(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        ),
        Err(NoteError::MalformedVerifierKey { .. })
    ));
    assert_eq!(
        Verifier::from_vkey("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        Err(NoteError::UnsupportedAlgorithm { algorithm: 0x65 })
    );
    // Specific errors.
    assert_eq!(
        Verifier::from_vkey("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        Err(NoteError::KeyIdMismatch {
            name: "PeterNeumann".into(),
            declared: 0xc74f_20a4,
            computed: 0xc74f_20a3,
        })
    );
    for bad in [
        "",
        "PeterNeumann",
        "PeterNeumann+c74f20a3",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW=",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
    ] {
        assert!(Verifier::from_vkey(bad).is_err(), "accepted {bad:?}");
    }
    // A private key is not a verifier key (its key id does not match the seed bytes).
    assert!(Verifier::from_vkey(PETER_SKEY).is_err());
}

/// Go's `TestNewSigner`.
#[test]
fn mangled_private_keys_are_rejected() {
    let b = PETER_SKEY.as_bytes();
    for i in 0..=b.len() {
        for j in i + 1..=b.len() {
            if i == 0 && j == b.len() {
                continue;
            }
            let s = std::str::from_utf8(&b[i..j]).expect("ASCII");
            assert!(Signer::from_private_key_text(s).is_err(), "accepted {s:?}");
        }
    }
    let mut m = b.to_vec();
    for i in 0..m.len() {
        m[i] += 1;
        let s = std::str::from_utf8(&m).expect("ASCII");
        assert!(Signer::from_private_key_text(s).is_err(), "accepted {s:?}");
        m[i] -= 1;
    }
    assert!(Signer::from_private_key_text(PETER_VKEY).is_err());
}

#[test]
fn errors_never_print_private_keys() {
    // The seed part of the Go test key, base64, and the start of its hex.
    let secret_b64 = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    let mut inputs = vec![
        PETER_SKEY.replace("c74f20a3", "c74f20a4"),
        PETER_SKEY.replace("PRIVATE", "PRIVAT"),
        PETER_SKEY.replace("+AYEK", "+ZYEK"),
        format!("{PETER_SKEY}A"),
    ];
    inputs.push(PETER_SKEY[..PETER_SKEY.len() - 4].to_owned());
    for input in inputs {
        let Err(err) = Signer::from_private_key_text(&input) else {
            panic!("accepted {input:?}");
        };
        let shown = format!("{err} / {err:?}");
        assert!(!shown.contains(&secret_b64[4..20]), "{shown}");
        assert!(!shown.contains("810a1402"), "{shown}");
    }
}

#[test]
fn generated_keys_round_trip() {
    let signer = Signer::generate("example.com/audit").expect("key generation works");
    let other = Signer::generate("example.com/audit").expect("key generation works");
    assert_ne!(signer.verifier(), other.verifier(), "keys are random");
    let text = signer.to_private_key_text();
    let again = Signer::from_private_key_text(&text).expect("own private key parses");
    assert_eq!(again.verifier(), signer.verifier());
    let vkey = signer.verifier().to_vkey();
    assert_eq!(Verifier::from_vkey(&vkey), Ok(signer.verifier()));
    assert!(vkey.starts_with(&format!("example.com/audit+{:08x}+", signer.key_id())));

    let sig = signer.sign(b"hi");
    assert!(signer.verifier().verify(b"hi", &sig));
    assert!(!signer.verifier().verify(b"ho", &sig));
    assert!(!other.verifier().verify(b"hi", &sig));
    let mut bad = sig;
    bad[0] ^= 1;
    assert!(!signer.verifier().verify(b"hi", &bad));
    assert!(!signer.verifier().verify(b"hi", &sig[..63]));

    for bad_name in ["", "a b", "a+b", "tab\there", "nbsp\u{a0}"] {
        assert!(matches!(
            Signer::generate(bad_name),
            Err(NoteError::InvalidKeyName { .. })
        ));
    }
    let seed = [7u8; 32];
    let a = Signer::from_ed25519_seed("seeded", &seed).expect("valid name");
    let b = Signer::from_ed25519_seed("seeded", &seed).expect("valid name");
    assert_eq!(a.verifier(), b.verifier());
    assert_eq!(a.sign(b"x"), b.sign(b"x"), "Ed25519 is deterministic");
}

// ---------------------------------------------------------------------------------
// Notes.
// ---------------------------------------------------------------------------------

/// Go's `TestSign`: Ed25519 is deterministic, so the signature line is reproduced.
#[test]
fn signing_reproduces_go_vector() {
    let signed = sign_note(TEXT, &peter_signer()).expect("valid text");
    assert_eq!(signed, format!("{TEXT}\n{PETER_SIG}"));
    assert!(matches!(
        sign_note("abc", &peter_signer()),
        Err(NoteError::InvalidNoteText { .. })
    ));
    assert!(sign_note("", &peter_signer()).is_err());
    assert!(sign_note("bell\u{7}\n", &peter_signer()).is_err());
    assert!(sign_note("cr\r\n", &peter_signer()).is_err());
}

#[test]
fn open_go_vectors() {
    let note = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    // One trusted key: Enoch's line is kept as unverified.
    let opened = open_note(&note, &[peter()]).expect("Peter signed it");
    assert_eq!(opened.text, TEXT);
    assert_eq!(opened.verified_by, vec![peter()]);
    assert_eq!(opened.unverified.len(), 1);
    assert_eq!(opened.unverified[0].name, "EnochRoot");
    assert_eq!(opened.unverified[0].key_id, 0xaf0c_fe78);
    assert_eq!(opened.unverified[0].to_line(), ENOCH_SIG);
    // Both trusted.
    let opened = open_note(&note, &[enoch(), peter()]).expect("both signed it");
    assert_eq!(opened.verified_by, vec![peter(), enoch()]);
    assert!(opened.unverified.is_empty());
    // None trusted.
    assert_eq!(open_note(&note, &[]), Err(NoteError::NoTrustedSignature));
    // A duplicated identical verifier is harmless (Go reports it as ambiguous).
    assert!(
        open_note(
            &format!("{TEXT}\n{ENOCH_SIG}"),
            &[enoch(), peter(), enoch()]
        )
        .is_ok()
    );
    // Too many signatures.
    let many = |n| format!("{TEXT}\n{}", PETER_SIG.repeat(n));
    assert!(open_note(&many(MAX_SIGNATURES), &[peter()]).is_ok());
    assert_eq!(
        open_note(&many(MAX_SIGNATURES + 1), &[peter()]),
        Err(NoteError::TooManySignatures { limit: 100 })
    );
    assert_eq!(
        open_note(&many(MAX_SIGNATURES + 1), &[]),
        Err(NoteError::TooManySignatures { limit: 100 })
    );
    // A bad signature from a trusted key rejects the note.
    let bad_peter = format!("{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
    assert_eq!(
        open_note(&format!("{TEXT}\n{bad_peter}"), &[peter()]),
        Err(NoteError::InvalidSignature {
            name: "PeterNeumann".into(),
            key_id: 0xc74f_20a3
        })
    );
    assert_eq!(
        open_note(
            &format!("{TEXT}\n{bad_peter}{ENOCH_SIG}"),
            &[peter(), enoch()]
        ),
        Err(NoteError::InvalidSignature {
            name: "PeterNeumann".into(),
            key_id: 0xc74f_20a3
        })
    );
    // Repeated lines: verified ones are kept once, unverified ones deduplicated.
    let bad_enoch = format!("{}ABCD{}", &ENOCH_SIG[..60], &ENOCH_SIG[60..]);
    let note = format!("{TEXT}\n{PETER_SIG}{PETER_SIG}{ENOCH_SIG}{ENOCH_SIG}{bad_enoch}");
    let opened = open_note(&note, &[peter()]).expect("Peter signed it");
    assert_eq!(opened.verified_by, vec![peter()]);
    assert_eq!(opened.unverified.len(), 2);
    assert_eq!(opened.unverified[0].to_line(), ENOCH_SIG);
    assert_eq!(opened.unverified[1].to_line(), bad_enoch);
    // Lines of unknown keys sharing the name or the key id of a trusted key are ignored.
    let misnamed = PETER_SIG.replace("PeterNeumann", "CarmenSandiego");
    let wrong_id = PETER_SIG.replace("x08g", "xxxx");
    for line in [&misnamed, &wrong_id] {
        assert_eq!(
            open_note(&format!("{TEXT}\n{line}"), &[peter()]),
            Err(NoteError::NoTrustedSignature)
        );
        let opened = open_note(&format!("{TEXT}\n{line}{PETER_SIG}"), &[peter()])
            .expect("Peter's own line verifies");
        assert_eq!(opened.unverified.len(), 1);
    }
}

#[test]
fn malformed_notes_are_rejected() {
    let bad = [
        TEXT.to_owned(),
        format!("{TEXT}\n"),
        format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
        format!("\u{1}{TEXT}\n{PETER_SIG}"),
        format!(
            "{TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        ),
        format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
        format!(
            "{TEXT}\n- PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        ),
        format!("{TEXT}\n— PeterNeumann\n"),
        format!("{TEXT}\n— PeterNeumann \n"),
        format!("{TEXT}\n— PeterNeumann x08go/Z=\n"),
        format!("{TEXT}\n— PeterNeumann x08gow==\n"),
        format!("{TEXT}\n{PETER_SIG}\r\n"),
        format!("{TEXT}\r\n{PETER_SIG}"),
        format!(
            "{TEXT}\n{}",
            PETER_SIG.replace("PeterNeumann", "Peter+Neumann")
        ),
    ];
    for note in bad {
        let result = open_note(&note, &[peter()]);
        assert!(
            matches!(result, Err(NoteError::MalformedNote { .. })),
            "{note:?} gave {result:?}"
        );
    }
}

#[test]
fn tampering_is_detected() {
    let signed = sign_note(TEXT, &peter_signer()).expect("valid text");
    // Any change to the text.
    let tampered = signed.replacen("cryptography", "cryptographY", 1);
    assert!(matches!(
        open_note(&tampered, &[peter()]),
        Err(NoteError::InvalidSignature { .. })
    ));
    // Text and signature block split differently: an extra empty line moves into the text.
    let shifted = signed.replacen("problem,\n", "problem,\n\n", 1);
    assert!(open_note(&shifted, &[peter()]).is_err());
    // Any flipped bit of the signature.
    let line = signed.strip_prefix(TEXT).expect("text first");
    let sig = NoteSignature {
        name: "PeterNeumann".into(),
        key_id: 0xc74f_20a3,
        signature: peter_signer().sign(TEXT.as_bytes()).to_vec(),
    };
    assert_eq!(format!("\n{}", sig.to_line()), line);
    for byte in 0..64 {
        for bit in [0, 3, 7] {
            let mut bad = sig.clone();
            bad.signature[byte] ^= 1 << bit;
            let note = format!("{TEXT}\n{}", bad.to_line());
            assert!(
                matches!(
                    open_note(&note, &[peter()]),
                    Err(NoteError::InvalidSignature { .. })
                ),
                "bit {bit} of byte {byte}"
            );
        }
    }
    // A truncated or extended signature from a trusted key.
    for len in [63, 65] {
        let mut bad = sig.clone();
        bad.signature.resize(len, 0);
        let note = format!("{TEXT}\n{}", bad.to_line());
        assert!(open_note(&note, &[peter()]).is_err());
    }
    // A canonical one-byte "signature" with Peter's key id.
    assert!(matches!(
        open_note(&format!("{TEXT}\n— PeterNeumann x08go/Y=\n"), &[peter()]),
        Err(NoteError::InvalidSignature { .. })
    ));
    // Extra lines from unknown keys are ignored, wherever they are.
    let stranger = Signer::generate("stranger").expect("key generation works");
    let stranger_line = sign_note(TEXT, &stranger)
        .expect("valid text")
        .strip_prefix(TEXT)
        .expect("text first")[1..]
        .to_owned();
    let note = format!("{TEXT}\n{stranger_line}{PETER_SIG}{ENOCH_SIG}");
    let opened = open_note(&note, &[peter()]).expect("Peter signed it");
    assert_eq!(opened.unverified.len(), 2);
    assert_eq!(opened.unverified[0].name, "stranger");
    // The stranger's key is trusted once given, and its line verifies.
    let opened = open_note(&note, &[stranger.verifier(), peter()]).expect("both signed it");
    assert_eq!(opened.verified_by, vec![stranger.verifier(), peter()]);
}

#[test]
fn texts_with_empty_lines_round_trip() {
    let signer = Signer::generate("example.com/notes").expect("key generation works");
    for text in [
        "\n",
        "a\n\nb\n",
        "a\n\n",
        "x\n\n\n",
        "Ognuno sta solo\n\ned è subito sera.\n",
    ] {
        let signed = sign_note(text, &signer).expect("valid text");
        let opened = open_note(&signed, &[signer.verifier()]).expect("own signature");
        assert_eq!(opened.text, text);
    }
}

// ---------------------------------------------------------------------------------
// Checkpoints.
// ---------------------------------------------------------------------------------

#[test]
fn real_sumdb_checkpoint() {
    let verifier = Verifier::from_vkey(SUMDB_VKEY).expect("the sum.golang.org key parses");
    let opened = open_note(SUMDB_NOTE, std::slice::from_ref(&verifier)).expect("signed");
    assert_eq!(opened.verified_by, vec![verifier.clone()]);
    // The Go checksum database's origin differs from its key name, so `open` rejects
    // it and `open_with_origin` accepts it.
    assert_eq!(
        Checkpoint::open(SUMDB_NOTE, &verifier),
        Err(NoteError::OriginMismatch {
            expected: "sum.golang.org".into(),
            found: "go.sum database tree".into(),
        })
    );
    let cp = Checkpoint::open_with_origin(SUMDB_NOTE, &verifier, "go.sum database tree")
        .expect("valid checkpoint");
    assert_eq!(cp.origin, "go.sum database tree");
    assert_eq!(cp.size, 6_476_701);
    assert_eq!(
        hex::encode(cp.root),
        "99bf102d022cd19d323f90acb6aea0ba3f3ba1759e0bd80433ca158a49a6f569"
    );
    assert!(cp.extensions.is_empty());
    assert_eq!(
        format!("{}\n", cp.to_body()),
        SUMDB_NOTE.split('—').next().unwrap_or("")
    );
    // Tampering with the size breaks the signature.
    let tampered = SUMDB_NOTE.replace("6476701", "6476702");
    assert!(matches!(
        Checkpoint::open_with_origin(&tampered, &verifier, "go.sum database tree"),
        Err(NoteError::InvalidSignature { .. })
    ));
    // Signed by another key only.
    let peter = peter();
    assert_eq!(
        Checkpoint::open_with_origin(SUMDB_NOTE, &peter, "go.sum database tree"),
        Err(NoteError::NoTrustedSignature)
    );
}

#[test]
fn c2sp_example_body_parses() {
    let body =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    let cp = Checkpoint::parse_body(body).expect("the spec's example parses");
    assert_eq!(cp.origin, "example.com/behind-the-sofa");
    assert_eq!(cp.size, 20_852_163);
    assert_eq!(cp.to_body(), body);
}

fn sample_checkpoint() -> Checkpoint {
    Checkpoint {
        origin: "example.com/zenvelope-audit".into(),
        size: 42,
        root: [0xab; 32],
        extensions: Vec::new(),
    }
}

#[test]
fn checkpoints_round_trip() {
    let signer = Signer::generate("example.com/zenvelope-audit").expect("key generation works");
    let mut cp = sample_checkpoint();
    let signed = cp.sign(&signer).expect("valid checkpoint");
    assert!(signed.starts_with(&format!(
        "example.com/zenvelope-audit\n42\n{}\n\n— example.com/zenvelope-audit ",
        "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s="
    )));
    assert_eq!(
        Checkpoint::open(&signed, &signer.verifier()),
        Ok(cp.clone())
    );

    cp.extensions = vec!["first extension".into(), "second".into()];
    let signed = cp.sign(&signer).expect("valid checkpoint");
    assert_eq!(
        Checkpoint::open(&signed, &signer.verifier()),
        Ok(cp.clone())
    );

    let empty = Checkpoint {
        origin: cp.origin.clone(),
        size: 0,
        root: empty_root(),
        extensions: Vec::new(),
    };
    let signed = empty.sign(&signer).expect("valid checkpoint");
    assert!(signed.contains("\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"));
    assert_eq!(Checkpoint::open(&signed, &signer.verifier()), Ok(empty));

    // A key named differently from the origin signs, but `open` rejects it.
    let other = Signer::generate("other-name").expect("key generation works");
    let signed = sample_checkpoint().sign(&other).expect("valid checkpoint");
    assert!(matches!(
        Checkpoint::open(&signed, &other.verifier()),
        Err(NoteError::OriginMismatch { .. })
    ));
    assert_eq!(
        Checkpoint::open_with_origin(&signed, &other.verifier(), "example.com/zenvelope-audit"),
        Ok(sample_checkpoint())
    );
    // The wrong key.
    assert_eq!(
        Checkpoint::open(&signed, &signer.verifier()),
        Err(NoteError::NoTrustedSignature)
    );
    // A signed note that is not a checkpoint.
    let not_cp = sign_note("example.com/zenvelope-audit\nhello\n", &signer).expect("valid");
    assert!(matches!(
        Checkpoint::open(&not_cp, &signer.verifier()),
        Err(NoteError::MalformedCheckpoint { .. })
    ));
}

#[test]
fn invalid_checkpoints_are_not_signed() {
    let signer = Signer::generate("example.com/zenvelope-audit").expect("key generation works");
    let mut bad = Vec::new();
    let mut cp = sample_checkpoint();
    cp.origin = String::new();
    bad.push(cp);
    let mut cp = sample_checkpoint();
    cp.origin = "two\nlines".into();
    bad.push(cp);
    let mut cp = sample_checkpoint();
    cp.extensions = vec![String::new()];
    bad.push(cp);
    let mut cp = sample_checkpoint();
    cp.extensions = vec!["a\nb".into()];
    bad.push(cp);
    let mut cp = sample_checkpoint();
    cp.extensions = vec!["tab\there".into()];
    bad.push(cp);
    for cp in bad {
        assert!(
            matches!(cp.sign(&signer), Err(NoteError::MalformedCheckpoint { .. })),
            "{cp:?}"
        );
    }
}

#[test]
fn checkpoint_bodies_are_parsed_strictly() {
    let root: Hash = [0xab; 32];
    let root64 = "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=";
    let ok = format!("log\n42\n{root64}\n");
    assert_eq!(
        Checkpoint::parse_body(&ok),
        Ok(Checkpoint {
            origin: "log".into(),
            size: 42,
            root,
            extensions: Vec::new()
        })
    );
    assert_eq!(
        Checkpoint::parse_body(&format!("log\n18446744073709551615\n{root64}\next\n"))
            .map(|c| (c.size, c.extensions)),
        Ok((u64::MAX, vec!["ext".to_owned()]))
    );
    let bad = [
        String::new(),
        "\n".into(),
        format!("log\n42\n{root64}"),
        format!("\n42\n{root64}\n"),
        "log\n42\n".into(),
        "log\n42\n\n".into(),
        format!("log\n042\n{root64}\n"),
        format!("log\n00\n{root64}\n"),
        format!("log\n+42\n{root64}\n"),
        format!("log\n-1\n{root64}\n"),
        format!("log\n 42\n{root64}\n"),
        format!("log\n4 2\n{root64}\n"),
        format!("log\n0x2a\n{root64}\n"),
        format!("log\n18446744073709551616\n{root64}\n"),
        format!("log\n\n{root64}\n"),
        "log\n42\nYmFuYW5hcw==\n".into(),
        "log\n42\nThisIsn'tBase64\n".into(),
        // 32 bytes but without padding, and with non-zero trailing bits.
        "log\n42\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s\n".into(),
        "log\n42\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6t=\n".into(),
        format!("log\n42\n{root64}\n\n"),
        format!("log\n42\n{root64}\next\n\n"),
        format!("log\n42\n{root64}\r\n"),
        format!("log\r\n42\n{root64}\n"),
    ];
    for body in bad {
        assert!(
            matches!(
                Checkpoint::parse_body(&body),
                Err(NoteError::MalformedCheckpoint { .. })
            ),
            "accepted {body:?}"
        );
    }
}
