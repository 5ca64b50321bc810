//! The admission processor's second stage: tier quotas, per tenant and period, on the
//! repartition topic keyed by tenant (so each tenant's requests reach one instance, in
//! order). Its admission partials on the usage topic are the quota state.

use std::collections::BTreeMap;
use std::sync::Arc;

use zenvelope_runtime::{Disposition, Handler, Inbound, Outbound};
use zenvelope_schemas::SchemaCodec;
use zenvelope_schemas::names::header;

use crate::check::{Named, Refusal, reason, refuse};
use crate::config::{Tenant, TopicsConfig};
use crate::counters::{Counters, partial};
use crate::telemetry::Decided;

/// `source` of the admission partials.
pub const SOURCE_ADMISSION: &str = "admission";

/// The quota stage's handler.
pub struct QuotaStage {
    tenants: Arc<BTreeMap<String, Tenant>>,
    topics: TopicsConfig,
    codec: Arc<SchemaCodec>,
    counters: Counters,
    shutdown: tokio_util::sync::CancellationToken,
}

impl QuotaStage {
    /// A handler for `tenants`, its state on `topics.usage`.
    pub fn new(
        kafka: zenvelope_runtime::KafkaConfig,
        tenants: Arc<BTreeMap<String, Tenant>>,
        topics: TopicsConfig,
        codec: Arc<SchemaCodec>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Self {
        let counters = Counters::new(kafka, topics.usage.clone(), codec.clone());
        Self {
            tenants,
            topics,
            codec,
            counters,
            shutdown,
        }
    }

    /// Refuses `msg` for quota: dead letter, rejection notice (with the time until the
    /// period ends), and `state` (the updated counter) produced with them.
    #[allow(clippy::too_many_arguments)]
    async fn refuse_quota(
        &self,
        msg: &Inbound,
        tenant: &Tenant,
        tenant_id: &str,
        subject: &str,
        period: &crate::Period,
        state: Option<Outbound>,
    ) -> Disposition {
        let refusal = Refusal {
            code: reason::QUOTA_EXCEEDED,
            detail: format!(
                "Tenant {tenant_id:?} has used its {} quota of {} requests for {}.",
                tenant.tier.name(),
                tenant.tier.quota().unwrap_or(0),
                period.name
            ),
        };
        let named = Named {
            message_id: text(msg, header::MESSAGE_ID).map(str::to_owned),
            tenant: Some(tenant_id.to_owned()),
            subject: Some(subject.to_owned()),
        };
        let retry_after = Some((period.ends_at_ms - crate::now_ms()).max(0));
        match refuse(&self.codec, &self.topics, msg, named, refusal, retry_after).await {
            Disposition::DeadLetter {
                reason_code,
                detail,
                mut also,
            } => {
                also.extend(state);
                Disposition::DeadLetter {
                    reason_code,
                    detail,
                    also,
                }
            }
            other => other,
        }
    }

    fn admitted(&self, msg: &Inbound, subject: &str) -> Outbound {
        Outbound {
            topic: self.topics.admitted.clone(),
            key: Some(subject.as_bytes().to_vec()),
            payload: msg.payload.clone(),
            headers: msg.headers.clone(),
        }
    }
}

/// The message id stage 1 put in the headers (from the verified envelope).
fn message_id(msg: &Inbound) -> Option<[u8; 16]> {
    text(msg, header::MESSAGE_ID)
        .and_then(|t| uuid::Uuid::parse_str(t).ok())
        .map(|u| *u.as_bytes())
}

fn text<'a>(msg: &'a Inbound, name: &str) -> Option<&'a str> {
    msg.header(name).and_then(|v| std::str::from_utf8(v).ok())
}

impl Handler for QuotaStage {
    async fn handle(&self, msg: Arc<Inbound>) -> Disposition {
        let (Some(tenant_id), Some(subject)) =
            (text(&msg, header::TENANT), text(&msg, header::SUBJECT))
        else {
            return Disposition::dead_letter(
                "missing_headers",
                "A record on the admission topic lacks its tenant or subject header.",
            );
        };
        let Some(tenant) = self.tenants.get(tenant_id) else {
            return Disposition::dead_letter(
                reason::UNKNOWN_TENANT,
                format!("Tenant {tenant_id:?} is not registered with admission."),
            );
        };
        // The record's own time (written by the first stage) decides the period, so a
        // redelivery counts in the same period as the first delivery.
        let at_ms = msg.timestamp_ms.unwrap_or_else(crate::now_ms);
        let period = tenant.tier.window().period(at_ms);
        let Some(mut state) = self.counters.lock_or_wait(&self.shutdown).await else {
            return Disposition::Abandon;
        };
        let (key, mut c) = partial(
            &state,
            tenant_id,
            &period.name,
            SOURCE_ADMISSION,
            msg.partition,
        );
        if msg.offset <= c.applied_offset {
            // Redelivered (a restart before its offset was committed): decided already.
            // Admissions come before refusals within a period, so it was admitted exactly
            // when it is at or below the last admitted offset. Nothing is counted again.
            drop(state);
            if msg.offset <= c.last_admitted_offset {
                return Disposition::Produce(vec![self.admitted(&msg, subject)]);
            }
            return self
                .refuse_quota(&msg, tenant, tenant_id, subject, &period, None)
                .await;
        }
        // Every admission partial of this tenant and period (other partitions too: the
        // partition count may have changed, or another owner counted before a rebalance).
        let partials = || {
            state.values().filter(|p| {
                p.tenant == tenant_id && p.period == period.name && p.source == SOURCE_ADMISSION
            })
        };
        let id = message_id(&msg);
        if id.is_some_and(|id| partials().any(|p| p.admitted_recently(&id))) {
            // The same request forwarded twice by the first stage (its offsets were not
            // committed before a rebalance) or sent again by the client: admitted once,
            // counted once. The enclave drops the duplicate.
            drop(state);
            Decided {
                stage: "quota",
                outcome: "duplicate",
                reason: "",
            }
            .emit();
            return Disposition::Produce(vec![self.admitted(&msg, subject)]);
        }
        let used: i64 = partials().map(|p| p.requests).sum();
        c.applied_offset = msg.offset;
        c.updated_at_ms = crate::now_ms();
        let admit = tenant.tier.quota().is_none_or(|q| used < q);
        if admit {
            c.requests += 1;
            c.request_bytes += i64::try_from(msg.payload.len()).unwrap_or(i64::MAX);
            c.last_admitted_offset = msg.offset;
            if let Some(id) = id {
                c.remember(&id);
            }
        } else {
            c.quota_rejected += 1;
        }
        let record = match self.counters.record(&key, &c).await {
            Ok(r) => r,
            Err(e) => {
                return Disposition::retry(
                    "usage_state",
                    format!("Cannot encode the quota state: {e}"),
                );
            }
        };
        state.insert(key, c);
        drop(state);
        if admit {
            Decided {
                stage: "quota",
                outcome: "admitted",
                reason: "",
            }
            .emit();
            Disposition::Produce(vec![self.admitted(&msg, subject), record])
        } else {
            self.refuse_quota(&msg, tenant, tenant_id, subject, &period, Some(record))
                .await
        }
    }

    fn partitions_changed(&self) {
        self.counters.mark_stale();
    }
}
