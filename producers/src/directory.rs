//! The key directory: the fleet's public keys as the enclaves publish them on the
//! compacted `zenvelope.keys` topic, each with an attestation document, and the checks
//! the SDK makes before it wraps a DEK to one of them.
//!
//! [`verify_entry`] is the whole trust decision, with no I/O. An entry is used only if:
//!
//! 1. its purpose and algorithm are ones this SDK uses (`FLEET_ENCRYPTION` with
//!    RSA-OAEP-SHA256; `FLEET_SIGNING` with ECDSA P-256 or RSA-PSS) and its status is
//!    `ACTIVE` or, for signing keys only, `RETIRED`;
//! 2. `fingerprint_sha256` is the SHA-256 of the key;
//! 3. it carries an attestation document that verifies against the pinned root
//!    ([`TrustAnchor::aws_nitro_root_g1`] in production, a dev CA locally): certificate
//!    chain, validity and COSE signature, all as of the document's own timestamp (the
//!    Nitro leaf certificate lives for hours, the entry for days; the entry's own window
//!    is step 6);
//! 4. every pinned PCR matches ([`PinnedMeasurements`]; an empty set is refused);
//! 5. the document's `public_key` is exactly this key and its `user_data` is
//!    [`KeyDirectoryEntry::attestation_binding`] of this entry, so id, version, purpose,
//!    validity and status are vouched for by the enclave, not by whoever wrote the record;
//! 6. now is inside `[not_before_ms - skew, not_after_ms]`.
//!
//! [`KeyDirectory::follow`] reads the topic from the beginning and keeps following it, so
//! a new key version is picked up without a restart; the newest verified, valid version
//! becomes the one requests are wrapped to.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, UNIX_EPOCH};

use zenvelope_attestation::{
    AttestationDocument, CoseSign1, PinnedMeasurements, TrustAnchor, expect_pcrs,
};
use zenvelope_envelope::{FleetPublicKey, Keyring, Opener, VerifyingKey};
use zenvelope_runtime::{KafkaConfig, Subscriber, now_ms};
use zenvelope_schemas::names::topic;
use zenvelope_schemas::{KeyAlgorithm, KeyDirectoryEntry, KeyPurpose, KeyStatus, SchemaCodec};

use crate::error::Error;

/// Default allowance for clocks that disagree: five minutes.
pub const DEFAULT_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// What the SDK trusts in the key directory: the attestation root and the enclave
/// measurements.
#[derive(Clone)]
pub struct KeyDirectoryPolicy {
    anchor: TrustAnchor,
    pins: PinnedMeasurements,
    clock_skew_ms: i64,
}

impl KeyDirectoryPolicy {
    /// Production: documents must chain to the AWS Nitro Enclaves root G1 and match `pins`
    /// (at least PCR0, the image measurement `nitro-cli build-enclave` prints).
    pub fn aws_nitro(pins: PinnedMeasurements) -> Self {
        Self::with_anchor(TrustAnchor::aws_nitro_root_g1(), pins)
    }

    /// Documents must chain to `anchor` and match `pins`. For a local dev CA, see
    /// [`KeyDirectoryPolicy::danger_dev_root`].
    pub fn with_anchor(anchor: TrustAnchor, pins: PinnedMeasurements) -> Self {
        Self {
            anchor,
            pins,
            clock_skew_ms: DEFAULT_CLOCK_SKEW_MS,
        }
    }

    /// DANGER: trusts documents signed by a local dev CA (its root certificate, DER), as
    /// `enclave-app` writes with `danger_dev_root_out` and `zenvelope up` does. Whoever
    /// holds that CA can attest any key; local runs only.
    pub fn danger_dev_root(root_der: &[u8], pins: PinnedMeasurements) -> Result<Self, Error> {
        let anchor = TrustAnchor::from_der(root_der).map_err(|e| Error::KeyDirectory {
            reason: format!("the dev attestation root is not a usable certificate: {e}"),
        })?;
        tracing::warn!(
            "DANGER: the key directory is verified against a dev attestation root, not AWS Nitro; local runs only."
        );
        Ok(Self::with_anchor(anchor, pins))
    }

    /// Allowance for clock disagreement when checking an entry's validity window.
    #[must_use]
    pub fn with_clock_skew_ms(mut self, skew_ms: i64) -> Self {
        self.clock_skew_ms = skew_ms;
        self
    }
}

/// Why an entry of the key directory is not used. Each names one failed check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The record does not decode as a `KeyDirectoryEntry`.
    #[error("the record does not decode as a key directory entry")]
    Malformed,
    /// A purpose, algorithm or status this SDK does not use.
    #[error("the purpose, algorithm or status is not one this SDK uses")]
    Unsupported,
    /// `fingerprint_sha256` is not the SHA-256 of the key.
    #[error("the fingerprint does not match the key")]
    FingerprintMismatch,
    /// No attestation document.
    #[error("the entry carries no attestation document")]
    NoEvidence,
    /// The document does not verify against the pinned root.
    #[error("the attestation document does not verify: {0}")]
    Attestation(String),
    /// A pinned PCR is missing or different.
    #[error("the enclave measurements do not match the pinned ones: {0}")]
    Measurement(String),
    /// The document attests another public key.
    #[error("the attestation document is for a different public key")]
    KeyNotAttested,
    /// The document's `user_data` is not this entry's binding (id, version, purpose,
    /// validity or status were changed after attestation).
    #[error("the entry's fields are not the ones the enclave attested")]
    BindingMismatch,
    /// `enclave_measurement` disagrees with the attested PCR0.
    #[error("the entry's enclave_measurement is not the attested PCR0")]
    MeasurementLabel,
    /// Now is before `not_before_ms`.
    #[error("the entry is not valid yet")]
    NotYetValid,
    /// Now is after `not_after_ms`.
    #[error("the entry has expired")]
    Expired,
    /// The key bytes do not parse as the algorithm says.
    #[error("the public key does not parse: {0}")]
    BadKey(String),
}

/// A key that passed [`verify_entry`].
pub enum VerifiedKey {
    /// A fleet key requests may be wrapped to.
    Fleet(FleetPublicKey),
    /// A result-signing key answers are verified with.
    ResultSigning(VerifyingKey),
}

/// Checks one entry against `policy` at `now_ms` (see the module documentation for the
/// order of the checks).
pub fn verify_entry(
    entry: &KeyDirectoryEntry,
    policy: &KeyDirectoryPolicy,
    now_ms: i64,
) -> Result<VerifiedKey, Rejection> {
    let usable = matches!(
        (entry.purpose, entry.algorithm, entry.status),
        (
            KeyPurpose::FleetEncryption,
            KeyAlgorithm::RsaOaepSha256,
            KeyStatus::Active
        ) | (
            KeyPurpose::FleetSigning,
            KeyAlgorithm::EcdsaP256Sha256 | KeyAlgorithm::RsaPssSha256,
            KeyStatus::Active | KeyStatus::Retired,
        )
    );
    if !usable {
        return Err(Rejection::Unsupported);
    }
    let spki = &entry.public_key_spki_der;
    if zenvelope_envelope::spki_fingerprint(spki) != entry.fingerprint_sha256 {
        return Err(Rejection::FingerprintMismatch);
    }
    let document = entry
        .attestation_document
        .as_deref()
        .ok_or(Rejection::NoEvidence)?;
    let attested_at = CoseSign1::decode(document)
        .and_then(|cose| AttestationDocument::decode(&cose.payload))
        .map_err(|e| Rejection::Attestation(e.to_string()))?
        .timestamp_ms;
    let verified = zenvelope_attestation::verify(
        document,
        &policy.anchor,
        UNIX_EPOCH + Duration::from_millis(attested_at),
    )
    .map_err(|e| Rejection::Attestation(e.to_string()))?;
    expect_pcrs(&verified, &policy.pins).map_err(|e| Rejection::Measurement(e.to_string()))?;
    if verified.public_key() != Some(spki.as_slice()) {
        return Err(Rejection::KeyNotAttested);
    }
    if verified.user_data() != Some(entry.attestation_binding().as_slice()) {
        return Err(Rejection::BindingMismatch);
    }
    if let Some(label) = &entry.enclave_measurement
        && Some(label.as_str()) != verified.pcr(0).map(hex::encode).as_deref()
    {
        return Err(Rejection::MeasurementLabel);
    }
    if now_ms < entry.not_before_ms.saturating_sub(policy.clock_skew_ms) {
        return Err(Rejection::NotYetValid);
    }
    if now_ms > entry.not_after_ms {
        return Err(Rejection::Expired);
    }
    let bad_key = |e: zenvelope_envelope::Error| Rejection::BadKey(e.to_string());
    match entry.purpose {
        KeyPurpose::FleetEncryption => Ok(VerifiedKey::Fleet(
            FleetPublicKey::from_spki_der(entry.key_id.clone(), entry.key_version, spki)
                .map_err(bad_key)?,
        )),
        _ => {
            let key = VerifyingKey::from_spki_der(entry.key_id.clone(), entry.key_version, spki)
                .map_err(bad_key)?;
            // `usable` admitted only signature algorithms for a signing key.
            if entry.algorithm.signature_algorithm() != Some(key.algorithm()) {
                return Err(Rejection::BadKey(
                    "the key type is not the entry's algorithm".to_owned(),
                ));
            }
            Ok(VerifiedKey::ResultSigning(key))
        }
    }
}

/// One entry as last seen on the topic, by its record key.
#[derive(Clone)]
struct Seen {
    entry: Option<KeyDirectoryEntry>,
    /// The last verdict (recomputed when the fleet key is chosen, since entries expire).
    verdict: Result<(), Rejection>,
}

/// The state of the directory as far as it has been read.
#[derive(Default)]
struct State {
    seen: BTreeMap<String, Seen>,
    /// The current fleet keyring (the newest verified, valid key) and until when it holds.
    fleet: Option<(Arc<Keyring<FleetPublicKey>>, i64)>,
    /// An opener trusting every verified result-signing key.
    results: Option<Arc<Opener>>,
}

/// A summary line per entry, for `zenvelope keys show` and error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryStatus {
    /// The record key (`PURPOSE/key_id/version`).
    pub name: String,
    /// The SHA-256 fingerprint of the key, if the entry decoded.
    pub fingerprint: Option<String>,
    /// `None` if the entry verified; the reason otherwise.
    pub rejection: Option<Rejection>,
}

/// The key directory as this process has read it so far, kept current by a background
/// task ([`KeyDirectory::follow`]).
pub struct KeyDirectory {
    policy: KeyDirectoryPolicy,
    state: RwLock<State>,
    changed: tokio::sync::Notify,
}

impl KeyDirectory {
    /// An empty directory; feed it with [`KeyDirectory::apply`].
    pub fn new(policy: KeyDirectoryPolicy) -> Self {
        Self {
            policy,
            state: RwLock::new(State::default()),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Starts following `zenvelope.keys` from its beginning on a Tokio task. Must be
    /// called inside a Tokio runtime.
    pub fn follow(
        kafka: KafkaConfig,
        codec: Arc<SchemaCodec>,
        policy: KeyDirectoryPolicy,
    ) -> Result<Arc<Self>, Error> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| Error::KeyDirectory {
            reason: "following the key directory needs a Tokio runtime".to_owned(),
        })?;
        let directory = Arc::new(Self::new(policy));
        let weak = Arc::downgrade(&directory);
        handle.spawn(async move {
            let group = format!(
                "zenvelope-sdk-keys-{}",
                zenvelope_envelope::MessageId::new_v7()
            );
            // Subscriber::new fetches metadata synchronously: off the reactor.
            let subscriber = match tokio::task::spawn_blocking(move || {
                Subscriber::new(&kafka, &group, &[topic::KEYS], true)
            })
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(error)) => {
                    tracing::error!(%error, "The key directory cannot be read.");
                    return;
                }
                Err(_) => return,
            };
            loop {
                let record = match subscriber.recv().await {
                    Ok(record) => record,
                    Err(error) => {
                        tracing::warn!(%error, "Reading the key directory failed; trying again.");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let Some(directory) = weak.upgrade() else {
                    return;
                };
                let name = record
                    .key
                    .as_deref()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default();
                let entry = codec
                    .decode::<KeyDirectoryEntry>(&record.payload)
                    .await
                    .ok();
                directory.apply(&name, entry);
            }
        });
        Ok(directory)
    }

    /// Records the entry read under record key `name` (`None`: it did not decode),
    /// replacing what was there, and re-evaluates which keys are used.
    pub fn apply(&self, name: &str, entry: Option<KeyDirectoryEntry>) {
        let verdict = match &entry {
            Some(e) => verify_entry(e, &self.policy, now_ms()).map(|_| ()),
            None => Err(Rejection::Malformed),
        };
        match &verdict {
            Ok(()) => tracing::info!(entry = %name, "Key directory entry verified."),
            Err(reason) => {
                tracing::warn!(entry = %name, %reason, "Key directory entry refused.")
            }
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.seen.insert(name.to_owned(), Seen { entry, verdict });
        state.fleet = None;
        state.results = None;
        drop(state);
        self.changed.notify_waiters();
    }

    /// The keyring requests are wrapped to now: the newest verified, unexpired fleet key.
    pub fn fleet(&self) -> Result<Arc<Keyring<FleetPublicKey>>, Error> {
        let now = now_ms();
        if let Some((ring, until)) = &self.read().fleet
            && now <= *until
        {
            return Ok(ring.clone());
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let mut best: Option<(FleetPublicKey, i64)> = None;
        for seen in state.seen.values_mut() {
            let Some(entry) = &seen.entry else { continue };
            if entry.purpose != KeyPurpose::FleetEncryption {
                continue;
            }
            // Verdicts can change with time (expiry): check again.
            match verify_entry(entry, &self.policy, now) {
                Ok(VerifiedKey::Fleet(key)) => {
                    seen.verdict = Ok(());
                    let newer = best.as_ref().is_none_or(|(b, _)| {
                        entry.key_version > zenvelope_envelope::Keyed::key_version(b)
                    });
                    if newer {
                        best = Some((key, entry.not_after_ms));
                    }
                }
                Ok(VerifiedKey::ResultSigning(_)) => {}
                Err(reason) => seen.verdict = Err(reason),
            }
        }
        let Some((key, until)) = best else {
            drop(state);
            return Err(self.no_key_error());
        };
        let mut ring = Keyring::new();
        ring.insert(key)?;
        let ring = Arc::new(ring);
        state.fleet = Some((ring.clone(), until));
        Ok(ring)
    }

    /// Whether fleet key `key_id` version `key_version` verifies now: any verified, valid
    /// version counts (a page that loaded the directory before a rotation still wraps to
    /// the previous one), not only the newest.
    pub fn trusts_fleet_key(&self, key_id: &str, key_version: i32) -> bool {
        let now = now_ms();
        self.read().seen.values().any(|seen| {
            seen.entry.as_ref().is_some_and(|e| {
                e.purpose == KeyPurpose::FleetEncryption
                    && e.key_id == key_id
                    && e.key_version == key_version
                    && matches!(
                        verify_entry(e, &self.policy, now),
                        Ok(VerifiedKey::Fleet(_))
                    )
            })
        })
    }

    /// An opener trusting every verified result-signing key (active or retired).
    pub fn results_opener(&self) -> Arc<Opener> {
        if let Some(opener) = &self.read().results {
            return opener.clone();
        }
        let now = now_ms();
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let mut ring = Keyring::new();
        for seen in state.seen.values() {
            let Some(entry) = &seen.entry else { continue };
            if let Ok(VerifiedKey::ResultSigning(key)) = verify_entry(entry, &self.policy, now) {
                // A duplicate id/version under another record key is ignored.
                let _ = ring.insert(key);
            }
        }
        let opener = Arc::new(Opener::new(ring));
        state.results = Some(opener.clone());
        opener
    }

    /// Waits until a fleet key verifies, at most `timeout`; then [`KeyDirectory::fleet`].
    pub async fn wait_for_fleet(
        &self,
        timeout: Duration,
    ) -> Result<Arc<Keyring<FleetPublicKey>>, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            if let Ok(ring) = self.fleet() {
                return Ok(ring);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.fleet();
            }
        }
    }

    /// Every entry read so far with its verdict, by record key.
    pub fn entries(&self) -> Vec<EntryStatus> {
        self.read()
            .seen
            .iter()
            .map(|(name, seen)| EntryStatus {
                name: name.clone(),
                fingerprint: seen.entry.as_ref().map(|e| e.fingerprint_sha256.clone()),
                rejection: seen.verdict.clone().err(),
            })
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn no_key_error(&self) -> Error {
        let state = self.read();
        let refused: Vec<String> = state
            .seen
            .iter()
            .filter(|(name, _)| name.starts_with(KeyPurpose::FleetEncryption.symbol()))
            .filter_map(|(name, seen)| {
                seen.verdict
                    .as_ref()
                    .err()
                    .map(|reason| format!("{name}: {reason}"))
            })
            .collect();
        Error::NoTrustedFleetKey {
            refused: if refused.is_empty() {
                "no fleet key has been published on zenvelope.keys".to_owned()
            } else {
                refused.join("; ")
            },
        }
    }
}
