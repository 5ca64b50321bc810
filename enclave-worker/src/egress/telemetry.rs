//! Egress telemetry: metric names, label values and the one event per stream.
//!
//! Labels are bounded: the outcome and the direction. Destinations go into the log event
//! (an audit record of where the enclave talked to), never into metric labels.

use std::time::Duration;

/// Counter of egress streams by outcome (label [`OUTCOME_LABEL`]).
pub const EGRESS_STREAMS_TOTAL: &str = "zenvelope_egress_streams_total";
/// Counter of relayed bytes by direction (label [`DIRECTION_LABEL`]).
pub const EGRESS_BYTES_TOTAL: &str = "zenvelope_egress_bytes_total";
/// Label naming how a stream ended, one of [`StreamOutcome::as_str`].
pub const OUTCOME_LABEL: &str = "outcome";
/// Label naming the direction of relayed bytes: [`DIRECTION_OUTBOUND`] or [`DIRECTION_INBOUND`].
pub const DIRECTION_LABEL: &str = "direction";
/// Bytes from the enclave to the remote destination.
pub const DIRECTION_OUTBOUND: &str = "outbound";
/// Bytes from the remote destination to the enclave.
pub const DIRECTION_INBOUND: &str = "inbound";

/// How an egress stream ended, as seen by the host proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamOutcome {
    /// Both sides closed in order.
    Normal,
    /// The destination is not allowed.
    Denied,
    /// The connection to the destination failed.
    ConnectFailed,
    /// A connect or idle timeout elapsed.
    TimedOut,
    /// One side reset or vanished mid-stream.
    Reset,
    /// The enclave broke the egress sub-protocol.
    ProtocolError,
    /// The proxy was at its stream limit.
    Busy,
    /// The proxy is shutting down.
    Shutdown,
}

impl StreamOutcome {
    /// The metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            StreamOutcome::Normal => "normal",
            StreamOutcome::Denied => "denied",
            StreamOutcome::ConnectFailed => "connect_failed",
            StreamOutcome::TimedOut => "timed_out",
            StreamOutcome::Reset => "reset",
            StreamOutcome::ProtocolError => "protocol_error",
            StreamOutcome::Busy => "busy",
            StreamOutcome::Shutdown => "shutdown",
        }
    }
}

/// One egress stream ended: logged once (with its destination) and counted.
#[derive(Debug)]
pub(crate) struct EgressStreamClosed<'a> {
    /// The enclave's connection id.
    pub(crate) conn_id: u32,
    /// `host:port` as requested (normalised when it parsed), or empty if none was read.
    pub(crate) destination: &'a str,
    pub(crate) outcome: StreamOutcome,
    /// Bytes relayed enclave → destination.
    pub(crate) bytes_outbound: u64,
    /// Bytes relayed destination → enclave.
    pub(crate) bytes_inbound: u64,
    pub(crate) duration: Duration,
}

impl EgressStreamClosed<'_> {
    pub(crate) fn emit(&self) {
        let duration_ms = u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX);
        match self.outcome {
            StreamOutcome::Normal => tracing::info!(
                conn_id = self.conn_id,
                destination = self.destination,
                outcome = self.outcome.as_str(),
                bytes_outbound = self.bytes_outbound,
                bytes_inbound = self.bytes_inbound,
                duration_ms,
                "Egress stream closed."
            ),
            _ => tracing::warn!(
                conn_id = self.conn_id,
                destination = self.destination,
                outcome = self.outcome.as_str(),
                bytes_outbound = self.bytes_outbound,
                bytes_inbound = self.bytes_inbound,
                duration_ms,
                "Egress stream ended abnormally."
            ),
        }
        metrics::counter!(EGRESS_STREAMS_TOTAL, OUTCOME_LABEL => self.outcome.as_str())
            .increment(1);
        if self.bytes_outbound > 0 {
            metrics::counter!(EGRESS_BYTES_TOTAL, DIRECTION_LABEL => DIRECTION_OUTBOUND)
                .increment(self.bytes_outbound);
        }
        if self.bytes_inbound > 0 {
            metrics::counter!(EGRESS_BYTES_TOTAL, DIRECTION_LABEL => DIRECTION_INBOUND)
                .increment(self.bytes_inbound);
        }
    }
}
