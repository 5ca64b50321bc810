//! Usage metering of answers: counts the sealed results and errors on the results topic
//! per tenant and period (public headers and sizes only), into results partials on the
//! usage topic.

use std::collections::BTreeMap;
use std::sync::Arc;

use zenvelope_runtime::{Disposition, Handler, Inbound};
use zenvelope_schemas::names::header;
use zenvelope_schemas::{SchemaCodec, UsageCounter};

use crate::config::{Tenant, TopicsConfig};
use crate::counters::Counters;

/// `source` of the results partials.
pub const SOURCE_RESULTS: &str = "results";

/// The metering stage's handler.
pub struct ResultsMetering {
    tenants: Arc<BTreeMap<String, Tenant>>,
    counters: Counters,
}

impl ResultsMetering {
    /// A handler metering answers for `tenants` into `topics.usage`.
    pub fn new(
        kafka: zenvelope_runtime::KafkaConfig,
        tenants: Arc<BTreeMap<String, Tenant>>,
        topics: &TopicsConfig,
        codec: Arc<SchemaCodec>,
    ) -> Self {
        Self {
            tenants,
            counters: Counters::new(kafka, topics.usage.clone(), codec),
        }
    }
}

impl Handler for ResultsMetering {
    async fn handle(&self, msg: Arc<Inbound>) -> Disposition {
        let tenant_id = msg
            .header(header::TENANT)
            .and_then(|v| std::str::from_utf8(v).ok());
        let kind = msg.header(header::KIND);
        // Answers of tenants admission does not know (or records without the host's
        // headers) are not metered here; they are not errors of this stage.
        let (Some(tenant_id), Some(kind)) = (tenant_id, kind) else {
            return Disposition::Produce(Vec::new());
        };
        let Some(tenant) = self.tenants.get(tenant_id) else {
            return Disposition::Produce(Vec::new());
        };
        let at_ms = msg.timestamp_ms.unwrap_or_else(crate::now_ms);
        let period = tenant.tier.window().period(at_ms);
        let key = UsageCounter::key(tenant_id, &period.name, SOURCE_RESULTS, msg.partition);
        let mut state = match self.counters.lock().await {
            Ok(s) => s,
            Err(e) => {
                return Disposition::retry(
                    "usage_state",
                    format!("Cannot read the usage state: {e}"),
                );
            }
        };
        let mut c = state.get(&key).cloned().unwrap_or_else(|| UsageCounter {
            tenant: tenant_id.to_owned(),
            period: period.name.clone(),
            source: SOURCE_RESULTS.to_owned(),
            input_partition: msg.partition,
            applied_offset: -1,
            last_admitted_offset: -1,
            ..UsageCounter::default()
        });
        if msg.offset <= c.applied_offset {
            return Disposition::Produce(Vec::new());
        }
        c.applied_offset = msg.offset;
        c.updated_at_ms = crate::now_ms();
        match kind {
            b"RESULT" => c.results += 1,
            b"ERROR" => c.errors += 1,
            _ => return Disposition::Produce(Vec::new()),
        }
        c.result_bytes += i64::try_from(msg.payload.len()).unwrap_or(i64::MAX);
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

    fn partitions_changed(&self) {
        self.counters.mark_stale();
    }
}
