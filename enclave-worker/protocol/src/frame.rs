//! The frame types: what travels between the host and the enclave.

use std::fmt;

/// One frame: a stream (correlation) id and a message.
///
/// `stream_id` is chosen by the side that starts an exchange (`Process`, `Ping`,
/// `EgressOpen`) and echoed in every frame belonging to it (`Processed`, `Pong`,
/// `EgressOpened`/`EgressData`/`EgressClose`); connection-level frames (`Hello`,
/// `HelloAck`, a connection-fatal `Error`) use [`CONNECTION_STREAM_ID`](crate::CONNECTION_STREAM_ID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The stream / correlation id from the frame header.
    pub stream_id: u64,
    /// The typed body.
    pub message: Message,
}

impl Frame {
    /// A frame with the given stream id and message.
    pub fn new(stream_id: u64, message: Message) -> Self {
        Self { stream_id, message }
    }
}

/// Opaque bytes carried by a frame: sealed envelopes, audit datums, tunnelled TLS records.
///
/// `Debug` prints only the length, so frames can be logged structurally without their
/// contents ever reaching a log line.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Opaque(Vec<u8>);

impl Opaque {
    /// Wraps bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// The bytes, owned.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for Opaque {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl From<&[u8]> for Opaque {
    fn from(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }
}

impl fmt::Debug for Opaque {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Opaque({} bytes)", self.0.len())
    }
}

/// Which side of the connection a peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// The parent-instance host (Kafka, egress proxy).
    Host,
    /// The enclave application.
    Enclave,
}

impl Role {
    /// The wire code.
    pub const fn code(self) -> u8 {
        match self {
            Role::Host => 1,
            Role::Enclave => 2,
        }
    }
    /// The role for a wire code.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Role::Host),
            2 => Some(Role::Enclave),
            _ => None,
        }
    }
}

/// Why an egress connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// Orderly close (end of stream) by either side.
    Normal,
    /// The host refused the destination (egress policy).
    Denied,
    /// The host could not connect to the destination.
    ConnectFailed,
    /// The remote end or the tunnel reset the connection.
    Reset,
    /// A timeout elapsed.
    TimedOut,
    /// The peer broke the egress sub-protocol (unknown connection id, data before open).
    ProtocolError,
}

impl CloseReason {
    /// The wire code.
    pub const fn code(self) -> u8 {
        match self {
            CloseReason::Normal => 0,
            CloseReason::Denied => 1,
            CloseReason::ConnectFailed => 2,
            CloseReason::Reset => 3,
            CloseReason::TimedOut => 4,
            CloseReason::ProtocolError => 5,
        }
    }
    /// The reason for a wire code.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(CloseReason::Normal),
            1 => Some(CloseReason::Denied),
            2 => Some(CloseReason::ConnectFailed),
            3 => Some(CloseReason::Reset),
            4 => Some(CloseReason::TimedOut),
            5 => Some(CloseReason::ProtocolError),
            _ => None,
        }
    }
}

/// A numeric error code carried by [`Message::Error`]. Open-ended on the wire (any `u16`),
/// with the codes this version defines as constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// The peer broke the protocol (bad frame, frame out of order); the connection closes.
    pub const PROTOCOL_VIOLATION: ErrorCode = ErrorCode(1);
    /// No common protocol version.
    pub const UNSUPPORTED_VERSION: ErrorCode = ErrorCode(2);
    /// A frame arrived that is not valid in the current state (e.g. before `Hello`).
    pub const UNEXPECTED_FRAME: ErrorCode = ErrorCode(3);
    /// The receiver is overloaded; retry later.
    pub const BUSY: ErrorCode = ErrorCode(4);
    /// An internal failure of the receiver.
    pub const INTERNAL: ErrorCode = ErrorCode(5);
    /// The receiver is shutting down.
    pub const SHUTTING_DOWN: ErrorCode = ErrorCode(6);
}

/// What the enclave did with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The sealed result envelope (Avro, opaque here) for `zenvelope.results`.
    Result {
        /// The encoded result envelope.
        envelope: Opaque,
    },
    /// The request goes to the dead-letter topic.
    DeadLetter {
        /// A short machine code: 1 to [`MAX_REASON_CODE_BYTES`](crate::MAX_REASON_CODE_BYTES)
        /// bytes of `[a-z0-9_.-]` (e.g. `decrypt_failed`).
        reason_code: String,
        /// One sentence for operators, at most [`MAX_TEXT_BYTES`](crate::MAX_TEXT_BYTES)
        /// bytes of UTF-8. Must never contain PHI or key material.
        detail: String,
    },
}

/// A frame body, one variant per frame type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// First frame on a connection, sent by the connecting side.
    Hello {
        /// The sender's role.
        role: Role,
        /// The highest protocol version the sender speaks.
        protocol_version: u8,
    },
    /// Reply to `Hello` by the accepting side.
    HelloAck {
        /// The sender's role.
        role: Role,
        /// The protocol version chosen for the connection.
        protocol_version: u8,
    },
    /// Host → enclave: process one request envelope.
    Process {
        /// The request id (the envelope's message id, a UUIDv7).
        request_id: [u8; 16],
        /// The encoded request envelope (Avro, opaque here).
        envelope: Opaque,
    },
    /// Enclave → host: the outcome of one request, with the audit events it produced.
    Processed {
        /// The request id, as in `Process`.
        request_id: [u8; 16],
        /// The result or dead letter.
        outcome: Outcome,
        /// Encoded `AuditEvent` datums for `zenvelope.audit` (opaque here), at most
        /// [`MAX_AUDIT_EVENTS`](crate::MAX_AUDIT_EVENTS).
        audit_events: Vec<Opaque>,
    },
    /// Enclave → host: open a TCP connection to `host:port` (subject to the egress policy).
    EgressOpen {
        /// The enclave-chosen connection id.
        conn_id: u32,
        /// Destination host name (or an allowlisted IP literal), 1 to
        /// [`MAX_HOST_BYTES`](crate::MAX_HOST_BYTES) bytes.
        host: String,
        /// Destination port.
        port: u16,
    },
    /// Host → enclave: the connection is open.
    EgressOpened {
        /// The connection id from `EgressOpen`.
        conn_id: u32,
    },
    /// Either direction: raw TCP bytes (TLS records, end to end with the enclave).
    EgressData {
        /// The connection id.
        conn_id: u32,
        /// The bytes.
        data: Opaque,
    },
    /// Either direction: the connection is closed (or was refused).
    EgressClose {
        /// The connection id.
        conn_id: u32,
        /// Why.
        reason: CloseReason,
    },
    /// Host → enclave: send the key directory entries for the keys this enclave holds.
    KeysRequest,
    /// Enclave → host: the key directory entries, each an encoded `KeyDirectoryEntry`
    /// datum (opaque here) carrying its own attestation document, at most
    /// [`MAX_KEY_ENTRIES`](crate::MAX_KEY_ENTRIES). The host publishes them unchanged on
    /// `zenvelope.keys`; readers verify the evidence, so the host is not trusted with them.
    Keys {
        /// The encoded entries.
        entries: Vec<Opaque>,
    },
    /// Liveness probe.
    Ping {
        /// Echoed in `Pong`.
        nonce: u64,
    },
    /// Reply to `Ping`.
    Pong {
        /// The nonce from `Ping`.
        nonce: u64,
    },
    /// An error report; on stream 0 it is connection-fatal.
    Error {
        /// The error code.
        code: ErrorCode,
        /// One sentence, at most [`MAX_TEXT_BYTES`](crate::MAX_TEXT_BYTES) bytes of UTF-8,
        /// without PHI.
        message: String,
    },
}

impl Message {
    /// The frame type of this message.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Message::Hello { .. } => FrameType::Hello,
            Message::HelloAck { .. } => FrameType::HelloAck,
            Message::Process { .. } => FrameType::Process,
            Message::Processed { .. } => FrameType::Processed,
            Message::EgressOpen { .. } => FrameType::EgressOpen,
            Message::EgressOpened { .. } => FrameType::EgressOpened,
            Message::EgressData { .. } => FrameType::EgressData,
            Message::EgressClose { .. } => FrameType::EgressClose,
            Message::KeysRequest => FrameType::KeysRequest,
            Message::Keys { .. } => FrameType::Keys,
            Message::Ping { .. } => FrameType::Ping,
            Message::Pong { .. } => FrameType::Pong,
            Message::Error { .. } => FrameType::Error,
        }
    }
}

macro_rules! frame_types {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $text:literal;)*) => {
        /// The frame type byte of the header.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum FrameType {
            $($(#[$doc])* $name,)*
        }

        impl FrameType {
            /// Every frame type, in code order.
            pub const ALL: &'static [FrameType] = &[$(FrameType::$name,)*];

            /// The wire code.
            pub const fn code(self) -> u8 {
                match self { $(FrameType::$name => $code,)* }
            }

            /// The frame type for a wire code.
            pub const fn from_code(code: u8) -> Option<Self> {
                match code { $($code => Some(FrameType::$name),)* _ => None }
            }

            /// The name used in documentation and errors.
            pub const fn name(self) -> &'static str {
                match self { $(FrameType::$name => $text,)* }
            }
        }
    };
}

frame_types! {
    /// `Hello`.
    Hello = 0x01, "Hello";
    /// `HelloAck`.
    HelloAck = 0x02, "HelloAck";
    /// `Process`.
    Process = 0x10, "Process";
    /// `Processed`.
    Processed = 0x11, "Processed";
    /// `EgressOpen`.
    EgressOpen = 0x20, "EgressOpen";
    /// `EgressOpened`.
    EgressOpened = 0x21, "EgressOpened";
    /// `EgressData`.
    EgressData = 0x22, "EgressData";
    /// `EgressClose`.
    EgressClose = 0x23, "EgressClose";
    /// `Ping`.
    Ping = 0x30, "Ping";
    /// `Pong`.
    Pong = 0x31, "Pong";
    /// `KeysRequest`.
    KeysRequest = 0x40, "KeysRequest";
    /// `Keys`.
    Keys = 0x41, "Keys";
    /// `Error`.
    Error = 0x7f, "Error";
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
