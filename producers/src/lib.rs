//! The zenvelope producer SDK: what a backend (a therapy-journal app, a clinic's note
//! system) uses to send sensitive text for AI analysis without its servers, the Kafka
//! cluster or its operators ever seeing plaintext, and to read the answers.
//!
//! - [`Client`] holds the backend's producer signing key and follows the attested key
//!   directory for the enclave fleet's public keys (to wrap DEKs to) and result-signing
//!   keys (to verify answers): [`directory`], `docs/key-directory.md`.
//!   [`Client::from_config`] reads it all from a TOML file ([`ClientConfig`]).
//! - [`Client::login`] derives a [`User`]'s key from their credentials (PBKDF2, off the
//!   async reactor) and pseudonymises their identity for Kafka keys.
//! - [`Client::analyze`] seals an `AnalysisRequest` ([`Request`]) for the user and the fleet, signs it
//!   and produces it to `zenvelope.requests`.
//! - [`Client::store`] seals a record for the user alone onto the compacted
//!   `zenvelope.vault` topic.
//! - [`Client::results`] follows `zenvelope.results`, verifies and opens the answers
//!   addressed to a user, and drops duplicates by correlation id.
//!
//! Requests are sealed in bounded DEK sessions by default ([`DEFAULT_DEK_SESSION`]): one
//! fresh DEK per user for at most 1,000 messages or 5 minutes. That saves the enclave an
//! RSA private-key operation per message, which is what lets the pipeline keep up with a
//! plaintext one (docs/benchmarks.md, "Pipeline"); [`ClientBuilder::dek_session`] with
//! [`DekSessionPolicy::PER_MESSAGE`] turns it off.
//!
//! ```no_run
//! use zenvelope_producer::{Client, KeyDirectoryPolicy, Passphrase, PinnedMeasurements, Request};
//! # async fn demo(signer: zenvelope_envelope::SigningKey, pcr0: Vec<u8>) -> Result<(), zenvelope_producer::Error> {
//! let client = Client::builder(zenvelope_runtime::KafkaConfig::new("localhost:9092"), "therapy-journal")
//!     .signer(signer)
//!     // Wrap only to fleet keys attested by a Nitro Enclave running the pinned image.
//!     .key_directory(KeyDirectoryPolicy::aws_nitro(PinnedMeasurements::new().with_pcr(0, pcr0)))
//!     .metadata_key(zenvelope_envelope::MetadataKey::from_bytes([7; 32]))
//!     .build()?;
//! let ada = client
//!     .login("ada@example.org", Passphrase::new("correct horse battery staple"))
//!     .await?;
//! let sent = client
//!     .analyze(&ada, Request::text("Summarise the entry.", "Slept badly again."))
//!     .await?;
//! let mut answers = client.results(&ada, false)?;
//! match answers.next().await {
//!     Ok(answer) => {
//!         assert_eq!(answer.correlation_id, sent.message_id);
//!         println!("{}", answer.text);
//!     }
//!     // Admission refused it (quota, signature, purpose): say why, and when to retry.
//!     Err(zenvelope_producer::Error::Refused(refusal)) => eprintln!("{refusal}"),
//!     Err(other) => return Err(other),
//! }
//! # Ok(()) }
//! ```
//!
//! `examples/journal_entry.rs` does the same from a configuration file, against the local
//! stack `zenvelope up` starts.
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]

mod client;
mod config;
pub mod directory;
mod error;
pub mod replay;
mod results;

pub use client::{
    Client, ClientBuilder, DEFAULT_DEK_SESSION, DEFAULT_KEY_WAIT, FleetKeyInfo, Input, Request,
    Sent, User,
};
pub use config::{ClientConfig, KeyDirectorySection, KeysSection, RootName};
pub use directory::{KeyDirectory, KeyDirectoryPolicy};
pub use error::Error;
pub use replay::{
    ReplayAudit, ReplayFilter, ReplayOptions, ReplayProgress, ReplayReport, TrustedKeys, replay,
};
pub use results::{Answer, Refusal, Results};
pub use zenvelope_attestation::{PinnedMeasurements, TrustAnchor};
pub use zenvelope_envelope::{DekSessionPolicy, Passphrase, Purpose};
