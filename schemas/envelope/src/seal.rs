//! Sealing and opening.

use std::sync::Arc;

use rand_core::{CryptoRngCore, OsRng};
use subtle::ConstantTimeEq;

use crate::aad::{payload_aad, signature_input, signature_input_for};
use crate::aead::{BLOB_OVERHEAD, IV_LEN, open_blob, seal_blob};
use crate::codec::{self, Limits};
use crate::error::Error;
use crate::kdf::{key_commitment, payload_key, response_dek};
use crate::keys::{
    DekUnwrapper, DekWrapper, Keyed, Keyring, SigningKey, VerifyingKey, random_dek, random_iv,
};
use crate::model::{
    Envelope, FORMAT_VERSION, Header, Kind, MessageId, Purpose, Recipient, Signature,
};
use crate::secret::{Dek, Plaintext};

/// The caller-chosen header fields of a request or record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderFields {
    /// Tenant id: 1 to 64 visible ASCII characters.
    pub tenant: String,
    /// Subject pseudonym, see [`crate::MetadataKey::pseudonym`].
    pub subject: String,
    /// [`Kind::Request`] or [`Kind::Record`]; responses are sealed with [`seal_response`].
    pub kind: Kind,
    /// Purpose of use.
    pub purpose: Purpose,
    /// Media type of the plaintext.
    pub content_type: String,
    /// Schema id of the plaintext.
    pub schema_id: i32,
}

/// How long one DEK may be reused across consecutive messages of one sealer.
///
/// Reuse is safe for confidentiality (each message's payload key is derived from the DEK
/// and its own message id, with a fresh random IV) and saves the RSA wrap and, in the
/// enclave, the RSA unwrap. It widens what one leaked DEK exposes, so it is bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DekSessionPolicy {
    /// Most messages sealed under one DEK (1 = a fresh DEK per message).
    pub max_messages: u32,
    /// Oldest a DEK may get before it is replaced, in milliseconds.
    pub max_age_ms: i64,
}

impl DekSessionPolicy {
    /// A fresh DEK for every message (the default).
    pub const PER_MESSAGE: Self = Self {
        max_messages: 1,
        max_age_ms: 0,
    };
}

impl Default for DekSessionPolicy {
    fn default() -> Self {
        Self::PER_MESSAGE
    }
}

struct DekSession {
    dek: Dek,
    tenant: String,
    recipients: Vec<Recipient>,
    started_ms: i64,
    used: u32,
}

/// Seals requests and records to a fixed set of recipients, optionally signing them.
pub struct Sealer {
    wrappers: Vec<Arc<dyn DekWrapper>>,
    signer: Option<Arc<SigningKey>>,
    policy: DekSessionPolicy,
    session: Option<DekSession>,
    limits: Limits,
}

impl Sealer {
    /// A sealer that wraps each DEK for every one of `wrappers`.
    pub fn new(wrappers: Vec<Arc<dyn DekWrapper>>) -> Self {
        Self {
            wrappers,
            signer: None,
            policy: DekSessionPolicy::default(),
            session: None,
            limits: Limits::default(),
        }
    }

    /// Signs every envelope with `signer`.
    pub fn with_signer(mut self, signer: Arc<SigningKey>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Reuses DEKs within `policy`'s bounds.
    pub fn with_dek_session(mut self, policy: DekSessionPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Refuses to seal what [`Opener`]s with `limits` would refuse to open.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Seals `plaintext` with a fresh UUIDv7 message id, timestamped now.
    pub fn seal(&mut self, fields: &HeaderFields, plaintext: &[u8]) -> Result<Envelope, Error> {
        let id = MessageId::new_v7();
        self.seal_with(fields, plaintext, id, id.timestamp_ms(), &mut OsRng)
    }

    pub(crate) fn seal_with(
        &mut self,
        fields: &HeaderFields,
        plaintext: &[u8],
        message_id: MessageId,
        created_at_ms: i64,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<Envelope, Error> {
        if fields.kind.is_response() {
            return Err(Error::InvalidInput(
                "results and errors are sealed with seal_response",
            ));
        }
        if self.wrappers.is_empty() {
            return Err(Error::InvalidInput("a sealer needs at least one recipient"));
        }
        check_fields(fields, plaintext.len(), &self.limits)?;
        let reuse = match &self.session {
            Some(s) => {
                s.tenant == fields.tenant
                    && s.used < self.policy.max_messages
                    && created_at_ms.saturating_sub(s.started_ms) <= self.policy.max_age_ms
                    && created_at_ms >= s.started_ms
            }
            None => false,
        };
        if !reuse {
            let dek = random_dek(rng)?;
            let recipients = self
                .wrappers
                .iter()
                .map(|w| w.wrap(&dek, &fields.tenant, rng))
                .collect::<Result<Vec<_>, _>>()?;
            self.session = Some(DekSession {
                dek,
                tenant: fields.tenant.clone(),
                recipients,
                started_ms: created_at_ms,
                used: 0,
            });
        }
        let Some(session) = self.session.as_mut() else {
            return Err(Error::InvalidInput("no DEK session"));
        };
        session.used += 1;
        let iv = random_iv(rng)?;
        let env = seal_core(
            fields,
            None,
            message_id,
            created_at_ms,
            &session.dek,
            session.recipients.clone(),
            iv,
            plaintext,
            self.signer.as_deref(),
        )?;
        if self.policy.max_messages <= 1 {
            self.session = None;
        }
        Ok(env)
    }
}

fn check_fields(fields: &HeaderFields, plaintext_len: usize, limits: &Limits) -> Result<(), Error> {
    let t = &fields.tenant;
    if t.is_empty() || t.len() > 64 || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::InvalidInput(
            "tenant must be 1 to 64 visible ASCII characters",
        ));
    }
    for (name, v) in [
        ("subject", &fields.subject),
        ("content_type", &fields.content_type),
    ] {
        if v.is_empty() {
            return Err(Error::InvalidInput(
                "subject and content type must not be empty",
            ));
        }
        if v.len() > limits.max_string_bytes {
            return Err(Error::TooLarge {
                field: name,
                len: v.len(),
                limit: limits.max_string_bytes,
            });
        }
    }
    if fields.schema_id < 0 {
        return Err(Error::InvalidInput("schema id must not be negative"));
    }
    let blob = plaintext_len.saturating_add(BLOB_OVERHEAD);
    if blob > limits.max_payload_bytes {
        return Err(Error::TooLarge {
            field: "payload",
            len: blob,
            limit: limits.max_payload_bytes,
        });
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn seal_core(
    fields: &HeaderFields,
    correlation_id: Option<MessageId>,
    message_id: MessageId,
    created_at_ms: i64,
    dek: &Dek,
    recipients: Vec<Recipient>,
    iv: [u8; IV_LEN],
    plaintext: &[u8],
    signer: Option<&SigningKey>,
) -> Result<Envelope, Error> {
    let header = Header {
        version: FORMAT_VERSION,
        message_id,
        tenant: fields.tenant.clone(),
        subject: fields.subject.clone(),
        kind: fields.kind,
        purpose: fields.purpose,
        content_type: fields.content_type.clone(),
        created_at_ms,
        correlation_id,
        schema_id: fields.schema_id,
        key_commitment: key_commitment(dek, &message_id),
    };
    let aad = payload_aad(&header, &recipients);
    let payload = seal_blob(&payload_key(dek, &message_id), iv, &aad, plaintext);
    let mut env = Envelope {
        header,
        recipients,
        payload,
        signature: None,
    };
    if let Some(s) = signer {
        env.signature = Some(signature_for(&env, s)?);
    }
    Ok(env)
}

fn signature_for(env: &Envelope, s: &SigningKey) -> Result<Signature, Error> {
    let alg = s.algorithm();
    let msg = signature_input(
        &env.header,
        &env.recipients,
        &env.payload,
        s.key_id(),
        s.key_version(),
        alg,
    );
    Ok(Signature {
        key_id: s.key_id().to_owned(),
        key_version: s.key_version(),
        algorithm: alg,
        value: s.sign(&msg)?,
    })
}

/// Signs an unsigned envelope sealed elsewhere (spec 10.1), without opening it: the
/// signature covers header, recipients and payload, none of which needs the DEK.
///
/// This is how a backend vouches for a request its user's browser sealed: it checks the
/// tenant and subject against the user's session, then signs with the producer key the
/// enclave trusts. An envelope that is already signed is refused
/// ([`Error::InvalidInput`]): a signature is never replaced.
pub fn sign_envelope(env: &mut Envelope, signer: &SigningKey) -> Result<(), Error> {
    if env.signature.is_some() {
        return Err(Error::InvalidInput("the envelope is already signed"));
    }
    env.signature = Some(signature_for(env, signer)?);
    Ok(())
}

/// The caller-chosen fields of a result or error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseFields {
    /// [`Kind::Result`] or [`Kind::Error`].
    pub kind: Kind,
    /// Media type of the plaintext.
    pub content_type: String,
    /// Schema id of the plaintext.
    pub schema_id: i32,
}

/// Seals the answer to an opened request under the response key
/// HKDF(request DEK, salt = request id), so anyone who could open the request can open
/// the answer. The answer carries the request's recipients for which `keep` is true
/// (the enclave keeps all but its own fleet keys): they wrap the *request* DEK.
pub fn seal_response(
    request: &Opened,
    fields: &ResponseFields,
    plaintext: &[u8],
    keep: impl Fn(&Recipient) -> bool,
    signer: Option<&SigningKey>,
) -> Result<Envelope, Error> {
    let id = MessageId::new_v7();
    seal_response_with(
        request,
        fields,
        plaintext,
        keep,
        signer,
        id,
        id.timestamp_ms(),
        &mut OsRng,
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn seal_response_with(
    request: &Opened,
    fields: &ResponseFields,
    plaintext: &[u8],
    keep: impl Fn(&Recipient) -> bool,
    signer: Option<&SigningKey>,
    message_id: MessageId,
    created_at_ms: i64,
    rng: &mut dyn CryptoRngCore,
) -> Result<Envelope, Error> {
    let req = &request.envelope.header;
    if req.kind != Kind::Request {
        return Err(Error::InvalidInput("only requests are answered"));
    }
    if !fields.kind.is_response() {
        return Err(Error::InvalidInput(
            "a response must be of kind RESULT or ERROR",
        ));
    }
    let header_fields = HeaderFields {
        tenant: req.tenant.clone(),
        subject: req.subject.clone(),
        kind: fields.kind,
        purpose: req.purpose,
        content_type: fields.content_type.clone(),
        schema_id: fields.schema_id,
    };
    check_fields(&header_fields, plaintext.len(), &Limits::default())?;
    let recipients = request
        .envelope
        .recipients
        .iter()
        .filter(|r| keep(r))
        .cloned()
        .collect();
    let dek = response_dek(&request.dek, &req.message_id);
    seal_core(
        &header_fields,
        Some(req.message_id),
        message_id,
        created_at_ms,
        &dek,
        recipients,
        random_iv(rng)?,
        plaintext,
        signer,
    )
}

/// An opened envelope. Holds the plaintext and DEK; both are zeroized on drop.
pub struct Opened {
    /// The envelope as received (public data).
    pub envelope: Envelope,
    plaintext: Plaintext,
    dek: Dek,
}

impl Opened {
    /// The header.
    pub fn header(&self) -> &Header {
        &self.envelope.header
    }

    /// The plaintext.
    pub fn plaintext(&self) -> &[u8] {
        self.plaintext.as_bytes()
    }

    /// Moves the plaintext out.
    pub fn into_plaintext(self) -> Plaintext {
        self.plaintext
    }

    /// This envelope's DEK (for a request: what its response key derives from).
    pub fn dek(&self) -> &Dek {
        &self.dek
    }
}

impl core::fmt::Debug for Opened {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Opened")
            .field("envelope", &self.envelope)
            .field("plaintext_len", &self.plaintext.as_bytes().len())
            .finish_non_exhaustive()
    }
}

/// Verifies and opens envelopes.
pub struct Opener {
    trusted: Keyring<VerifyingKey>,
    require_signature: bool,
    limits: Limits,
}

impl Opener {
    /// An opener that requires a signature by one of `trusted`.
    pub fn new(trusted: Keyring<VerifyingKey>) -> Self {
        Self {
            trusted,
            require_signature: true,
            limits: Limits::default(),
        }
    }

    /// Also opens unsigned envelopes (signed ones must still verify). For a user reading
    /// their own vault records, not for the enclave.
    pub fn accept_unsigned(mut self) -> Self {
        self.require_signature = false;
        self
    }

    /// Uses `limits` when decoding.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The trusted signers.
    pub fn trusted(&self) -> &Keyring<VerifyingKey> {
        &self.trusted
    }

    /// Decodes Avro bytes and opens them.
    pub fn decode_and_open(
        &self,
        bytes: &[u8],
        unwrapper: &dyn DekUnwrapper,
    ) -> Result<Opened, Error> {
        self.open(codec::decode(bytes, &self.limits)?, unwrapper)
    }

    /// Checks the signature policy without any key to open: usable by services that hold
    /// no keys (admission). Returns the signer's key id and version, if signed.
    pub fn verify(&self, env: &Envelope) -> Result<Option<(String, i32)>, Error> {
        if env.header.version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion(env.header.version));
        }
        let Some(sig) = &env.signature else {
            return if self.require_signature {
                Err(Error::Unsigned)
            } else {
                Ok(None)
            };
        };
        let key = self
            .trusted
            .get(&sig.key_id, sig.key_version)
            .ok_or_else(|| Error::UntrustedSigner {
                key_id: sig.key_id.clone(),
                key_version: sig.key_version,
            })?;
        let msg = signature_input_for(&env.header, &env.recipients, &env.payload, sig);
        if !key.verify(sig.algorithm, &msg, &sig.value) {
            return Err(Error::BadSignature);
        }
        Ok(Some((sig.key_id.clone(), sig.key_version)))
    }

    /// Verifies the signature policy, unwraps the DEK with `unwrapper`, checks the key
    /// commitment and decrypts. For results and errors the unwrapped key is the request's
    /// DEK and the response key is derived from it.
    pub fn open(&self, env: Envelope, unwrapper: &dyn DekUnwrapper) -> Result<Opened, Error> {
        self.verify(&env)?;
        let mut held = env
            .recipients
            .iter()
            .filter(|r| unwrapper.holds(r))
            .peekable();
        if held.peek().is_none() {
            return Err(Error::NoMatchingRecipient);
        }
        let unwrapped = held
            .find_map(|r| unwrapper.unwrap_dek(r, &env.header.tenant).ok())
            .ok_or(Error::DecryptFailed)?;
        let dek = match (env.header.kind.is_response(), env.header.correlation_id) {
            (false, _) => unwrapped,
            (true, Some(req_id)) => response_dek(&unwrapped, &req_id),
            (true, None) => return Err(Error::DecryptFailed),
        };
        open_with_dek(env, dek)
    }

    /// Opens a result or error with the request's DEK held by the caller (for example a
    /// backend that kept it for its in-flight requests).
    pub fn open_response(&self, env: Envelope, request_dek: &Dek) -> Result<Opened, Error> {
        self.verify(&env)?;
        let Some(req_id) = env
            .header
            .correlation_id
            .filter(|_| env.header.kind.is_response())
        else {
            return Err(Error::InvalidInput(
                "only results and errors open with a request DEK",
            ));
        };
        let dek = response_dek(request_dek, &req_id);
        open_with_dek(env, dek)
    }
}

fn open_with_dek(env: Envelope, dek: Dek) -> Result<Opened, Error> {
    let h = &env.header;
    if !bool::from(key_commitment(&dek, &h.message_id).ct_eq(&h.key_commitment)) {
        return Err(Error::DecryptFailed);
    }
    let aad = payload_aad(h, &env.recipients);
    let plaintext = open_blob(&payload_key(&dek, &h.message_id), &aad, &env.payload)?;
    Ok(Opened {
        envelope: env,
        plaintext,
        dek,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{FleetPrivateKey, FleetPublicKey};

    fn fields(tenant: &str) -> HeaderFields {
        HeaderFields {
            tenant: tenant.into(),
            subject: "sp1_test".into(),
            kind: Kind::Request,
            purpose: Purpose::Treatment,
            content_type: "text/plain".into(),
            schema_id: 0,
        }
    }

    /// A DEK session ends when it gets older than `max_age_ms`, and never spans a clock
    /// that went backwards.
    #[test]
    fn dek_sessions_expire_by_age() {
        let fleet = FleetPrivateKey::generate("fleet", 1, 2048).expect("key");
        let public =
            FleetPublicKey::from_spki_der("fleet", 1, fleet.public_key().spki_der()).expect("spki");
        let policy = DekSessionPolicy {
            max_messages: 100,
            max_age_ms: 1_000,
        };
        let mut sealer = Sealer::new(vec![Arc::new(public)]).with_dek_session(policy);
        let mut at = |ms: i64| {
            let id = MessageId::new_v7();
            sealer
                .seal_with(&fields("t"), b"x", id, ms, &mut OsRng)
                .expect("seal")
                .recipients
        };
        let t0 = 1_763_800_000_000;
        let first = at(t0);
        assert_eq!(at(t0 + 1_000), first, "still within max_age_ms");
        let renewed = at(t0 + 1_001);
        assert_ne!(renewed, first, "older than max_age_ms: new DEK");
        assert_ne!(at(t0 + 500), renewed, "clock went backwards: new DEK");
    }
}
