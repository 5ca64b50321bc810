//! Egress: the enclave's only way out, through the host.
//!
//! One egress stream is one transport connection (vsock in production, TCP in tests) from
//! the enclave to the host's egress listener; there is no multiplexing. On it the enclave
//! sends `Hello` (role enclave) and `EgressOpen{conn_id, host, port}`; the host checks its
//! [`EgressPolicy`](zenvelope_enclave_protocol::EgressPolicy), connects with a timeout and
//! answers `EgressOpened`, or `EgressClose{Denied | ConnectFailed | TimedOut}`, or an
//! `Error` frame with code busy when it relays its maximum number of streams. Then both
//! sides send `EgressData` (at most [`MAX_CHUNK_BYTES`] each) and `EgressClose{Normal}`
//! marks the end of one direction (a TCP half-close); any other close reason aborts the
//! stream. The host closes idle streams. TLS runs inside the enclave, so the host relays
//! only TLS records.
//!
//! - Host side: [`EgressProxy`] ([`EgressProxyConfig`]).
//! - Enclave side: [`TunnelStream`] (one stream as `AsyncRead + AsyncWrite`),
//!   [`EgressConnector`] (the model providers' [`Connector`](crate::providers::http::Connector),
//!   with TLS), and [`LocalForwarder`] (a loopback TCP port forwarded to one destination,
//!   for clients with their own TLS such as the AWS SDK reaching KMS).
//! - [`telemetry`]: metric names and labels; one log event per stream on the host.

mod connector;
mod error;
mod forwarder;
mod proxy;
pub mod telemetry;
mod tunnel;

pub use connector::{EgressConnector, EgressConnectorConfig, TrustAnchors, parse_certificates};
pub use error::EgressError;
pub use forwarder::{DEFAULT_FORWARDER_MAX_CONNECTIONS, LocalForwarder, LocalForwarderConfig};
pub use proxy::{
    DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_STREAMS, EgressProxy,
    EgressProxyConfig,
};
pub use tunnel::TunnelStream;

/// Largest `EgressData` payload either side sends: 64 KiB.
pub const MAX_CHUNK_BYTES: usize = 64 * 1024;
