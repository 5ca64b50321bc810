//! Golden vectors (`schemas/envelope/vectors/envelope-v1.json`), checked both ways:
//! the committed envelopes open to the committed plaintexts, and sealing the committed
//! inputs with the committed randomness reproduces the committed bytes.
//!
//! RSA-OAEP and RSA-PSS are randomised, so for those fields the seal direction checks
//! that our fresh output opens/verifies, then substitutes the committed bytes and
//! compares the whole envelope byte for byte.
//!
//! Regenerate (new RSA keys, new file) with:
//! `cargo test -p zenvelope-envelope --test vectors -- --ignored regenerate_vectors`

use std::sync::Arc;

use serde_json::{Value, json};
use zenvelope_envelope::*;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/envelope-v1.json");
const ITERATIONS: u32 = 100_000;

fn h(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("hex")
}
fn s(v: &Value) -> &str {
    v.as_str().expect("string")
}
fn arr<const N: usize>(v: &Value) -> [u8; N] {
    h(v).try_into().expect("length")
}
fn id(v: &Value) -> MessageId {
    s(v).parse().expect("uuid")
}

struct Keys {
    fleet: Keyring<FleetPrivateKey>,
    fleet_public: Arc<Keyring<FleetPublicKey>>,
    producer: Arc<SigningKey>,
    enclave: SigningKey,
    user: Arc<UserKey>,
    trusted: Keyring<VerifyingKey>,
}

fn keys_from(v: &Value) -> Keys {
    let k = &v["keys"];
    let fleet =
        FleetPrivateKey::from_pkcs8_der("fleet", 1, &h(&k["fleet_private_pkcs8"])).expect("fleet");
    assert_eq!(
        fleet.public_key().spki_der(),
        h(&k["fleet_public_spki"]).as_slice()
    );
    let public =
        FleetPublicKey::from_spki_der("fleet", 1, &h(&k["fleet_public_spki"])).expect("spki");
    let producer =
        SigningKey::from_pkcs8_der("journal-backend", 1, &h(&k["producer_private_pkcs8"]))
            .expect("producer");
    assert_eq!(
        producer.spki_der(),
        h(&k["producer_public_spki"]).as_slice()
    );
    let enclave =
        SigningKey::from_pkcs8_der("fleet-signing", 1, &h(&k["enclave_signing_private_pkcs8"]))
            .expect("enclave");
    let u = &v["user"];
    let user = UserKey::derive_with_iterations(
        s(&u["tenant"]),
        s(&u["identity"]),
        &Passphrase::new(s(&u["passphrase"])),
        ITERATIONS,
    )
    .expect("user");
    let trusted = Keyring::new()
        .with(
            VerifyingKey::from_spki_der("journal-backend", 1, &h(&k["producer_public_spki"]))
                .expect("vk"),
        )
        .expect("ring")
        .with(
            VerifyingKey::from_spki_der("fleet-signing", 1, &h(&k["enclave_signing_public_spki"]))
                .expect("vk"),
        )
        .expect("ring");
    Keys {
        fleet: Keyring::new().with(fleet).expect("ring"),
        fleet_public: Arc::new(Keyring::new().with(public).expect("ring")),
        producer: Arc::new(producer),
        enclave,
        user: Arc::new(user),
        trusted,
    }
}

fn header_fields(i: &Value) -> HeaderFields {
    HeaderFields {
        tenant: s(&i["tenant"]).into(),
        subject: s(&i["subject"]).into(),
        kind: Kind::from_symbol(s(&i["kind"])).expect("kind"),
        purpose: Purpose::from_symbol(s(&i["purpose"])).expect("purpose"),
        content_type: s(&i["content_type"]).into(),
        schema_id: i["schema_id"].as_i64().expect("schema id") as i32,
    }
}

fn sealer_for(keys: &Keys, i: &Value) -> Sealer {
    let mut wrappers: Vec<Arc<dyn DekWrapper>> = vec![];
    for r in i["recipients"].as_array().expect("recipients") {
        match s(r) {
            "user" => wrappers.push(keys.user.clone()),
            "fleet" => wrappers.push(keys.fleet_public.clone()),
            other => panic!("unknown recipient {other}"),
        }
    }
    let sealer = Sealer::new(wrappers);
    if i["signed_by"] == "producer" {
        sealer.with_signer(keys.producer.clone())
    } else {
        sealer
    }
}

fn seal_case(keys: &Keys, i: &Value) -> Envelope {
    let fixed = danger::FixedRandomness {
        dek: arr(&i["dek"]),
        wrap_ivs: i["wrap_ivs"]
            .as_array()
            .expect("ivs")
            .iter()
            .map(arr)
            .collect(),
        payload_iv: arr(&i["payload_iv"]),
    };
    let mid = id(&i["message_id"]);
    danger::seal_with_fixed_randomness(
        &mut sealer_for(keys, i),
        &header_fields(i),
        &h(&i["plaintext"]),
        mid,
        i["created_at_ms"].as_i64().expect("time"),
        &fixed,
    )
    .expect("seal")
}

fn seal_result(keys: &Keys, request: &Opened, i: &Value) -> Envelope {
    let fleet_ids: Vec<String> = keys.fleet.iter().map(|k| k.key_id().to_owned()).collect();
    danger::seal_response_with_fixed_randomness(
        request,
        &ResponseFields {
            kind: Kind::from_symbol(s(&i["kind"])).expect("kind"),
            content_type: s(&i["content_type"]).into(),
            schema_id: i["schema_id"].as_i64().expect("schema") as i32,
        },
        &h(&i["plaintext"]),
        |r| !fleet_ids.contains(&r.key_id),
        Some(&keys.enclave),
        id(&i["message_id"]),
        i["created_at_ms"].as_i64().expect("time"),
        arr(&i["payload_iv"]),
    )
    .expect("seal result")
}

/// Substitutes the randomised RSA fields of `expected` into `ours`, after checking ours.
fn align_randomised_fields(keys: &Keys, ours: &mut Envelope, expected: &Envelope) {
    // Our own signature must verify over our own (random) OAEP bytes first.
    if expected.signature.is_some() {
        let opener = Opener::new(keys.trusted_clone());
        opener.verify(ours).expect("our fresh signature verifies");
    }
    assert_eq!(ours.recipients.len(), expected.recipients.len());
    for (o, e) in ours.recipients.iter_mut().zip(&expected.recipients) {
        if o.recipient_type == RecipientType::RsaOaepSha256 {
            let a = keys
                .fleet
                .unwrap_dek(o, &ours.header.tenant)
                .expect("our OAEP wrap opens");
            let b = keys
                .fleet
                .unwrap_dek(e, &expected.header.tenant)
                .expect("vector OAEP wrap opens");
            assert_eq!(a.expose_secret(), b.expose_secret());
            o.wrapped_key = e.wrapped_key.clone();
        }
    }
    if let Some(e) = expected.signature.as_ref() {
        ours.signature.as_mut().expect("we signed too").value = e.value.clone();
    }
}

fn check_intermediates(keys: &Keys, env: &Envelope, e: &Value, dek: &Dek) {
    let hd = &env.header;
    assert_eq!(
        hd.key_commitment.to_vec(),
        h(&e["key_commitment"]),
        "commitment"
    );
    assert_eq!(
        key_commitment(dek, &hd.message_id).to_vec(),
        h(&e["key_commitment"])
    );
    assert_eq!(
        primitives::payload_key(dek, &hd.message_id).to_vec(),
        h(&e["payload_key"]),
        "payload key"
    );
    assert_eq!(payload_aad(hd, &env.recipients), h(&e["aad"]), "aad");
    assert_eq!(env.payload, h(&e["payload"]), "payload blob");
    let wraps = e["passphrase_wrapped_keys"].as_array().expect("wraps");
    let aads = e["wrap_aads"].as_array().expect("wrap aads");
    let passphrase: Vec<_> = env
        .recipients
        .iter()
        .filter(|r| r.recipient_type == RecipientType::Passphrase)
        .collect();
    assert_eq!(passphrase.len(), wraps.len());
    assert_eq!(passphrase.len(), aads.len());
    for ((r, want), aad) in passphrase.into_iter().zip(wraps).zip(aads) {
        assert_eq!(r.wrapped_key, h(want), "passphrase wrap");
        assert_eq!(
            wrap_aad(
                &hd.tenant,
                r.recipient_type,
                &r.key_id,
                r.key_version,
                &r.params
            ),
            h(aad),
            "wrap aad"
        );
        assert_eq!(r.key_id, keys.user.key_id());
    }
    if let Some(sig) = &env.signature {
        let msg = signature_input(
            hd,
            &env.recipients,
            &env.payload,
            &sig.key_id,
            sig.key_version,
            sig.algorithm,
        );
        assert_eq!(msg, h(&e["signature_input"]), "signature input");
    }
}

#[test]
fn golden_vectors_both_directions() {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(PATH).expect("vector file")).expect("json");
    let keys = keys_from(&v);
    let u = &v["user"];
    assert_eq!(
        normalize_identity(s(&u["identity"])),
        s(&u["normalized_identity"])
    );
    let salt = kek_salt(s(&u["tenant"]), s(&u["identity"]));
    assert_eq!(salt.to_vec(), h(&u["kek_salt"]));
    let kek = primitives::derive_kek(&Passphrase::new(s(&u["passphrase"])), &salt, ITERATIONS)
        .expect("kek");
    assert_eq!(kek.to_vec(), h(&u["kek"]));
    assert_eq!(keys.user.key_id(), s(&u["kek_id"]));
    let p = &v["pseudonym"];
    assert_eq!(
        MetadataKey::from_bytes(arr(&p["metadata_key"]))
            .pseudonym(s(&p["tenant"]), s(&p["identity"])),
        s(&p["expected"])
    );

    let mut request_opened = None;
    for case in v["cases"].as_array().expect("cases") {
        let name = s(&case["name"]);
        let i = &case["inputs"];
        let e = &case["expected"];
        let wire = h(&e["envelope"]);
        let expected =
            decode(&wire, &Limits::default()).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(encode(&expected), wire, "{name}: re-encoding");
        let opener = Opener::new(keys.trusted_clone());
        let opener = if expected.signature.is_some() {
            opener
        } else {
            opener.accept_unsigned()
        };
        // Open direction.
        let by_user = opener
            .open(expected.clone(), &*keys.user)
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(by_user.plaintext(), h(&i["plaintext"]).as_slice(), "{name}");
        if expected
            .recipients
            .iter()
            .any(|r| r.recipient_type == RecipientType::RsaOaepSha256)
        {
            let by_fleet = opener
                .open(expected.clone(), &keys.fleet)
                .expect("fleet opens");
            assert_eq!(by_fleet.plaintext(), by_user.plaintext());
        }
        // Seal direction.
        let ours = match s(&case["type"]) {
            "seal" => {
                let mut ours = seal_case(&keys, i);
                align_randomised_fields(&keys, &mut ours, &expected);
                check_intermediates(&keys, &ours, e, &Dek::from_bytes(arr(&i["dek"])));
                ours
            }
            "response" => {
                let request: &Opened = request_opened.as_ref().expect("request case first");
                assert_eq!(
                    response_dek(request.dek(), &request.header().message_id)
                        .expose_secret()
                        .to_vec(),
                    h(&e["response_dek"])
                );
                let mut ours = seal_result(&keys, request, i);
                align_randomised_fields(&keys, &mut ours, &expected);
                check_intermediates(&keys, &ours, e, &Dek::from_bytes(arr(&e["response_dek"])));
                ours
            }
            other => panic!("unknown case type {other}"),
        };
        assert_eq!(encode(&ours), wire, "{name}: sealed bytes differ");
        if name == "request-signed-user-and-fleet" {
            request_opened = Some(opener.open(expected, &keys.fleet).expect("open"));
        }
    }
    assert!(request_opened.is_some());

    for neg in v["negative"].as_array().expect("negative") {
        let name = s(&neg["name"]);
        let wire = h(&neg["envelope"]);
        let opener = if neg["require_signature"] == true {
            Opener::new(keys.trusted_clone())
        } else {
            Opener::new(keys.trusted_clone()).accept_unsigned()
        };
        let err = match decode(&wire, &Limits::default()) {
            Err(e) => e,
            Ok(env) => match s(&neg["open_with"]) {
                "user" => opener.open(env, &*keys.user).expect_err(name),
                _ => opener.open(env, &keys.fleet).expect_err(name),
            },
        };
        assert_eq!(
            err.reason_code(),
            s(&neg["expected_error"]),
            "{name}: {err}"
        );
    }
}

impl Keys {
    fn trusted_clone(&self) -> Keyring<VerifyingKey> {
        let mut r = Keyring::new();
        for k in self.trusted.iter() {
            r.insert(
                VerifyingKey::from_spki_der(k.key_id(), k.key_version(), k.spki_der()).expect("vk"),
            )
            .expect("insert");
        }
        r
    }
}

// ---- Generation ------------------------------------------------------------------------

/// A UUIDv7 whose timestamp is `ms`, with fixed "random" bits (for reproducible vectors).
fn v7(ms: i64, tail: u8) -> String {
    let mut b = [tail; 16];
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = 0x70 | (tail & 0x0f);
    b[8] = 0x80 | (tail & 0x3f);
    MessageId::from_bytes(b).expect("v7").to_string()
}

fn zigzag(v: i64) -> Vec<u8> {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = vec![];
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
    out
}

/// The Avro bytes of one recipient, its canonical one-block array, and where that array
/// starts in `encoded`.
fn recipient_array(encoded: &[u8], r: &Recipient) -> (Vec<u8>, Vec<u8>, usize) {
    let mut item = zigzag(r.recipient_type.index() as i64);
    item.extend(zigzag(r.key_id.len() as i64));
    item.extend_from_slice(r.key_id.as_bytes());
    item.extend(zigzag(i64::from(r.key_version)));
    item.extend(zigzag(r.params.len() as i64));
    item.extend_from_slice(&r.params);
    item.extend(zigzag(r.wrapped_key.len() as i64));
    item.extend_from_slice(&r.wrapped_key);
    let mut canonical = zigzag(1);
    canonical.extend_from_slice(&item);
    canonical.push(0);
    let at = encoded
        .windows(canonical.len())
        .position(|w| w == canonical.as_slice())
        .expect("array");
    (item, canonical, at)
}

fn der_hex(k: &SigningKey) -> String {
    hex::encode(k.to_pkcs8_der().expect("der").as_slice())
}

#[test]
#[ignore = "writes the vector file; run explicitly to regenerate"]
fn regenerate_vectors() {
    let fleet = FleetPrivateKey::generate("fleet", 1, 2048).expect("fleet");
    let producer = SigningKey::generate("journal-backend", 1, 2048).expect("producer");
    // The fleet's result-signing key is ECDSA P-256, the default for results.
    let enclave = SigningKey::generate_ecdsa_p256("fleet-signing", 1).expect("enclave");
    // NBSP and full-width letters exercise "NFKC, then trim, then lower-case"; "ß" catches
    // case folding used instead of lower-casing; the trailing U+2028 is outside the six
    // trimmed characters, so it catches a language's default trim. The ligature and
    // full-width digits exercise NFKC of the passphrase.
    let (tenant, identity, passphrase) = (
        "clinic-a",
        "\u{a0} \u{ff21}lice.Martin@Straße.Example\u{2028}",
        "Ünïcode ﬁne passphrase ２０２６: correct horse battery staple",
    );
    let metadata_key = [0x6du8; 32];
    let subject = MetadataKey::from_bytes(metadata_key).pseudonym(tenant, identity);
    let salt = kek_salt(tenant, identity);
    let kek = primitives::derive_kek(&Passphrase::new(passphrase), &salt, ITERATIONS).expect("kek");
    let user =
        UserKey::derive_with_iterations(tenant, identity, &Passphrase::new(passphrase), ITERATIONS)
            .expect("user");
    let mut v = json!({
        "description": "zenvelope envelope format v1 golden vectors. See docs/envelope-spec.md section 'Test vectors'. All binary values are lowercase hex. RSA-OAEP wrapped keys and the RSA-PSS and ECDSA signatures are randomised: reproduce everything else byte for byte, and check those by decrypting/verifying.",
        "format_version": 1,
        "keys": {
            "fleet_key_id": "fleet", "fleet_key_version": 1,
            "fleet_private_pkcs8": hex::encode(fleet.to_pkcs8_der().expect("der").as_slice()),
            "fleet_public_spki": hex::encode(fleet.public_key().spki_der()),
            "producer_key_id": "journal-backend", "producer_key_version": 1,
            "producer_private_pkcs8": der_hex(&producer),
            "producer_public_spki": hex::encode(producer.spki_der()),
            "enclave_signing_key_id": "fleet-signing", "enclave_signing_key_version": 1,
            "enclave_signing_private_pkcs8": der_hex(&enclave),
            "enclave_signing_public_spki": hex::encode(enclave.spki_der()),
            "trusted_signers": [
                {"key_id": "journal-backend", "key_version": 1, "spki": "producer_public_spki"},
                {"key_id": "fleet-signing", "key_version": 1, "spki": "enclave_signing_public_spki"},
            ],
        },
        "user": {
            "tenant": tenant, "identity": identity, "normalized_identity": normalize_identity(identity),
            "passphrase": passphrase, "iterations": ITERATIONS,
            "kek_salt": hex::encode(salt), "kek": hex::encode(kek), "kek_id": user.key_id(),
        },
        "pseudonym": { "tenant": tenant, "identity": identity, "metadata_key": hex::encode(metadata_key), "expected": subject },
        "cases": [],
        "negative": [],
    });
    std::fs::create_dir_all(std::path::Path::new(PATH).parent().expect("dir")).expect("mkdir");
    std::fs::write(PATH, serde_json::to_string_pretty(&v).expect("json")).expect("write");
    let keys = keys_from(&v);

    let request_inputs = json!({
        "tenant": tenant, "subject": subject, "kind": "REQUEST", "purpose": "INDIVIDUAL_REQUEST",
        "content_type": "application/vnd.zenvelope.analysis-request+avro", "schema_id": 2,
        "message_id": v7(1_763_800_000_000, 0x17), "created_at_ms": 1_763_800_000_000i64,
        "plaintext": hex::encode("Journal, Nov 21: slept four hours, chest tight before the team meeting.".as_bytes()),
        "recipients": ["user", "fleet"], "signed_by": "producer",
        "dek": hex::encode([0xd1u8; 32]), "wrap_ivs": [hex::encode([0xa1u8; 12])], "payload_iv": hex::encode([0xb1u8; 12]),
    });
    let record_inputs = json!({
        "tenant": tenant, "subject": subject, "kind": "RECORD", "purpose": "TREATMENT",
        "content_type": "text/plain; charset=utf-8", "schema_id": 0,
        "message_id": v7(1_763_800_000_001, 0x29), "created_at_ms": 1_763_800_000_001i64,
        "plaintext": hex::encode("".as_bytes()),
        "recipients": ["user"], "signed_by": null,
        "dek": hex::encode([0xd2u8; 32]), "wrap_ivs": [hex::encode([0xa2u8; 12])], "payload_iv": hex::encode([0xb2u8; 12]),
    });
    let result_inputs = json!({
        "kind": "RESULT", "content_type": "application/vnd.zenvelope.analysis-result+avro", "schema_id": 3,
        "message_id": v7(1_763_800_001_500, 0x3b), "created_at_ms": 1_763_800_001_500i64,
        "plaintext": hex::encode("Short sleep and chest tightness before meetings: consider discussing anticipatory anxiety with your clinician.".as_bytes()),
        "payload_iv": hex::encode([0xb3u8; 12]),
    });
    let mut cases = vec![];
    let mut request_env = None;
    for (name, inputs) in [
        ("request-signed-user-and-fleet", &request_inputs),
        ("record-unsigned-user-only", &record_inputs),
    ] {
        let env = seal_case(&keys, inputs);
        let dek = Dek::from_bytes(arr(&inputs["dek"]));
        cases.push(case_json(name, "seal", inputs, &env, &dek, None));
        if request_env.is_none() {
            request_env = Some(env);
        }
    }
    let request_env = request_env.expect("request");
    let opened = Opener::new(keys.trusted_clone())
        .open(request_env.clone(), &keys.fleet)
        .expect("open");
    let result = seal_result(&keys, &opened, &result_inputs);
    let rdek = response_dek(opened.dek(), &opened.header().message_id);
    cases.push(case_json(
        "result-for-the-request",
        "response",
        &result_inputs,
        &result,
        &rdek,
        Some(&rdek),
    ));

    // Negative vectors: what a second implementation must reject, and how.
    let mut negative = vec![];
    let mut push = |name: &str,
                    env: &Envelope,
                    open_with: &str,
                    require_signature: bool,
                    code: &str| {
        negative.push(json!({"name": name, "envelope": hex::encode(encode(env)), "open_with": open_with, "require_signature": require_signature, "expected_error": code}));
    };
    let mut t = request_env.clone();
    t.header.tenant = "clinic-b".into();
    push("tenant-changed-signed", &t, "fleet", true, "bad_signature");
    t.signature = None;
    push(
        "tenant-changed-unsigned",
        &t,
        "fleet",
        false,
        "decrypt_failed",
    );
    push(
        "unsigned-when-signature-required",
        &t,
        "fleet",
        true,
        "unsigned",
    );
    let mut t = request_env.clone();
    t.payload[40] ^= 1;
    t.signature = None;
    push("payload-bit-flipped", &t, "user", false, "decrypt_failed");
    let mut t = request_env.clone();
    t.header.key_commitment[0] ^= 1;
    t.signature = None;
    push("commitment-changed", &t, "user", false, "decrypt_failed");
    let mut t = request_env.clone();
    t.signature.as_mut().expect("sig").key_id = "someone-else".into();
    push("untrusted-signer", &t, "fleet", true, "untrusted_signer");
    let mut t = request_env.clone();
    t.header.version = 2;
    push(
        "unsupported-version",
        &t,
        "fleet",
        true,
        "unsupported_version",
    );
    // A signature that does not verify is rejected even when signatures are optional.
    let mut t = request_env.clone();
    t.payload[40] ^= 1;
    push(
        "bad-signature-when-optional",
        &t,
        "fleet",
        false,
        "bad_signature",
    );
    // A valid RSA-PSS signature, but with a 64-byte salt: the format fixes 32.
    {
        use rsa::pkcs8::DecodePrivateKey;
        use rsa::signature::{RandomizedSigner, SignatureEncoding};
        let mut t = request_env.clone();
        let sig = t.signature.clone().expect("sig");
        let msg = signature_input(
            &t.header,
            &t.recipients,
            &t.payload,
            &sig.key_id,
            sig.key_version,
            sig.algorithm,
        );
        let private = rsa::RsaPrivateKey::from_pkcs8_der(&producer.to_pkcs8_der().expect("der"))
            .expect("pkcs8");
        let sk = rsa::pss::SigningKey::<sha2::Sha256>::new_with_salt_len(private, 64);
        t.signature.as_mut().expect("sig").value =
            sk.sign_with_rng(&mut rand_core::OsRng, &msg).to_vec();
        push("pss-salt-length-64", &t, "fleet", true, "bad_signature");
    }
    // The ECDSA-signed result with its algorithm symbol relabelled as RSA-PSS: the symbol is
    // signed and must match the key's type.
    {
        let mut t =
            decode(&h(&cases[2]["expected"]["envelope"]), &Limits::default()).expect("result");
        let sig = t.signature.as_mut().expect("sig");
        assert_eq!(sig.algorithm, SignatureAlgorithm::EcdsaP256Sha256);
        sig.algorithm = SignatureAlgorithm::RsaPssSha256;
        push(
            "signature-algorithm-relabelled",
            &t,
            "user",
            true,
            "bad_signature",
        );
    }
    // The record is addressed to the user only.
    let record_env =
        decode(&h(&cases[1]["expected"]["envelope"]), &Limits::default()).expect("record");
    push(
        "no-recipient-for-the-fleet",
        &record_env,
        "fleet",
        false,
        "no_matching_recipient",
    );
    // Key commitment: a payload that authenticates under another DEK than the committed one.
    {
        let d1 = Dek::from_bytes([0x11; 32]);
        let d2 = Dek::from_bytes([0x22; 32]);
        let id: MessageId = v7(1_763_800_002_000, 0x4d).parse().expect("id");
        let fixed = danger::FixedRandomness {
            dek: *d2.expose_secret(),
            wrap_ivs: vec![[0xa4; 12]],
            payload_iv: [0xb4; 12],
        };
        let mut sealer = Sealer::new(vec![keys.user.clone()]);
        let mut t = danger::seal_with_fixed_randomness(
            &mut sealer,
            &header_fields(&record_inputs),
            b"a second plaintext",
            id,
            1_763_800_002_000,
            &fixed,
        )
        .expect("seal");
        t.header.key_commitment = key_commitment(&d1, &id);
        let aad = payload_aad(&t.header, &t.recipients);
        t.payload = primitives::aes256gcm_seal_blob(
            &primitives::payload_key(&d2, &id),
            [0xb5; 12],
            &aad,
            b"a second plaintext",
        );
        push(
            "commitment-mismatch-aead-valid",
            &t,
            "user",
            false,
            "decrypt_failed",
        );
    }
    // Decoding rules (section 4.2), on the unsigned record.
    let rec = encode(&record_env);
    let mut raw: Vec<(&str, Vec<u8>, &str)> = vec![];
    let mut b = rec.clone();
    b.truncate(b.len() - 3);
    raw.push(("truncated", b, "malformed"));
    let mut b = rec.clone();
    b.push(0);
    raw.push(("trailing-byte", b, "malformed"));
    let mut b = vec![0x82, 0x00];
    b.extend_from_slice(&rec[1..]);
    raw.push(("version-varint-not-shortest", b, "malformed"));
    let mut b = rec.clone();
    b[1 + 6] = (b[1 + 6] & 0x0f) | 0x40;
    raw.push(("message-id-not-uuidv7", b, "malformed"));
    let mut b = rec.clone();
    b[0] = 0x04;
    raw.push(("version-2", b, "unsupported_version"));
    {
        // The same record with its recipients array as one negative-count block.
        let (item, canonical, at) = recipient_array(&rec, &record_env.recipients[0]);
        let mut b = rec[..at].to_vec();
        b.extend(zigzag(-1));
        b.extend(zigzag(item.len() as i64));
        b.extend_from_slice(&item);
        b.push(0);
        b.extend_from_slice(&rec[at + canonical.len()..]);
        raw.push(("negative-count-array-block", b, "malformed"));
        // A payload length over the limit is `oversized` even though the input is short.
        let payload_at = at + canonical.len();
        let mut b = rec[..payload_at].to_vec();
        b.extend(zigzag(5 * 1024 * 1024));
        b.extend_from_slice(&[0u8; 16]);
        raw.push(("payload-length-over-limit", b, "oversized"));
    }
    // More decoding rules: each edit keeps everything else well-formed.
    let tenant_at = 1 + 16; // after the version varint and the message id
    let mut b = rec.clone();
    b[tenant_at + 1] = 0xff; // first tenant byte: invalid UTF-8
    raw.push(("tenant-not-utf8", b, "malformed"));
    let kind_at =
        tenant_at + 1 + record_env.header.tenant.len() + 1 + record_env.header.subject.len();
    let mut b = rec.clone();
    assert_eq!(b[kind_at], 6, "kind RECORD is index 3, varint 6");
    b[kind_at] = 0x08; // kind index 4: out of range
    raw.push(("kind-index-out-of-range", b, "malformed"));
    {
        let mut t = record_env.clone();
        t.header.kind = Kind::Result; // but no correlation id
        raw.push(("result-without-correlation-id", encode(&t), "malformed"));
        // schema_id as a varint of 2^31: a valid long, not an int.
        let mut t = record_env.clone();
        t.header.schema_id = 0x2a2a_2a2a;
        let enc = encode(&t);
        let marker = zigzag(0x2a2a_2a2a);
        let at = enc
            .windows(marker.len())
            .position(|w| w == marker.as_slice())
            .expect("schema id");
        let mut b = enc[..at].to_vec();
        b.extend(zigzag(1i64 << 31));
        b.extend_from_slice(&enc[at + marker.len()..]);
        raw.push(("schema-id-out-of-int-range", b, "malformed"));
    }
    {
        // The record's one recipient repeated in a second positive-count block.
        let (item, canonical, at) = recipient_array(&rec, &record_env.recipients[0]);
        let mut b = rec[..at].to_vec();
        b.extend(zigzag(1));
        b.extend_from_slice(&item);
        b.extend(zigzag(1));
        b.extend_from_slice(&item);
        b.push(0);
        b.extend_from_slice(&rec[at + canonical.len()..]);
        raw.push(("array-in-two-blocks", b, "malformed"));
        let mut b = rec[..at + canonical.len()].to_vec();
        b.extend(zigzag(-5));
        raw.push(("negative-payload-length", b, "malformed"));
    }
    for (name, bytes, code) in raw {
        negative.push(json!({"name": name, "envelope": hex::encode(bytes), "open_with": "user", "require_signature": false, "expected_error": code}));
    }
    v["cases"] = Value::Array(cases);
    v["negative"] = Value::Array(negative);
    std::fs::write(PATH, serde_json::to_string_pretty(&v).expect("json") + "\n").expect("write");
}

fn case_json(
    name: &str,
    ty: &str,
    inputs: &Value,
    env: &Envelope,
    dek: &Dek,
    response: Option<&Dek>,
) -> Value {
    let hd = &env.header;
    let wraps: Vec<String> = env
        .recipients
        .iter()
        .filter(|r| r.recipient_type == RecipientType::Passphrase)
        .map(|r| hex::encode(&r.wrapped_key))
        .collect();
    let wrap_aads: Vec<String> = env
        .recipients
        .iter()
        .filter(|r| r.recipient_type == RecipientType::Passphrase)
        .map(|r| {
            hex::encode(wrap_aad(
                &hd.tenant,
                r.recipient_type,
                &r.key_id,
                r.key_version,
                &r.params,
            ))
        })
        .collect();
    let mut expected = json!({
        "key_commitment": hex::encode(hd.key_commitment),
        "payload_key": hex::encode(primitives::payload_key(dek, &hd.message_id)),
        "aad": hex::encode(payload_aad(hd, &env.recipients)),
        "wrap_aads": wrap_aads,
        "passphrase_wrapped_keys": wraps,
        "payload": hex::encode(&env.payload),
        "signature_input": env.signature.as_ref().map(|s| hex::encode(signature_input(hd, &env.recipients, &env.payload, &s.key_id, s.key_version, s.algorithm))),
        "envelope": hex::encode(encode(env)),
    });
    if let Some(r) = response {
        expected["response_dek"] = json!(hex::encode(r.expose_secret()));
    }
    json!({"name": name, "type": ty, "inputs": inputs, "expected": expected})
}
