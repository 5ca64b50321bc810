//! The egress error type.

use std::io;

use zenvelope_enclave_protocol::{CloseReason, FrameType};

use crate::transport;

/// Everything that can go wrong on the egress path. No variant carries tunnelled bytes:
/// destinations (host and port) are public configuration, data never is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EgressError {
    /// The host refused the destination: it is not on the egress allowlist, or its name
    /// resolves only to a forbidden address (loopback, link-local, unspecified).
    #[error("The host denied egress to {host}:{port}: it is not allowed by the egress policy.")]
    Denied {
        /// The requested host.
        host: String,
        /// The requested port.
        port: u16,
    },

    /// The host could not connect to the destination.
    #[error("The host could not connect to {host}:{port}.")]
    ConnectFailed {
        /// The requested host.
        host: String,
        /// The requested port.
        port: u16,
    },

    /// The host's connect timeout elapsed.
    #[error("The host timed out connecting to {host}:{port}.")]
    TimedOut {
        /// The requested host.
        host: String,
        /// The requested port.
        port: u16,
    },

    /// The host answered the open request with another close reason.
    #[error("The host closed the egress stream to {host}:{port} while opening it ({reason:?}).")]
    Closed {
        /// The requested host.
        host: String,
        /// The requested port.
        port: u16,
        /// The close reason the host sent.
        reason: CloseReason,
    },

    /// The host already relays its maximum number of concurrent egress streams.
    #[error("The host egress proxy is busy and refused a stream to {host}:{port}; retry later.")]
    Busy {
        /// The requested host.
        host: String,
        /// The requested port.
        port: u16,
    },

    /// The host broke the egress sub-protocol while the stream was being opened.
    #[error(
        "The host answered the egress request for {host}:{port} with an unexpected {frame} frame."
    )]
    UnexpectedFrame {
        /// The requested host.
        host: String,
        /// The requested port.
        port: u16,
        /// The frame type received.
        frame: FrameType,
    },

    /// The transport to the host's egress listener failed (connect, handshake, framing).
    #[error("The egress transport to the host failed: {0}")]
    Transport(#[from] transport::Error),

    /// The TLS handshake with the destination failed (certificate, protocol, I/O).
    #[error("The TLS handshake with {host}:{port} failed: {source}.")]
    Tls {
        /// The destination host.
        host: String,
        /// The destination port.
        port: u16,
        /// The handshake error.
        source: io::Error,
    },

    /// The host name cannot be used as a TLS server name.
    #[error("The host {host:?} is not a valid TLS server name.")]
    InvalidServerName {
        /// The host as given.
        host: String,
    },

    /// A plain `http://` endpoint was requested but `allow_plain_http` is off.
    #[error(
        "Plain HTTP to {host}:{port} is not allowed; use https or set allow_plain_http for local servers."
    )]
    PlainHttpNotAllowed {
        /// The destination host.
        host: String,
        /// The destination port.
        port: u16,
    },

    /// A CA certificate given as PEM or DER could not be used.
    #[error("The configured CA certificate is invalid: {reason}.")]
    InvalidCertificate {
        /// What was wrong.
        reason: &'static str,
    },

    /// The TLS configuration could not be built.
    #[error("The TLS client configuration could not be built: {0}.")]
    TlsConfig(#[from] rustls::Error),

    /// A configuration value is unusable.
    #[error("The egress configuration is invalid: {reason}.")]
    InvalidConfig {
        /// What was wrong.
        reason: &'static str,
    },

    /// A local socket failed (the forwarder's listener, the proxy's accept).
    #[error("An egress socket failed: {0}.")]
    Io(#[from] io::Error),
}

impl EgressError {
    /// The [`io::ErrorKind`] that best describes this error, for byte-stream callers.
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            EgressError::Denied { .. } => io::ErrorKind::PermissionDenied,
            EgressError::ConnectFailed { .. } => io::ErrorKind::ConnectionRefused,
            EgressError::TimedOut { .. } => io::ErrorKind::TimedOut,
            EgressError::Closed { .. } => io::ErrorKind::ConnectionAborted,
            EgressError::Busy { .. } => io::ErrorKind::WouldBlock,
            EgressError::Io(error) => error.kind(),
            EgressError::Tls { source, .. } => source.kind(),
            EgressError::Transport(transport::Error::Io(error)) => error.kind(),
            _ => io::ErrorKind::Other,
        }
    }
}

impl From<EgressError> for io::Error {
    fn from(error: EgressError) -> Self {
        io::Error::new(error.io_kind(), error)
    }
}
