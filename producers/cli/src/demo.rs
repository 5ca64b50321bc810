//! `zenvelope demo`: the whole envelope round trip, in one process, stage by stage.
//!
//! What runs here for real: PBKDF2 user key derivation, DEK wrap to a fleet RSA key and to
//! the user key, AES-256-GCM sealing with the authenticated header, RSA-PSS signatures,
//! opening with the fleet key, the response key, and opening the answer with the user's
//! passphrase. What does not run yet (later issues): a Kafka broker between the stages, the
//! attested enclave with KMS key release, the model provider and the audit sink.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, ensure};
use zenvelope_envelope::{
    DEFAULT_PBKDF2_ITERATIONS, DEFAULT_RSA_BITS, FleetPrivateKey, FleetPublicKey, HeaderFields,
    Keyed, Keyring, Kind, MetadataKey, Opener, Passphrase, Purpose, RecipientType, ResponseFields,
    Sealer, SigningKey, UserKey, encode, seal_response,
};

use crate::inspect::public_view;

const TENANT: &str = "demo-clinic";
const USER: &str = "alice@example.com";
/// A dev-only passphrase: the demo is not a place for real credentials.
const DANGER_DEMO_PASSPHRASE: &str = "demo passphrase: dev only";

const ENTRIES: &[&str] = &[
    "Nov 20. Slept four hours again. Chest felt tight before the team meeting, better after a walk.",
    "Nov 21. Talked to my sister about Mum's diagnosis. Cried in the car, then felt lighter.",
    "Nov 22. Skipped the gym, anxious about Monday's review. Wrote a list of what I can control.",
];

/// Arguments of `zenvelope demo`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// How many sample journal entries to send (1 to 3).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=3))]
    entries: u8,
    /// PBKDF2 iterations for the user key (100,000 to 10,000,000).
    #[arg(long, default_value_t = DEFAULT_PBKDF2_ITERATIONS)]
    iterations: u32,
    /// RSA modulus size of the demo's dev fleet and signing keys (2048, 3072 or 4096).
    #[arg(long, default_value_t = DEFAULT_RSA_BITS)]
    rsa_bits: usize,
}

/// A clearly labelled stand-in for a model: it counts, it does not understand.
fn offline_analyser(text: &str) -> String {
    let words = text.split_whitespace().count();
    let sentences = text.matches(['.', '!', '?']).count().max(1);
    format!(
        "[offline analyser, NOT a model] {words} words in {sentences} sentences. \
         The enclave worker calls a configured model provider for a real analysis."
    )
}

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    println!("zenvelope demo: one process, every stage of the envelope round trip.");
    println!(
        "WARNING: dev keys generated in memory and a fixed dev passphrase; never use them for real data.\n"
    );

    let t = Instant::now();
    let fleet = FleetPrivateKey::generate("fleet", 1, args.rsa_bits)
        .context("cannot generate the dev fleet key")?;
    let fleet_public = Arc::new(Keyring::new().with(FleetPublicKey::from_spki_der(
        "fleet",
        1,
        fleet.public_key().spki_der(),
    )?)?);
    let producer = Arc::new(SigningKey::generate("journal-backend", 1, args.rsa_bits)?);
    let enclave_signer = SigningKey::generate_ecdsa_p256("fleet-signing", 1)?;
    let fleet_keys = Keyring::new().with(fleet)?;
    println!(
        "setup      dev keys: fleet encryption v1 and producer signing (RSA-{}), fleet result signing (ECDSA P-256), {} ms",
        args.rsa_bits,
        t.elapsed().as_millis()
    );
    println!(
        "           fleet key fingerprint (SHA-256 of SPKI): {}",
        fleet_keys
            .iter()
            .map(|k| k.public_key().fingerprint())
            .collect::<String>()
    );

    let t = Instant::now();
    println!(
        "user side  deriving {USER}'s key with PBKDF2-HMAC-SHA256, {} iterations…",
        args.iterations
    );
    let user = Arc::new(UserKey::derive_with_iterations(
        TENANT,
        USER,
        &Passphrase::new(DANGER_DEMO_PASSPHRASE),
        args.iterations,
    )?);
    println!(
        "           key id {} ({} ms; the key itself never leaves the device)",
        user.key_id(),
        t.elapsed().as_millis()
    );
    let subject = MetadataKey::from_bytes([0x5a; 32]).pseudonym(TENANT, USER);
    println!("           subject pseudonym {subject} (HMAC: no email on Kafka or in audit rows)\n");

    let mut sealer = Sealer::new(vec![user.clone(), fleet_public]).with_signer(producer.clone());
    // The enclave trusts the producer's signing key; the user trusts the fleet's result key.
    let enclave_opener = Opener::new(Keyring::new().with(producer.verifying_key()?)?);
    let user_opener = Opener::new(Keyring::new().with(enclave_signer.verifying_key()?)?);
    let fleet_ids: Vec<(String, i32)> = fleet_keys
        .iter()
        .map(|k| (k.key_id().to_owned(), k.key_version()))
        .collect();

    for (n, text) in ENTRIES.iter().take(usize::from(args.entries)).enumerate() {
        let fields = HeaderFields {
            tenant: TENANT.into(),
            subject: subject.clone(),
            kind: Kind::Request,
            purpose: Purpose::IndividualRequest,
            content_type: "text/plain; charset=utf-8".into(),
            schema_id: 0,
        };
        println!(
            "── entry {}/{} ──────────────────────────────────────────────",
            n + 1,
            args.entries
        );
        let request = sealer.seal(&fields, text.as_bytes())?;
        let wire = encode(&request);
        let recipients: Vec<String> = request
            .recipients
            .iter()
            .map(|r| format!("{} {} v{}", r.recipient_type, r.key_id, r.key_version))
            .collect();
        println!(
            "user side  sealed {} bytes of plaintext into {} bytes; recipients: {}",
            text.len(),
            wire.len(),
            recipients.join(", ")
        );
        println!(
            "           wire bytes (first 40): {}…",
            hex::encode(&wire[..40.min(wire.len())])
        );
        ensure!(
            !wire
                .windows(12)
                .any(|w| text.as_bytes().windows(12).any(|p| p == w)),
            "plaintext visible in the sealed bytes"
        );
        println!(
            "broker     sees only: {}",
            public_view(&request, wire.len())
        );

        let t = Instant::now();
        let opened = enclave_opener.decode_and_open(&wire, &fleet_keys)?;
        let signer = request
            .signature
            .as_ref()
            .map(|s| format!("{} v{}", s.key_id, s.key_version))
            .unwrap_or_default();
        println!(
            "enclave    verified signature ({signer}), unwrapped the DEK with fleet v1, checked the key commitment, opened {} bytes ({} µs)",
            opened.plaintext().len(),
            t.elapsed().as_micros()
        );
        let answer_text = offline_analyser(
            std::str::from_utf8(opened.plaintext()).context("entry is not UTF-8")?,
        );
        let answer = seal_response(
            &opened,
            &ResponseFields {
                kind: Kind::Result,
                content_type: "text/plain; charset=utf-8".into(),
                schema_id: 0,
            },
            answer_text.as_bytes(),
            |r| !fleet_ids.contains(&(r.key_id.clone(), r.key_version)),
            Some(&enclave_signer),
        )?;
        drop(opened); // plaintext and DEK are zeroized here
        let answer_wire = encode(&answer);
        println!(
            "enclave    sealed the answer under the response key: {} bytes, kind RESULT, correlation id {}, recipients: {}",
            answer_wire.len(),
            answer
                .header
                .correlation_id
                .map(|c| c.to_string())
                .unwrap_or_default(),
            answer
                .recipients
                .iter()
                .filter(|r| r.recipient_type == RecipientType::Passphrase)
                .count()
        );

        let mine = user_opener.decode_and_open(&answer_wire, &*user)?;
        println!(
            "user side  opened the answer with their passphrase: {}",
            String::from_utf8_lossy(mine.plaintext())
        );
        println!();
    }
    println!("This demo runs every stage in one process. The same envelopes through Kafka and the");
    println!(
        "enclave worker (attestation, KMS key release, model call) run in the end-to-end tests,"
    );
    println!(
        "see docs/enclave-worker.md; `zenvelope up` (issue 4) will start that pipeline from here."
    );
    Ok(())
}
