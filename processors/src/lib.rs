//! Stream processors between producers and the enclave fleet. None of them holds a key
//! or opens an envelope.
//!
//! **Admission** (`zenvelope-admission`) runs three at-least-once loops of
//! `zenvelope-runtime`:
//!
//! 1. [`check::AdmissionCheck`] on `zenvelope.requests`: Confluent framing, strict
//!    envelope decoding within the limits, kind `REQUEST`, a registered tenant, the Kafka
//!    key equal to the subject pseudonym, a signature by one of the tenant's producer keys,
//!    an allowed purpose of use. Passing records go on unchanged to
//!    `zenvelope.admission-by-tenant`, keyed by tenant; refused ones go to the DLQ with
//!    their reason code, and a [`zenvelope_schemas::Rejection`] notice (no PHI) goes to
//!    `zenvelope.rejections` for the client.
//! 2. [`quota::QuotaStage`] on `zenvelope.admission-by-tenant`: one instance owns each
//!    tenant's partition, so it alone counts that tenant's requests against its tier
//!    (Free 100 a day, Starter 10,000 a month, Pro 100,000 a month, Enterprise
//!    unlimited). Admitted records go to `zenvelope.admitted` (the enclave host's input),
//!    keyed by subject again. The counts are [`zenvelope_schemas::UsageCounter`] partials
//!    on the compacted `zenvelope.usage` topic, the changelog the state is rebuilt from at
//!    start and after every rebalance.
//! 3. [`metering::ResultsMetering`] on `zenvelope.results`: answers and their sizes per
//!    tenant and period, into the same topic.
//!
//! [`usage`] sums the partials (for `zenvelope usage` and `GET /v1/usage`); [`dlq`]
//! lists, shows and redrives dead letters.

pub mod check;
pub mod config;
mod counters;
pub mod dlq;
pub mod error;
pub mod http;
pub mod metering;
pub mod quota;
pub mod service;
pub mod telemetry;
pub mod tier;
pub mod usage;

pub use config::{AdmissionConfig, ENV_PREFIX};
pub use error::Error;
pub use tier::{Period, Tier, Window};

pub(crate) use zenvelope_runtime::now_ms;
