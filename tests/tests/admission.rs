//! The admission service on tansu: quota boundaries, restarts with the quota state
//! rebuilt from the usage topic, two instances sharing tenants, every kind of bad input
//! refused with its reason (and nothing lost), redrive of a fixed poison message, the
//! usage endpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use zenvelope_envelope::{
    FleetPrivateKey, FleetPublicKey, HeaderFields, Keyring, Kind, MetadataKey, Passphrase, Purpose,
    Sealer, SigningKey, UserKey,
};
use zenvelope_processors::config::{HttpConfig, ProducerKeyConfig, TenantConfig};
use zenvelope_processors::dlq::{self, Selection};
use zenvelope_processors::service::Summary;
use zenvelope_processors::{AdmissionConfig, Tier};
use zenvelope_runtime::{Inbound, KafkaConfig, Outbound, Producer, RangeReader, ReadFrom, ReadTo};
use zenvelope_schemas::names::{header, topic};
use zenvelope_schemas::{DeadLetter, Rejection, SchemaCodec, SchemaName, Subject};
use zenvelope_tests::Tansu;

const FREE: &str = "free-journal";
const PRO: &str = "pro-clinic";
const CANARY: &str = "CANARY-admission-3c9e-journal";
const WAIT: Duration = Duration::from_secs(90);

/// A broker, keys and a producer, shared by one test.
struct Fixture {
    _tansu: Tansu,
    kafka: KafkaConfig,
    codec: Arc<SchemaCodec>,
    dir: tempfile::TempDir,
    signer: Arc<SigningKey>,
    fleet: Arc<Keyring<FleetPublicKey>>,
    user: Arc<UserKey>,
    producer: Producer,
    metadata: MetadataKey,
}

impl Fixture {
    async fn start() -> Result<Self> {
        let tansu = Tansu::start()?;
        let kafka = KafkaConfig::new(tansu.bootstrap_servers());
        let topics: Vec<(&str, i32)> = [
            topic::REQUESTS,
            topic::ADMISSION_BY_TENANT,
            topic::ADMITTED,
            topic::REJECTIONS,
            topic::USAGE,
            topic::RESULTS,
            topic::DLQ,
        ]
        .iter()
        .map(|t| (*t, 4))
        .collect();
        zenvelope_runtime::ensure_topics(&kafka, &topics).await?;
        let dir = tempfile::tempdir()?;
        let signer = SigningKey::generate_ecdsa_p256("journal-backend", 1)?;
        std::fs::write(
            dir.path().join("journal-backend-1.der"),
            signer.verifying_key()?.spki_der(),
        )?;
        let fleet = FleetPrivateKey::generate("fleet", 1, 2048)?;
        let fleet = FleetPublicKey::from_spki_der("fleet", 1, fleet.public_key().spki_der())?;
        Ok(Self {
            producer: Producer::new(&kafka)?,
            _tansu: tansu,
            kafka,
            codec: Arc::new(SchemaCodec::offline()?),
            dir,
            signer: Arc::new(signer),
            fleet: Arc::new(Keyring::new().with(fleet)?),
            user: Arc::new(UserKey::derive_with_iterations(
                FREE,
                "ada@example.org",
                &Passphrase::new("correct horse"),
                100_000,
            )?),
            metadata: MetadataKey::from_bytes([9; 32]),
        })
    }

    /// An admission configuration for the FREE and PRO tenants, signing key registered
    /// (or not).
    fn config(&self, register_key: bool) -> AdmissionConfig {
        let keys = if register_key {
            vec![ProducerKeyConfig {
                key_id: "journal-backend".into(),
                key_version: 1,
                spki_der_file: self.dir.path().join("journal-backend-1.der"),
            }]
        } else {
            Vec::new()
        };
        let tenant = |tier| TenantConfig {
            tier,
            allowed_purposes: vec!["INDIVIDUAL_REQUEST".into()],
            producer_keys: keys.clone(),
        };
        let mut config = AdmissionConfig {
            kafka: self.kafka.clone(),
            tenants: BTreeMap::from([
                (FREE.to_owned(), tenant(Tier::Free)),
                (PRO.to_owned(), tenant(Tier::Pro)),
            ]),
            http: HttpConfig { listen: None },
            ..AdmissionConfig::default()
        };
        // Commit often, so a restart redelivers little (correctness never depends on it).
        config.check.max_message_bytes = 64 * 1024;
        config
    }

    /// A configuration file for the `zenvelope-admission` binary: the FREE tenant with the
    /// registered signing key, plus `extra` TOML (sections of its own).
    fn config_file(&self, name: &str, extra: &str) -> Result<std::path::PathBuf> {
        let file = self.dir.path().join(name);
        std::fs::write(
            &file,
            format!(
                "[kafka]\nbootstrap_servers = {:?}\n{extra}[tenants.{FREE}]\ntier = \"free\"\nallowed_purposes = [\"INDIVIDUAL_REQUEST\"]\n[[tenants.{FREE}.producer_keys]]\nkey_id = \"journal-backend\"\nkey_version = 1\nspki_der_file = {:?}\n",
                self.kafka.bootstrap_servers,
                self.dir.path().join("journal-backend-1.der"),
            ),
        )?;
        Ok(file)
    }

    fn start_admission(&self, config: AdmissionConfig) -> Instance {
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(zenvelope_processors::service::run(config, shutdown.clone()));
        Instance { shutdown, handle }
    }

    fn sealed(
        &self,
        tenant: &str,
        identity: &str,
        purpose: Purpose,
        kind: Kind,
        signer: Option<Arc<SigningKey>>,
    ) -> Result<zenvelope_envelope::Envelope> {
        let fields = HeaderFields {
            tenant: tenant.to_owned(),
            subject: self.metadata.pseudonym(tenant, identity),
            kind,
            purpose,
            content_type: "text/plain; charset=utf-8".into(),
            schema_id: 0,
        };
        let mut sealer = Sealer::new(vec![self.user.clone(), self.fleet.clone()]);
        if let Some(s) = signer {
            sealer = sealer.with_signer(s);
        }
        Ok(sealer.seal(&fields, format!("{CANARY} entry").as_bytes())?)
    }

    /// Seals a signed request for `identity` of `tenant` and produces it keyed by subject.
    async fn send(&self, tenant: &str, identity: &str) -> Result<String> {
        let env = self.sealed(
            tenant,
            identity,
            Purpose::IndividualRequest,
            Kind::Request,
            Some(self.signer.clone()),
        )?;
        self.produce_envelope(&env, None).await
    }

    async fn produce_envelope(
        &self,
        env: &zenvelope_envelope::Envelope,
        key: Option<&[u8]>,
    ) -> Result<String> {
        let value = self
            .codec
            .encode_envelope(Subject::RequestsValue, env)
            .await?;
        let key = key.map_or_else(|| env.header.subject.as_bytes().to_vec(), <[u8]>::to_vec);
        self.produce_raw(Some(key), value).await?;
        Ok(env.header.message_id.to_string())
    }

    async fn produce_raw(&self, key: Option<Vec<u8>>, value: Vec<u8>) -> Result<()> {
        self.producer
            .send(Outbound::new(topic::REQUESTS, key, value))
            .await?;
        Ok(())
    }

    async fn read(&self, name: &str) -> Result<Vec<Inbound>> {
        let mut reader =
            RangeReader::open(&self.kafka, name, ReadFrom::Beginning, ReadTo::Watermark)
                .await?
                .with_idle_timeout(Duration::from_secs(20));
        let mut out = Vec::new();
        while let Some(r) = reader.next().await? {
            out.push(r);
        }
        Ok(out)
    }

    /// Distinct message ids on the admitted topic.
    async fn admitted(&self) -> Result<BTreeSet<String>> {
        Ok(self
            .read(topic::ADMITTED)
            .await?
            .iter()
            .filter_map(|r| {
                r.header(header::MESSAGE_ID)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
            .collect())
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        let mut out = Vec::new();
        for r in self.read(topic::DLQ).await? {
            out.push(self.codec.decode(&r.payload).await?);
        }
        Ok(out)
    }

    async fn rejections(&self) -> Result<Vec<Rejection>> {
        let mut out = Vec::new();
        for r in self.read(topic::REJECTIONS).await? {
            out.push(self.codec.decode(&r.payload).await?);
        }
        Ok(out)
    }

    /// Polls until `done` holds for (admitted ids, dead letters), or fails after WAIT.
    async fn wait_for(
        &self,
        what: &str,
        done: impl Fn(&BTreeSet<String>, &[DeadLetter]) -> bool,
    ) -> Result<(BTreeSet<String>, Vec<DeadLetter>)> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let admitted = self.admitted().await?;
            let dead = self.dead_letters().await?;
            if done(&admitted, &dead) {
                return Ok((admitted, dead));
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {} admitted, dead letters {:?}",
                admitted.len(),
                dead.iter()
                    .map(|d| d.reason_code.as_str())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn usage(&self, tenant: &str) -> Result<zenvelope_processors::usage::Usage> {
        let all = zenvelope_processors::usage::read(
            &self.kafka,
            &self.codec,
            topic::USAGE,
            Some(tenant),
            None,
        )
        .await?;
        ensure!(
            all.len() == 1,
            "expected one period of usage for {tenant}: {all:?}"
        );
        all.into_iter().next().context("usage")
    }
}

struct Instance {
    shutdown: CancellationToken,
    handle: JoinHandle<Result<Summary, zenvelope_processors::Error>>,
}

impl Instance {
    async fn stop(self) -> Result<Summary> {
        self.shutdown.cancel();
        Ok(self.handle.await??)
    }
}

fn identities(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("user{i}@example.org")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_100th_free_request_is_admitted_and_the_101st_refused() -> Result<()> {
    let fx = Fixture::start().await?;
    let admission = fx.start_admission(fx.config(true));
    let mut sent = BTreeSet::new();
    for id in identities(0..100) {
        sent.insert(fx.send(FREE, &id).await?);
    }
    let (admitted, dead) = fx.wait_for("100 admitted", |a, _| a.len() >= 100).await?;
    ensure!(admitted == sent, "admitted ids differ from the ones sent");
    ensure!(dead.is_empty(), "{dead:?}");
    let u = fx.usage(FREE).await?;
    ensure!((u.requests, u.quota_rejected) == (100, 0), "{u:?}");

    // The 101st in the same UTC day, sent with the SDK: refused, told to the client's
    // SDK, kept on the DLQ.
    let client = zenvelope_producer::Client::builder(fx.kafka.clone(), FREE)
        .signer(SigningKey::from_pkcs8_der(
            "journal-backend",
            1,
            &fx.signer.to_pkcs8_der()?,
        )?)
        .result_keys(
            Keyring::new()
                .with(SigningKey::generate_ecdsa_p256("fleet-results", 1)?.verifying_key()?)?,
        )
        .fleet_keys(Keyring::new().with(FleetPublicKey::from_spki_der(
            "fleet",
            1,
            fx.fleet.current().context("fleet key")?.spki_der(),
        )?)?)
        .metadata_key(MetadataKey::from_bytes([9; 32]))
        .codec(fx.codec.clone())
        .pbkdf2_iterations(100_000)
        .build()?;
    let late = client
        .login("late@example.org", Passphrase::new("correct horse"))
        .await?;
    let mut outcomes = client.results(&late, false)?;
    let over = client
        .analyze(
            &late,
            zenvelope_producer::Request::text("Summarise.", format!("{CANARY} entry")),
        )
        .await?
        .message_id;
    let refusal = match tokio::time::timeout(WAIT, outcomes.next()).await? {
        Err(zenvelope_producer::Error::Refused(r)) => r,
        Err(e) => anyhow::bail!("the SDK gave {e} instead of the refusal"),
        Ok(a) => anyhow::bail!("the SDK gave an answer instead of the refusal: {a:?}"),
    };
    ensure!(
        refusal.message_id.as_deref() == Some(over.as_str())
            && refusal.reason_code == "quota_exceeded"
            && refusal
                .retry_after
                .is_some_and(|d| d > Duration::ZERO && d <= Duration::from_secs(86_400)),
        "{refusal:?}"
    );
    let told = refusal.to_string();
    ensure!(
        told.starts_with(&format!(
            "Request {over} was refused by admission (quota_exceeded): "
        )) && !told.contains(CANARY),
        "{told}"
    );
    let (admitted, dead) = fx
        .wait_for("the 101st refused", |_, d| !d.is_empty())
        .await?;
    ensure!(admitted.len() == 100 && !admitted.contains(&over));
    ensure!(
        dead.len() == 1 && dead[0].reason_code == "quota_exceeded",
        "{dead:?}"
    );
    let sealed = fx
        .codec
        .decode_envelope(&dead[0].original_value, &Default::default())
        .await?;
    ensure!(
        sealed.header.message_id.to_string() == over,
        "the dead letter holds the request, still sealed"
    );
    let rejections = fx.rejections().await?;
    ensure!(rejections.len() == 1, "{rejections:?}");
    let r = &rejections[0];
    ensure!(r.reason_code == "quota_exceeded" && r.tenant.as_deref() == Some(FREE));
    ensure!(
        r.message_id.map(|m| m.to_string()) == Some(over.clone()),
        "{r:?}"
    );
    let retry = r.retry_after_ms.context("retry_after_ms")?;
    ensure!(retry > 0 && retry <= 86_400_000, "retry after {retry} ms");
    ensure!(
        r.reason_detail.contains("free") && r.reason_detail.contains("100"),
        "{r:?}"
    );
    let u = fx.usage(FREE).await?;
    ensure!((u.requests, u.quota_rejected) == (100, 1), "{u:?}");

    // The pro tenant is not affected by the free tenant's quota.
    let pro = fx.send(PRO, "nurse@example.org").await?;
    fx.wait_for("the pro request", |a, _| a.contains(&pro))
        .await?;

    // Nothing admission wrote holds the plaintext, though every request carried the
    // canary: an admitted record, forwarded byte for byte, opens to it with the user's key.
    let has_canary = |bytes: &[u8]| bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes());
    let admitted_records = fx.read(topic::ADMITTED).await?;
    let first = admitted_records.first().context("an admitted record")?;
    let envelope = fx
        .codec
        .decode_envelope(&first.payload, &Default::default())
        .await?;
    let opened = zenvelope_envelope::Opener::new(Keyring::new().with(fx.signer.verifying_key()?)?)
        .open(envelope, &*fx.user)?;
    ensure!(
        has_canary(opened.plaintext()),
        "the canary was not in the request"
    );
    for t in [
        topic::ADMISSION_BY_TENANT,
        topic::ADMITTED,
        topic::REJECTIONS,
        topic::USAGE,
        topic::DLQ,
    ] {
        for rec in fx.read(t).await? {
            ensure!(!has_canary(&rec.payload), "plaintext on {t}");
            ensure!(
                !rec.headers.iter().any(|(_, v)| has_canary(v)),
                "plaintext in a header on {t}"
            );
        }
    }
    let summary = admission.stop().await?;
    ensure!(summary.quota.processed >= 102, "{summary:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_state_is_rebuilt_after_a_restart_and_after_a_crash() -> Result<()> {
    let fx = Fixture::start().await?;
    // 60 requests, then a clean restart.
    let first = fx.start_admission(fx.config(true));
    for id in identities(0..60) {
        fx.send(FREE, &id).await?;
    }
    fx.wait_for("60 admitted", |a, _| a.len() >= 60).await?;
    first.stop().await?;

    // 30 more to the real binary, which never commits an offset on its own (a long
    // auto-commit interval), killed with SIGKILL while it works: its records are
    // delivered again to the next instance, whose counters must not count them twice.
    let file = fx.config_file(
        "crash.toml",
        "[kafka.properties]\n\"auto.commit.interval.ms\" = \"600000\"\n[http]\n",
    )?;
    let bin = zenvelope_tests::workspace_binary("zenvelope-processors", "zenvelope-admission")?;
    let mut second = std::process::Command::new(&bin)
        .arg("--config")
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    for id in identities(60..90) {
        fx.send(FREE, &id).await?;
    }
    let crashed = fx
        .wait_for("some of the next 30", |a, _| a.len() > 70)
        .await;
    second.kill()?;
    second.wait()?;
    crashed?;

    // A new instance rebuilds the counters from zenvelope.usage: the 100th is the last.
    let third = fx.start_admission(fx.config(true));
    for id in identities(90..101) {
        fx.send(FREE, &id).await?;
    }
    let (admitted, dead) = fx
        .wait_for("100 admitted and one refusal", |a, d| {
            a.len() >= 100 && !d.is_empty()
        })
        .await?;
    // A redelivered record is forwarded again (the enclave drops duplicates) but never
    // counted twice: exactly 100 distinct admitted, one refused.
    ensure!(admitted.len() == 100, "{} admitted", admitted.len());
    let forwarded = fx.read(topic::ADMITTED).await?.len();
    println!("{forwarded} admitted records for 100 requests (redeliveries forwarded again)");
    ensure!(
        dead.len() == 1 && dead[0].reason_code == "quota_exceeded",
        "{dead:?}"
    );
    let u = fx.usage(FREE).await?;
    ensure!((u.requests, u.quota_rejected) == (100, 1), "{u:?}");
    third.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_twice_is_admitted_twice_and_counted_once() -> Result<()> {
    let fx = Fixture::start().await?;
    let admission = fx.start_admission(fx.config(true));
    // The client retries one request (same envelope, same message id) twice.
    let env = fx.sealed(
        FREE,
        "ada@example.org",
        Purpose::IndividualRequest,
        Kind::Request,
        Some(fx.signer.clone()),
    )?;
    let retried = fx.produce_envelope(&env, None).await?;
    fx.wait_for("the first copy", |a, _| a.contains(&retried))
        .await?;
    fx.produce_envelope(&env, None).await?;
    fx.produce_envelope(&env, None).await?;
    for id in identities(0..99) {
        fx.send(FREE, &id).await?;
    }
    let (admitted, dead) = fx
        .wait_for("100 distinct admitted", |a, _| a.len() >= 100)
        .await?;
    ensure!(
        dead.is_empty(),
        "the copies did not use up the quota: {dead:?}"
    );
    ensure!(admitted.len() == 100);
    let copies = fx
        .read(topic::ADMITTED)
        .await?
        .iter()
        .filter(|r| r.header(header::MESSAGE_ID) == Some(retried.as_bytes()))
        .count();
    ensure!(
        copies == 3,
        "every copy is forwarded (the enclave drops duplicates): {copies}"
    );
    let u = fx.usage(FREE).await?;
    ensure!((u.requests, u.quota_rejected) == (100, 0), "{u:?}");
    // The quota is used up by 100 distinct requests: the next one is refused.
    fx.send(FREE, "late@example.org").await?;
    let (_, dead) = fx
        .wait_for("the 101st refused", |_, d| !d.is_empty())
        .await?;
    ensure!(dead[0].reason_code == "quota_exceeded");
    admission.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_tenants_and_the_quota_holds() -> Result<()> {
    let fx = Fixture::start().await?;
    // Many users: their requests spread over every request partition. Instance A counts
    // the first ones alone (so its counters are on zenvelope.usage before B exists).
    let a = fx.start_admission(fx.config(true));
    let mut free = BTreeSet::new();
    let mut pro = BTreeSet::new();
    for id in identities(0..35) {
        free.insert(fx.send(FREE, &id).await?);
    }
    for id in identities(0..10) {
        pro.insert(fx.send(PRO, &id).await?);
    }
    fx.wait_for("35 free and 10 pro admitted by A", |a, _| a.len() >= 45)
        .await?;
    // B joins the same consumer groups (a rebalance: the partitions of both stages are
    // split between them) while more requests arrive.
    let b = fx.start_admission(fx.config(true));
    for id in identities(35..70) {
        free.insert(fx.send(FREE, &id).await?);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in identities(10..20) {
        pro.insert(fx.send(PRO, &id).await?);
    }
    fx.wait_for("70 free and 20 pro admitted", |a, _| a.len() >= 90)
        .await?;
    // One instance leaves mid-day: the other takes over its partitions, rebuilds the
    // counters from zenvelope.usage (whoever counted so far) and goes on from there.
    let sa = a.stop().await?;
    for id in identities(70..130) {
        free.insert(fx.send(FREE, &id).await?);
    }
    let (admitted, dead) = fx
        .wait_for("the quota reached after the hand-over", |a, d| {
            a.len() >= 120 && d.len() >= 30
        })
        .await?;
    let admitted_free: BTreeSet<_> = admitted.intersection(&free).cloned().collect();
    ensure!(
        admitted_free.len() == 100,
        "{} free requests admitted",
        admitted_free.len()
    );
    ensure!(pro.is_subset(&admitted), "every pro request is admitted");
    ensure!(
        dead.len() == 30 && dead.iter().all(|d| d.reason_code == "quota_exceeded"),
        "{:?}",
        dead.len()
    );
    let u = fx.usage(FREE).await?;
    ensure!((u.requests, u.quota_rejected) == (100, 30), "{u:?}");
    let sb = b.stop().await?;
    ensure!(
        sa.quota.processed >= 45,
        "A counted the first requests: {sa:?}"
    );
    ensure!(
        sb.quota.processed >= 60,
        "B counted on after the hand-over, from A's counters: {sb:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_input_is_refused_with_its_reason_and_nothing_is_lost() -> Result<()> {
    let fx = Fixture::start().await?;
    let admission = fx.start_admission(fx.config(true));
    let signer = Some(fx.signer.clone());
    let id = fx.codec.catalog().id(SchemaName::Envelope).get();
    let frame = |body: &[u8]| {
        let mut v = vec![0u8];
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(body);
        v
    };
    let good = fx.sealed(
        FREE,
        "ada@example.org",
        Purpose::IndividualRequest,
        Kind::Request,
        signer.clone(),
    )?;
    let good_bytes = zenvelope_envelope::encode(&good);
    let key = Some(good.header.subject.as_bytes().to_vec());
    let mut expected: Vec<&str> = Vec::new();

    fx.produce_raw(key.clone(), Vec::new()).await?;
    expected.push("empty_payload");
    fx.produce_raw(key.clone(), b"{\"journal\": \"not an envelope\"}".to_vec())
        .await?;
    expected.push("wrong_magic_byte");
    fx.produce_raw(key.clone(), vec![0, 0, 0]).await?;
    expected.push("truncated_frame");
    fx.produce_raw(key.clone(), frame(&good_bytes[..good_bytes.len() / 2]))
        .await?;
    expected.push("malformed");
    let mut v2 = good_bytes.clone();
    v2[0] = 4; // version 2 (zig-zag)
    fx.produce_raw(key.clone(), frame(&v2)).await?;
    expected.push("unsupported_version");
    let mut unknown_schema = vec![0u8, 0, 0, 0, 99];
    unknown_schema.extend_from_slice(&good_bytes);
    fx.produce_raw(key.clone(), unknown_schema).await?;
    expected.push("unknown_schema_id");
    fx.produce_raw(key.clone(), frame(&vec![7u8; 70 * 1024]))
        .await?;
    expected.push("oversized");
    let mut tampered = good.clone();
    let last = tampered.payload.len() - 1;
    tampered.payload[last] ^= 1;
    fx.produce_envelope(&tampered, None).await?;
    expected.push("bad_signature");
    fx.produce_envelope(
        &fx.sealed(
            FREE,
            "ada@example.org",
            Purpose::IndividualRequest,
            Kind::Request,
            None,
        )?,
        None,
    )
    .await?;
    expected.push("unsigned");
    let stranger = Arc::new(SigningKey::generate_ecdsa_p256("someone-else", 1)?);
    fx.produce_envelope(
        &fx.sealed(
            FREE,
            "ada@example.org",
            Purpose::IndividualRequest,
            Kind::Request,
            Some(stranger),
        )?,
        None,
    )
    .await?;
    expected.push("untrusted_signer");
    fx.produce_envelope(
        &fx.sealed(
            FREE,
            "ada@example.org",
            Purpose::Research,
            Kind::Request,
            signer.clone(),
        )?,
        None,
    )
    .await?;
    expected.push("purpose_not_allowed");
    fx.produce_envelope(
        &fx.sealed(
            "unknown-tenant",
            "ada@example.org",
            Purpose::IndividualRequest,
            Kind::Request,
            signer.clone(),
        )?,
        None,
    )
    .await?;
    expected.push("unknown_tenant");
    fx.produce_envelope(
        &fx.sealed(
            FREE,
            "ada@example.org",
            Purpose::IndividualRequest,
            Kind::Record,
            signer.clone(),
        )?,
        None,
    )
    .await?;
    expected.push("not_a_request");
    fx.produce_envelope(&good, Some(b"someone-elses-subject"))
        .await?;
    expected.push("key_mismatch");
    // And after all that, a good request still goes through.
    let ok = fx.send(FREE, "ada@example.org").await?;

    let (admitted, dead) = fx
        .wait_for("every bad record dead-lettered", |a, d| {
            d.len() >= expected.len() && a.contains(&ok)
        })
        .await?;
    ensure!(
        admitted.len() == 1,
        "only the good request is admitted: {}",
        admitted.len()
    );
    let mut got: Vec<&str> = dead.iter().map(|d| d.reason_code.as_str()).collect();
    got.sort_unstable();
    let mut want = expected.clone();
    want.sort_unstable();
    ensure!(got == want, "reason codes: got {got:?}, want {want:?}");
    // Each dead letter keeps its record (except the oversized one, whose value would not
    // fit), so nothing is lost.
    for d in &dead {
        ensure!(d.original_topic == topic::REQUESTS);
        ensure!(
            d.reason_code == "oversized"
                || d.reason_code == "empty_payload"
                || !d.original_value.is_empty(),
            "{d:?}"
        );
    }
    // The client is told about every refusal of an envelope it could have sent.
    let notices = fx.rejections().await?;
    for code in [
        "bad_signature",
        "unsigned",
        "untrusted_signer",
        "purpose_not_allowed",
        "not_a_request",
        "key_mismatch",
        "unknown_tenant",
        "malformed",
    ] {
        ensure!(
            notices.iter().any(|n| n.reason_code == code),
            "no rejection notice for {code}"
        );
    }
    for n in &notices {
        ensure!(!n.reason_detail.contains(CANARY));
    }
    admission.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_redriven_once_fixed_and_a_loop_is_refused() -> Result<()> {
    let fx = Fixture::start().await?;
    // The backend's key is not registered yet: its requests are dead-lettered.
    let admission = fx.start_admission(fx.config(false));
    let poison = fx.send(FREE, "ada@example.org").await?;
    fx.produce_raw(Some(b"k".to_vec()), b"garbage".to_vec())
        .await?;
    fx.wait_for("two dead letters", |_, d| d.len() >= 2).await?;
    admission.stop().await?;

    let sel = Selection {
        reason: Some("untrusted_signer".into()),
        ..Selection::default()
    };
    let listed = dlq::list(&fx.kafka, &fx.codec, topic::DLQ, &sel, 3).await?;
    ensure!(
        listed.len() == 1 && listed[0].message_id.as_deref() == Some(poison.as_str()),
        "{listed:?}"
    );
    ensure!(
        listed[0].tenant.as_deref() == Some(FREE) && listed[0].kind.as_deref() == Some("REQUEST")
    );

    // Fixed: the key is registered. Redrive it: admitted.
    let admission = fx.start_admission(fx.config(true));
    let dry = dlq::redrive(&fx.kafka, &fx.codec, topic::DLQ, &sel, 3, true).await?;
    ensure!(dry.redriven.len() == 1 && dry.refused.is_empty());
    ensure!(
        fx.admitted().await?.is_empty(),
        "a dry run produces nothing"
    );
    let report = dlq::redrive(&fx.kafka, &fx.codec, topic::DLQ, &sel, 3, false).await?;
    ensure!(report.redriven.len() == 1, "{report:?}");
    let (admitted, _) = fx
        .wait_for("the redriven request admitted", |a, _| a.contains(&poison))
        .await?;
    ensure!(admitted.len() == 1);
    let redriven = fx.read(topic::REQUESTS).await?;
    ensure!(
        redriven
            .iter()
            .any(|r| r.header(header::REDRIVE_COUNT) == Some(b"1")),
        "the redriven record carries its count"
    );

    // The garbage fails every time: after 3 redrives it is refused.
    let garbage = Selection {
        reason: Some("wrong_magic_byte".into()),
        ..Selection::default()
    };
    for round in 1..=3 {
        // Only the newest dead letter of it is redrivable (older ones carry lower counts
        // but were redriven already; select the latest by time).
        let latest = dlq::list(&fx.kafka, &fx.codec, topic::DLQ, &garbage, 3).await?;
        let newest = latest
            .iter()
            .max_by_key(|e| e.redrive_count)
            .context("garbage dead letter")?
            .clone();
        ensure!(
            newest.redrive_count == round - 1,
            "round {round}: {newest:?}"
        );
        let sel = Selection {
            at: vec![(newest.partition, newest.offset)],
            ..Selection::default()
        };
        let r = dlq::redrive(&fx.kafka, &fx.codec, topic::DLQ, &sel, 3, false).await?;
        ensure!(r.redriven.len() == 1, "round {round}: {r:?}");
        fx.wait_for("the garbage back on the DLQ", |_, d| {
            d.iter()
                .filter(|x| x.reason_code == "wrong_magic_byte")
                .count()
                > usize::try_from(round).unwrap_or(0)
        })
        .await?;
    }
    let latest = dlq::list(&fx.kafka, &fx.codec, topic::DLQ, &garbage, 3).await?;
    let newest = latest
        .iter()
        .max_by_key(|e| e.redrive_count)
        .context("garbage")?;
    ensure!(newest.redrive_count == 3, "{newest:?}");
    let sel = Selection {
        at: vec![(newest.partition, newest.offset)],
        ..Selection::default()
    };
    let r = dlq::redrive(&fx.kafka, &fx.codec, topic::DLQ, &sel, 3, false).await?;
    ensure!(r.redriven.is_empty() && r.refused.len() == 1, "{r:?}");
    ensure!(
        r.refused[0]
            .not_redrivable
            .as_deref()
            .is_some_and(|w| w.contains("redriven 3 times")),
        "{r:?}"
    );
    admission.stop().await?;
    Ok(())
}

/// `GET path` on `addr`; the status code and the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status line")?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    Ok((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_and_tokens_are_metered_and_served_to_dashboards() -> Result<()> {
    use zenvelope_schemas::{
        AuditEvent, AuditOperation, Disclosure, Outcome, PurposeOfUse, TokenCount,
    };
    let fx = Fixture::start().await?;
    zenvelope_runtime::ensure_topics(&fx.kafka, &[(topic::AUDIT, 1)]).await?;
    let port = zenvelope_tests::free_port()?;
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let mut config = fx.config(true);
    config.http.listen = Some(addr);
    // The binary accepts the same configuration (and reads every producer key).
    let file = fx.config_file("admission.toml", &format!("[http]\nlisten = \"{addr}\"\n"))?;
    let bin = zenvelope_tests::workspace_binary("zenvelope-processors", "zenvelope-admission")?;
    let out = std::process::Command::new(&bin)
        .arg("--config")
        .arg(&file)
        .arg("--check")
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(String::from_utf8_lossy(&out.stdout).contains("1 tenant(s), 1 producer key(s)"));
    let admission = fx.start_admission(config);

    // Answers as the enclave host writes them (public headers, sealed bytes).
    let answer = |kind: &str, len: usize, tenant: &str| {
        Outbound::new(topic::RESULTS, Some(b"req".to_vec()), vec![1u8; len])
            .with_header(header::TENANT, tenant)
            .with_header(header::KIND, kind)
    };
    for o in [
        answer("RESULT", 100, FREE),
        answer("RESULT", 100, FREE),
        answer("RESULT", 100, FREE),
        answer("ERROR", 50, FREE),
        answer("RESULT", 999, "not-ours"),
    ] {
        fx.producer.send(o).await?;
    }
    // Disclosure receipts: one with token counts, one without.
    for tokens in [
        Some(TokenCount {
            input_tokens: 812,
            output_tokens: 95,
        }),
        None,
    ] {
        let event = AuditEvent {
            event_id: uuid::Uuid::now_v7(),
            occurred_at_ms: 1_795_400_000_000,
            tenant: FREE.into(),
            subject: "sp1_x".into(),
            operation: AuditOperation::Disclosure,
            message_id: None,
            correlation_id: None,
            actor: "enclave-app".into(),
            outcome: Outcome::Success,
            reason_code: None,
            enclave_measurement: None,
            key_id: None,
            key_version: None,
            request_sha256: None,
            result_sha256: None,
            disclosure: Some(Disclosure {
                provider: "openai".into(),
                model: "gpt-x".into(),
                purpose: PurposeOfUse::IndividualRequest,
                signature: None,
                tokens,
            }),
        };
        let value = fx.codec.encode(Subject::AuditValue, &event).await?;
        fx.producer
            .send(Outbound::new(topic::AUDIT, Some(b"sp1_x".to_vec()), value))
            .await?;
    }

    let deadline = tokio::time::Instant::now() + WAIT;
    let usage = loop {
        let all =
            zenvelope_processors::usage::read(&fx.kafka, &fx.codec, topic::USAGE, Some(FREE), None)
                .await?;
        if let Some(u) = all.first()
            && u.results == 3
            && u.errors == 1
            && u.input_tokens == 812
        {
            break u.clone();
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "usage not metered: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    ensure!(
        (usage.result_bytes, usage.output_tokens, usage.requests) == (350, 95, 0),
        "{usage:?}"
    );
    let others = zenvelope_processors::usage::read(
        &fx.kafka,
        &fx.codec,
        topic::USAGE,
        Some("not-ours"),
        None,
    )
    .await?;
    ensure!(
        others.is_empty(),
        "an unknown tenant is not metered: {others:?}"
    );

    // The dashboard endpoint.
    let (status, body) = http_get(addr, "/v1/health").await?;
    ensure!(status == 200 && body.contains("\"ok\""), "{status} {body}");
    let (status, body) = http_get(addr, &format!("/v1/usage?tenant={FREE}")).await?;
    ensure!(status == 200, "{status} {body}");
    let json: serde_json::Value = serde_json::from_str(&body)?;
    let row = &json["usage"][0];
    ensure!(
        row["tenant"] == FREE && row["results"] == 3 && row["errors"] == 1,
        "{json}"
    );
    ensure!(
        row["input_tokens"] == 812 && row["output_tokens"] == 95 && row["result_bytes"] == 350,
        "{json}"
    );
    ensure!(
        http_get(addr, "/v1/usage?tenant=nobody")
            .await?
            .1
            .contains("\"usage\":[]")
    );
    ensure!(http_get(addr, "/nope").await?.0 == 404);

    // The same figures from the CLI, as a script reads them.
    let cli = zenvelope_tests::workspace_binary("zenvelope-cli", "zenvelope")?;
    let out = std::process::Command::new(&cli)
        .args([
            "usage",
            "--bootstrap",
            &fx.kafka.bootstrap_servers,
            "--tenant",
            FREE,
            "--json",
        ])
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        json[0]["results"] == 3 && json[0]["input_tokens"] == 812,
        "{json}"
    );
    let out = std::process::Command::new(&cli)
        .args(["dlq", "list", "--bootstrap", &fx.kafka.bootstrap_servers])
        .output()?;
    ensure!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("0 dead letter(s)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = std::process::Command::new(&cli)
        .args(["dlq", "redrive", "--bootstrap", &fx.kafka.bootstrap_servers])
        .output()?;
    ensure!(
        out.status.code() == Some(2)
            && String::from_utf8_lossy(&out.stderr).contains("--at or --reason"),
        "{out:?}"
    );
    admission.stop().await?;
    Ok(())
}
