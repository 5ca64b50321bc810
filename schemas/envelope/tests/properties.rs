//! Property tests: seal/open and encode/decode round trips for arbitrary inputs, and a
//! decoder that never panics on arbitrary or mutated bytes.

use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use zenvelope_envelope::*;

fn keys() -> &'static (Keyring<FleetPrivateKey>, Arc<Keyring<FleetPublicKey>>) {
    static K: OnceLock<(Keyring<FleetPrivateKey>, Arc<Keyring<FleetPublicKey>>)> = OnceLock::new();
    K.get_or_init(|| {
        let k = FleetPrivateKey::generate("fleet", 1, 2048).expect("key");
        let p = FleetPublicKey::from_spki_der("fleet", 1, k.public_key().spki_der()).expect("spki");
        (
            Keyring::new().with(k).expect("r"),
            Arc::new(Keyring::new().with(p).expect("r")),
        )
    })
}

fn any_purpose() -> impl Strategy<Value = Purpose> {
    proptest::sample::select(Purpose::ALL.to_vec())
}

fn any_kind() -> impl Strategy<Value = Kind> {
    proptest::sample::select(Kind::ALL.to_vec())
}

fn any_recipient() -> impl Strategy<Value = Recipient> {
    (
        proptest::sample::select(RecipientType::ALL.to_vec()),
        "[a-zA-Z0-9:/._-]{0,40}",
        any::<i32>(),
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(any::<u8>(), 0..600),
    )
        .prop_map(
            |(recipient_type, key_id, key_version, params, wrapped_key)| Recipient {
                recipient_type,
                key_id,
                key_version,
                params,
                wrapped_key,
            },
        )
}

fn any_id() -> impl Strategy<Value = MessageId> {
    any::<[u8; 16]>().prop_map(|mut b| {
        b[6] = (b[6] & 0x0f) | 0x70;
        b[8] = (b[8] & 0x3f) | 0x80;
        MessageId::from_bytes(b).expect("v7")
    })
}

prop_compose! {
    fn any_envelope()(
        id in any_id(),
        corr in proptest::option::of(any_id()),
        tenant in "\\PC{0,30}",
        subject in "\\PC{0,60}",
        kind in any_kind(),
        purpose in any_purpose(),
        content_type in "\\PC{0,40}",
        created_at_ms in any::<i64>(),
        schema_id in any::<i32>(),
        key_commitment in any::<[u8; 32]>(),
        recipients in proptest::collection::vec(any_recipient(), 0..5),
        payload in proptest::collection::vec(any::<u8>(), 0..2000),
        sig in proptest::option::of(("\\PC{0,20}", any::<i32>(), proptest::collection::vec(any::<u8>(), 0..512))),
    ) -> Envelope {
        let correlation_id = if kind.is_response() { Some(corr.unwrap_or(id)) } else { corr };
        Envelope {
            header: Header { version: 1, message_id: id, tenant, subject, kind, purpose, content_type, created_at_ms, correlation_id, schema_id, key_commitment },
            recipients,
            payload,
            signature: sig.map(|(key_id, key_version, value)| Signature { key_id, key_version, algorithm: SignatureAlgorithm::RsaPssSha256, value }),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn seal_then_open_returns_the_plaintext(
        plaintext in proptest::collection::vec(any::<u8>(), 0..4096),
        tenant in "[a-z0-9][a-z0-9._-]{0,63}",
        subject in "[A-Za-z0-9_-]{1,64}",
        purpose in any_purpose(),
        record in any::<bool>(),
        content_type in "[a-z]{1,10}/[a-z0-9.+-]{1,30}",
        schema_id in 0i32..100_000,
    ) {
        let (private, public) = keys();
        let fields = HeaderFields { tenant, subject, kind: if record { Kind::Record } else { Kind::Request }, purpose, content_type, schema_id };
        let env = Sealer::new(vec![public.clone()]).seal(&fields, &plaintext).expect("seal");
        let opened = Opener::new(Keyring::new()).accept_unsigned().decode_and_open(&encode(&env), private).expect("open");
        prop_assert_eq!(opened.plaintext(), plaintext.as_slice());
        prop_assert_eq!(&opened.header().tenant, &fields.tenant);
        prop_assert_eq!(opened.header().purpose, fields.purpose);
    }

    #[test]
    fn decode_inverts_encode(env in any_envelope()) {
        let bytes = encode(&env);
        prop_assert_eq!(decode(&bytes, &Limits::default()).expect("decode"), env);
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes, &Limits::default());
    }

    #[test]
    fn decode_never_panics_on_mutated_envelopes(env in any_envelope(), edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut bytes = encode(&env);
        for (i, b) in edits {
            let n = bytes.len();
            bytes[i % n] = b;
        }
        let keep = cut % (bytes.len() + 1);
        bytes.truncate(keep);
        if let Ok(back) = decode(&bytes, &Limits::default()) {
            // Whatever decodes must re-encode to exactly the bytes it came from.
            prop_assert_eq!(encode(&back), bytes);
        }
    }
}
