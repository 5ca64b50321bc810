//! [`Client`]: seal and produce.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use zenvelope_envelope::{
    DekSessionPolicy, FleetPublicKey, HeaderFields, Keyring, Kind, MetadataKey, Opener, Passphrase,
    Purpose, Sealer, SigningKey, UserKey, VerifyingKey,
};
use zenvelope_runtime::{KafkaConfig, Outbound, Producer};
use zenvelope_schemas::names::{header, media_type, topic};
use zenvelope_schemas::{
    AnalysisInput, AnalysisRequest, BinaryInput, ModelPreferences, RequestLimits, SchemaCodec,
    Subject, TextInput,
};

use crate::directory::{KeyDirectory, KeyDirectoryPolicy};
use crate::error::Error;
use crate::results::Results;

/// How long [`Client::analyze`] waits for the key directory to deliver a verified fleet
/// key when none is known yet (at start-up).
pub const DEFAULT_KEY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The default DEK session: one DEK per user for at most 1,000 messages or 5 minutes.
pub const DEFAULT_DEK_SESSION: DekSessionPolicy = DekSessionPolicy {
    max_messages: 1_000,
    max_age_ms: 5 * 60 * 1_000,
};

/// A user on whose behalf the backend seals: their key (derived from their credentials,
/// never stored by the backend) and their pseudonymous subject id.
pub struct User {
    pub(crate) key: Arc<UserKey>,
    pub(crate) subject: String,
}

impl User {
    /// The subject pseudonym: the Kafka key of this user's records, and the `subject`
    /// in their envelopes' headers. Not the identity.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// What the model analyses (sealed).
#[derive(Clone)]
pub enum Input {
    /// Text.
    Text(String),
    /// A document as bytes with its media type. The enclave analyses textual media types
    /// (`text/*`, `application/json`, `application/xml`, `*+json`, `*+xml`, e.g. a FHIR
    /// resource) as UTF-8 text; other types (images, PDF) are dead-lettered with
    /// `unsupported_input` until a provider with binary input is configured.
    Bytes {
        /// The bytes.
        data: Vec<u8>,
        /// Their media type, e.g. `application/fhir+json`.
        media_type: String,
    },
}

impl Input {
    fn len(&self) -> usize {
        match self {
            Input::Text(t) => t.len(),
            Input::Bytes { data, .. } => data.len(),
        }
    }
}

/// An analysis request: an instruction, the input to analyse, and optional preferences.
/// `Debug` shows lengths only: everything but the purpose and the preferences is the
/// user's data.
#[derive(Clone)]
pub struct Request {
    /// What the model is asked to do (sealed).
    pub instruction: String,
    /// The input (sealed).
    pub input: Input,
    /// Purpose of use, authenticated in the header and enforced by the enclave.
    pub purpose: Purpose,
    /// Sampling temperature, if the default does not suit.
    pub temperature: Option<f64>,
    /// Upper bound on the answer's length in tokens.
    pub max_output_tokens: Option<i32>,
    /// The caller's own reference (e.g. its entry id), echoed in the answer (sealed).
    pub client_reference: Option<String>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("instruction_len", &self.instruction.len())
            .field("input_len", &self.input.len())
            .field("purpose", &self.purpose)
            .field("temperature", &self.temperature)
            .field("max_output_tokens", &self.max_output_tokens)
            .field("has_client_reference", &self.client_reference.is_some())
            .finish()
    }
}

impl Request {
    /// A request with `instruction` and `text`, for the individual's own request
    /// (`Purpose::IndividualRequest`).
    pub fn text(instruction: impl Into<String>, text: impl Into<String>) -> Self {
        Self::with_input(instruction, Input::Text(text.into()))
    }

    /// A request with `instruction` and a document as bytes of `media_type` (see
    /// [`Input::Bytes`] for what the enclave accepts).
    pub fn bytes(
        instruction: impl Into<String>,
        data: impl Into<Vec<u8>>,
        media_type: impl Into<String>,
    ) -> Self {
        Self::with_input(
            instruction,
            Input::Bytes {
                data: data.into(),
                media_type: media_type.into(),
            },
        )
    }

    fn with_input(instruction: impl Into<String>, input: Input) -> Self {
        Self {
            instruction: instruction.into(),
            input,
            purpose: Purpose::IndividualRequest,
            temperature: None,
            max_output_tokens: None,
            client_reference: None,
        }
    }

    /// The same request with another purpose of use.
    pub fn with_purpose(mut self, purpose: Purpose) -> Self {
        self.purpose = purpose;
        self
    }

    /// The same request with a client reference, echoed (sealed) in the answer.
    pub fn with_client_reference(mut self, reference: impl Into<String>) -> Self {
        self.client_reference = Some(reference.into());
        self
    }
}

/// What was produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The envelope's message id; answers carry it as their correlation id.
    pub message_id: String,
    /// Partition and offset the broker acknowledged.
    pub partition: i32,
    /// Offset the broker acknowledged.
    pub offset: i64,
}

/// The fleet key requests are wrapped to (public facts only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetKeyInfo {
    /// Key id.
    pub key_id: String,
    /// Key version.
    pub key_version: i32,
    /// SHA-256 of the key's SubjectPublicKeyInfo, lowercase hex.
    pub fingerprint: String,
}

/// Builds a [`Client`].
pub struct ClientBuilder {
    kafka: KafkaConfig,
    tenant: String,
    codec: Option<Arc<SchemaCodec>>,
    signer: Option<Arc<SigningKey>>,
    fleet: Option<Arc<Keyring<FleetPublicKey>>>,
    result_keys: Option<Keyring<VerifyingKey>>,
    directory: Option<KeyDirectoryPolicy>,
    metadata_key: Option<MetadataKey>,
    dek_session: DekSessionPolicy,
    pbkdf2_iterations: Option<u32>,
}

impl ClientBuilder {
    /// The backend's producer signing key; the enclave trusts requests signed with it.
    pub fn signer(mut self, key: SigningKey) -> Self {
        self.signer = Some(Arc::new(key));
        self
    }

    /// Take the fleet's keys from the attested key directory on `zenvelope.keys`,
    /// verified under `policy` (the recommended way): requests are wrapped only to a key
    /// whose attestation verifies, answers are verified with the attested result-signing
    /// keys, and new key versions are picked up while the client runs.
    pub fn key_directory(mut self, policy: KeyDirectoryPolicy) -> Self {
        self.directory = Some(policy);
        self
    }

    /// Pins the enclave fleet's public keys instead of reading the key directory (keys
    /// obtained and checked out of band); new requests are wrapped to the newest.
    pub fn fleet_keys(mut self, keys: Keyring<FleetPublicKey>) -> Self {
        self.fleet = Some(Arc::new(keys));
        self
    }

    /// Pins the fleet's result-signing keys instead of reading the key directory; answers
    /// signed by anything else are rejected.
    pub fn result_keys(mut self, keys: Keyring<VerifyingKey>) -> Self {
        self.result_keys = Some(keys);
        self
    }

    /// The tenant's metadata key, which turns identities into subject pseudonyms.
    pub fn metadata_key(mut self, key: MetadataKey) -> Self {
        self.metadata_key = Some(key);
        self
    }

    /// How long a DEK is reused ([`DEFAULT_DEK_SESSION`] unless set).
    pub fn dek_session(mut self, policy: DekSessionPolicy) -> Self {
        self.dek_session = policy;
        self
    }

    /// The schema codec (offline catalog unless set).
    pub fn codec(mut self, codec: Arc<SchemaCodec>) -> Self {
        self.codec = Some(codec);
        self
    }

    /// PBKDF2 iterations for user keys (600,000 unless set; at least 100,000). Only for
    /// tests and the legacy format: the count is part of every user recipient.
    pub fn pbkdf2_iterations(mut self, iterations: u32) -> Self {
        self.pbkdf2_iterations = Some(iterations);
        self
    }

    /// Checks that every key is there and creates the Kafka producer. With
    /// [`ClientBuilder::key_directory`], also starts following `zenvelope.keys`, which
    /// needs a Tokio runtime.
    pub fn build(self) -> Result<Client, Error> {
        let signer = self
            .signer
            .ok_or(Error::Config("no producer signing key"))?;
        let codec = match self.codec {
            Some(c) => c,
            None => Arc::new(SchemaCodec::offline()?),
        };
        let keys = match (self.directory, self.fleet, self.result_keys) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(Error::Config(
                    "pinned fleet or result keys and a key directory are both set; choose one",
                ));
            }
            (Some(policy), None, None) => Keys::Directory(KeyDirectory::follow(
                self.kafka.clone(),
                codec.clone(),
                policy,
            )?),
            (None, fleet, result_keys) => {
                let fleet = fleet.ok_or(Error::Config(
                    "no fleet public key (pin one, or use the key directory)",
                ))?;
                if fleet.current().is_none() {
                    return Err(Error::Config("the fleet keyring is empty"));
                }
                let result_keys =
                    result_keys.ok_or(Error::Config("no result-signing key to verify answers"))?;
                if result_keys.is_empty() {
                    return Err(Error::Config("the result-signing keyring is empty"));
                }
                Keys::Pinned {
                    fleet,
                    results: Arc::new(Opener::new(result_keys)),
                }
            }
        };
        let metadata_key = self
            .metadata_key
            .ok_or(Error::Config("no metadata key for subject pseudonyms"))?;
        Ok(Client {
            inner: Arc::new(Inner {
                producer: Producer::new(&self.kafka)?,
                kafka: self.kafka,
                tenant: self.tenant,
                codec,
                signer,
                keys,
                metadata_key,
                dek_session: self.dek_session,
                pbkdf2_iterations: self.pbkdf2_iterations,
                sealers: Mutex::new(HashMap::new()),
            }),
        })
    }
}

/// Where the fleet's public keys come from.
enum Keys {
    /// Pinned by the caller.
    Pinned {
        fleet: Arc<Keyring<FleetPublicKey>>,
        results: Arc<Opener>,
    },
    /// The attested key directory, followed in the background.
    Directory(Arc<KeyDirectory>),
}

/// The SDK's entry point. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    producer: Producer,
    pub(crate) kafka: KafkaConfig,
    tenant: String,
    pub(crate) codec: Arc<SchemaCodec>,
    signer: Arc<SigningKey>,
    keys: Keys,
    metadata_key: MetadataKey,
    dek_session: DekSessionPolicy,
    pbkdf2_iterations: Option<u32>,
    /// One sealer per user key for requests (their DEK session), by KEK id, with the
    /// fleet keyring it wraps to: a new fleet key starts a new sealer.
    sealers: Mutex<HashMap<String, UserSealer>>,
}

struct UserSealer {
    fleet: Arc<Keyring<FleetPublicKey>>,
    sealer: Arc<Mutex<Sealer>>,
}

impl Inner {
    /// The keyring new requests are wrapped to.
    async fn fleet(&self) -> Result<Arc<Keyring<FleetPublicKey>>, Error> {
        match &self.keys {
            Keys::Pinned { fleet, .. } => Ok(fleet.clone()),
            Keys::Directory(directory) => directory.wait_for_fleet(DEFAULT_KEY_WAIT).await,
        }
    }

    /// Whether requests wrapped to this fleet key may be forwarded.
    fn trusts_fleet_key(&self, key_id: &str, key_version: i32) -> bool {
        match &self.keys {
            Keys::Pinned { fleet, .. } => fleet.get(key_id, key_version).is_some(),
            Keys::Directory(directory) => directory.trusts_fleet_key(key_id, key_version),
        }
    }

    /// The opener answers are verified and opened with.
    pub(crate) fn results_opener(&self) -> Arc<Opener> {
        match &self.keys {
            Keys::Pinned { results, .. } => results.clone(),
            Keys::Directory(directory) => directory.results_opener(),
        }
    }
}

/// Seals on the blocking pool: the producer's RSA-PSS signature costs about 2 ms of CPU,
/// too long for the async reactor. The user's sealer is locked while it seals, so its
/// DEK session counts every message.
async fn seal_off_reactor(
    sealer: Arc<Mutex<Sealer>>,
    fields: HeaderFields,
    plaintext: zeroize::Zeroizing<Vec<u8>>,
) -> Result<zenvelope_envelope::Envelope, Error> {
    tokio::task::spawn_blocking(move || {
        sealer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .seal(&fields, &plaintext)
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))?
    .map_err(Error::from)
}

impl Client {
    /// Starts building a client for `tenant` on the Kafka cluster `kafka`.
    pub fn builder(kafka: KafkaConfig, tenant: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            kafka,
            tenant: tenant.into(),
            codec: None,
            signer: None,
            fleet: None,
            result_keys: None,
            directory: None,
            metadata_key: None,
            dek_session: DEFAULT_DEK_SESSION,
            pbkdf2_iterations: None,
        }
    }

    /// The fleet key new requests are wrapped to. With the key directory, waits up to
    /// `timeout` for a verified one (at start-up the directory is still being read) and
    /// fails with [`Error::NoTrustedFleetKey`], naming every refused entry, if none
    /// arrives.
    pub async fn wait_for_fleet_key(
        &self,
        timeout: std::time::Duration,
    ) -> Result<FleetKeyInfo, Error> {
        let ring = match &self.inner.keys {
            Keys::Pinned { fleet, .. } => fleet.clone(),
            Keys::Directory(directory) => directory.wait_for_fleet(timeout).await?,
        };
        let key = ring
            .current()
            .ok_or(Error::Config("the fleet keyring is empty"))?;
        Ok(FleetKeyInfo {
            key_id: zenvelope_envelope::Keyed::key_id(key).to_owned(),
            key_version: zenvelope_envelope::Keyed::key_version(key),
            fingerprint: key.fingerprint(),
        })
    }

    /// The key directory this client follows, if it uses one.
    pub fn key_directory(&self) -> Option<&Arc<KeyDirectory>> {
        match &self.inner.keys {
            Keys::Directory(directory) => Some(directory),
            Keys::Pinned { .. } => None,
        }
    }

    /// The tenant this client seals for.
    pub fn tenant(&self) -> &str {
        &self.inner.tenant
    }

    /// Derives the user's key from their identity (e.g. email) and passphrase. PBKDF2
    /// with 600,000 iterations takes about 80 ms of CPU, so it runs on the blocking pool.
    /// The same credentials give the same key on any device; the backend never stores it.
    pub async fn login(&self, identity: &str, passphrase: Passphrase) -> Result<User, Error> {
        let (tenant, id, pass) = (self.inner.tenant.clone(), identity.to_owned(), passphrase);
        let iterations = self.inner.pbkdf2_iterations;
        let key = tokio::task::spawn_blocking(move || match iterations {
            Some(n) => UserKey::derive_with_iterations(&tenant, &id, &pass, n),
            None => UserKey::derive(&tenant, &id, &pass),
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        Ok(User {
            key: Arc::new(key),
            subject: self
                .inner
                .metadata_key
                .pseudonym(&self.inner.tenant, identity),
        })
    }

    /// Seals `request` for `user` and the enclave fleet, signs it, and produces it to
    /// `zenvelope.requests` keyed by the user's subject pseudonym. Returns once the
    /// broker acknowledged it.
    pub async fn analyze(&self, user: &User, request: Request) -> Result<Sent, Error> {
        let datum = AnalysisRequest {
            instruction: request.instruction,
            input: match request.input {
                Input::Text(text) => AnalysisInput::Text(TextInput::plain(text)),
                Input::Bytes { data, media_type } => {
                    AnalysisInput::Binary(BinaryInput { data, media_type })
                }
            },
            model: ModelPreferences {
                temperature: request.temperature,
                max_output_tokens: request.max_output_tokens,
                ..ModelPreferences::default()
            },
            limits: RequestLimits::default(),
            client_reference: request.client_reference,
        };
        let (schema_id, plaintext) = self
            .inner
            .codec
            .encode_datum(Subject::AnalysisRequest, &datum)
            .await?;
        drop(datum);
        // The encoded request is plaintext: wiped when dropped.
        let plaintext = zeroize::Zeroizing::new(plaintext);
        let fields = HeaderFields {
            tenant: self.inner.tenant.clone(),
            subject: user.subject.clone(),
            kind: Kind::Request,
            purpose: request.purpose,
            content_type: media_type::ANALYSIS_REQUEST.to_owned(),
            schema_id: i32::try_from(schema_id.get())
                .map_err(|_| Error::Config("the schema id does not fit an int"))?,
        };
        let fleet = self.inner.fleet().await?;
        let sealer = {
            let mut sealers = self
                .inner
                .sealers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let slot = sealers.entry(user.key.key_id().to_owned());
            let new_sealer = || UserSealer {
                fleet: fleet.clone(),
                sealer: Arc::new(Mutex::new(
                    Sealer::new(vec![user.key.clone(), fleet.clone()])
                        .with_signer(self.inner.signer.clone())
                        .with_dek_session(self.inner.dek_session),
                )),
            };
            let entry = slot.or_insert_with(new_sealer);
            if !Arc::ptr_eq(&entry.fleet, &fleet) {
                // The fleet key changed (rotation): the old DEK session ends with it.
                *entry = new_sealer();
            }
            entry.sealer.clone()
        };
        let envelope = seal_off_reactor(sealer, fields, plaintext).await?;
        self.produce(topic::REQUESTS, &user.subject, &envelope)
            .await
    }

    /// Seals `data` for `user` alone (no enclave can open it) and stores it on the
    /// compacted `zenvelope.vault` topic under `record_id`: a later record with the same
    /// id replaces it. `content_type` describes the plaintext.
    pub async fn store(
        &self,
        user: &User,
        record_id: &str,
        content_type: &str,
        data: &[u8],
    ) -> Result<Sent, Error> {
        let fields = HeaderFields {
            tenant: self.inner.tenant.clone(),
            subject: user.subject.clone(),
            kind: Kind::Record,
            purpose: Purpose::IndividualRequest,
            content_type: content_type.to_owned(),
            schema_id: 0,
        };
        let sealer = Sealer::new(vec![user.key.clone()]).with_signer(self.inner.signer.clone());
        let envelope = seal_off_reactor(
            Arc::new(Mutex::new(sealer)),
            fields,
            zeroize::Zeroizing::new(data.to_vec()),
        )
        .await?;
        let key = format!("{}/{record_id}", user.subject);
        self.produce(topic::VAULT, &key, &envelope).await
    }

    /// The subject pseudonym of `identity` in this client's tenant: what a browser puts
    /// in the `subject` of the requests it seals (it has no metadata key to compute it).
    pub fn subject_for(&self, identity: &str) -> String {
        self.inner
            .metadata_key
            .pseudonym(&self.inner.tenant, identity)
    }

    /// Signs and produces a request its user's browser sealed (Avro envelope bytes, as
    /// the browser SDK returns them), without opening it: the backend vouches that it
    /// came from the session of the user whose pseudonym is `subject`.
    ///
    /// The envelope is refused ([`Error::NotForwarded`], nothing produced) unless it
    /// decodes strictly within the limits, is an unsigned `REQUEST` of this client's
    /// tenant for `subject`, claims one of `allowed_purposes` (what this backend vouches
    /// its users may ask for, typically `[Purpose::IndividualRequest]`), and has a
    /// recipient for a fleet key this client trusts (any verified, valid version from the
    /// key directory), so the enclave can open it.
    pub async fn forward(
        &self,
        envelope: &[u8],
        subject: &str,
        allowed_purposes: &[Purpose],
    ) -> Result<Sent, Error> {
        let mut env = zenvelope_envelope::decode(envelope, &zenvelope_envelope::Limits::default())?;
        let refuse = |reason: &'static str| Err(Error::NotForwarded(reason));
        if env.header.kind != Kind::Request {
            return refuse("it is not a request");
        }
        if env.header.tenant != self.inner.tenant {
            return refuse("it names another tenant");
        }
        if env.header.subject != subject {
            return refuse("its subject is not the signed-in user's");
        }
        if env.signature.is_some() {
            return refuse("it is already signed");
        }
        if !allowed_purposes.contains(&env.header.purpose) {
            return refuse("its purpose of use is not one this backend vouches for");
        }
        // Waits (bounded) until the directory has verified a fleet key, as sealing does.
        self.inner.fleet().await?;
        let for_fleet = env.recipients.iter().any(|r| {
            r.recipient_type == zenvelope_envelope::RecipientType::RsaOaepSha256
                && self.inner.trusts_fleet_key(&r.key_id, r.key_version)
        });
        if !for_fleet {
            return refuse("it has no recipient for a trusted fleet key");
        }
        let signer = self.inner.signer.clone();
        // An RSA-PSS signature costs about 2 ms of CPU: off the reactor.
        let env = tokio::task::spawn_blocking(move || {
            zenvelope_envelope::sign_envelope(&mut env, &signer).map(|()| env)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        self.produce(topic::REQUESTS, subject, &env).await
    }

    /// Follows `zenvelope.results` and yields `user`'s answers, verified and opened;
    /// with `from_beginning`, earlier answers too. Where `zenvelope.rejections` exists
    /// when this is called (admission runs), admission's refusals of the user's requests
    /// come as [`Error::Refused`]: those from about a minute before this call on, or all
    /// of them with `from_beginning`.
    ///
    /// Blocks the calling thread for one metadata request (at most ten seconds) to look
    /// the rejections topic up; a broker that does not answer is an error.
    pub fn results(&self, user: &User, from_beginning: bool) -> Result<Results, Error> {
        Results::new(self.clone(), user, from_beginning)
    }

    async fn produce(
        &self,
        topic_name: &str,
        key: &str,
        envelope: &zenvelope_envelope::Envelope,
    ) -> Result<Sent, Error> {
        let subject = match topic_name {
            topic::VAULT => Subject::VaultValue,
            _ => Subject::RequestsValue,
        };
        let value = self.inner.codec.encode_envelope(subject, envelope).await?;
        let message_id = envelope.header.message_id.to_string();
        let record = Outbound::new(topic_name, Some(key.as_bytes().to_vec()), value)
            .with_header(header::MESSAGE_ID, message_id.clone().into_bytes())
            .with_header(header::TENANT, self.inner.tenant.clone().into_bytes());
        let (partition, offset) = self.inner.producer.send(record).await?;
        Ok(Sent {
            message_id,
            partition,
            offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_names_what_is_missing() {
        let kafka = KafkaConfig::new("127.0.0.1:1");
        let err = Client::builder(kafka.clone(), "t").build().err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some("The client is not configured: no producer signing key.".to_owned())
        );
        let signer = SigningKey::generate_ecdsa_p256("p", 1).expect("key");
        let err = Client::builder(kafka, "t")
            .signer(signer)
            .fleet_keys(Keyring::new())
            .build()
            .err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some("The client is not configured: the fleet keyring is empty.".to_owned())
        );
    }

    #[tokio::test]
    async fn forward_refuses_what_it_must_not_sign() {
        use zenvelope_envelope::{FleetPrivateKey, Passphrase, Purpose, Sealer, UserKey};
        let tenant = "clinic-a";
        let fleet = FleetPrivateKey::generate("fleet", 1, 2048).expect("fleet");
        let fleet_public = Arc::new(
            Keyring::new()
                .with(
                    FleetPublicKey::from_spki_der("fleet", 1, fleet.public_key().spki_der())
                        .expect("spki"),
                )
                .expect("ring"),
        );
        let results = SigningKey::generate_ecdsa_p256("fleet-signing", 1).expect("key");
        let client = Client::builder(KafkaConfig::new("127.0.0.1:1"), tenant)
            .signer(SigningKey::generate_ecdsa_p256("backend", 1).expect("key"))
            .fleet_keys(
                Keyring::new()
                    .with(
                        FleetPublicKey::from_spki_der("fleet", 1, fleet.public_key().spki_der())
                            .expect("spki"),
                    )
                    .expect("ring"),
            )
            .result_keys(
                Keyring::new()
                    .with(results.verifying_key().expect("vk"))
                    .expect("ring"),
            )
            .metadata_key(MetadataKey::from_bytes([3; 32]))
            .build()
            .expect("client");
        let subject = client.subject_for("ada@example.org");
        assert_eq!(subject, client.subject_for("  ADA@example.org "));
        let user = Arc::new(
            UserKey::derive_with_iterations(
                tenant,
                "ada@example.org",
                &Passphrase::new("pw"),
                100_000,
            )
            .expect("user"),
        );
        let fields = |kind, tenant: &str| HeaderFields {
            tenant: tenant.to_owned(),
            subject: subject.clone(),
            kind,
            purpose: Purpose::IndividualRequest,
            content_type: "text/plain".to_owned(),
            schema_id: 0,
        };
        let browser = || Sealer::new(vec![user.clone(), fleet_public.clone()]);
        let mut cases = vec![
            (
                browser()
                    .seal(&fields(Kind::Record, tenant), b"x")
                    .expect("seal"),
                "it is not a request",
            ),
            (
                browser()
                    .seal(&fields(Kind::Request, "clinic-b"), b"x")
                    .expect("seal"),
                "it names another tenant",
            ),
            (
                browser()
                    .with_signer(Arc::new(
                        SigningKey::generate_ecdsa_p256("browser", 1).expect("key"),
                    ))
                    .seal(&fields(Kind::Request, tenant), b"x")
                    .expect("seal"),
                "it is already signed",
            ),
            (
                Sealer::new(vec![user.clone()])
                    .seal(&fields(Kind::Request, tenant), b"x")
                    .expect("seal"),
                "it has no recipient for a trusted fleet key",
            ),
        ];
        let ok = browser()
            .seal(&fields(Kind::Request, tenant), b"x")
            .expect("seal");
        let mut research = fields(Kind::Request, tenant);
        research.purpose = Purpose::Research;
        cases.push((
            browser().seal(&research, b"x").expect("seal"),
            "its purpose of use is not one this backend vouches for",
        ));
        for (env, reason) in cases.drain(..) {
            let got = client
                .forward(
                    &zenvelope_envelope::encode(&env),
                    &subject,
                    &[Purpose::IndividualRequest],
                )
                .await;
            assert!(
                matches!(got, Err(Error::NotForwarded(r)) if r == reason),
                "{reason}: {got:?}"
            );
        }
        let other = client.subject_for("mallory@example.org");
        let got = client
            .forward(
                &zenvelope_envelope::encode(&ok),
                &other,
                &[Purpose::IndividualRequest],
            )
            .await;
        assert!(
            matches!(
                got,
                Err(Error::NotForwarded(
                    "its subject is not the signed-in user's"
                ))
            ),
            "{got:?}"
        );
        let got = client
            .forward(b"\x02garbage", &subject, &[Purpose::IndividualRequest])
            .await;
        assert!(matches!(got, Err(Error::Envelope(_))), "{got:?}");
    }

    #[test]
    fn request_debug_shows_no_user_data() {
        let canary = "CANARY-PHI-5f1c9e";
        let r = Request::text(format!("Summarise {canary}"), format!("Entry {canary}"))
            .with_client_reference(canary);
        let shown = format!("{r:?}");
        assert!(!shown.contains(canary), "{shown}");
        assert!(shown.contains("input_len: 23"), "{shown}");
    }
}
