//! Metrics and log events of the processors (bounded labels: stage, outcome, reason).

/// `zenvelope_admission_decisions_total{stage, outcome, reason}`.
pub const METRIC_DECISIONS: &str = "zenvelope_admission_decisions_total";
/// `zenvelope_usage_restores_total`: counter state rebuilt from the usage topic.
pub const METRIC_RESTORES: &str = "zenvelope_usage_restores_total";

/// A decision on one record.
pub(crate) struct Decided {
    pub(crate) stage: &'static str,
    pub(crate) outcome: &'static str,
    pub(crate) reason: &'static str,
}

impl Decided {
    pub(crate) fn emit(&self) {
        metrics::counter!(METRIC_DECISIONS, "stage" => self.stage, "outcome" => self.outcome, "reason" => self.reason)
            .increment(1);
        if self.outcome == "refused" {
            tracing::info!(stage = self.stage, reason = self.reason, "Request refused.");
        }
    }
}
