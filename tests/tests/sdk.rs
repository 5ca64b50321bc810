//! The producer SDK (`zenvelope-producer`) against the whole pipeline on real parts:
//! tansu, moto, the `enclave-host` and `enclave-app` binaries and the model server.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use zenvelope_envelope::{Keyring, Kind, Opener, Passphrase, RecipientType, UserKey};
use zenvelope_producer::{Error, Request};
use zenvelope_schemas::names::topic;
use zenvelope_tests::pipeline::{ITERATIONS, Options, PASSPHRASE, Pipeline, TENANT, USER};

const WAIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_sends_requests_and_reads_only_its_users_answers() -> Result<()> {
    let pipeline = Pipeline::start(Options::default()).await?;
    let client = pipeline.sdk_client()?;
    let ada = client.login(USER, Passphrase::new(PASSPHRASE)).await?;
    let bob = client
        .login("bob@example.org", Passphrase::new("another passphrase"))
        .await?;
    ensure!(ada.subject() != bob.subject());
    ensure!(
        !ada.subject().contains("ada"),
        "the subject is a pseudonym, not the identity"
    );

    // Ada's answers, and Bob's, both followed from the start.
    let mut ada_answers = client.results(&ada, true)?;
    let mut bob_answers = client.results(&bob, true)?;

    let mut sent = BTreeMap::new();
    for n in 0..6 {
        let request = Request::text("Reply with the request's tag.", format!("Entry REQ-{n}"))
            .with_client_reference(format!("entry-{n}"));
        let s = client.analyze(&ada, request).await?;
        sent.insert(s.message_id.clone(), n);
    }
    let bob_sent = client
        .analyze(
            &bob,
            Request::text("Reply with the tag.", "Bob's entry REQ-99"),
        )
        .await?;

    let mut got = BTreeMap::new();
    while got.len() < sent.len() {
        let answer = tokio::time::timeout(WAIT, ada_answers.next())
            .await
            .context("Ada's answers did not arrive")??;
        ensure!(
            answer.correlation_id != bob_sent.message_id,
            "Ada received Bob's answer"
        );
        ensure!(
            !got.contains_key(&answer.correlation_id),
            "a duplicate was returned"
        );
        got.insert(answer.correlation_id.clone(), answer);
    }
    for (id, n) in &sent {
        let answer = got.get(id).context("missing answer")?;
        ensure!(answer.kind == Kind::Result, "{answer:?}");
        ensure!(
            answer.text == format!("ANSWER-{n}"),
            "{answer:?}: {}",
            answer.text
        );
        ensure!(
            answer.client_reference.as_deref() == Some(format!("entry-{n}").as_str()),
            "the client reference is echoed"
        );
        ensure!(
            answer.provider.as_ref().is_some_and(|(p, _)| p == "openai"),
            "{answer:?}"
        );
    }
    let bob_answer = tokio::time::timeout(WAIT, bob_answers.next())
        .await
        .context("Bob's answer did not arrive")??;
    ensure!(bob_answer.correlation_id == bob_sent.message_id);
    ensure!(bob_answer.text == "ANSWER-99", "{}", bob_answer.text);
    Ok(())
}

/// A forged answer that names Ada's subject (sealed by someone without the fleet's
/// result key) is reported as unopenable, and the stream goes on to the real answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_answer_is_reported_and_skipped() -> Result<()> {
    let pipeline = Pipeline::start(Options::default()).await?;
    let client = pipeline.sdk_client()?;
    let ada = client.login(USER, Passphrase::new(PASSPHRASE)).await?;
    let mut answers = client.results(&ada, true)?;

    // Garbage under Ada's subject header, first on the results topic.
    let forged =
        zenvelope_runtime::Outbound::new(topic::RESULTS, None, b"\0\0\0\0\x01junk".to_vec())
            .with_header(
                zenvelope_schemas::names::header::SUBJECT,
                ada.subject().as_bytes().to_vec(),
            )
            .with_header(
                zenvelope_schemas::names::header::CORRELATION_ID,
                b"forged".to_vec(),
            );
    zenvelope_runtime::Producer::new(&pipeline.kafka)?
        .send(forged)
        .await?;
    let sent = client
        .analyze(&ada, Request::text("Tag?", "Entry REQ-7"))
        .await?;

    let first = tokio::time::timeout(WAIT, answers.next())
        .await
        .context("nothing arrived")?;
    ensure!(
        matches!(first, Err(Error::Unopenable { .. })),
        "the forged record is reported: {first:?}"
    );
    let real = tokio::time::timeout(WAIT, answers.next())
        .await
        .context("the real answer did not arrive")??;
    ensure!(real.correlation_id == sent.message_id && real.text == "ANSWER-7");
    Ok(())
}

/// `store` seals for the user alone: the vault record has one passphrase recipient, so no
/// enclave can open it, and the user's key does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_records_are_sealed_for_the_user_alone() -> Result<()> {
    let pipeline = Pipeline::start(Options::default()).await?;
    let client = pipeline.sdk_client()?;
    let ada = client.login(USER, Passphrase::new(PASSPHRASE)).await?;
    // Created compacted (`Topic::is_compacted`); in production by the deployment.
    zenvelope_runtime::ensure_topics(&pipeline.kafka, &[(topic::VAULT, 1)]).await?;
    let sent = client
        .store(
            &ada,
            "entry-2026-11-23",
            "text/plain; charset=utf-8",
            b"Private note.",
        )
        .await?;

    let records = pipeline.read_topic(topic::VAULT, 1, WAIT).await?;
    let record = records.first().context("no vault record")?;
    ensure!(
        record.key.as_deref() == Some(format!("{}/entry-2026-11-23", ada.subject()).as_bytes()),
        "keyed by subject and record id, so compaction keeps the newest"
    );
    let envelope = pipeline
        .codec
        .decode_envelope(&record.payload, &zenvelope_envelope::Limits::default())
        .await?;
    ensure!(envelope.header.message_id.to_string() == sent.message_id);
    ensure!(envelope.header.kind == Kind::Record);
    ensure!(
        envelope.recipients.len() == 1
            && envelope.recipients[0].recipient_type == RecipientType::Passphrase,
        "only the user is a recipient"
    );
    let user =
        UserKey::derive_with_iterations(TENANT, USER, &Passphrase::new(PASSPHRASE), ITERATIONS)?;
    let opener = Opener::new(Keyring::new().with(pipeline.producer_verifying_key()?)?);
    let opened = opener.open(envelope.clone(), &user)?;
    ensure!(opened.plaintext() == b"Private note.");
    // The enclave's fleet key is not a recipient.
    ensure!(
        envelope
            .recipients
            .iter()
            .all(|r| r.recipient_type != RecipientType::RsaOaepSha256)
    );
    Ok(())
}

/// An independent client (the spec's Python implementation and librdkafka's Python
/// binding, none of this repository's Rust) consumes what the Rust SDK produced, verifies
/// the producer signatures, opens the requests with the user's key and decodes the
/// AnalysisRequest datums with fastavro.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_librdkafka_client_reads_what_the_sdk_produced() -> Result<()> {
    let pipeline = Pipeline::start(Options::default()).await?;
    let client = pipeline.sdk_client()?;
    let user = client.login(USER, Passphrase::new(PASSPHRASE)).await?;
    let mut sent = BTreeMap::new();
    for n in 0..3 {
        let s = client
            .analyze(
                &user,
                Request::text(format!("Instruction {n}"), format!("SDK entry {n}"))
                    .with_client_reference(format!("ref-{n}")),
            )
            .await?;
        sent.insert(s.message_id, n);
    }
    let report = pipeline
        .run_independent_client(&["--read-sdk-requests", "3", "--timeout", "60"])
        .await?;
    let read = report["read"].as_object().context("read")?;
    ensure!(read.len() == 3, "{report}");
    for (id, n) in &sent {
        let r = read
            .get(id)
            .with_context(|| format!("{id} not read: {report}"))?;
        ensure!(
            r["instruction"] == format!("Instruction {n}").as_str(),
            "{r}"
        );
        ensure!(r["text"] == format!("SDK entry {n}").as_str(), "{r}");
        ensure!(r["client_reference"] == format!("ref-{n}").as_str(), "{r}");
        ensure!(
            r["subject"] == user.subject() && r["key"] == user.subject(),
            "{r}"
        );
        ensure!(r["purpose"] == "INDIVIDUAL_REQUEST", "{r}");
    }
    Ok(())
}
