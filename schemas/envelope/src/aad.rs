//! Canonical byte strings that are authenticated or signed.
//!
//! One tiny encoding for all of them: a domain label, then fields in a fixed order,
//! variable-length fields as `u32 big-endian length || bytes`, integers big-endian.

use crate::model::{Header, Recipient, RecipientType, Signature};

/// Domain label of the payload AAD.
pub const LABEL_AAD: &[u8] = b"zenvelope/v1/aad";
/// Domain label of the signature input.
pub const LABEL_SIGNATURE: &[u8] = b"zenvelope/v1/signature";
/// Domain label of a passphrase recipient's wrap AAD.
pub const LABEL_WRAP: &[u8] = b"zenvelope/v1/wrap";

/// A canonical encoder.
pub(crate) struct Canon(Vec<u8>);

impl Canon {
    /// Starts with `lp(label)`.
    pub(crate) fn new(label: &[u8]) -> Self {
        let mut c = Canon(Vec::with_capacity(256));
        c.bytes(label);
        c
    }

    pub(crate) fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }

    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }

    pub(crate) fn i32(&mut self, v: i32) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }

    pub(crate) fn i64(&mut self, v: i64) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }

    /// `u32be(len) || bytes`. Lengths are bounded by [`crate::Limits`], far below 2^32.
    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32).raw(b)
    }

    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// The AES-GCM additional data of a payload: every header field and each recipient's
/// type, key id and key version (not the wrapped keys).
pub fn payload_aad(header: &Header, recipients: &[Recipient]) -> Vec<u8> {
    let mut c = Canon::new(LABEL_AAD);
    c.i32(header.version)
        .raw(header.message_id.as_bytes())
        .str(&header.tenant)
        .str(&header.subject)
        .str(header.kind.symbol())
        .str(header.purpose.symbol())
        .str(&header.content_type)
        .i64(header.created_at_ms);
    match &header.correlation_id {
        None => c.raw(&[0]),
        Some(id) => c.raw(&[1]).raw(id.as_bytes()),
    };
    c.i32(header.schema_id)
        .raw(&header.key_commitment)
        .u32(recipients.len() as u32);
    for r in recipients {
        c.str(r.recipient_type.symbol())
            .str(&r.key_id)
            .i32(r.key_version);
    }
    c.into_bytes()
}

/// The bytes a producer (or the enclave) signs: the signer's identity, the payload AAD,
/// every recipient's params and wrapped key, and the payload blob.
pub fn signature_input(
    header: &Header,
    recipients: &[Recipient],
    payload: &[u8],
    signer_key_id: &str,
    signer_key_version: i32,
    algorithm: crate::model::SignatureAlgorithm,
) -> Vec<u8> {
    let aad = payload_aad(header, recipients);
    let mut c = Canon::new(LABEL_SIGNATURE);
    c.str(algorithm.symbol())
        .str(signer_key_id)
        .i32(signer_key_version)
        .bytes(&aad)
        .u32(recipients.len() as u32);
    for r in recipients {
        c.bytes(&r.params).bytes(&r.wrapped_key);
    }
    c.bytes(payload);
    c.into_bytes()
}

/// Convenience: the signature input for an existing signature record.
pub(crate) fn signature_input_for(
    header: &Header,
    recipients: &[Recipient],
    payload: &[u8],
    sig: &Signature,
) -> Vec<u8> {
    signature_input(
        header,
        recipients,
        payload,
        &sig.key_id,
        sig.key_version,
        sig.algorithm,
    )
}

/// The AES-GCM additional data used when wrapping a DEK under a user KEK.
pub fn wrap_aad(
    tenant: &str,
    recipient_type: RecipientType,
    key_id: &str,
    key_version: i32,
    params: &[u8],
) -> Vec<u8> {
    let mut c = Canon::new(LABEL_WRAP);
    c.str(tenant)
        .str(recipient_type.symbol())
        .str(key_id)
        .i32(key_version)
        .bytes(params);
    c.into_bytes()
}
