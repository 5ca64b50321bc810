//! Behaviour of sealed envelopes: round trips, responses, binding of every header field,
//! tampering, key commitment, rotation, signatures, limits, and secrecy of plaintext.

use std::sync::{Arc, OnceLock};

use zenvelope_envelope::*;

const CANARY: &str = "CANARY-7f3a9c-journal-entry-about-panic-attacks";
const TENANT: &str = "clinic-a";

struct Fixture {
    fleet_private: Keyring<FleetPrivateKey>,
    fleet_public: Arc<Keyring<FleetPublicKey>>,
    user: Arc<UserKey>,
    producer: Arc<SigningKey>,
    enclave_signer: SigningKey,
}

/// Keys are generated once per test binary: RSA key generation is the slow part.
fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let fleet = FleetPrivateKey::generate("fleet", 1, 2048).expect("fleet key");
        let public =
            FleetPublicKey::from_spki_der("fleet", 1, fleet.public_key().spki_der()).expect("spki");
        Fixture {
            fleet_public: Arc::new(Keyring::new().with(public).expect("ring")),
            fleet_private: Keyring::new().with(fleet).expect("ring"),
            user: Arc::new(
                UserKey::derive_with_iterations(
                    TENANT,
                    "alice@example.com",
                    &Passphrase::new("correct horse battery"),
                    100_000,
                )
                .expect("user key"),
            ),
            producer: Arc::new(
                SigningKey::generate("journal-backend", 1, 2048).expect("signing key"),
            ),
            // Results are signed with ECDSA P-256, the fleet's default result algorithm.
            enclave_signer: SigningKey::generate_ecdsa_p256("fleet-signing", 1)
                .expect("signing key"),
        }
    })
}

fn fields() -> HeaderFields {
    HeaderFields {
        tenant: TENANT.into(),
        subject: MetadataKey::from_bytes([5; 32]).pseudonym(TENANT, "alice@example.com"),
        kind: Kind::Request,
        purpose: Purpose::IndividualRequest,
        content_type: "text/plain; charset=utf-8".into(),
        schema_id: 2,
    }
}

fn sealer() -> Sealer {
    let f = fx();
    Sealer::new(vec![f.user.clone(), f.fleet_public.clone()]).with_signer(f.producer.clone())
}

fn producers() -> Keyring<VerifyingKey> {
    Keyring::new()
        .with(fx().producer.verifying_key().expect("vk"))
        .expect("ring")
}

fn enclave_opener() -> Opener {
    Opener::new(producers())
}

fn user_opener() -> Opener {
    let trusted = producers()
        .with(fx().enclave_signer.verifying_key().expect("vk"))
        .expect("ring");
    Opener::new(trusted)
}

fn canary_request() -> Envelope {
    sealer().seal(&fields(), CANARY.as_bytes()).expect("seal")
}

#[test]
fn request_opens_for_the_enclave_and_for_the_user() {
    let env = canary_request();
    assert_eq!(env.recipients.len(), 2);
    assert_eq!(env.recipients[0].recipient_type, RecipientType::Passphrase);
    assert_eq!(
        env.recipients[1].recipient_type,
        RecipientType::RsaOaepSha256
    );
    let wire = encode(&env);
    let in_enclave = enclave_opener()
        .decode_and_open(&wire, &fx().fleet_private)
        .expect("enclave opens");
    assert_eq!(in_enclave.plaintext(), CANARY.as_bytes());
    let by_user = enclave_opener()
        .decode_and_open(&wire, &*fx().user)
        .expect("user opens");
    assert_eq!(by_user.plaintext(), CANARY.as_bytes());
    assert_eq!(in_enclave.header(), by_user.header());
}

#[test]
fn a_different_password_or_identity_cannot_open() {
    let env = canary_request();
    for (who, pw) in [
        ("alice@example.com", "wrong"),
        ("bob@example.com", "correct horse battery"),
    ] {
        let other = UserKey::derive_with_iterations(TENANT, who, &Passphrase::new(pw), 100_000)
            .expect("key");
        // A different KEK has a different key id: nothing here is addressed to it.
        assert_eq!(
            enclave_opener().open(env.clone(), &other).err(),
            Some(Error::NoMatchingRecipient)
        );
    }
}

#[test]
fn the_same_credentials_give_the_same_key_on_any_device() {
    let env = canary_request();
    let again = UserKey::derive_with_iterations(
        TENANT,
        "  ALICE@example.com ",
        &Passphrase::new("correct horse battery"),
        100_000,
    )
    .expect("key");
    assert_eq!(again.key_id(), fx().user.key_id());
    let pw = Passphrase::new("correct horse battery");
    let params = &env.recipients[0].params;
    let from_params =
        UserKey::derive_from_params(TENANT, "alice@example.com", &pw, params).expect("key");
    let opened = enclave_opener()
        .open(env.clone(), &from_params)
        .expect("open");
    assert_eq!(opened.plaintext(), CANARY.as_bytes());
    // Params carrying another identity's salt are refused before any PBKDF2 work.
    let other = UserKey::derive_from_params(TENANT, "bob@example.com", &pw, params);
    assert!(matches!(other, Err(Error::InvalidInput(_))));
    let mut huge = params.clone();
    huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
    let slow = UserKey::derive_from_params(TENANT, "alice@example.com", &pw, &huge);
    assert!(matches!(slow, Err(Error::InvalidInput(_))));
    // Empty credentials are refused.
    let empty = UserKey::derive_with_iterations(TENANT, " \t ", &pw, 100_000);
    assert_eq!(
        empty.err(),
        Some(Error::InvalidInput("the identity is empty"))
    );
    let empty =
        UserKey::derive_with_iterations(TENANT, "alice@example.com", &Passphrase::new(""), 100_000);
    assert_eq!(
        empty.err(),
        Some(Error::InvalidInput("the passphrase is empty"))
    );
}

fn answer(request: &Opened, kind: Kind, text: &str) -> Envelope {
    let fleet = fx().fleet_private.clone_ids();
    seal_response(
        request,
        &ResponseFields {
            kind,
            content_type: "text/plain".into(),
            schema_id: 3,
        },
        text.as_bytes(),
        |r| !fleet.contains(&(r.key_id.clone(), r.key_version)),
        Some(&fx().enclave_signer),
    )
    .expect("seal response")
}

trait CloneIds {
    fn clone_ids(&self) -> Vec<(String, i32)>;
}
impl<K: Keyed> CloneIds for Keyring<K> {
    fn clone_ids(&self) -> Vec<(String, i32)> {
        self.iter()
            .map(|k| (k.key_id().to_owned(), k.key_version()))
            .collect()
    }
}

#[test]
fn results_open_with_the_users_key_or_the_request_dek() {
    let req_env = canary_request();
    let request = enclave_opener()
        .open(req_env.clone(), &fx().fleet_private)
        .expect("open");
    for kind in [Kind::Result, Kind::Error] {
        let result = answer(
            &request,
            kind,
            "You mention Monday twice; consider writing down what worries you.",
        );
        assert_eq!(
            result.header.correlation_id,
            Some(req_env.header.message_id)
        );
        assert_eq!(result.header.tenant, req_env.header.tenant);
        assert_eq!(result.header.subject, req_env.header.subject);
        // Only the user's recipient is carried over; the fleet key is not.
        assert_eq!(result.recipients.len(), 1);
        assert_eq!(
            result.recipients[0].recipient_type,
            RecipientType::Passphrase
        );
        let wire = encode(&result);
        let by_user = user_opener()
            .decode_and_open(&wire, &*fx().user)
            .expect("user opens result");
        assert!(by_user.plaintext().starts_with(b"You mention Monday"));
        // The enclave key is not a recipient of the answer.
        assert_eq!(
            user_opener()
                .decode_and_open(&wire, &fx().fleet_private)
                .err(),
            Some(Error::NoMatchingRecipient)
        );
        // A backend that kept the request DEK opens it directly.
        let mine = user_opener()
            .open(req_env.clone(), &*fx().user)
            .expect("open request");
        let direct = user_opener()
            .open_response(result.clone(), mine.dek())
            .expect("open with DEK");
        assert_eq!(direct.plaintext(), by_user.plaintext());
        // The response key is not the request key.
        assert_ne!(
            response_dek(mine.dek(), &req_env.header.message_id).expose_secret(),
            mine.dek().expose_secret()
        );
    }
}

/// The result signature is ECDSA P-256 in the P1363 encoding; the algorithm is part of the
/// signed input and must match the key, so relabelling it never verifies.
#[test]
fn ecdsa_result_signatures_bind_algorithm_and_key() {
    let request = enclave_opener()
        .open(canary_request(), &fx().fleet_private)
        .expect("open");
    let result = answer(&request, Kind::Result, "fine");
    let sig = result.signature.clone().expect("signed");
    assert_eq!(sig.algorithm, SignatureAlgorithm::EcdsaP256Sha256);
    assert_eq!(sig.value.len(), 64, "r || s, 32 bytes each");
    let trusted = Keyring::new()
        .with(fx().enclave_signer.verifying_key().expect("vk"))
        .expect("ring");
    let reader = Opener::new(trusted);
    assert_eq!(
        reader.verify(&result).expect("verifies"),
        Some(("fleet-signing".to_owned(), 1))
    );
    let mut relabelled = result.clone();
    relabelled.signature.as_mut().expect("sig").algorithm = SignatureAlgorithm::RsaPssSha256;
    assert_eq!(reader.verify(&relabelled).err(), Some(Error::BadSignature));
    let mut flipped = result.clone();
    flipped.signature.as_mut().expect("sig").value[10] ^= 1;
    assert_eq!(reader.verify(&flipped).err(), Some(Error::BadSignature));
    // An RSA key under the same id and version does not verify it either.
    let rsa = SigningKey::generate("fleet-signing", 1, 2048).expect("rsa");
    let impostor = Opener::new(
        Keyring::new()
            .with(rsa.verifying_key().expect("vk"))
            .expect("ring"),
    );
    assert_eq!(impostor.verify(&result).err(), Some(Error::BadSignature));
    // PKCS#8 round trip keeps the key and its algorithm.
    let der = fx().enclave_signer.to_pkcs8_der().expect("der");
    let again = SigningKey::from_pkcs8_der("fleet-signing", 1, &der).expect("parse");
    assert_eq!(again.algorithm(), SignatureAlgorithm::EcdsaP256Sha256);
    assert_eq!(again.spki_der(), fx().enclave_signer.spki_der());
    assert!(format!("{again:?}").contains("ECDSA_P256_SHA256"));
}

#[test]
fn a_result_moved_to_another_request_does_not_open() {
    let a = enclave_opener()
        .open(canary_request(), &fx().fleet_private)
        .expect("open");
    let b_env = canary_request();
    let mut result = answer(&a, Kind::Result, "answer for a");
    result.header.correlation_id = Some(b_env.header.message_id);
    result.signature = None;
    let open = user_opener().accept_unsigned().open(result, &*fx().user);
    assert_eq!(open.err(), Some(Error::DecryptFailed));
}

/// Every header field, and each recipient's identity, is bound by the AAD: changing
/// any of them makes an unsigned envelope fail to open, and a signed one fail to verify.
#[test]
fn every_header_field_is_bound() {
    let other_id = MessageId::new_v7();
    type Mutation = Box<dyn Fn(&mut Envelope)>;
    let mutations: Vec<(&str, Mutation)> = vec![
        ("version", Box::new(|e| e.header.version = 2)),
        (
            "message_id",
            Box::new(move |e| e.header.message_id = other_id),
        ),
        ("tenant", Box::new(|e| e.header.tenant = "clinic-b".into())),
        ("subject", Box::new(|e| e.header.subject.push('x'))),
        ("kind", Box::new(|e| e.header.kind = Kind::Record)),
        (
            "purpose",
            Box::new(|e| e.header.purpose = Purpose::Research),
        ),
        (
            "content_type",
            Box::new(|e| e.header.content_type = "text/html".into()),
        ),
        ("created_at_ms", Box::new(|e| e.header.created_at_ms += 1)),
        (
            "correlation_id",
            Box::new(move |e| e.header.correlation_id = Some(other_id)),
        ),
        ("schema_id", Box::new(|e| e.header.schema_id = 99)),
        (
            "key_commitment",
            Box::new(|e| e.header.key_commitment[0] ^= 1),
        ),
        (
            "recipient.key_version",
            Box::new(|e| e.recipients[1].key_version = 2),
        ),
        ("recipient.order", Box::new(|e| e.recipients.swap(0, 1))),
        (
            "recipient.params",
            Box::new(|e| e.recipients[0].params[35] ^= 1),
        ),
        (
            "recipient.dropped",
            Box::new(|e| drop(e.recipients.remove(1))),
        ),
    ];
    let original = canary_request();
    for (name, mutate) in &mutations {
        let mut signed = original.clone();
        mutate(&mut signed);
        let err = enclave_opener()
            .open(signed.clone(), &*fx().user)
            .expect_err(name);
        assert!(
            matches!(err, Error::BadSignature | Error::UnsupportedVersion(2)),
            "{name}: signed envelope gave {err:?}"
        );
        let mut unsigned = signed;
        unsigned.signature = None;
        let err = enclave_opener()
            .accept_unsigned()
            .open(unsigned, &*fx().user)
            .expect_err(name);
        assert!(
            matches!(err, Error::DecryptFailed | Error::UnsupportedVersion(2)),
            "{name}: unsigned envelope gave {err:?}"
        );
    }
    // Unmodified, both open.
    enclave_opener()
        .open(original.clone(), &*fx().user)
        .expect("signed opens");
    let mut unsigned = original;
    unsigned.signature = None;
    enclave_opener()
        .accept_unsigned()
        .open(unsigned, &*fx().user)
        .expect("unsigned opens");
}

fn flips(wire: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    (0..wire.len()).flat_map(move |i| {
        [0x01u8, 0x80, 0xff].into_iter().map(move |mask| {
            let mut t = wire.to_vec();
            t[i] ^= mask;
            t
        })
    })
}

/// Every single-byte change of a signed envelope (three masks per byte) is rejected,
/// whichever recipient opens it.
#[test]
fn tamper_matrix_signed() {
    let wire = encode(&canary_request());
    let opener = enclave_opener();
    let mut n = 0;
    for t in flips(&wire) {
        assert!(
            opener.decode_and_open(&t, &*fx().user).is_err(),
            "flip accepted (user)"
        );
        assert!(
            opener.decode_and_open(&t, &fx().fleet_private).is_err(),
            "flip accepted (fleet)"
        );
        n += 1;
    }
    assert_eq!(n, wire.len() * 3);
}

/// Without a signature, the AAD, the key commitment and the wrap's own integrity still
/// reject every single-byte change of a single-recipient envelope.
#[test]
fn tamper_matrix_unsigned_single_recipient() {
    let mut sealer = Sealer::new(vec![fx().user.clone()]);
    let env = sealer.seal(&fields(), CANARY.as_bytes()).expect("seal");
    assert!(env.signature.is_none());
    let wire = encode(&env);
    let opener = enclave_opener().accept_unsigned();
    opener
        .decode_and_open(&wire, &*fx().user)
        .expect("untampered opens");
    for (i, t) in flips(&wire).enumerate() {
        let r = opener.decode_and_open(&t, &*fx().user);
        assert!(r.is_err(), "flip {i} (byte {}) accepted", i / 3);
    }
}

/// The "invisible salamander" attack: a header that commits to one DEK while a
/// recipient holds another DEK under which the payload *does* authenticate. Only the
/// commitment check stands between that recipient and a second plaintext.
#[test]
fn key_commitment_is_checked_before_decryption() {
    let d1 = Dek::from_bytes([0x11; 32]);
    let d2 = Dek::from_bytes([0x22; 32]);
    let mut sealer = Sealer::new(vec![fx().user.clone()]);
    let id = MessageId::new_v7();
    let fixed = danger::FixedRandomness {
        dek: *d2.expose_secret(),
        wrap_ivs: vec![[3; 12]],
        payload_iv: [4; 12],
    };
    let mut env = danger::seal_with_fixed_randomness(
        &mut sealer,
        &fields(),
        b"second plaintext",
        id,
        id.timestamp_ms(),
        &fixed,
    )
    .expect("seal");
    let opener = enclave_opener().accept_unsigned();
    assert_eq!(
        opener
            .open(env.clone(), &*fx().user)
            .expect("honest")
            .plaintext(),
        b"second plaintext"
    );
    // Commit to d1, and re-encrypt under d2 with the AAD of the new header.
    env.header.key_commitment = key_commitment(&d1, &id);
    let aad = payload_aad(&env.header, &env.recipients);
    env.payload = primitives::aes256gcm_seal_blob(
        &primitives::payload_key(&d2, &id),
        [5; 12],
        &aad,
        b"second plaintext",
    );
    // Control: without the commitment check, the AEAD would accept it.
    assert!(
        primitives::aes256gcm_open_blob(&primitives::payload_key(&d2, &id), &aad, &env.payload)
            .is_ok()
    );
    assert_eq!(
        opener.open(env, &*fx().user).err(),
        Some(Error::DecryptFailed)
    );
}

#[test]
fn signatures_are_required_and_checked() {
    let mut env = canary_request();
    let signer = env.signature.clone().expect("signed");
    assert_eq!(signer.key_id, "journal-backend");
    env.signature = None;
    assert_eq!(
        enclave_opener()
            .open(env.clone(), &fx().fleet_private)
            .err(),
        Some(Error::Unsigned)
    );
    let stranger = SigningKey::generate("journal-backend", 2, 2048).expect("key");
    let mut sealer = Sealer::new(vec![fx().fleet_public.clone()]).with_signer(Arc::new(stranger));
    let forged = sealer.seal(&fields(), b"x").expect("seal");
    assert_eq!(
        enclave_opener().open(forged, &fx().fleet_private).err(),
        Some(Error::UntrustedSigner {
            key_id: "journal-backend".into(),
            key_version: 2
        })
    );
    // A valid signature moved onto another envelope does not verify.
    let mut other = canary_request();
    other.signature = canary_request().signature;
    assert_eq!(
        enclave_opener().open(other, &fx().fleet_private).err(),
        Some(Error::BadSignature)
    );
}

#[test]
fn fleet_key_rotation_newest_seals_older_still_opens() {
    let v1 = FleetPrivateKey::generate("fleet", 1, 2048).expect("v1");
    let v2 = FleetPrivateKey::generate("fleet", 2, 2048).expect("v2");
    let pub1 = FleetPublicKey::from_spki_der("fleet", 1, v1.public_key().spki_der()).expect("p1");
    let pub2 = FleetPublicKey::from_spki_der("fleet", 2, v2.public_key().spki_der()).expect("p2");
    let old = Sealer::new(vec![Arc::new(Keyring::new().with(pub1).expect("r"))])
        .seal(&fields(), b"old")
        .expect("seal");
    let both = Keyring::new()
        .with(FleetPublicKey::from_spki_der("fleet", 1, v1.public_key().spki_der()).expect("p"))
        .expect("r")
        .with(pub2)
        .expect("r");
    assert_eq!(both.current().map(|k| k.key_version()), Some(2));
    let new = Sealer::new(vec![Arc::new(both)])
        .seal(&fields(), b"new")
        .expect("seal");
    assert_eq!(new.recipients[0].key_version, 2);
    let mut enclave = Keyring::new().with(v1).expect("r").with(v2).expect("r");
    let opener = enclave_opener().accept_unsigned();
    assert_eq!(
        opener.open(old.clone(), &enclave).expect("old").plaintext(),
        b"old"
    );
    assert_eq!(
        opener.open(new.clone(), &enclave).expect("new").plaintext(),
        b"new"
    );
    assert!(enclave.retire("fleet", 1));
    assert_eq!(
        opener.open(old, &enclave).err(),
        Some(Error::NoMatchingRecipient)
    );
    assert!(opener.open(new, &enclave).is_ok());
    assert!(
        enclave
            .insert(FleetPrivateKey::generate("fleet", 2, 2048).expect("dup"))
            .is_err()
    );
}

#[test]
fn dek_sessions_reuse_wrapped_keys_within_bounds() {
    let policy = DekSessionPolicy {
        max_messages: 3,
        max_age_ms: 60_000,
    };
    let mut sealer = Sealer::new(vec![fx().fleet_public.clone()]).with_dek_session(policy);
    let envs: Vec<_> = (0..4)
        .map(|i| {
            sealer
                .seal(&fields(), format!("m{i}").as_bytes())
                .expect("seal")
        })
        .collect();
    assert_eq!(envs[0].recipients, envs[1].recipients);
    assert_eq!(envs[1].recipients, envs[2].recipients);
    assert_ne!(
        envs[2].recipients, envs[3].recipients,
        "fourth message must get a new DEK"
    );
    // Same DEK, but distinct message ids give distinct payload keys and commitments.
    assert_ne!(envs[0].header.key_commitment, envs[1].header.key_commitment);
    let mut other = fields();
    other.tenant = "clinic-b".into();
    let moved = sealer.seal(&other, b"t").expect("seal");
    assert_ne!(
        moved.recipients, envs[3].recipients,
        "a tenant change must get a new DEK"
    );
    let opener = enclave_opener().accept_unsigned();
    for (i, e) in envs.into_iter().enumerate() {
        assert_eq!(
            opener
                .open(e, &fx().fleet_private)
                .expect("open")
                .plaintext(),
            format!("m{i}").as_bytes()
        );
    }
}

#[test]
fn limits_are_enforced_on_seal_and_decode() {
    let limits = Limits {
        max_payload_bytes: 1024,
        ..Limits::default()
    };
    let mut sealer = Sealer::new(vec![fx().fleet_public.clone()]).with_limits(limits);
    assert!(sealer.seal(&fields(), &[0u8; 1024 - BLOB_OVERHEAD]).is_ok());
    assert!(matches!(
        sealer.seal(&fields(), &[0u8; 1024 - BLOB_OVERHEAD + 1]),
        Err(Error::TooLarge {
            field: "payload",
            ..
        })
    ));
    let big = Sealer::new(vec![fx().fleet_public.clone()])
        .seal(&fields(), &[0u8; 2048])
        .expect("seal");
    let err = enclave_opener()
        .with_limits(limits)
        .accept_unsigned()
        .decode_and_open(&encode(&big), &fx().fleet_private);
    assert!(
        matches!(
            err,
            Err(Error::TooLarge {
                field: "payload",
                ..
            })
        ),
        "{err:?}"
    );
    let tiny = Limits {
        max_envelope_bytes: 100,
        ..Limits::default()
    };
    assert!(matches!(
        decode(&encode(&big), &tiny),
        Err(Error::TooLarge {
            field: "envelope",
            ..
        })
    ));
    let mut bad = fields();
    bad.tenant = "has space".into();
    assert!(matches!(
        sealer.seal(&bad, b"x"),
        Err(Error::InvalidInput(_))
    ));
    bad.tenant = String::new();
    assert!(matches!(
        sealer.seal(&bad, b"x"),
        Err(Error::InvalidInput(_))
    ));
    let mut resp = fields();
    resp.kind = Kind::Result;
    assert!(matches!(
        sealer.seal(&resp, b"x"),
        Err(Error::InvalidInput(_))
    ));
    assert!(Sealer::new(vec![]).seal(&fields(), b"x").is_err());
}

#[test]
fn no_plaintext_or_key_material_in_debug_output_or_errors() {
    let env = canary_request();
    let opened = enclave_opener()
        .open(env.clone(), &fx().fleet_private)
        .expect("open");
    let dek_hex = hex::encode(opened.dek().expose_secret());
    let pkcs8_hex = hex::encode(
        fx().fleet_private
            .get("fleet", 1)
            .expect("k")
            .to_pkcs8_der()
            .expect("der")
            .as_slice(),
    );
    let mut outputs = vec![
        format!("{env:?}"),
        format!("{opened:?}"),
        format!("{:?}", fx().user),
        format!("{:?}", fx().fleet_private),
        format!("{:?}", fx().producer),
        hex::encode(encode(&env)),
        String::from_utf8_lossy(&encode(&env)).into_owned(),
    ];
    let mut tampered = env.clone();
    tampered.header.tenant = "clinic-b".into();
    for opener in [enclave_opener(), enclave_opener().accept_unsigned()] {
        let e = opener
            .open(tampered.clone(), &fx().fleet_private)
            .expect_err("tampered");
        outputs.push(format!("{e} {e:?} {}", e.reason_code()));
    }
    for out in &outputs {
        assert!(!out.contains(CANARY), "plaintext leaked: {out}");
        assert!(!out.contains(&dek_hex), "DEK leaked");
        assert!(!out.contains(&pkcs8_hex[64..128]), "private key leaked");
    }
}

// ---- Independent implementations as oracles ------------------------------------------

#[test]
fn rsa_crate_interoperates_with_our_fleet_keys_and_signatures() {
    use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
    use rsa::signature::Verifier;
    let key = fx().fleet_private.get("fleet", 1).expect("key");
    // rsa crate wraps a DEK to our public key; we unwrap it.
    let rsa_pub =
        rsa::RsaPublicKey::from_public_key_der(key.public_key().spki_der()).expect("spki");
    let dek = [0x5au8; 32];
    let ct = rsa_pub
        .encrypt(
            &mut rand_core::OsRng,
            rsa::Oaep::new::<sha2::Sha256>(),
            &dek,
        )
        .expect("encrypt");
    let r = Recipient {
        recipient_type: RecipientType::RsaOaepSha256,
        key_id: "fleet".into(),
        key_version: 1,
        params: vec![],
        wrapped_key: ct,
    };
    assert_eq!(
        fx().fleet_private
            .unwrap_dek(&r, TENANT)
            .expect("unwrap")
            .expose_secret(),
        &dek
    );
    // We wrap; the rsa crate unwraps.
    let ours = fx()
        .fleet_public
        .wrap(&Dek::from_bytes(dek), TENANT, &mut rand_core::OsRng)
        .expect("wrap");
    let rsa_priv =
        rsa::RsaPrivateKey::from_pkcs8_der(&key.to_pkcs8_der().expect("der")).expect("pkcs8");
    assert_eq!(
        rsa_priv
            .decrypt(rsa::Oaep::new::<sha2::Sha256>(), &ours.wrapped_key)
            .expect("decrypt"),
        dek
    );
    // Our envelope signature verifies with the rsa crate's RSA-PSS-SHA256.
    let env = canary_request();
    let sig = env.signature.clone().expect("sig");
    let msg = signature_input(
        &env.header,
        &env.recipients,
        &env.payload,
        &sig.key_id,
        sig.key_version,
        sig.algorithm,
    );
    let vk = rsa::pss::VerifyingKey::<sha2::Sha256>::new(
        rsa::RsaPublicKey::from_public_key_der(fx().producer.spki_der()).expect("spki"),
    );
    let s = rsa::pss::Signature::try_from(sig.value.as_slice()).expect("sig");
    vk.verify(&msg, &s)
        .expect("rsa crate verifies our signature");
}

#[test]
fn aes_gcm_crate_opens_our_payload_blob() {
    use aes_gcm::aead::{AeadInPlace, KeyInit};
    let key = [9u8; 32];
    let blob = primitives::aes256gcm_seal_blob(&key, [1; 12], b"aad", CANARY.as_bytes());
    let cipher = aes_gcm::Aes256Gcm::new(&key.into());
    let mut buf = blob[29..].to_vec();
    cipher
        .decrypt_in_place_detached(
            aes_gcm::Nonce::from_slice(&blob[1..13]),
            b"aad",
            &mut buf,
            aes_gcm::Tag::from_slice(&blob[13..29]),
        )
        .expect("aes-gcm crate opens");
    assert_eq!(buf, CANARY.as_bytes());
}

/// The spec fixes the PSS salt at 32 bytes; a signature with another salt length is
/// rejected even though it is a valid PSS signature under the same key.
#[test]
fn pss_signatures_with_another_salt_length_are_rejected() {
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{RandomizedSigner, SignatureEncoding};
    let signer = fx().producer.clone();
    let private =
        rsa::RsaPrivateKey::from_pkcs8_der(&signer.to_pkcs8_der().expect("der")).expect("pkcs8");
    let vk = signer.verifying_key().expect("vk");
    for (salt_len, accepted) in [(32usize, true), (0, false), (20, false), (64, false)] {
        let sk = rsa::pss::SigningKey::<sha2::Sha256>::new_with_salt_len(private.clone(), salt_len);
        let sig = sk.sign_with_rng(&mut rand_core::OsRng, b"message").to_vec();
        assert_eq!(
            vk.verify(SignatureAlgorithm::RsaPssSha256, b"message", &sig),
            accepted,
            "salt length {salt_len}"
        );
    }
}

#[test]
fn a_backend_signs_what_a_browser_sealed_without_opening_it() {
    let f = fx();
    // The browser seals without a signing key; the enclave refuses that as it is.
    let mut env = Sealer::new(vec![f.user.clone(), f.fleet_public.clone()])
        .seal(&fields(), CANARY.as_bytes())
        .expect("seal");
    assert!(matches!(
        enclave_opener().open(env.clone(), &f.fleet_private),
        Err(Error::Unsigned)
    ));
    // The backend signs the envelope as it is: same header, recipients and payload.
    let before = env.clone();
    sign_envelope(&mut env, &f.producer).expect("sign");
    assert_eq!(
        (&env.header, &env.recipients, &env.payload),
        (&before.header, &before.recipients, &before.payload)
    );
    let opened = enclave_opener()
        .decode_and_open(&encode(&env), &f.fleet_private)
        .expect("the enclave opens the signed envelope");
    assert_eq!(opened.plaintext(), CANARY.as_bytes());
    // A signature is never replaced.
    let signed_once = env.clone();
    assert!(matches!(
        sign_envelope(&mut env, &f.enclave_signer),
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(env, signed_once);
    // Signing binds the payload as the browser sealed it: a changed byte fails.
    let mut tampered = env.clone();
    let last = tampered.payload.len() - 1;
    tampered.payload[last] ^= 1;
    assert!(matches!(
        enclave_opener().open(tampered, &f.fleet_private),
        Err(Error::BadSignature)
    ));
}
