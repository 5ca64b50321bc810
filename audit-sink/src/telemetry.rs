//! The sink's telemetry events: each `emit()` logs and counts. Labels are bounded; no
//! tenant, subject or event id ever becomes a label.

/// Metric names, defined once.
pub mod metric {
    /// Counter: events appended to the audit log.
    pub const EVENTS_APPENDED_TOTAL: &str = "zenvelope_audit_events_appended_total";
    /// Counter: events skipped because the log already held their id (redeliveries).
    pub const EVENTS_DUPLICATE_TOTAL: &str = "zenvelope_audit_events_duplicate_total";
    /// Histogram: events per store transaction.
    pub const BATCH_EVENTS: &str = "zenvelope_audit_batch_events";
    /// Gauge: the size of the log at the last signed checkpoint.
    pub const CHECKPOINT_SIZE: &str = "zenvelope_audit_checkpoint_size";
}

/// One store transaction committed.
pub(crate) struct Appended {
    pub(crate) appended: usize,
    pub(crate) duplicates: usize,
}

impl Appended {
    pub(crate) fn emit(&self) {
        tracing::debug!(
            appended = self.appended,
            duplicates = self.duplicates,
            "Audit events appended."
        );
        metrics::counter!(metric::EVENTS_APPENDED_TOTAL).increment(self.appended as u64);
        if self.duplicates > 0 {
            metrics::counter!(metric::EVENTS_DUPLICATE_TOTAL).increment(self.duplicates as u64);
        }
        metrics::histogram!(metric::BATCH_EVENTS).record(self.appended as f64);
    }
}

/// A checkpoint signed and stored.
pub(crate) struct CheckpointSigned {
    pub(crate) size: u64,
}

impl CheckpointSigned {
    pub(crate) fn emit(&self) {
        tracing::info!(size = self.size, "Audit checkpoint signed.");
        metrics::gauge!(metric::CHECKPOINT_SIZE).set(self.size as f64);
    }
}
