//! Reading usage: the partials on the usage topic summed per tenant and period, for
//! `zenvelope usage` and `GET /v1/usage`.

use std::collections::BTreeMap;

use serde::Serialize;
use zenvelope_runtime::KafkaConfig;
use zenvelope_schemas::{SchemaCodec, UsageCounter};

use crate::counters::read_all;
use crate::error::Error;

/// One tenant's usage in one period.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Usage {
    /// Tenant id.
    pub tenant: String,
    /// Period (`YYYY-MM-DD` or `YYYY-MM`, UTC).
    pub period: String,
    /// Requests admitted.
    pub requests: i64,
    /// Sealed bytes of the requests admitted.
    pub request_bytes: i64,
    /// Requests refused for quota.
    pub quota_rejected: i64,
    /// RESULT answers.
    pub results: i64,
    /// ERROR answers.
    pub errors: i64,
    /// Sealed bytes of the answers.
    pub result_bytes: i64,
    /// Model input tokens.
    pub input_tokens: i64,
    /// Model output tokens.
    pub output_tokens: i64,
    /// Last update of any partial, milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
}

/// Sums the partials on `topic`, keeping tenants and periods that match the filters;
/// sorted by tenant, then period.
pub async fn read(
    kafka: &KafkaConfig,
    codec: &SchemaCodec,
    topic: &str,
    tenant: Option<&str>,
    period: Option<&str>,
) -> Result<Vec<Usage>, Error> {
    let partials = read_all(kafka, topic, codec, false).await?;
    Ok(sum(partials.values(), tenant, period))
}

/// Sums partials per tenant and period.
pub fn sum<'a>(
    partials: impl IntoIterator<Item = &'a UsageCounter>,
    tenant: Option<&str>,
    period: Option<&str>,
) -> Vec<Usage> {
    let mut by: BTreeMap<(String, String), UsageCounter> = BTreeMap::new();
    for p in partials {
        if tenant.is_some_and(|t| t != p.tenant) || period.is_some_and(|x| x != p.period) {
            continue;
        }
        by.entry((p.tenant.clone(), p.period.clone()))
            .or_default()
            .add(p);
    }
    by.into_iter()
        .map(|((tenant, period), c)| Usage {
            tenant,
            period,
            requests: c.requests,
            request_bytes: c.request_bytes,
            quota_rejected: c.quota_rejected,
            results: c.results,
            errors: c.errors,
            result_bytes: c.result_bytes,
            input_tokens: c.input_tokens,
            output_tokens: c.output_tokens,
            updated_at_ms: c.updated_at_ms,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial(
        tenant: &str,
        period: &str,
        source: &str,
        p: i32,
        requests: i64,
        results: i64,
    ) -> UsageCounter {
        UsageCounter {
            tenant: tenant.into(),
            period: period.into(),
            source: source.into(),
            input_partition: p,
            requests,
            results,
            updated_at_ms: i64::from(p),
            ..UsageCounter::default()
        }
    }

    #[test]
    fn partials_sum_per_tenant_and_period() {
        let parts = [
            partial("a", "2026-11", "admission", 0, 5, 0),
            partial("a", "2026-11", "results", 0, 0, 2),
            partial("a", "2026-11", "results", 3, 0, 3),
            partial("a", "2026-10", "admission", 1, 7, 0),
            partial("b", "2026-11-23", "admission", 2, 1, 0),
        ];
        let all = sum(&parts, None, None);
        assert_eq!(all.len(), 3);
        assert_eq!(
            (all[1].tenant.as_str(), all[1].period.as_str()),
            ("a", "2026-11")
        );
        assert_eq!(
            (all[1].requests, all[1].results, all[1].updated_at_ms),
            (5, 5, 3)
        );
        assert_eq!(sum(&parts, Some("b"), None)[0].requests, 1);
        assert_eq!(sum(&parts, Some("a"), Some("2026-10"))[0].requests, 7);
        assert!(sum(&parts, Some("c"), None).is_empty());
    }
}
