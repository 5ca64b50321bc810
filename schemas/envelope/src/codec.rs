//! Avro binary encoding of [`Envelope`], written out by hand so that decoding is bounded.
//!
//! The bytes are exactly what any Avro library writes for `schemas/avro/envelope.avsc`
//! (the schemas crate checks this against `apache-avro` in both directions). Decoding
//! is strict: every length is checked against [`Limits`] before anything is allocated,
//! integers must use the shortest varint form, and trailing bytes are rejected.

use crate::error::Error;
use crate::model::{
    Envelope, FORMAT_VERSION, Header, Kind, MessageId, Purpose, Recipient, RecipientType,
    Signature, SignatureAlgorithm,
};

/// Size limits enforced while decoding (and while sealing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(deny_unknown_fields, default)
)]
pub struct Limits {
    /// Largest encoded envelope accepted, in bytes.
    pub max_envelope_bytes: usize,
    /// Largest payload blob accepted, in bytes.
    pub max_payload_bytes: usize,
    /// Most recipients accepted.
    pub max_recipients: usize,
    /// Longest string field (tenant, subject, content type, key ids), in bytes.
    pub max_string_bytes: usize,
    /// Longest recipient `params`, in bytes.
    pub max_params_bytes: usize,
    /// Longest wrapped key or signature value, in bytes (8192-bit RSA is 1024).
    pub max_key_bytes: usize,
}

impl Default for Limits {
    /// Payloads up to 4 MiB (plus 29 bytes of blob framing), 16 recipients.
    fn default() -> Self {
        Self {
            max_envelope_bytes: 4 * 1024 * 1024 + 64 * 1024,
            max_payload_bytes: 4 * 1024 * 1024 + crate::aead::BLOB_OVERHEAD,
            max_recipients: 16,
            max_string_bytes: 256,
            max_params_bytes: 256,
            max_key_bytes: 1024,
        }
    }
}

/// Encodes an envelope as Avro binary.
pub fn encode(env: &Envelope) -> Vec<u8> {
    let h = &env.header;
    let mut out = Vec::with_capacity(
        256 + env.payload.len()
            + env
                .recipients
                .iter()
                .map(|r| r.wrapped_key.len() + r.params.len() + 64)
                .sum::<usize>()
            + env.signature.as_ref().map_or(0, |s| s.value.len() + 64),
    );
    put_long(&mut out, i64::from(h.version));
    out.extend_from_slice(h.message_id.as_bytes());
    put_bytes(&mut out, h.tenant.as_bytes());
    put_bytes(&mut out, h.subject.as_bytes());
    put_long(&mut out, h.kind.index() as i64);
    put_long(&mut out, h.purpose.index() as i64);
    put_bytes(&mut out, h.content_type.as_bytes());
    put_long(&mut out, h.created_at_ms);
    match &h.correlation_id {
        None => put_long(&mut out, 0),
        Some(id) => {
            put_long(&mut out, 1);
            out.extend_from_slice(id.as_bytes());
        }
    }
    put_long(&mut out, i64::from(h.schema_id));
    out.extend_from_slice(&h.key_commitment);
    if !env.recipients.is_empty() {
        put_long(&mut out, env.recipients.len() as i64);
        for r in &env.recipients {
            put_long(&mut out, r.recipient_type.index() as i64);
            put_bytes(&mut out, r.key_id.as_bytes());
            put_long(&mut out, i64::from(r.key_version));
            put_bytes(&mut out, &r.params);
            put_bytes(&mut out, &r.wrapped_key);
        }
    }
    put_long(&mut out, 0);
    put_bytes(&mut out, &env.payload);
    match &env.signature {
        None => put_long(&mut out, 0),
        Some(s) => {
            put_long(&mut out, 1);
            put_bytes(&mut out, s.key_id.as_bytes());
            put_long(&mut out, i64::from(s.key_version));
            put_long(&mut out, s.algorithm.index() as i64);
            put_bytes(&mut out, &s.value);
        }
    }
    out
}

/// Decodes an envelope from Avro binary, enforcing `limits` and the format's rules
/// (version, UUIDv7 ids, correlation id on responses).
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Envelope, Error> {
    if bytes.len() > limits.max_envelope_bytes {
        return Err(Error::TooLarge {
            field: "envelope",
            len: bytes.len(),
            limit: limits.max_envelope_bytes,
        });
    }
    let mut r = Reader {
        buf: bytes,
        pos: 0,
        limits,
    };
    let version = r.int()?;
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    let message_id = r.message_id()?;
    let tenant = r.string("tenant")?;
    let subject = r.string("subject")?;
    let kind = r.symbol(Kind::from_index)?;
    let purpose = r.symbol(Purpose::from_index)?;
    let content_type = r.string("content_type")?;
    let created_at_ms = r.long()?;
    let correlation_id = match r.long()? {
        0 => None,
        1 => Some(r.message_id()?),
        _ => return Err(r.malformed("correlation_id union index out of range")),
    };
    let schema_id = r.int()?;
    let key_commitment = r.fixed::<32>()?;
    let recipients = r.recipients()?;
    let payload = r.bytes("payload", limits.max_payload_bytes)?.to_vec();
    let signature = match r.long()? {
        0 => None,
        1 => Some(Signature {
            key_id: r.string("signature.key_id")?,
            key_version: r.int()?,
            algorithm: r.symbol(SignatureAlgorithm::from_index)?,
            value: r.bytes("signature.value", limits.max_key_bytes)?.to_vec(),
        }),
        _ => return Err(r.malformed("signature union index out of range")),
    };
    if r.pos != bytes.len() {
        return Err(r.malformed("trailing bytes after the envelope"));
    }
    if kind.is_response() && correlation_id.is_none() {
        return Err(Error::Malformed {
            reason: "a RESULT or ERROR envelope must carry a correlation id",
            offset: bytes.len(),
        });
    }
    Ok(Envelope {
        header: Header {
            version,
            message_id,
            tenant,
            subject,
            kind,
            purpose,
            content_type,
            created_at_ms,
            correlation_id,
            schema_id,
            key_commitment,
        },
        recipients,
        payload,
        signature,
    })
}

fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: &'a Limits,
}

impl<'a> Reader<'a> {
    fn malformed(&self, reason: &'static str) -> Error {
        Error::Malformed {
            reason,
            offset: self.pos,
        }
    }

    fn byte(&mut self) -> Result<u8, Error> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.malformed("unexpected end of input"))?;
        self.pos += 1;
        Ok(b)
    }

    /// A zigzag varint `long`, shortest form only.
    fn long(&mut self) -> Result<i64, Error> {
        let mut z: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            if i == 9 && b > 1 {
                return Err(self.malformed("varint overflows 64 bits"));
            }
            z |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(self.malformed("varint is not in shortest form"));
                }
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err(self.malformed("varint longer than 10 bytes"))
    }

    fn int(&mut self) -> Result<i32, Error> {
        let v = self.long()?;
        i32::try_from(v).map_err(|_| self.malformed("int out of 32-bit range"))
    }

    fn len(&mut self, field: &'static str, limit: usize) -> Result<usize, Error> {
        let n = self.long()?;
        let n = usize::try_from(n).map_err(|_| self.malformed("negative length"))?;
        if n > limit {
            return Err(Error::TooLarge {
                field,
                len: n,
                limit,
            });
        }
        if n > self.buf.len() - self.pos {
            return Err(self.malformed("length runs past the end of input"));
        }
        Ok(n)
    }

    fn bytes(&mut self, field: &'static str, limit: usize) -> Result<&'a [u8], Error> {
        let n = self.len(field, limit)?;
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn string(&mut self, field: &'static str) -> Result<String, Error> {
        let start = self.pos;
        let b = self.bytes(field, self.limits.max_string_bytes)?;
        match core::str::from_utf8(b) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(Error::Malformed {
                reason: "string is not valid UTF-8",
                offset: start,
            }),
        }
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let end = self.pos.checked_add(N).filter(|e| *e <= self.buf.len());
        let end = end.ok_or_else(|| self.malformed("unexpected end of input"))?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[self.pos..end]);
        self.pos = end;
        Ok(out)
    }

    fn message_id(&mut self) -> Result<MessageId, Error> {
        let start = self.pos;
        let raw = self.fixed::<16>()?;
        MessageId::from_bytes(raw).map_err(|_| Error::Malformed {
            reason: "message id is not a UUIDv7",
            offset: start,
        })
    }

    fn symbol<T>(&mut self, from_index: fn(usize) -> Option<T>) -> Result<T, Error> {
        let start = self.pos;
        let i = self.long()?;
        usize::try_from(i)
            .ok()
            .and_then(from_index)
            .ok_or(Error::Malformed {
                reason: "enum index out of range",
                offset: start,
            })
    }

    /// An Avro array of `Recipient` in canonical form: either the empty array (a single
    /// 0) or one block with a positive count followed by the terminating 0. That is what
    /// every standard Avro writer emits; other block layouts are valid Avro but would give
    /// one envelope several encodings, so they are rejected.
    fn recipients(&mut self) -> Result<Vec<Recipient>, Error> {
        let start = self.pos;
        let count = self.long()?;
        if count == 0 {
            return Ok(Vec::new());
        }
        if count < 0 {
            return Err(Error::Malformed {
                reason: "array block with a negative count (non-canonical)",
                offset: start,
            });
        }
        if count as u64 > self.limits.max_recipients as u64 {
            return Err(Error::TooLarge {
                field: "recipients",
                len: usize::try_from(count).unwrap_or(usize::MAX),
                limit: self.limits.max_recipients,
            });
        }
        let mut out = Vec::with_capacity(count as usize);
        for _ in 0..count {
            out.push(Recipient {
                recipient_type: self.symbol(RecipientType::from_index)?,
                key_id: self.string("recipient.key_id")?,
                key_version: self.int()?,
                params: self
                    .bytes("recipient.params", self.limits.max_params_bytes)?
                    .to_vec(),
                wrapped_key: self
                    .bytes("recipient.wrapped_key", self.limits.max_key_bytes)?
                    .to_vec(),
            });
        }
        let end = self.pos;
        if self.long()? != 0 {
            return Err(Error::Malformed {
                reason: "array in more than one block (non-canonical)",
                offset: end,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            header: Header {
                version: 1,
                message_id: "01937f6e-1a2b-7c3d-8e4f-5a6b7c8d9e0f".parse().expect("id"),
                tenant: "clinic-a".into(),
                subject: "sp1_x".into(),
                kind: Kind::Request,
                purpose: Purpose::Treatment,
                content_type: "text/plain".into(),
                created_at_ms: 1_763_000_000_000,
                correlation_id: None,
                schema_id: 2,
                key_commitment: [9; 32],
            },
            recipients: vec![Recipient {
                recipient_type: RecipientType::RsaOaepSha256,
                key_id: "fleet".into(),
                key_version: 3,
                params: vec![],
                wrapped_key: vec![1; 384],
            }],
            payload: vec![1, 2, 3],
            signature: None,
        }
    }

    #[test]
    fn round_trip() {
        let env = sample();
        let bytes = encode(&env);
        assert_eq!(decode(&bytes, &Limits::default()).expect("decode"), env);
    }

    #[test]
    fn varints_match_the_avro_spec_examples() {
        // Avro spec: 0 -> 00, -1 -> 01, 1 -> 02, -2 -> 03, 2 -> 04, -64 -> 7f, 64 -> 80 01
        for (v, want) in [
            (0i64, &[0x00u8][..]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-2, &[0x03]),
            (2, &[0x04]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
        ] {
            let mut out = vec![];
            put_long(&mut out, v);
            assert_eq!(out, want, "{v}");
            let limits = Limits::default();
            let mut r = Reader {
                buf: &out,
                pos: 0,
                limits: &limits,
            };
            assert_eq!(r.long().expect("long"), v);
        }
        for v in [i64::MIN, i64::MAX] {
            let mut out = vec![];
            put_long(&mut out, v);
            let limits = Limits::default();
            let mut r = Reader {
                buf: &out,
                pos: 0,
                limits: &limits,
            };
            assert_eq!(r.long().expect("long"), v);
        }
    }

    #[test]
    fn non_shortest_varint_is_rejected() {
        let limits = Limits::default();
        let buf = [0x82, 0x00];
        let mut r = Reader {
            buf: &buf,
            pos: 0,
            limits: &limits,
        };
        assert!(matches!(r.long(), Err(Error::Malformed { .. })));
    }

    #[test]
    fn oversized_lengths_are_rejected_before_allocating() {
        let mut env = sample();
        env.payload = vec![0; 100];
        let bytes = encode(&env);
        let tight = Limits {
            max_payload_bytes: 99,
            ..Limits::default()
        };
        assert!(matches!(
            decode(&bytes, &tight),
            Err(Error::TooLarge {
                field: "payload",
                len: 100,
                limit: 99
            })
        ));
        // A length prefix claiming far more than the input holds is malformed, not a 2 GiB Vec.
        let mut evil = encode(&sample());
        let cut = evil.len() - 5;
        evil.truncate(cut);
        assert!(decode(&evil, &Limits::default()).is_err());
    }

    /// Re-encodes the sample's recipients array with `prefix` before the items and
    /// `suffix` after them (instead of `count 1 … 0`).
    fn with_array_layout(prefix: &[i64], suffix: &[i64]) -> Vec<u8> {
        let env = sample();
        let plain = encode(&env);
        let mut rec = vec![];
        let r = &env.recipients[0];
        put_long(&mut rec, r.recipient_type.index() as i64);
        put_bytes(&mut rec, r.key_id.as_bytes());
        put_long(&mut rec, i64::from(r.key_version));
        put_bytes(&mut rec, &r.params);
        put_bytes(&mut rec, &r.wrapped_key);
        let mut canonical = vec![];
        put_long(&mut canonical, 1);
        canonical.extend_from_slice(&rec);
        put_long(&mut canonical, 0);
        let start = plain
            .windows(canonical.len())
            .position(|w| w == canonical.as_slice())
            .expect("array");
        let mut out = plain[..start].to_vec();
        prefix.iter().for_each(|v| put_long(&mut out, *v));
        out.extend_from_slice(&rec);
        suffix.iter().for_each(|v| put_long(&mut out, *v));
        out.extend_from_slice(&plain[start + canonical.len()..]);
        out
    }

    #[test]
    fn only_the_canonical_array_layout_is_accepted() {
        let limits = Limits::default();
        assert_eq!(
            decode(&with_array_layout(&[1], &[0]), &limits).expect("canonical"),
            sample()
        );
        // Valid Avro, but a second encoding of the same envelope: rejected.
        let rec_len = 1 + 1 + 5 + 1 + 1 + 2 + 384;
        let negative = with_array_layout(&[-1, rec_len], &[0]);
        assert!(matches!(
            decode(&negative, &limits),
            Err(Error::Malformed { .. })
        ));
        let two_blocks = with_array_layout(&[1], &[0, 0]);
        assert!(matches!(
            decode(&two_blocks, &limits),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn responses_need_a_correlation_id() {
        let mut env = sample();
        env.header.kind = Kind::Result;
        assert!(matches!(
            decode(&encode(&env), &Limits::default()),
            Err(Error::Malformed { .. })
        ));
    }
}
