//! Cost of admission's first stage per request, against a baseline measured in the same
//! run: the work no admission can skip, decoding the framed envelope strictly and
//! verifying the producer's signature. The ratio is what the checks, the header copy and
//! the output record add on top.
//!
//! Requests are 1 KiB journal entries sealed for a user key and an RSA-3072 fleet key,
//! signed with ECDSA P-256 or RSA-PSS-3072 (the producer's choice). The quota stage is not
//! measured here: it is one broker round trip per request (see docs/benchmarks.md).
//!
//! `cargo bench -p zenvelope-processors --bench admission`

use std::collections::BTreeMap;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use zenvelope_envelope::{
    FleetPrivateKey, FleetPublicKey, HeaderFields, Keyring, Kind, Limits, MetadataKey, Passphrase,
    Purpose, Sealer, SigningKey, UserKey,
};
use zenvelope_processors::Tier;
use zenvelope_processors::check::AdmissionCheck;
use zenvelope_processors::config::{Tenant, TopicsConfig};
use zenvelope_runtime::{Disposition, Handler, Inbound};
use zenvelope_schemas::{SchemaCodec, Subject};

const TENANT: &str = "clinic-a";
const PAYLOAD_BYTES: usize = 1024;

/// One signed request, framed as producers write it, and its signer's public key.
struct Case {
    name: &'static str,
    record: Inbound,
    tenants: Arc<BTreeMap<String, Tenant>>,
}

fn case(
    name: &'static str,
    signer: SigningKey,
    rt: &tokio::runtime::Runtime,
    codec: &SchemaCodec,
) -> Case {
    let fleet = FleetPrivateKey::generate("fleet", 1, 3072).expect("fleet key");
    let fleet = FleetPublicKey::from_spki_der("fleet", 1, fleet.public_key().spki_der())
        .expect("fleet public key");
    let user = UserKey::derive_with_iterations(
        TENANT,
        "ada@example.org",
        &Passphrase::new("bench passphrase"),
        100_000,
    )
    .expect("user key");
    let subject = MetadataKey::from_bytes([7; 32]).pseudonym(TENANT, "ada@example.org");
    let verifying = signer.verifying_key().expect("verifying key");
    let envelope = Sealer::new(vec![
        Arc::new(user),
        Arc::new(Keyring::new().with(fleet).expect("ring")),
    ])
    .with_signer(Arc::new(signer))
    .seal(
        &HeaderFields {
            tenant: TENANT.to_owned(),
            subject: subject.clone(),
            kind: Kind::Request,
            purpose: Purpose::IndividualRequest,
            content_type: "text/plain; charset=utf-8".into(),
            schema_id: 0,
        },
        &[b'j'; PAYLOAD_BYTES],
    )
    .expect("seal");
    let payload = rt
        .block_on(codec.encode_envelope(Subject::RequestsValue, &envelope))
        .expect("frame");
    let tenants = BTreeMap::from([(
        TENANT.to_owned(),
        Tenant::new(
            Tier::Pro,
            vec![Purpose::IndividualRequest],
            Keyring::new().with(verifying).expect("ring"),
        ),
    )]);
    Case {
        name,
        record: Inbound {
            topic: "zenvelope.requests".to_owned(),
            partition: 0,
            offset: 0,
            key: Some(subject.into_bytes()),
            payload,
            headers: vec![("zenvelope-message-id".to_owned(), b"bench".to_vec())],
            timestamp_ms: Some(1_700_000_000_000),
        },
        tenants: Arc::new(tenants),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let codec = Arc::new(SchemaCodec::offline().expect("codec"));
    let cases = [
        case(
            "ecdsa-p256",
            SigningKey::generate_ecdsa_p256("backend", 1).expect("key"),
            &rt,
            &codec,
        ),
        case(
            "pss-3072",
            SigningKey::generate("backend", 1, 3072).expect("key"),
            &rt,
            &codec,
        ),
    ];
    let mut group = c.benchmark_group("admission_check");
    group.throughput(Throughput::Elements(1));
    for case in &cases {
        let check =
            AdmissionCheck::new(case.tenants.clone(), TopicsConfig::default(), codec.clone());
        // Admitted, or the figure would measure a refusal.
        let admitted = rt.block_on(check.handle(Arc::new(case.record.clone())));
        assert!(matches!(admitted, Disposition::Produce(_)), "not admitted");
        group.bench_function(format!("handler/{}", case.name), |b| {
            b.iter(|| rt.block_on(check.handle(Arc::new(case.record.clone()))))
        });

        // The baseline: strict decoding and the signature check, nothing else.
        let tenant = &case.tenants[TENANT];
        group.bench_function(format!("decode_and_verify/{}", case.name), |b| {
            b.iter(|| {
                let payload = case.record.payload.clone();
                let envelope = rt
                    .block_on(codec.decode_envelope(&payload, &Limits::default()))
                    .expect("decode");
                tenant.producers.verify(&envelope).expect("verify");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
