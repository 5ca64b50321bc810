//! The crate's one error type.

use crate::frame::FrameType;

/// Everything that can go wrong while encoding or decoding frames, or checking egress.
///
/// Framing errors (everything but [`Error::EgressDenied`] and [`Error::InvalidPolicyEntry`])
/// mean the byte stream can no longer be trusted: the [`Decoder`](crate::Decoder) is poisoned
/// after one and the connection must be closed. No variant carries frame body bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A frame header declares (or an encoder would produce) a body longer than the limit.
    #[error("The frame body is {length} bytes long, more than the limit of {max} bytes.")]
    FrameTooLarge {
        /// The declared or computed body length.
        length: u64,
        /// The configured limit.
        max: u32,
    },

    /// The frame header carries a protocol version this implementation does not speak.
    #[error("The frame uses protocol version {version}, which is not supported (expected {expected}).", expected = crate::PROTOCOL_VERSION)]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },

    /// The frame header carries a frame type code that is not defined.
    #[error("The frame type 0x{frame_type:02x} is not defined by the protocol.")]
    UnknownFrameType {
        /// The type byte found.
        frame_type: u8,
    },

    /// A frame body ends inside one of its fields.
    #[error("The {frame} frame body ends inside its {field} field.")]
    Truncated {
        /// The frame being decoded.
        frame: FrameType,
        /// The field that did not fit.
        field: &'static str,
    },

    /// A frame body has bytes left over after its last field.
    #[error("The {frame} frame body has {count} bytes after its last field.")]
    TrailingBytes {
        /// The frame being decoded.
        frame: FrameType,
        /// How many bytes were left over.
        count: usize,
    },

    /// A text field is not valid UTF-8.
    #[error("The {field} field of a {frame} frame is not valid UTF-8.")]
    InvalidUtf8 {
        /// The frame being decoded.
        frame: FrameType,
        /// The offending field.
        field: &'static str,
    },

    /// A length-prefixed field is longer than that field allows.
    #[error("The {field} field of a {frame} frame is {length} long, more than its limit of {max}.")]
    FieldTooLong {
        /// The frame being encoded or decoded.
        frame: FrameType,
        /// The offending field.
        field: &'static str,
        /// Its length (bytes, or items for lists).
        length: usize,
        /// Its limit.
        max: usize,
    },

    /// A field holds a value outside its defined set (an unknown enum code, an empty or
    /// ill-formed name).
    #[error("The {field} field of a {frame} frame holds an invalid value: {reason}.")]
    InvalidValue {
        /// The frame being encoded or decoded.
        frame: FrameType,
        /// The offending field.
        field: &'static str,
        /// Why the value is invalid (never the value itself when it could be sensitive).
        reason: &'static str,
    },

    /// The decoder saw a framing error earlier; the stream is unusable.
    #[error("The frame decoder failed earlier; the stream cannot be decoded any further.")]
    Poisoned,

    /// The egress policy does not allow a connection to this destination.
    #[error("Egress to {host}:{port} is not allowed by the egress policy.")]
    EgressDenied {
        /// The requested host (a host name or IP literal, never payload data).
        host: String,
        /// The requested port.
        port: u16,
    },

    /// An egress destination or policy entry is not a well-formed `host[:port]`.
    #[error("The egress destination {entry:?} is invalid: {reason}.")]
    InvalidPolicyEntry {
        /// The entry as given.
        entry: String,
        /// Why it is invalid.
        reason: &'static str,
    },
}
