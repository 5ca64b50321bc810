//! The browser SDK (TypeScript, `producers/browser`) and the Rust SDK open each other's
//! envelopes, and a request sealed by the TypeScript SDK is answered by the real
//! enclave and opened again in TypeScript, in Node and in headless Chromium.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use zenvelope_envelope::*;
use zenvelope_tests::browser::interop;

const CANARY: &str = "CANARY-browser-5e2b-panic-at-night";

fn vectors() -> Result<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schemas/envelope/vectors/envelope-v1.json"
    );
    Ok(serde_json::from_slice(&std::fs::read(path)?)?)
}

fn hex_of(v: &Value, key: &str) -> Result<Vec<u8>> {
    Ok(hex::decode(v[key].as_str().context("hex field")?)?)
}

/// The golden vectors' keys, on the Rust side.
struct Keys {
    user: Arc<UserKey>,
    fleet: Arc<Keyring<FleetPublicKey>>,
    fleet_private: Keyring<FleetPrivateKey>,
    producer: Arc<SigningKey>,
    enclave_signing: SigningKey,
    tenant: String,
    subject: String,
}

fn keys(v: &Value) -> Result<Keys> {
    let k = &v["keys"];
    let u = &v["user"];
    let s = |x: &Value| x.as_str().map(str::to_owned).context("string");
    let n = |x: &Value| {
        x.as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .context("int")
    };
    let fleet_id = s(&k["fleet_key_id"])?;
    let fleet_version = n(&k["fleet_key_version"])?;
    let producer = SigningKey::from_pkcs8_der(
        s(&k["producer_key_id"])?,
        n(&k["producer_key_version"])?,
        &hex_of(k, "producer_private_pkcs8")?,
    )?;
    let enclave_signing = SigningKey::from_pkcs8_der(
        s(&k["enclave_signing_key_id"])?,
        n(&k["enclave_signing_key_version"])?,
        &hex_of(k, "enclave_signing_private_pkcs8")?,
    )?;
    Ok(Keys {
        user: Arc::new(UserKey::derive_with_iterations(
            &s(&u["tenant"])?,
            &s(&u["identity"])?,
            &Passphrase::new(s(&u["passphrase"])?),
            u32::try_from(u["iterations"].as_u64().context("iterations")?)?,
        )?),
        fleet: Arc::new(Keyring::new().with(FleetPublicKey::from_spki_der(
            fleet_id.clone(),
            fleet_version,
            &hex_of(k, "fleet_public_spki")?,
        )?)?),
        fleet_private: Keyring::new().with(FleetPrivateKey::from_pkcs8_der(
            fleet_id,
            fleet_version,
            &hex_of(k, "fleet_private_pkcs8")?,
        )?)?,
        producer: Arc::new(producer),
        enclave_signing,
        tenant: s(&u["tenant"])?,
        subject: s(&v["pseudonym"]["expected"])?,
    })
}

impl Keys {
    /// An opener trusting both vector signing keys (the producer's and the fleet's).
    fn opener(&self) -> Result<Opener> {
        Ok(Opener::new(
            Keyring::new()
                .with(self.producer.verifying_key()?)?
                .with(self.enclave_signing.verifying_key()?)?,
        ))
    }
}

fn fields(keys: &Keys, kind: Kind) -> HeaderFields {
    HeaderFields {
        tenant: keys.tenant.clone(),
        subject: keys.subject.clone(),
        kind,
        purpose: Purpose::IndividualRequest,
        content_type: "text/plain; charset=utf-8".to_owned(),
        schema_id: 0,
    }
}

#[tokio::test]
async fn typescript_opens_what_rust_sealed() -> Result<()> {
    let v = vectors()?;
    let k = keys(&v)?;
    let request = Sealer::new(vec![k.user.clone(), k.fleet.clone()])
        .with_signer(k.producer.clone())
        .seal(&fields(&k, Kind::Request), CANARY.as_bytes())?;
    let record = Sealer::new(vec![k.user.clone()])
        .seal(&fields(&k, Kind::Record), b"a record for the user alone")?;
    let opened = k.opener()?.open(request.clone(), &k.fleet_private)?;
    let answer_text = "An answer only the user can read.";
    let response = seal_response(
        &opened,
        &ResponseFields {
            kind: Kind::Result,
            content_type: "text/plain; charset=utf-8".to_owned(),
            schema_id: 0,
        },
        answer_text.as_bytes(),
        |r| r.recipient_type != RecipientType::RsaOaepSha256,
        Some(&k.enclave_signing),
    )?;
    let mut tampered = encode(&request);
    let last = tampered.len() - 1;
    tampered[last] ^= 1; // inside the signature value
    let envelopes = json!({"envelopes": [
        {"name": "request-by-user", "hex": hex::encode(encode(&request)), "open_with": "user", "require_signature": true},
        {"name": "request-by-fleet", "hex": hex::encode(encode(&request)), "open_with": "fleet", "require_signature": true},
        {"name": "record", "hex": hex::encode(encode(&record)), "open_with": "user", "require_signature": false},
        {"name": "record-signature-required", "hex": hex::encode(encode(&record)), "open_with": "user", "require_signature": true},
        {"name": "response", "hex": hex::encode(encode(&response)), "open_with": "user", "require_signature": true},
        {"name": "response-not-for-the-fleet", "hex": hex::encode(encode(&response)), "open_with": "fleet", "require_signature": true},
        {"name": "tampered", "hex": hex::encode(&tampered), "open_with": "fleet", "require_signature": true},
    ]});
    let out = interop("open-vectors", &envelopes).await?;
    let by_name = |name: &str| {
        out.as_array()
            .and_then(|a| a.iter().find(|e| e["name"] == name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    for name in ["request-by-user", "request-by-fleet"] {
        let e = by_name(name);
        ensure!(e["plaintext"] == CANARY, "{name}: {e}");
        ensure!(e["signed_by"]["keyId"] == "journal-backend", "{name}: {e}");
    }
    ensure!(by_name("record")["plaintext"] == "a record for the user alone");
    ensure!(by_name("record")["signed_by"].is_null());
    ensure!(by_name("record-signature-required")["error"] == "unsigned");
    let r = by_name("response");
    ensure!(
        r["plaintext"] == answer_text && r["kind"] == "RESULT",
        "{r}"
    );
    ensure!(r["signed_by"]["keyId"] == "fleet-signing", "{r}");
    ensure!(by_name("response-not-for-the-fleet")["error"] == "no_matching_recipient");
    ensure!(by_name("tampered")["error"] == "bad_signature");
    Ok(())
}

#[tokio::test]
async fn rust_opens_what_typescript_sealed() -> Result<()> {
    let v = vectors()?;
    let k = keys(&v)?;
    let out = interop(
        "seal-vectors",
        &json!({"request_text": CANARY, "record_text": "a record sealed in TypeScript"}),
    )
    .await?;
    let enclave = k.opener()?;
    let request = hex_of(&out, "request")?;
    let opened = enclave.decode_and_open(&request, &k.fleet_private)?;
    ensure!(opened.plaintext() == CANARY.as_bytes());
    ensure!(opened.header().tenant == k.tenant && opened.header().subject == k.subject);
    let by_user = enclave.decode_and_open(&request, &*k.user)?;
    ensure!(by_user.plaintext() == CANARY.as_bytes());
    // Strict decoding: the TypeScript bytes are the one canonical encoding.
    ensure!(encode(&decode(&request, &Limits::default())?) == request);

    let record = hex_of(&out, "record")?;
    ensure!(matches!(
        enclave.decode_and_open(&record, &*k.user),
        Err(Error::Unsigned)
    ));
    let record = k
        .opener()?
        .accept_unsigned()
        .decode_and_open(&record, &*k.user)?;
    ensure!(record.plaintext() == b"a record sealed in TypeScript");
    ensure!(record.header().kind == Kind::Record);

    // Sealed unsigned as a browser does, then countersigned in TypeScript by the
    // backend's producer key: the enclave's policy accepts it.
    let countersigned = hex_of(&out, "countersigned")?;
    let opened = enclave.decode_and_open(&countersigned, &k.fleet_private)?;
    ensure!(opened.plaintext() == CANARY.as_bytes());
    Ok(())
}

/// Waits for the answer to `message_id` on the results topic; its envelope bytes.
async fn answer_to(
    pipeline: &zenvelope_tests::pipeline::Pipeline,
    message_id: &str,
) -> Result<Vec<u8>> {
    use zenvelope_schemas::names::{header, topic};
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let records = pipeline
            .read_topic(
                topic::RESULTS,
                usize::MAX,
                std::time::Duration::from_secs(3),
            )
            .await?;
        if let Some(r) = records
            .iter()
            .find(|r| r.header(header::CORRELATION_ID) == Some(message_id.as_bytes()))
        {
            let (_, envelope) = zenvelope_schemas::framing::unframe(&r.payload)?;
            return Ok(envelope.to_vec());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no answer to {message_id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sealed_in_typescript_is_answered_by_the_enclave() -> Result<()> {
    use base64::Engine as _;
    use zenvelope_tests::pipeline::{Options, Pipeline};
    let b64 = base64::engine::general_purpose::STANDARD;
    let pipeline = Pipeline::start(Options::default()).await?;
    let mut session = pipeline.browser_session_json()?;
    let records = pipeline.key_directory_records(2).await?;
    session["records_b64"] = json!(records.iter().map(|r| b64.encode(r)).collect::<Vec<_>>());

    // The browser side seals, wrapping to the fleet key it verified in the directory.
    let mut input = session.clone();
    input["instruction"] = json!("Reflect on this entry.");
    input["text"] = json!(format!("REQ-42 {CANARY}"));
    input["client_reference"] = json!("entry-42");
    let sealed = interop("seal-request", &input).await?;
    let transport = sealed["transport"].as_str().context("transport")?;
    let message_id = sealed["message_id"].as_str().context("message id")?;

    // The backend signs it without opening it and produces it.
    let client = pipeline.sdk_client()?;
    let subject = client.subject_for(zenvelope_tests::pipeline::USER);
    ensure!(session["subject"] == subject.as_str());
    let envelope = b64.decode(transport)?;
    // Forwarding is refused for another user's session, and nothing is produced.
    let other = client.subject_for("mallory@example.org");
    let refused = client
        .forward(&envelope, &other, &[Purpose::IndividualRequest])
        .await;
    ensure!(
        matches!(
            refused,
            Err(zenvelope_producer::Error::NotForwarded(
                "its subject is not the signed-in user's"
            ))
        ),
        "{refused:?}"
    );
    let sent = client
        .forward(&envelope, &subject, &[Purpose::IndividualRequest])
        .await?;
    ensure!(sent.message_id == message_id);

    // The enclave answers; the browser side opens the answer with the user's key and
    // checks its signature against the attested result key.
    let answer = answer_to(&pipeline, message_id).await?;
    let mut input = session.clone();
    input["answer_b64"] = json!(b64.encode(&answer));
    let opened = interop("open-answer", &input).await?;
    ensure!(opened["kind"] == "RESULT", "{opened}");
    ensure!(opened["text"] == "ANSWER-42", "{opened}");
    ensure!(opened["provider"] == "openai", "{opened}");
    ensure!(opened["client_reference"] == "entry-42", "{opened}");
    ensure!(opened["correlation_id"] == message_id, "{opened}");
    // The same answer opened in Rust agrees.
    let framed = zenvelope_schemas::framing::frame(
        pipeline
            .codec
            .catalog()
            .id(zenvelope_schemas::SchemaName::Envelope),
        &answer,
    );
    let rust = pipeline.open_answer(&framed).await?;
    ensure!(rust.text == "ANSWER-42");
    // Only one request reached the topic: the refused forward produced nothing.
    let requests = pipeline
        .read_topic(
            zenvelope_schemas::names::topic::REQUESTS,
            2,
            std::time::Duration::from_secs(3),
        )
        .await?;
    ensure!(
        requests.len() == 1,
        "{} requests on the topic",
        requests.len()
    );
    ensure!(
        !requests[0]
            .payload
            .windows(CANARY.len())
            .any(|w| w == CANARY.as_bytes()),
        "the canary is on the request topic in plaintext"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_entry_sealed_in_headless_chromium_gets_its_answer() -> Result<()> {
    use base64::Engine as _;
    use zenvelope_tests::browser::web::{Backend, PageTrust};
    use zenvelope_tests::pipeline::{ITERATIONS, Options, PASSPHRASE, Pipeline, TENANT, USER};
    let b64 = base64::engine::general_purpose::STANDARD;
    let chromium_bin =
        std::env::var("ZENVELOPE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    ensure!(
        std::path::Path::new(&chromium_bin).exists(),
        "{chromium_bin} is missing: install Debian's chromium (scripts/setup does)"
    );
    let driver = zenvelope_tests::browser::built("tools/drive-chromium.js")?;

    let pipeline = Pipeline::start(Options::default()).await?;
    let session = pipeline.browser_session_json()?;
    let trust = PageTrust {
        tenant: TENANT.to_owned(),
        dev_root_der: b64.decode(session["dev_root_b64"].as_str().context("root")?)?,
        pcrs: vec![(
            0,
            hex::decode(session["pcrs"]["0"].as_str().context("pcr0")?)?,
        )],
    };
    let backend = Backend::start(
        pipeline.sdk_client()?,
        &pipeline.kafka,
        trust,
        pipeline.key_directory_records(2).await?,
        ITERATIONS,
    )
    .await?;

    let entry = format!("REQ-7 Couldn't sleep, heart racing. {CANARY}");
    let drive = |passphrase: &'static str| {
        let entry = entry.clone();
        let url = backend.url();
        let driver = driver.clone();
        let chromium_bin = chromium_bin.clone();
        async move {
            let output = tokio::process::Command::new(zenvelope_tests::browser::node())
                .arg(&driver)
                .args([url.as_str(), USER, passphrase, entry.as_str()])
                .env("ZENVELOPE_CHROMIUM", &chromium_bin)
                .output()
                .await?;
            ensure!(
                output.status.success(),
                "the Chromium driver failed ({}): {}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            let page: Value = serde_json::from_slice(&output.stdout)?;
            println!("the page: {page:#}");
            anyhow::Ok(page)
        }
    };
    let page = drive(PASSPHRASE).await?;
    ensure!(page["secure_context"] == true, "{page}");
    ensure!(page["answer"] == "ANSWER-7", "the page shows: {page}");
    ensure!(page["kind"] == "RESULT", "{page}");
    ensure!(
        page["user_agent"]
            .as_str()
            .is_some_and(|ua| ua.contains("HeadlessChrome")),
        "{page}"
    );
    let status = page["status"].to_string();
    ensure!(
        status.contains("verified") && status.contains("opened on this device"),
        "{status}"
    );
    ensure!(
        page["page_errors"].as_array().is_some_and(Vec::is_empty),
        "{page}"
    );
    ensure!(
        !page["console"].to_string().contains("error:"),
        "console errors: {page}"
    );

    // The same user with a mistyped passphrase: the page notices (the key id differs from
    // the registered one) and sends nothing.
    let posts = |received: &[String]| {
        received
            .iter()
            .filter(|r| r.starts_with("POST /api/requests"))
            .count()
    };
    ensure!(posts(&backend.received()) == 1);
    let wrong = drive("correct horse battery stapler").await?;
    ensure!(wrong["answer"] == "", "{wrong}");
    ensure!(
        wrong["status"]
            .to_string()
            .contains("not the passphrase you registered with"),
        "{wrong}"
    );
    ensure!(
        posts(&backend.received()) == 1,
        "a request was sent with the wrong passphrase"
    );

    // The backend saw only ciphertext: not the entry, not the passphrases.
    let received = backend.received().join("\n");
    for secret in [CANARY, PASSPHRASE, "correct horse battery stapler"] {
        ensure!(
            !received.contains(secret),
            "the backend received {secret:?}"
        );
    }
    // No topic holds the entry or a passphrase: keys, headers and values, every record.
    for t in zenvelope_schemas::names::Topic::ALL {
        let mut reader = match zenvelope_runtime::RangeReader::open(
            &pipeline.kafka,
            t.name(),
            zenvelope_runtime::ReadFrom::Beginning,
            zenvelope_runtime::ReadTo::Watermark,
        )
        .await
        {
            Ok(r) => r,
            Err(zenvelope_runtime::Error::UnknownTopic { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        while let Some(r) = reader.next().await? {
            let mut bytes = r.payload.clone();
            bytes.extend(r.key.clone().unwrap_or_default());
            for (k, v) in &r.headers {
                bytes.extend(k.as_bytes());
                bytes.extend(v);
            }
            for secret in [CANARY, PASSPHRASE] {
                ensure!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{secret:?} is on {} in plaintext",
                    t.name()
                );
            }
        }
    }
    Ok(())
}
