//! CMS `EnvelopedData` (RFC 5652) as AWS KMS returns it in `CiphertextForRecipient`:
//! a small bounded BER reader, the parser and decryption, and the matching builder.
//!
//! The shape accepted is exactly what KMS (and the AWS Nitro Enclaves SDK's own parser)
//! uses, read strictly:
//!
//! ```text
//! ContentInfo ::= SEQUENCE {                       -- indefinite length from KMS
//!   contentType  id-envelopedData,
//!   content [0] EXPLICIT EnvelopedData }
//! EnvelopedData ::= SEQUENCE {
//!   version  0 | 2,                                -- equal to the recipient's version
//!   recipientInfos SET SIZE (1) OF KeyTransRecipientInfo,
//!   encryptedContentInfo EncryptedContentInfo }    -- no originatorInfo, no unprotectedAttrs
//! KeyTransRecipientInfo ::= SEQUENCE {
//!   version 0 (issuerAndSerialNumber) | 2 ([0] subjectKeyIdentifier; what KMS sends),
//!   rid,
//!   keyEncryptionAlgorithm id-RSAES-OAEP { sha256, mgf1SHA256, empty label },
//!   encryptedKey OCTET STRING }
//! EncryptedContentInfo ::= SEQUENCE {
//!   contentType id-data,
//!   contentEncryptionAlgorithm aes256-CBC { IV OCTET STRING (16 bytes) },
//!   encryptedContent [0] IMPLICIT OCTET STRING }   -- primitive, or constructed and chunked
//! ```
//!
//! The recipient identifier is not compared with the key: there is one recipient and the
//! caller supplies the one key that can open it; a wrong key fails as
//! [`KmsError::DecryptFailed`].

use std::borrow::Cow;

use aws_lc_rs::cipher::{
    AES_256, DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey,
    PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::rsa::{
    OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use zeroize::Zeroizing;

use super::KmsError;

/// Largest `CiphertextForRecipient` accepted, in bytes. KMS releases at most 4 KiB of
/// plaintext, so a real envelope is far below this.
pub const MAX_CIPHERTEXT_BYTES: usize = 64 * 1024;

/// Deepest BER nesting accepted. The KMS shape nests 7 levels; the rest is margin for
/// chunked OCTET STRINGs.
pub const MAX_DEPTH: usize = 16;

/// Chunk length used for the constructed `encryptedContent` by
/// [`build_recipient_ciphertext`].
pub const DEFAULT_CHUNK_BYTES: usize = 1024;

const AES_256_KEY_BYTES: usize = 32;
const AES_BLOCK_BYTES: usize = 16;

/// Object identifiers, as the content octets of their DER encoding.
mod oid {
    /// 1.2.840.113549.1.7.3 id-envelopedData
    pub(super) const ENVELOPED_DATA: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03];
    /// 1.2.840.113549.1.7.1 id-data
    pub(super) const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    /// 1.2.840.113549.1.1.7 id-RSAES-OAEP (RFC 4055)
    pub(super) const RSAES_OAEP: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07];
    /// 1.2.840.113549.1.1.8 id-mgf1 (RFC 4055)
    pub(super) const MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];
    /// 1.2.840.113549.1.1.9 id-pSpecified (RFC 4055)
    pub(super) const P_SPECIFIED: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x09];
    /// 2.16.840.1.101.3.4.2.1 id-sha256
    pub(super) const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    /// 2.16.840.1.101.3.4.1.42 id-aes256-CBC
    pub(super) const AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];
}

/// Identifier octets used here (all low-tag-number form).
mod tag {
    pub(super) const INTEGER: u8 = 0x02;
    pub(super) const BIT_STRING: u8 = 0x03;
    pub(super) const OCTET_STRING: u8 = 0x04;
    pub(super) const OCTET_STRING_CONSTRUCTED: u8 = 0x24;
    pub(super) const NULL: u8 = 0x05;
    pub(super) const OID: u8 = 0x06;
    pub(super) const SEQUENCE: u8 = 0x30;
    pub(super) const SET: u8 = 0x31;
    pub(super) const CONTEXT_0: u8 = 0x80;
    pub(super) const CONTEXT_0_CONSTRUCTED: u8 = 0xa0;
    pub(super) const CONTEXT_1_CONSTRUCTED: u8 = 0xa1;
    pub(super) const CONTEXT_2_CONSTRUCTED: u8 = 0xa2;
    pub(super) const CONSTRUCTED_BIT: u8 = 0x20;
}

fn malformed(reason: &'static str) -> KmsError {
    KmsError::Malformed { reason }
}

// ---------------------------------------------------------------------------------------
// BER reader
// ---------------------------------------------------------------------------------------

/// One BER element. For an indefinite-length element `content` excludes the
/// end-of-contents octets.
#[derive(Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    depth: usize,
}

impl<'a> Tlv<'a> {
    fn is_constructed(&self) -> bool {
        self.tag & tag::CONSTRUCTED_BIT != 0
    }

    /// The elements inside a constructed element.
    fn children(&self) -> Result<Vec<Tlv<'a>>, KmsError> {
        if !self.is_constructed() {
            return Err(malformed("expected a constructed element"));
        }
        let mut out = Vec::new();
        let mut rest = self.content;
        while !rest.is_empty() {
            let (child, next) = read_tlv(rest, self.depth + 1)?;
            out.push(child);
            rest = next;
        }
        Ok(out)
    }
}

/// Reads one element from the front of `input` at nesting `depth`; returns it and the
/// bytes after it.
fn read_tlv(input: &[u8], depth: usize) -> Result<(Tlv<'_>, &[u8]), KmsError> {
    if depth > MAX_DEPTH {
        return Err(KmsError::TooDeep { max: MAX_DEPTH });
    }
    let (&identifier, rest) = input
        .split_first()
        .ok_or(malformed("truncated element header"))?;
    if identifier == 0 {
        return Err(malformed("unexpected end-of-contents"));
    }
    if identifier & 0x1f == 0x1f {
        return Err(malformed("high tag numbers are not used in CMS"));
    }
    let (&first_length, rest) = rest
        .split_first()
        .ok_or(malformed("truncated element header"))?;

    if first_length == 0x80 {
        if identifier & tag::CONSTRUCTED_BIT == 0 {
            return Err(malformed("indefinite length on a primitive element"));
        }
        let mut cursor = rest;
        loop {
            match cursor {
                [0, 0, after @ ..] => {
                    let content = &rest[..rest.len() - cursor.len()];
                    let tlv = Tlv {
                        tag: identifier,
                        content,
                        depth,
                    };
                    return Ok((tlv, after));
                }
                [] => return Err(malformed("missing end-of-contents")),
                _ => {
                    let (_, next) = read_tlv(cursor, depth + 1)?;
                    cursor = next;
                }
            }
        }
    }

    let (length, rest) = if first_length < 0x80 {
        (usize::from(first_length), rest)
    } else {
        let count = usize::from(first_length & 0x7f);
        // 0xff is reserved; more than four length octets cannot describe anything that
        // fits under MAX_CIPHERTEXT_BYTES.
        if count > 4 {
            return Err(malformed("length field too long"));
        }
        let octets = rest
            .get(..count)
            .ok_or(malformed("truncated length field"))?;
        let length = octets
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (length, &rest[count..])
    };
    if length > rest.len() {
        return Err(malformed("length exceeds the input"));
    }
    let (content, after) = rest.split_at(length);
    Ok((
        Tlv {
            tag: identifier,
            content,
            depth,
        },
        after,
    ))
}

/// The octets of an OCTET STRING (or an implicitly tagged one), reassembling the
/// constructed form from its OCTET STRING segments.
fn octets<'a>(tlv: &Tlv<'a>) -> Result<Cow<'a, [u8]>, KmsError> {
    if !tlv.is_constructed() {
        return Ok(Cow::Borrowed(tlv.content));
    }
    let mut out = Vec::new();
    append_segments(tlv, &mut out)?;
    Ok(Cow::Owned(out))
}

fn append_segments(tlv: &Tlv<'_>, out: &mut Vec<u8>) -> Result<(), KmsError> {
    for segment in tlv.children()? {
        match segment.tag {
            tag::OCTET_STRING => out.extend_from_slice(segment.content),
            tag::OCTET_STRING_CONSTRUCTED => append_segments(&segment, out)?,
            _ => {
                return Err(malformed(
                    "constructed OCTET STRING holds a non-OCTET STRING",
                ));
            }
        }
    }
    Ok(())
}

fn octet_string<'a>(tlv: &Tlv<'a>, what: &'static str) -> Result<Cow<'a, [u8]>, KmsError> {
    match tlv.tag {
        tag::OCTET_STRING | tag::OCTET_STRING_CONSTRUCTED => octets(tlv),
        _ => Err(malformed(what)),
    }
}

fn object_identifier<'a>(tlv: &Tlv<'a>) -> Result<&'a [u8], KmsError> {
    if tlv.tag != tag::OID {
        return Err(malformed("expected an OBJECT IDENTIFIER"));
    }
    Ok(tlv.content)
}

/// A small non-negative INTEGER (a version field).
fn small_uint(tlv: &Tlv<'_>) -> Result<u64, KmsError> {
    if tlv.tag != tag::INTEGER {
        return Err(malformed("expected an INTEGER"));
    }
    match tlv.content {
        [] => Err(malformed("empty INTEGER")),
        [first, ..] if first & 0x80 != 0 => Err(malformed("negative version")),
        bytes if bytes.len() > 8 => Err(malformed("version too large")),
        bytes => Ok(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))),
    }
}

fn expect_tag(tlv: &Tlv<'_>, expected: u8, what: &'static str) -> Result<(), KmsError> {
    if tlv.tag == expected {
        Ok(())
    } else {
        Err(malformed(what))
    }
}

// ---------------------------------------------------------------------------------------
// CMS parser
// ---------------------------------------------------------------------------------------

/// The pieces of the envelope needed for decryption.
struct Envelope<'a> {
    wrapped_key: Cow<'a, [u8]>,
    iv: [u8; AES_BLOCK_BYTES],
    ciphertext: Cow<'a, [u8]>,
}

fn parse(ber: &[u8]) -> Result<Envelope<'_>, KmsError> {
    if ber.len() > MAX_CIPHERTEXT_BYTES {
        return Err(KmsError::TooLarge {
            len: ber.len(),
            max: MAX_CIPHERTEXT_BYTES,
        });
    }
    let (content_info, trailing) = read_tlv(ber, 0)?;
    if !trailing.is_empty() {
        return Err(malformed("trailing bytes after the ContentInfo"));
    }
    expect_tag(
        &content_info,
        tag::SEQUENCE,
        "ContentInfo is not a SEQUENCE",
    )?;
    let fields = content_info.children()?;
    let [content_type, explicit] = fields.as_slice() else {
        return Err(malformed("ContentInfo does not have two fields"));
    };
    if object_identifier(content_type)? != oid::ENVELOPED_DATA {
        return Err(KmsError::NotEnvelopedData);
    }
    expect_tag(
        explicit,
        tag::CONTEXT_0_CONSTRUCTED,
        "ContentInfo content is not [0]",
    )?;
    let inner = explicit.children()?;
    let [enveloped] = inner.as_slice() else {
        return Err(malformed("ContentInfo [0] does not hold one element"));
    };
    parse_enveloped_data(enveloped)
}

fn parse_enveloped_data<'a>(enveloped: &Tlv<'a>) -> Result<Envelope<'a>, KmsError> {
    expect_tag(enveloped, tag::SEQUENCE, "EnvelopedData is not a SEQUENCE")?;
    let fields = enveloped.children()?;
    let (version, recipient_infos, encrypted_content_info) = match fields.as_slice() {
        [version, recipient_infos, encrypted_content_info] => {
            (version, recipient_infos, encrypted_content_info)
        }
        [_, second, ..] if second.tag == tag::CONTEXT_0_CONSTRUCTED => {
            return Err(malformed("originatorInfo is not supported"));
        }
        [_, _, _, fourth, ..] if fourth.tag == tag::CONTEXT_1_CONSTRUCTED => {
            return Err(malformed("unprotectedAttrs are not supported"));
        }
        _ => return Err(malformed("EnvelopedData does not have three fields")),
    };
    let version = small_uint(version)?;
    if version != 0 && version != 2 {
        return Err(KmsError::UnsupportedVersion {
            field: "EnvelopedData",
            version,
        });
    }
    expect_tag(recipient_infos, tag::SET, "recipientInfos is not a SET")?;
    let recipients = recipient_infos.children()?;
    let [recipient] = recipients.as_slice() else {
        return Err(KmsError::RecipientCount {
            count: recipients.len(),
        });
    };
    let (recipient_version, wrapped_key) = parse_key_trans_recipient(recipient)?;
    // RFC 5652 section 6.1: with no originatorInfo and no unprotectedAttrs the
    // EnvelopedData version is 0 exactly when every recipient is version 0, else 2.
    if recipient_version != version {
        return Err(KmsError::UnsupportedVersion {
            field: "EnvelopedData",
            version,
        });
    }
    let (iv, ciphertext) = parse_encrypted_content_info(encrypted_content_info)?;
    Ok(Envelope {
        wrapped_key,
        iv,
        ciphertext,
    })
}

fn parse_key_trans_recipient<'a>(recipient: &Tlv<'a>) -> Result<(u64, Cow<'a, [u8]>), KmsError> {
    if recipient.tag != tag::SEQUENCE {
        return Err(KmsError::UnsupportedRecipient);
    }
    let fields = recipient.children()?;
    let [version, rid, algorithm, encrypted_key] = fields.as_slice() else {
        return Err(malformed("KeyTransRecipientInfo does not have four fields"));
    };
    let version = small_uint(version)?;
    match (version, rid.tag) {
        (0, tag::SEQUENCE) | (2, tag::CONTEXT_0) => {}
        (0 | 2, _) => {
            return Err(malformed(
                "recipient identifier does not match the recipient version",
            ));
        }
        (version, _) => {
            return Err(KmsError::UnsupportedVersion {
                field: "KeyTransRecipientInfo",
                version,
            });
        }
    }
    check_rsaes_oaep_sha256(algorithm)?;
    let wrapped_key = octet_string(encrypted_key, "encryptedKey is not an OCTET STRING")?;
    Ok((version, wrapped_key))
}

/// Checks `AlgorithmIdentifier { id-RSAES-OAEP, RSAES-OAEP-params }` with SHA-256,
/// MGF1-SHA-256 and the default (empty) label.
fn check_rsaes_oaep_sha256(algorithm: &Tlv<'_>) -> Result<(), KmsError> {
    expect_tag(
        algorithm,
        tag::SEQUENCE,
        "keyEncryptionAlgorithm is not a SEQUENCE",
    )?;
    let fields = algorithm.children()?;
    let Some(algorithm_oid) = fields.first() else {
        return Err(malformed("keyEncryptionAlgorithm is empty"));
    };
    if object_identifier(algorithm_oid)? != oid::RSAES_OAEP {
        return Err(KmsError::UnsupportedKeyEncryption);
    }
    // Absent parameters would mean the SHA-1 defaults.
    let [_, params] = fields.as_slice() else {
        return Err(KmsError::UnsupportedOaepParameters);
    };
    if params.tag != tag::SEQUENCE {
        return Err(KmsError::UnsupportedOaepParameters);
    }
    let params = params.children()?;
    let (hash, mask_gen, label) = match params.as_slice() {
        [hash, mask_gen] => (hash, mask_gen, None),
        [hash, mask_gen, label] => (hash, mask_gen, Some(label)),
        _ => return Err(KmsError::UnsupportedOaepParameters),
    };

    if hash.tag != tag::CONTEXT_0_CONSTRUCTED || !is_sha256(&single_child(hash)?)? {
        return Err(KmsError::UnsupportedOaepParameters);
    }

    if mask_gen.tag != tag::CONTEXT_1_CONSTRUCTED {
        return Err(KmsError::UnsupportedOaepParameters);
    }
    let mask_gen = single_child(mask_gen)?;
    if mask_gen.tag != tag::SEQUENCE {
        return Err(KmsError::UnsupportedOaepParameters);
    }
    match mask_gen.children()?.as_slice() {
        [mgf_oid, mgf_hash] if object_identifier(mgf_oid)? == oid::MGF1 && is_sha256(mgf_hash)? => {
        }
        _ => return Err(KmsError::UnsupportedOaepParameters),
    }

    if let Some(label) = label {
        if label.tag != tag::CONTEXT_2_CONSTRUCTED {
            return Err(KmsError::UnsupportedOaepParameters);
        }
        let source = single_child(label)?;
        if source.tag != tag::SEQUENCE {
            return Err(KmsError::UnsupportedOaepParameters);
        }
        match source.children()?.as_slice() {
            [source_oid, value]
                if object_identifier(source_oid)? == oid::P_SPECIFIED
                    && octet_string(value, "pSpecified value is not an OCTET STRING")?
                        .is_empty() => {}
            _ => return Err(KmsError::UnsupportedOaepParameters),
        }
    }
    Ok(())
}

fn single_child<'a>(tlv: &Tlv<'a>) -> Result<Tlv<'a>, KmsError> {
    match tlv.children()?.as_slice() {
        [only] => Ok(*only),
        _ => Err(malformed("explicit tag does not hold one element")),
    }
}

/// Is this `AlgorithmIdentifier { id-sha256 }` with absent or NULL parameters?
fn is_sha256(algorithm: &Tlv<'_>) -> Result<bool, KmsError> {
    if algorithm.tag != tag::SEQUENCE {
        return Ok(false);
    }
    Ok(match algorithm.children()?.as_slice() {
        [id] => object_identifier(id)? == oid::SHA256,
        [id, null] => {
            object_identifier(id)? == oid::SHA256
                && null.tag == tag::NULL
                && null.content.is_empty()
        }
        _ => false,
    })
}

fn parse_encrypted_content_info<'a>(
    info: &Tlv<'a>,
) -> Result<([u8; AES_BLOCK_BYTES], Cow<'a, [u8]>), KmsError> {
    expect_tag(
        info,
        tag::SEQUENCE,
        "EncryptedContentInfo is not a SEQUENCE",
    )?;
    let fields = info.children()?;
    let (content_type, algorithm, content) = match fields.as_slice() {
        [content_type, algorithm] => (content_type, algorithm, None),
        [content_type, algorithm, content] => (content_type, algorithm, Some(content)),
        _ => {
            return Err(malformed(
                "EncryptedContentInfo has the wrong number of fields",
            ));
        }
    };
    if object_identifier(content_type)? != oid::DATA {
        return Err(KmsError::UnsupportedContentType);
    }
    expect_tag(
        algorithm,
        tag::SEQUENCE,
        "contentEncryptionAlgorithm is not a SEQUENCE",
    )?;
    let algorithm = algorithm.children()?;
    let Some(algorithm_oid) = algorithm.first() else {
        return Err(malformed("contentEncryptionAlgorithm is empty"));
    };
    if object_identifier(algorithm_oid)? != oid::AES256_CBC {
        return Err(KmsError::UnsupportedContentEncryption);
    }
    let [_, iv] = algorithm.as_slice() else {
        return Err(KmsError::InvalidIv);
    };
    if iv.tag != tag::OCTET_STRING && iv.tag != tag::OCTET_STRING_CONSTRUCTED {
        return Err(KmsError::InvalidIv);
    }
    let iv: [u8; AES_BLOCK_BYTES] = octets(iv)?
        .as_ref()
        .try_into()
        .map_err(|_| KmsError::InvalidIv)?;
    let content = content.ok_or(KmsError::MissingEncryptedContent)?;
    let ciphertext = match content.tag {
        tag::CONTEXT_0 | tag::CONTEXT_0_CONSTRUCTED => octets(content)?,
        _ => return Err(malformed("encryptedContent is not [0]")),
    };
    Ok((iv, ciphertext))
}

// ---------------------------------------------------------------------------------------
// Opening
// ---------------------------------------------------------------------------------------

/// Opens a KMS `CiphertextForRecipient` with the enclave's ephemeral RSA private key and
/// returns the plaintext KMS released.
///
/// # Errors
/// Structural problems return the specific [`KmsError`] variant; every failure after
/// parsing (RSA-OAEP unwrap, content-key length, AES-CBC padding) returns
/// [`KmsError::DecryptFailed`] and nothing else.
///
/// AES-256-CBC is not authenticated: this function proves confidentiality to the key
/// holder, not that KMS built the envelope. Authenticity comes from the TLS session to
/// KMS, which terminates inside the enclave.
pub fn open_recipient_ciphertext(
    ber: &[u8],
    ephemeral_key: &PrivateDecryptingKey,
) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let envelope = parse(ber)?;
    let content_key = unwrap_content_key(&envelope.wrapped_key, ephemeral_key)?;
    decrypt_content(&content_key, envelope.iv, &envelope.ciphertext)
}

fn unwrap_content_key(
    wrapped_key: &[u8],
    ephemeral_key: &PrivateDecryptingKey,
) -> Result<Zeroizing<[u8; AES_256_KEY_BYTES]>, KmsError> {
    let oaep = OaepPrivateDecryptingKey::new(ephemeral_key.clone())
        .map_err(|_| KmsError::DecryptFailed)?;
    let mut buffer = Zeroizing::new(vec![0u8; oaep.min_output_size()]);
    let unwrapped = oaep
        .decrypt(&OAEP_SHA256_MGF1SHA256, wrapped_key, &mut buffer, None)
        .map_err(|_| KmsError::DecryptFailed)?;
    if unwrapped.len() != AES_256_KEY_BYTES {
        return Err(KmsError::DecryptFailed);
    }
    let mut content_key = Zeroizing::new([0u8; AES_256_KEY_BYTES]);
    content_key.copy_from_slice(unwrapped);
    Ok(content_key)
}

fn decrypt_content(
    content_key: &[u8; AES_256_KEY_BYTES],
    iv: [u8; AES_BLOCK_BYTES],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(AES_BLOCK_BYTES) {
        return Err(KmsError::DecryptFailed);
    }
    let key = UnboundCipherKey::new(&AES_256, content_key).map_err(|_| KmsError::DecryptFailed)?;
    let key = PaddedBlockDecryptingKey::cbc_pkcs7(key).map_err(|_| KmsError::DecryptFailed)?;
    let mut buffer = Zeroizing::new(ciphertext.to_vec());
    let plaintext_len = key
        .decrypt(&mut buffer, DecryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| KmsError::DecryptFailed)?
        .len();
    buffer.truncate(plaintext_len);
    Ok(buffer)
}

// ---------------------------------------------------------------------------------------
// Builder (the KMS side; exported through `kms::danger`)
// ---------------------------------------------------------------------------------------

/// How [`build_recipient_ciphertext_with`] lays out the BER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Encoding {
    /// The KMS shape: `ContentInfo`, `[0]`, `EnvelopedData`, `EncryptedContentInfo` and
    /// `encryptedContent` use indefinite lengths; `encryptedContent` is a constructed
    /// OCTET STRING of segments of at most `chunk_bytes` bytes (must be non-zero).
    Indefinite {
        /// Largest segment of the constructed `encryptedContent`.
        chunk_bytes: usize,
    },
    /// Definite lengths throughout and a primitive `encryptedContent` (DER-like).
    Definite,
}

/// Builds a `CiphertextForRecipient` the way KMS does: indefinite lengths and a chunked
/// `encryptedContent` ([`DEFAULT_CHUNK_BYTES`]), RSAES-OAEP-SHA-256 key transport to the
/// RSA public key `recipient_spki_der` (a DER SubjectPublicKeyInfo), AES-256-CBC content.
///
/// # Errors
/// [`KmsError::InvalidRecipientKey`] for an unusable key, [`KmsError::BuildFailed`] if
/// random generation or encryption fails.
pub fn build_recipient_ciphertext(
    plaintext: &[u8],
    recipient_spki_der: &[u8],
    rng: &dyn SecureRandom,
) -> Result<Vec<u8>, KmsError> {
    build_recipient_ciphertext_with(
        plaintext,
        recipient_spki_der,
        rng,
        Encoding::Indefinite {
            chunk_bytes: DEFAULT_CHUNK_BYTES,
        },
    )
}

/// [`build_recipient_ciphertext`] with a chosen [`Encoding`].
///
/// # Errors
/// As [`build_recipient_ciphertext`]; also [`KmsError::BuildFailed`] for a zero chunk size.
pub fn build_recipient_ciphertext_with(
    plaintext: &[u8],
    recipient_spki_der: &[u8],
    rng: &dyn SecureRandom,
    encoding: Encoding,
) -> Result<Vec<u8>, KmsError> {
    let public_key = PublicEncryptingKey::from_der(recipient_spki_der)
        .map_err(|_| KmsError::InvalidRecipientKey)?;
    let public_key =
        OaepPublicEncryptingKey::new(public_key).map_err(|_| KmsError::InvalidRecipientKey)?;
    let subject_key_id = subject_key_identifier(recipient_spki_der)?;

    let mut content_key = Zeroizing::new([0u8; AES_256_KEY_BYTES]);
    rng.fill(content_key.as_mut_slice())
        .map_err(|_| KmsError::BuildFailed)?;
    let mut iv = [0u8; AES_BLOCK_BYTES];
    rng.fill(&mut iv).map_err(|_| KmsError::BuildFailed)?;

    let mut wrapped_key = vec![0u8; public_key.ciphertext_size()];
    let wrapped_len = public_key
        .encrypt(
            &OAEP_SHA256_MGF1SHA256,
            content_key.as_slice(),
            &mut wrapped_key,
            None,
        )
        .map_err(|_| KmsError::BuildFailed)?
        .len();
    wrapped_key.truncate(wrapped_len);

    let cipher_key = UnboundCipherKey::new(&AES_256, content_key.as_slice())
        .map_err(|_| KmsError::BuildFailed)?;
    let cipher_key =
        PaddedBlockEncryptingKey::cbc_pkcs7(cipher_key).map_err(|_| KmsError::BuildFailed)?;
    // Holds the plaintext until it is encrypted in place.
    let mut content = Zeroizing::new(plaintext.to_vec());
    cipher_key
        .less_safe_encrypt(
            &mut *content,
            EncryptionContext::Iv128(FixedLength::from(iv)),
        )
        .map_err(|_| KmsError::BuildFailed)?;

    let sha256 = der(tag::SEQUENCE, &der(tag::OID, oid::SHA256));
    let oaep_params = der(
        tag::SEQUENCE,
        &[
            der(tag::CONTEXT_0_CONSTRUCTED, &sha256),
            der(
                tag::CONTEXT_1_CONSTRUCTED,
                &der(
                    tag::SEQUENCE,
                    &[der(tag::OID, oid::MGF1), sha256.clone()].concat(),
                ),
            ),
        ]
        .concat(),
    );
    let key_encryption_algorithm = der(
        tag::SEQUENCE,
        &[der(tag::OID, oid::RSAES_OAEP), oaep_params].concat(),
    );
    let version = der(tag::INTEGER, &[2]);
    let recipient = der(
        tag::SEQUENCE,
        &[
            version.clone(),
            der(tag::CONTEXT_0, &subject_key_id),
            key_encryption_algorithm,
            der(tag::OCTET_STRING, &wrapped_key),
        ]
        .concat(),
    );
    let recipient_infos = der(tag::SET, &recipient);
    let content_type = der(tag::OID, oid::DATA);
    let content_algorithm = der(
        tag::SEQUENCE,
        &[der(tag::OID, oid::AES256_CBC), der(tag::OCTET_STRING, &iv)].concat(),
    );

    match encoding {
        Encoding::Definite => {
            let info = der(
                tag::SEQUENCE,
                &[
                    content_type,
                    content_algorithm,
                    der(tag::CONTEXT_0, &content),
                ]
                .concat(),
            );
            let enveloped = der(tag::SEQUENCE, &[version, recipient_infos, info].concat());
            Ok(der(
                tag::SEQUENCE,
                &[
                    der(tag::OID, oid::ENVELOPED_DATA),
                    der(tag::CONTEXT_0_CONSTRUCTED, &enveloped),
                ]
                .concat(),
            ))
        }
        Encoding::Indefinite { chunk_bytes } => {
            if chunk_bytes == 0 {
                return Err(KmsError::BuildFailed);
            }
            const END_OF_CONTENTS: [u8; 2] = [0, 0];
            let mut out = vec![tag::SEQUENCE, 0x80];
            out.extend_from_slice(&der(tag::OID, oid::ENVELOPED_DATA));
            out.extend_from_slice(&[tag::CONTEXT_0_CONSTRUCTED, 0x80, tag::SEQUENCE, 0x80]);
            out.extend_from_slice(&version);
            out.extend_from_slice(&recipient_infos);
            out.extend_from_slice(&[tag::SEQUENCE, 0x80]);
            out.extend_from_slice(&content_type);
            out.extend_from_slice(&content_algorithm);
            out.extend_from_slice(&[tag::CONTEXT_0_CONSTRUCTED, 0x80]);
            for chunk in content.chunks(chunk_bytes) {
                out.extend_from_slice(&der(tag::OCTET_STRING, chunk));
            }
            // encryptedContent, EncryptedContentInfo, EnvelopedData, [0], ContentInfo.
            for _ in 0..5 {
                out.extend_from_slice(&END_OF_CONTENTS);
            }
            Ok(out)
        }
    }
}

/// RFC 5280 section 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. An identifier,
/// not a security property.
fn subject_key_identifier(spki_der: &[u8]) -> Result<Vec<u8>, KmsError> {
    let invalid = |_| KmsError::InvalidRecipientKey;
    let (spki, rest) = read_tlv(spki_der, 0).map_err(invalid)?;
    if !rest.is_empty() || spki.tag != tag::SEQUENCE {
        return Err(KmsError::InvalidRecipientKey);
    }
    let fields = spki.children().map_err(invalid)?;
    let [_, bits] = fields.as_slice() else {
        return Err(KmsError::InvalidRecipientKey);
    };
    match (bits.tag, bits.content) {
        (tag::BIT_STRING, [0, key @ ..]) => {
            Ok(digest(&SHA1_FOR_LEGACY_USE_ONLY, key).as_ref().to_vec())
        }
        _ => Err(KmsError::InvalidRecipientKey),
    }
}

/// A definite-length (DER) element.
fn der(identifier: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(identifier);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(result: Result<impl Sized, KmsError>) -> &'static str {
        match result {
            Err(KmsError::Malformed { reason }) => reason,
            Err(other) => panic!("expected Malformed, got {other:?}"),
            Ok(_) => panic!("expected Malformed, got Ok"),
        }
    }

    #[test]
    fn reads_definite_and_indefinite() {
        let (tlv, rest) = read_tlv(&[0x30, 0x03, 0x02, 0x01, 0x05, 0xff], 0).expect("definite");
        assert_eq!(tlv.content, &[0x02, 0x01, 0x05]);
        assert_eq!(rest, &[0xff]);

        let input = [
            0x30, 0x80, 0x02, 0x01, 0x05, 0x30, 0x80, 0x00, 0x00, 0x00, 0x00, 0xaa,
        ];
        let (tlv, rest) = read_tlv(&input, 0).expect("indefinite");
        assert_eq!(tlv.content, &[0x02, 0x01, 0x05, 0x30, 0x80, 0x00, 0x00]);
        assert_eq!(rest, &[0xaa]);
        let children = tlv.children().expect("children");
        assert_eq!(children.len(), 2);
        assert_eq!(children[1].tag, tag::SEQUENCE);
        assert!(children[1].content.is_empty());
    }

    #[test]
    fn long_form_lengths() {
        let mut input = vec![0x04, 0x82, 0x01, 0x00];
        input.extend(std::iter::repeat_n(7u8, 256));
        let (tlv, rest) = read_tlv(&input, 0).expect("long form");
        assert_eq!(tlv.content.len(), 256);
        assert!(rest.is_empty());
        // Non-minimal length octets are legal BER.
        let (tlv, _) = read_tlv(&[0x04, 0x81, 0x01, 0x09], 0).expect("non-minimal");
        assert_eq!(tlv.content, &[0x09]);
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(reason(read_tlv(&[], 0)), "truncated element header");
        assert_eq!(reason(read_tlv(&[0x30], 0)), "truncated element header");
        assert_eq!(
            reason(read_tlv(&[0x04, 0x05, 1, 2], 0)),
            "length exceeds the input"
        );
        assert_eq!(
            reason(read_tlv(&[0x04, 0x82, 0x01], 0)),
            "truncated length field"
        );
        assert_eq!(
            reason(read_tlv(&[0x04, 0x85, 1, 0, 0, 0, 0], 0)),
            "length field too long"
        );
        assert_eq!(
            reason(read_tlv(&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff, 0], 0)),
            "length exceeds the input"
        );
        assert_eq!(reason(read_tlv(&[0x04, 0xff], 0)), "length field too long");
        assert_eq!(
            reason(read_tlv(&[0x04, 0x80, 0x00, 0x00], 0)),
            "indefinite length on a primitive element"
        );
        assert_eq!(
            reason(read_tlv(&[0x1f, 0x01, 0x00], 0)),
            "high tag numbers are not used in CMS"
        );
        assert_eq!(
            reason(read_tlv(&[0x00, 0x00], 0)),
            "unexpected end-of-contents"
        );
    }

    #[test]
    fn rejects_missing_end_of_contents() {
        assert_eq!(
            reason(read_tlv(&[0x30, 0x80, 0x02, 0x01, 0x05], 0)),
            "missing end-of-contents"
        );
        assert_eq!(
            reason(read_tlv(&[0x30, 0x80, 0x02, 0x01, 0x05, 0x00], 0)),
            "unexpected end-of-contents"
        );
        // EOC inside definite content is not an element.
        let (tlv, _) = read_tlv(&[0x30, 0x02, 0x00, 0x00], 0).expect("outer");
        assert_eq!(reason(tlv.children()), "unexpected end-of-contents");
    }

    #[test]
    fn rejects_deep_nesting_without_overflowing_the_stack() {
        let depth = MAX_DEPTH + 2;
        let mut input = Vec::new();
        for _ in 0..depth {
            input.extend_from_slice(&[0x30, 0x80]);
        }
        for _ in 0..depth {
            input.extend_from_slice(&[0x00, 0x00]);
        }
        assert!(matches!(
            read_tlv(&input, 0),
            Err(KmsError::TooDeep { max: MAX_DEPTH })
        ));
        // A huge number of openers must fail on depth, not recurse further.
        let input = [0x30, 0x80].repeat(20_000);
        assert!(matches!(read_tlv(&input, 0), Err(KmsError::TooDeep { .. })));
    }

    #[test]
    fn reassembles_nested_constructed_octet_strings() {
        let input = [
            0x24, 0x80, 0x04, 0x02, 1, 2, 0x24, 0x04, 0x04, 0x02, 3, 4, 0x04, 0x00, 0x00, 0x00,
        ];
        let (tlv, rest) = read_tlv(&input, 0).expect("constructed");
        assert!(rest.is_empty());
        assert_eq!(octets(&tlv).expect("octets").as_ref(), &[1, 2, 3, 4]);

        let bad = [0x24, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00];
        let (tlv, _) = read_tlv(&bad, 0).expect("constructed");
        assert_eq!(
            reason(octets(&tlv)),
            "constructed OCTET STRING holds a non-OCTET STRING"
        );
    }

    #[test]
    fn der_lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 65_535, 65_536] {
            let content = vec![0xabu8; len];
            let encoded = der(tag::OCTET_STRING, &content);
            let (tlv, rest) = read_tlv(&encoded, 0).expect("round trip");
            assert!(rest.is_empty());
            assert_eq!(tlv.content.len(), len);
        }
    }

    #[test]
    fn small_uint_rules() {
        let parse = |bytes: &[u8]| {
            let (tlv, _) = read_tlv(bytes, 0).expect("tlv");
            small_uint(&tlv)
        };
        assert_eq!(parse(&[0x02, 0x01, 0x02]).expect("two"), 2);
        assert_eq!(parse(&[0x02, 0x02, 0x00, 0x02]).expect("two, padded"), 2);
        assert_eq!(reason(parse(&[0x02, 0x01, 0xff])), "negative version");
        assert_eq!(reason(parse(&[0x02, 0x00])), "empty INTEGER");
        assert_eq!(reason(parse(&[0x04, 0x01, 0x02])), "expected an INTEGER");
    }
}
