//! The processors' error type.

/// What can stop a processor (per-record failures go to the DLQ instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable; the text says why.
    #[error("The admission configuration cannot be used: {0}.")]
    Config(String),
    /// Kafka failed.
    #[error("Kafka error: {0}")]
    Kafka(#[from] zenvelope_runtime::Error),
    /// Encoding or decoding a record failed.
    #[error("Schema error: {0}")]
    Schema(#[from] zenvelope_schemas::Error),
    /// The usage endpoint could not listen.
    #[error("The usage endpoint cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A DLQ redrive was refused; the text says why.
    #[error("Redrive refused: {0}.")]
    Redrive(String),
}
