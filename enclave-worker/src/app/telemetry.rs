//! Telemetry of the enclave application: one small event type per thing that happens,
//! whose `emit()` logs and counts. Labels are bounded: reason codes, outcomes and
//! provider names; never tenants, subjects, ids or keys.

use std::time::Duration;

/// Every metric name of the enclave application, defined once.
pub mod metric {
    /// Requests handled, by `outcome` (`result`, `error_result`, `dead_letter`, `duplicate`).
    pub const REQUESTS_TOTAL: &str = "zenvelope_enclave_requests_total";
    /// Time to handle one request, by `outcome`.
    pub const REQUEST_DURATION_SECONDS: &str = "zenvelope_enclave_request_duration_seconds";
    /// Requests refused, by `reason` (a reason code).
    pub const REJECTIONS_TOTAL: &str = "zenvelope_enclave_rejections_total";
    /// Model calls, by `provider` and `outcome` (`success`, `failure`).
    pub const MODEL_CALLS_TOTAL: &str = "zenvelope_enclave_model_calls_total";
    /// Duration of model calls, by `provider`.
    pub const MODEL_CALL_DURATION_SECONDS: &str = "zenvelope_enclave_model_call_duration_seconds";
    /// DEK cache lookups, by `outcome` (`hit`, `miss`).
    pub const DEK_CACHE_LOOKUPS_TOTAL: &str = "zenvelope_enclave_dek_cache_lookups_total";
    /// `Process` frames refused with `BUSY` because the in-flight bound was reached.
    pub const BUSY_TOTAL: &str = "zenvelope_enclave_busy_total";
    /// Host connections, by `outcome` (`accepted`, `handshake_failed`, `closed`, `lost`).
    pub const HOST_CONNECTIONS_TOTAL: &str = "zenvelope_enclave_host_connections_total";
}

/// Label names.
mod label {
    pub(super) const OUTCOME: &str = "outcome";
    pub(super) const REASON: &str = "reason";
    pub(super) const PROVIDER: &str = "provider";
}

/// One request finished.
pub(crate) struct RequestHandled {
    pub(crate) outcome: &'static str,
    pub(crate) elapsed: Duration,
}

impl RequestHandled {
    pub(crate) fn emit(self) {
        tracing::debug!(
            outcome = self.outcome,
            elapsed_ms = self.elapsed.as_millis() as u64,
            "Request handled."
        );
        metrics::counter!(metric::REQUESTS_TOTAL, label::OUTCOME => self.outcome).increment(1);
        metrics::histogram!(metric::REQUEST_DURATION_SECONDS, label::OUTCOME => self.outcome)
            .record(self.elapsed.as_secs_f64());
    }
}

/// A request was refused (it goes to the DLQ).
pub(crate) struct RequestRejected {
    pub(crate) reason: &'static str,
}

impl RequestRejected {
    pub(crate) fn emit(self) {
        tracing::warn!(reason = self.reason, "Request refused.");
        metrics::counter!(metric::REJECTIONS_TOTAL, label::REASON => self.reason).increment(1);
    }
}

/// A model call finished.
pub(crate) struct ModelCalled {
    pub(crate) provider: &'static str,
    pub(crate) success: bool,
    pub(crate) elapsed: Duration,
}

impl ModelCalled {
    pub(crate) fn emit(self) {
        let outcome = if self.success { "success" } else { "failure" };
        tracing::info!(
            provider = self.provider,
            outcome,
            elapsed_ms = self.elapsed.as_millis() as u64,
            "Model call finished."
        );
        metrics::counter!(
            metric::MODEL_CALLS_TOTAL,
            label::PROVIDER => self.provider,
            label::OUTCOME => outcome
        )
        .increment(1);
        metrics::histogram!(metric::MODEL_CALL_DURATION_SECONDS, label::PROVIDER => self.provider)
            .record(self.elapsed.as_secs_f64());
    }
}

/// A DEK cache lookup.
pub(crate) struct DekCacheLookup {
    pub(crate) hit: bool,
}

impl DekCacheLookup {
    pub(crate) fn emit(self) {
        let outcome = if self.hit { "hit" } else { "miss" };
        tracing::trace!(outcome, "DEK cache lookup.");
        metrics::counter!(metric::DEK_CACHE_LOOKUPS_TOTAL, label::OUTCOME => outcome).increment(1);
    }
}

/// A `Process` frame was refused because too many requests are in flight.
pub(crate) struct Busy {
    pub(crate) max_in_flight: usize,
}

impl Busy {
    pub(crate) fn emit(self) {
        tracing::warn!(
            max_in_flight = self.max_in_flight,
            "Request refused: too many requests in flight."
        );
        metrics::counter!(metric::BUSY_TOTAL).increment(1);
    }
}

/// Something happened to the host connection.
pub(crate) struct HostConnection<'a> {
    pub(crate) outcome: &'static str,
    pub(crate) error: Option<&'a dyn std::error::Error>,
}

impl HostConnection<'_> {
    pub(crate) fn emit(self) {
        match self.error {
            Some(error) => tracing::warn!(outcome = self.outcome, %error, "Host connection event."),
            None => tracing::info!(outcome = self.outcome, "Host connection event."),
        }
        metrics::counter!(metric::HOST_CONNECTIONS_TOTAL, label::OUTCOME => self.outcome)
            .increment(1);
    }
}
