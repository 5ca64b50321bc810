//! Key release: KMS `Decrypt` with a `Recipient`, from inside the enclave.
//!
//! The fleet's private keys are stored as KMS ciphertext blobs (PKCS#8 DER encrypted
//! under a KMS key whose policy allows `Decrypt` only with an attestation document of the
//! released enclave image). At boot the enclave:
//!
//! 1. generates an ephemeral RSA-2048 key pair (aws-lc-rs, off the reactor);
//! 2. asks its [`Attestor`] for a document carrying the ephemeral public key (SPKI DER);
//! 3. calls `Decrypt` with `Recipient { AttestationDocument, RSAES_OAEP_SHA_256 }`;
//! 4. opens `CiphertextForRecipient` (CMS EnvelopedData) with the ephemeral key
//!    ([`open_recipient_ciphertext`]);
//! 5. parses the PKCS#8 DER into a [`FleetPrivateKey`] (or a [`SigningKey`]).
//!
//! The ephemeral key lives only for one call; the released bytes are
//! `Zeroizing<Vec<u8>>` and wiped once the key is parsed. The `aws_sdk_kms::Client` is the
//! caller's: in the enclave it must reach KMS through the egress tunnel with TLS ending
//! inside the enclave (the authenticity of the answer rests on that TLS session).

use std::collections::{BTreeMap, HashMap};

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeyEncryptionMechanism, RecipientInfo};
use zenvelope_attestation::{AttestationDocument, AttestationRequest, Attestor, CoseSign1};
use zenvelope_envelope::{FleetPrivateKey, SigningKey};
use zeroize::Zeroizing;

use super::{KmsError, open_recipient_ciphertext};

/// Encryption-context key naming what a sealed key is for.
pub const CONTEXT_PURPOSE: &str = "zenvelope:purpose";
/// Encryption-context key holding the sealed key's id.
pub const CONTEXT_KEY_ID: &str = "zenvelope:key-id";
/// Encryption-context key holding the sealed key's version (decimal).
pub const CONTEXT_KEY_VERSION: &str = "zenvelope:key-version";
/// [`CONTEXT_PURPOSE`] value of a sealed fleet (decryption) key.
pub const PURPOSE_FLEET_KEY: &str = "fleet-key";
/// [`CONTEXT_PURPOSE`] value of a sealed result signing key.
pub const PURPOSE_SIGNING_KEY: &str = "result-signing-key";

/// A private key stored under KMS: what it is, and the blob and context to decrypt it.
#[derive(Clone)]
pub struct SealedKey {
    /// The key id the released key gets (e.g. `fleet`).
    pub key_id: String,
    /// The key version the released key gets.
    pub key_version: i32,
    /// The KMS `CiphertextBlob` of the PKCS#8 DER private key.
    pub ciphertext_blob: Vec<u8>,
    /// The encryption context it was encrypted with (KMS refuses any other).
    pub encryption_context: BTreeMap<String, String>,
    /// The KMS key id or ARN to pin; `None` lets KMS take it from the blob.
    pub kms_key_id: Option<String>,
}

impl SealedKey {
    /// The encryption context zenvelope uses for a sealed key: purpose, id and version,
    /// so a blob cannot be released as another key.
    pub fn standard_context(
        purpose: &str,
        key_id: &str,
        key_version: i32,
    ) -> BTreeMap<String, String> {
        BTreeMap::from([
            (CONTEXT_PURPOSE.to_owned(), purpose.to_owned()),
            (CONTEXT_KEY_ID.to_owned(), key_id.to_owned()),
            (CONTEXT_KEY_VERSION.to_owned(), key_version.to_string()),
        ])
    }
}

impl std::fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedKey")
            .field("key_id", &self.key_id)
            .field("key_version", &self.key_version)
            .field("ciphertext_blob_bytes", &self.ciphertext_blob.len())
            .field("encryption_context", &self.encryption_context)
            .field("kms_key_id", &self.kms_key_id)
            .finish()
    }
}

/// Releases a fleet private key: KMS `Decrypt` with the enclave's attestation as
/// `Recipient`, then the recipient ciphertext opened inside the enclave.
pub async fn release_fleet_key(
    kms: &aws_sdk_kms::Client,
    attestor: &dyn Attestor,
    sealed: &SealedKey,
) -> Result<FleetPrivateKey, KmsError> {
    let der = release_secret(kms, attestor, sealed).await?;
    FleetPrivateKey::from_pkcs8_der(sealed.key_id.clone(), sealed.key_version, &der)
        .map_err(|_| KmsError::InvalidReleasedKey)
}

/// Releases the fleet's result signing key, like [`release_fleet_key`].
pub async fn release_signing_key(
    kms: &aws_sdk_kms::Client,
    attestor: &dyn Attestor,
    sealed: &SealedKey,
) -> Result<SigningKey, KmsError> {
    let der = release_secret(kms, attestor, sealed).await?;
    SigningKey::from_pkcs8_der(sealed.key_id.clone(), sealed.key_version, &der)
        .map_err(|_| KmsError::InvalidReleasedKey)
}

/// The released plaintext of `sealed`, through `Decrypt` with `Recipient`.
pub async fn release_secret(
    kms: &aws_sdk_kms::Client,
    attestor: &dyn Attestor,
    sealed: &SealedKey,
) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let ephemeral =
        tokio::task::spawn_blocking(|| PrivateDecryptingKey::generate(KeySize::Rsa2048))
            .await
            .map_err(|_| KmsError::TaskFailed)?
            .map_err(|_| KmsError::KeyGeneration)?;
    let spki = AsDer::<PublicKeyX509Der<'_>>::as_der(&ephemeral.public_key())
        .map_err(|_| KmsError::KeyGeneration)?
        .as_ref()
        .to_vec();
    let document = attestor.attest(&AttestationRequest {
        public_key: Some(spki),
        ..AttestationRequest::default()
    })?;
    let recipient = RecipientInfo::builder()
        .attestation_document(Blob::new(document))
        .key_encryption_algorithm(KeyEncryptionMechanism::RsaesOaepSha256)
        .build();
    let output = decrypt_request(kms, sealed)
        .recipient(recipient)
        .send()
        .await
        .map_err(kms_error)?;
    if output.plaintext().is_some_and(|p| !p.as_ref().is_empty()) {
        return Err(KmsError::UnexpectedPlaintext);
    }
    let ciphertext = output
        .ciphertext_for_recipient()
        .ok_or(KmsError::MissingCiphertextForRecipient)?
        .as_ref()
        .to_vec();
    let released =
        tokio::task::spawn_blocking(move || open_recipient_ciphertext(&ciphertext, &ephemeral))
            .await
            .map_err(|_| KmsError::TaskFailed)??;
    tracing::info!(
        key_id = %sealed.key_id,
        key_version = sealed.key_version,
        "Key released by KMS to this enclave."
    );
    Ok(released)
}

/// PCR0 of the enclave image, lowercase hex, from a fresh attestation document (for
/// the `enclave_measurement` of audit events).
pub fn attested_measurement(attestor: &dyn Attestor) -> Result<String, KmsError> {
    let document = attestor.attest(&AttestationRequest::default())?;
    let cose = CoseSign1::decode(&document)?;
    let payload = AttestationDocument::decode(&cose.payload)?;
    let pcr0 = payload.pcrs.get(&0).ok_or(KmsError::MissingMeasurement)?;
    Ok(pcr0.iter().map(|b| format!("{b:02x}")).collect())
}

pub(super) fn decrypt_request(
    kms: &aws_sdk_kms::Client,
    sealed: &SealedKey,
) -> aws_sdk_kms::operation::decrypt::builders::DecryptFluentBuilder {
    let context: HashMap<String, String> = sealed
        .encryption_context
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut request = kms
        .decrypt()
        .ciphertext_blob(Blob::new(sealed.ciphertext_blob.clone()))
        .set_encryption_context((!context.is_empty()).then_some(context));
    if let Some(key) = &sealed.kms_key_id {
        request = request.key_id(key);
    }
    request
}

pub(super) fn kms_error<E, R>(error: aws_sdk_kms::error::SdkError<E, R>) -> KmsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    KmsError::Kms {
        code: error.code().map(str::to_owned),
        message: DisplayErrorContext(&error).to_string(),
    }
}

/// Dangerous paths for local runs against a KMS emulator (moto) that does not support
/// `Recipient`. Re-exported from [`super::danger`].
pub(super) mod danger {
    use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
    use zenvelope_envelope::FleetPrivateKey;
    use zeroize::Zeroizing;

    use super::{KmsError, SealedKey, decrypt_request, kms_error};

    /// An `aws_sdk_kms::Client` for a local endpoint (moto, a test server) with static
    /// dummy credentials. Never for production: it pins an endpoint and fake credentials.
    pub fn local_kms_client(endpoint_url: &str, region: &str) -> aws_sdk_kms::Client {
        let credentials = Credentials::new(
            "danger-local-access-key-id",
            "danger-local-secret-access-key",
            None,
            None,
            "zenvelope-danger-local",
        );
        let config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(endpoint_url)
            .region(Region::new(region.to_owned()))
            .credentials_provider(credentials)
            .build();
        aws_sdk_kms::Client::from_conf(config)
    }

    /// Releases a fleet key with a plain `Decrypt` (no `Recipient`): the plaintext key
    /// comes back in the response, outside any attestation. For moto only.
    pub async fn danger_release_without_recipient(
        kms: &aws_sdk_kms::Client,
        sealed: &SealedKey,
    ) -> Result<FleetPrivateKey, KmsError> {
        let der = danger_release_secret_without_recipient(kms, sealed).await?;
        FleetPrivateKey::from_pkcs8_der(sealed.key_id.clone(), sealed.key_version, &der)
            .map_err(|_| KmsError::InvalidReleasedKey)
    }

    /// The plaintext of `sealed` through a plain `Decrypt`. For moto only.
    pub async fn danger_release_secret_without_recipient(
        kms: &aws_sdk_kms::Client,
        sealed: &SealedKey,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        tracing::warn!(
            key_id = %sealed.key_id,
            key_version = sealed.key_version,
            "DANGER: releasing a key with KMS Decrypt WITHOUT Recipient: no attestation binds the release and the plaintext key crosses the network. Local emulator runs only."
        );
        let output = decrypt_request(kms, sealed)
            .send()
            .await
            .map_err(kms_error)?;
        let plaintext = output.plaintext.ok_or(KmsError::MissingPlaintext)?;
        Ok(Zeroizing::new(plaintext.into_inner()))
    }
}
