//! The envelope data model: what travels on Kafka, independent of how it is encoded.
//!
//! Field order and types mirror `schemas/avro/envelope.avsc`; see `docs/envelope-spec.md`.

use core::fmt;
use core::str::FromStr;

use crate::error::Error;

/// The envelope format version this crate writes and reads.
pub const FORMAT_VERSION: i32 = 1;

/// A message id: a UUIDv7 (RFC 9562), 16 bytes on the wire, time-ordered.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId([u8; 16]);

impl MessageId {
    /// A fresh UUIDv7 from the system clock and the OS random generator.
    pub fn new_v7() -> Self {
        Self(*uuid::Uuid::now_v7().as_bytes())
    }

    /// Wraps 16 bytes, checking they are a UUIDv7 (version 7, RFC 4122 variant).
    pub fn from_bytes(bytes: [u8; 16]) -> Result<Self, Error> {
        if bytes[6] >> 4 != 7 || bytes[8] >> 6 != 0b10 {
            return Err(Error::InvalidInput("message id is not a UUIDv7"));
        }
        Ok(Self(bytes))
    }

    /// The 16 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Milliseconds since the Unix epoch that the UUIDv7 carries in its first 48 bits.
    pub fn timestamp_ms(&self) -> i64 {
        let mut ms = [0u8; 8];
        ms[2..].copy_from_slice(&self.0[..6]);
        i64::from_be_bytes(ms)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_bytes(self.0).hyphenated().fmt(f)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

impl FromStr for MessageId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let uuid = uuid::Uuid::parse_str(s)
            .map_err(|_| Error::InvalidInput("message id is not a UUID"))?;
        Self::from_bytes(*uuid.as_bytes())
    }
}

/// Declares a closed enum that is encoded on the wire by its Avro symbol (and index).
macro_rules! symbol_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $symbol:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in Avro symbol order (the order defines the wire index).
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The Avro enum symbol, also used in the canonical AAD.
            pub fn symbol(self) -> &'static str {
                match self { $($name::$variant => $symbol,)+ }
            }

            /// The Avro enum index.
            pub fn index(self) -> usize {
                Self::ALL.iter().position(|v| *v == self).unwrap_or(usize::MAX)
            }

            /// Looks a value up by its Avro index.
            pub fn from_index(index: usize) -> Option<Self> {
                Self::ALL.get(index).copied()
            }

            /// Looks a value up by its Avro symbol.
            pub fn from_symbol(symbol: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.symbol() == symbol)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.symbol())
            }
        }
    };
}

symbol_enum! {
    /// What an envelope carries.
    Kind {
        /// An analysis request from a producer to the enclave fleet.
        Request = "REQUEST",
        /// A successful answer to a request; its key derives from the request's DEK.
        Result = "RESULT",
        /// A failure answer to a request (sealed like a result).
        Error = "ERROR",
        /// A stored record (vault), not addressed to the enclave.
        Record = "RECORD",
    }
}

impl Kind {
    /// Whether envelopes of this kind answer a request: their recipients wrap the
    /// *request's* DEK and their own DEK is the response key derived from it.
    pub fn is_response(self) -> bool {
        matches!(self, Kind::Result | Kind::Error)
    }
}

symbol_enum! {
    /// Purpose of use (HIPAA): why the data is being processed. Authenticated with the
    /// payload and enforced by the enclave against the tenant's policy.
    Purpose {
        /// Treatment of the patient.
        Treatment = "TREATMENT",
        /// Payment for care.
        Payment = "PAYMENT",
        /// Health-care operations.
        Operations = "OPERATIONS",
        /// Research under an authorisation or waiver.
        Research = "RESEARCH",
        /// Public-health activities.
        PublicHealth = "PUBLIC_HEALTH",
        /// At the request of the individual (for example a journaling app's user).
        IndividualRequest = "INDIVIDUAL_REQUEST",
    }
}

symbol_enum! {
    /// How a recipient's copy of the DEK is wrapped.
    RecipientType {
        /// AES-256-GCM under a user KEK derived with PBKDF2-HMAC-SHA256 from credentials.
        Passphrase = "PASSPHRASE",
        /// RSA-OAEP-SHA256 to an enclave fleet key.
        RsaOaepSha256 = "RSA_OAEP_SHA256",
        /// Reserved: an AWS KMS ciphertext blob; unwrapped through a `DekUnwrapper` that
        /// calls KMS (enclave worker), never by this crate itself.
        AwsKms = "AWS_KMS",
    }
}

symbol_enum! {
    /// Signature algorithms.
    SignatureAlgorithm {
        /// RSASSA-PSS, SHA-256, MGF1-SHA-256, 32-byte salt.
        RsaPssSha256 = "RSA_PSS_SHA256",
        /// ECDSA on P-256 with SHA-256; the value is `r || s`, 32 bytes each (IEEE P1363).
        EcdsaP256Sha256 = "ECDSA_P256_SHA256",
    }
}

/// The authenticated header: every field here is bound to the payload through the AAD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Format version, [`FORMAT_VERSION`].
    pub version: i32,
    /// Unique id of this message (UUIDv7).
    pub message_id: MessageId,
    /// Tenant (customer) id.
    pub tenant: String,
    /// Subject pseudonym (never an email or a name), see [`crate::MetadataKey::pseudonym`].
    pub subject: String,
    /// What the envelope carries.
    pub kind: Kind,
    /// Purpose of use.
    pub purpose: Purpose,
    /// Media type of the plaintext, e.g. `application/vnd.zenvelope.analysis-request+avro`.
    pub content_type: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// For results and errors: the request's message id.
    pub correlation_id: Option<MessageId>,
    /// Schema id of the plaintext's schema (Confluent registry id or offline catalog id).
    pub schema_id: i32,
    /// Commitment to the DEK, checked before decryption.
    pub key_commitment: [u8; 32],
}

/// One recipient's wrapped copy of the DEK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// Wrapping mechanism.
    pub recipient_type: RecipientType,
    /// Key id of the wrapping key (public information).
    pub key_id: String,
    /// Version of that key.
    pub key_version: i32,
    /// Mechanism parameters (for passphrase recipients: iterations and salt).
    pub params: Vec<u8>,
    /// The wrapped DEK.
    pub wrapped_key: Vec<u8>,
}

/// A signature over header, recipients and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// Id of the signing key.
    pub key_id: String,
    /// Version of the signing key.
    pub key_version: i32,
    /// Algorithm.
    pub algorithm: SignatureAlgorithm,
    /// Signature bytes.
    pub value: Vec<u8>,
}

/// A sealed envelope. Holds no secret: everything here may be logged except that
/// logging the payload or wrapped keys is pointless noise, so `Debug` elides them.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The authenticated header.
    pub header: Header,
    /// Recipients, in order (the order is authenticated).
    pub recipients: Vec<Recipient>,
    /// The payload blob: `0x01 | IV (12) | tag (16) | ciphertext`.
    pub payload: Vec<u8>,
    /// Signature, if the producer signed.
    pub signature: Option<Signature>,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("header", &self.header)
            .field(
                "recipients",
                &self
                    .recipients
                    .iter()
                    .map(|r| (r.recipient_type, r.key_id.as_str(), r.key_version))
                    .collect::<Vec<_>>(),
            )
            .field("payload_len", &self.payload.len())
            .field(
                "signature",
                &self
                    .signature
                    .as_ref()
                    .map(|s| (s.key_id.as_str(), s.key_version)),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_is_v7_and_round_trips_as_text() {
        let id = MessageId::new_v7();
        let parsed: MessageId = id.to_string().parse().expect("parse");
        assert_eq!(id, parsed);
        assert!(id.timestamp_ms() > 1_700_000_000_000);
    }

    #[test]
    fn message_id_rejects_other_versions() {
        // A UUIDv4.
        assert!(
            "0b6f0d4e-5f0a-4c1e-9b7d-2f1e4b5c6d7e"
                .parse::<MessageId>()
                .is_err()
        );
    }

    #[test]
    fn symbols_and_indexes_are_consistent() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_index(k.index()), Some(*k));
            assert_eq!(Kind::from_symbol(k.symbol()), Some(*k));
        }
        assert_eq!(Purpose::from_symbol("NOPE"), None);
        assert_eq!(RecipientType::from_index(3), None);
    }
}
