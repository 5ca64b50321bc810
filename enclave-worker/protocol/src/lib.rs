//! The host⇄enclave frame protocol (sans-io): versioned, length-prefixed, size-bounded frames,
//! and the egress allowlist the host enforces for the enclave.
//!
//! No I/O, no async runtime: [`Encoder`] writes frames into a `Vec<u8>`, [`decode_frame`]
//! reads one frame from the front of a byte slice, [`Decoder`] buffers a byte stream and
//! returns complete frames. The transports (TCP loopback, vsock) live in `zenvelope-enclave`.
//! The normative description, with examples, is `docs/enclave-protocol.md`.
//!
//! # Wire format
//!
//! All integers are big-endian. A frame is a 14-byte header and a body:
//!
//! | offset | size | field | meaning |
//! |---|---|---|---|
//! | 0 | 4 | `body_length` | `u32`, bytes of body after the header; at most the receiver's limit ([`DEFAULT_MAX_BODY_BYTES`] = 8 MiB by default) |
//! | 4 | 1 | `version` | [`PROTOCOL_VERSION`] (1) |
//! | 5 | 1 | `frame_type` | a [`FrameType`] code |
//! | 6 | 8 | `stream_id` | `u64` stream / correlation id |
//! | 14 | `body_length` | body | the frame type's body, below |
//!
//! Field encodings used in bodies: `u8`, `u16`, `u32`, `u64` (big-endian); `id16` = 16 raw
//! bytes; `bytes` = `u32 length || bytes`; `text8` = `u8 length || UTF-8`; `text16` =
//! `u16 length || UTF-8`. A body must be consumed exactly: leftover bytes are an error.
//!
//! | type | code | body |
//! |---|---|---|
//! | `Hello` | `0x01` | `role u8` (1 host, 2 enclave) `protocol_version u8` |
//! | `HelloAck` | `0x02` | `role u8` `protocol_version u8` |
//! | `Process` | `0x10` | `request_id id16` `envelope bytes` |
//! | `Processed` | `0x11` | `request_id id16` `outcome u8` then, for 1 (result), `envelope bytes`, or for 2 (dead letter), `reason_code text8` (1–64 bytes of `[a-z0-9_.-]`) `detail text16` (≤ 1024 bytes); then `audit_count u16` (≤ 1024) and that many `audit_event bytes` |
//! | `EgressOpen` | `0x20` | `conn_id u32` `host text8` (1–253 bytes) `port u16` |
//! | `EgressOpened` | `0x21` | `conn_id u32` |
//! | `EgressData` | `0x22` | `conn_id u32` `data bytes` |
//! | `EgressClose` | `0x23` | `conn_id u32` `reason u8` ([`CloseReason`] code 0–5) |
//! | `Ping` | `0x30` | `nonce u64` |
//! | `Pong` | `0x31` | `nonce u64` |
//! | `KeysRequest` | `0x40` | empty |
//! | `Keys` | `0x41` | `key_count u16` (≤ 64) and that many `key_entry bytes` (encoded `KeyDirectoryEntry` datums) |
//! | `Error` | `0x7f` | `code u16` `message text16` (≤ 1024 bytes) |
//!
//! # Decoding rules
//!
//! - Header fields are checked as soon as their bytes arrive, in the order length, version,
//!   type; an over-long `body_length` is rejected before any buffer is sized for it.
//! - Every strict prefix of a valid frame is "need more", never an error.
//! - Any error poisons the [`Decoder`]: frame boundaries are lost, the connection must close.
//! - Decoding is canonical: an accepted frame re-encodes to exactly its input bytes.
//!
//! Opaque payloads ([`Opaque`]) print only their length in `Debug`, so a frame can be
//! logged structurally without its sealed envelope or tunnelled TLS bytes.

#![deny(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod codec;
mod egress;
mod error;
mod frame;

pub use codec::{Decoded, Decoder, Encoder, decode_frame, encode_frame};
pub use egress::{DEFAULT_EGRESS_PORT, Destination, EgressHost, EgressPolicy};
pub use error::Error;
pub use frame::{CloseReason, ErrorCode, Frame, FrameType, Message, Opaque, Outcome, Role};

/// The protocol version this crate speaks, carried in every frame header.
pub const PROTOCOL_VERSION: u8 = 1;

/// Header length: `body_length` (4) + `version` (1) + `frame_type` (1) + `stream_id` (8).
pub const HEADER_LEN: usize = 14;

/// Default limit on a frame body: 8 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u32 = 8 * 1024 * 1024;

/// Stream id of connection-level frames (`Hello`, `HelloAck`, connection-fatal `Error`).
pub const CONNECTION_STREAM_ID: u64 = 0;

/// Longest egress host name, in bytes (RFC 1035).
pub const MAX_HOST_BYTES: usize = 253;

/// Longest dead-letter reason code, in bytes.
pub const MAX_REASON_CODE_BYTES: usize = 64;

/// Longest human-readable text field (dead-letter detail, error message), in bytes.
pub const MAX_TEXT_BYTES: usize = 1024;

/// Most audit event datums in one `Processed` frame.
pub const MAX_AUDIT_EVENTS: usize = 1024;

/// Most key directory entries in one `Keys` frame.
pub const MAX_KEY_ENTRIES: usize = 64;
