//! Usage metering of answers and model tokens: counts the sealed results and errors on
//! the results topic (public headers and sizes only) and the token counts the enclave
//! reports on its disclosure receipts (audit topic), per tenant and period, into `results`
//! and `tokens` partials on the usage topic.

use std::collections::BTreeMap;
use std::sync::Arc;

use zenvelope_runtime::{Disposition, Handler, Inbound};
use zenvelope_schemas::names::header;
use zenvelope_schemas::{AuditEvent, AuditOperation, SchemaCodec, UsageCounter};

use crate::config::{Tenant, TopicsConfig};
use crate::counters::{Counters, partial};

/// `source` of the results partials.
pub const SOURCE_RESULTS: &str = "results";
/// `source` of the token partials.
pub const SOURCE_TOKENS: &str = "tokens";

/// The metering stage's handler.
pub struct ResultsMetering {
    tenants: Arc<BTreeMap<String, Tenant>>,
    audit_topic: String,
    codec: Arc<SchemaCodec>,
    counters: Counters,
    shutdown: tokio_util::sync::CancellationToken,
}

impl ResultsMetering {
    /// A handler metering answers (on `topics.results`) and tokens (on `topics.audit`)
    /// for `tenants` into `topics.usage`.
    pub fn new(
        kafka: zenvelope_runtime::KafkaConfig,
        tenants: Arc<BTreeMap<String, Tenant>>,
        topics: &TopicsConfig,
        codec: Arc<SchemaCodec>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Self {
        Self {
            tenants,
            audit_topic: topics.audit.clone(),
            counters: Counters::new(kafka, topics.usage.clone(), codec.clone()),
            codec,
            shutdown,
        }
    }

    /// Adds what `apply` counts to the `source` partial of `tenant_id` for `msg`'s period
    /// and partition, once per input offset.
    async fn count(
        &self,
        msg: &Inbound,
        tenant_id: &str,
        source: &str,
        apply: impl FnOnce(&mut UsageCounter),
    ) -> Disposition {
        // Tenants admission does not know are not metered here; not an error of this stage.
        let Some(tenant) = self.tenants.get(tenant_id) else {
            return Disposition::Produce(Vec::new());
        };
        let at_ms = msg.timestamp_ms.unwrap_or_else(crate::now_ms);
        let period = tenant.tier.window().period(at_ms);
        let Some(mut state) = self.counters.lock_or_wait(&self.shutdown).await else {
            return Disposition::Abandon;
        };
        let (key, mut c) = partial(&state, tenant_id, &period.name, source, msg.partition);
        if msg.offset <= c.applied_offset {
            // Counted before a restart; not again.
            return Disposition::Produce(Vec::new());
        }
        c.applied_offset = msg.offset;
        c.updated_at_ms = crate::now_ms();
        apply(&mut c);
        match self.counters.record(&key, &c).await {
            Ok(record) => {
                state.insert(key, c);
                Disposition::Produce(vec![record])
            }
            Err(e) => {
                Disposition::retry("usage_state", format!("Cannot encode the usage state: {e}"))
            }
        }
    }

    async fn answer(&self, msg: &Inbound) -> Disposition {
        let tenant = msg
            .header(header::TENANT)
            .and_then(|v| std::str::from_utf8(v).ok());
        let (Some(tenant), Some(kind)) = (tenant, msg.header(header::KIND)) else {
            return Disposition::Produce(Vec::new());
        };
        let bytes = i64::try_from(msg.payload.len()).unwrap_or(i64::MAX);
        let (results, errors) = match kind {
            b"RESULT" => (1, 0),
            b"ERROR" => (0, 1),
            _ => return Disposition::Produce(Vec::new()),
        };
        self.count(msg, tenant, SOURCE_RESULTS, |c| {
            c.results += results;
            c.errors += errors;
            c.result_bytes += bytes;
        })
        .await
    }

    async fn tokens(&self, msg: &Inbound) -> Disposition {
        // Audit events this stage cannot read are the audit sink's business, not ours.
        let Ok(event) = self.codec.decode::<AuditEvent>(&msg.payload).await else {
            return Disposition::Produce(Vec::new());
        };
        let tokens = match (&event.operation, &event.disclosure) {
            (AuditOperation::Disclosure, Some(d)) => d.tokens.clone(),
            _ => None,
        };
        let Some(t) = tokens else {
            return Disposition::Produce(Vec::new());
        };
        self.count(msg, &event.tenant, SOURCE_TOKENS, |c| {
            c.input_tokens += t.input_tokens;
            c.output_tokens += t.output_tokens;
        })
        .await
    }
}

impl Handler for ResultsMetering {
    async fn handle(&self, msg: Arc<Inbound>) -> Disposition {
        if msg.topic == self.audit_topic {
            self.tokens(&msg).await
        } else {
            self.answer(&msg).await
        }
    }

    fn partitions_changed(&self) {
        self.counters.mark_stale();
    }
}
