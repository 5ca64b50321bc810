//! Encoding and decoding frames. Pure functions over byte slices and a buffering decoder.

use crate::error::Error;
use crate::frame::{CloseReason, ErrorCode, Frame, FrameType, Message, Opaque, Outcome, Role};
use crate::{
    DEFAULT_MAX_BODY_BYTES, HEADER_LEN, MAX_AUDIT_EVENTS, MAX_HOST_BYTES, MAX_KEY_ENTRIES,
    MAX_REASON_CODE_BYTES, MAX_TEXT_BYTES, PROTOCOL_VERSION,
};

/// Outcome tag of a `Result` outcome.
const OUTCOME_RESULT: u8 = 1;
/// Outcome tag of a `DeadLetter` outcome.
const OUTCOME_DEAD_LETTER: u8 = 2;

// Field names, used in errors (and the docs' tables).
const F_ROLE: &str = "role";
const F_PROTOCOL_VERSION: &str = "protocol_version";
const F_REQUEST_ID: &str = "request_id";
const F_ENVELOPE: &str = "envelope";
const F_OUTCOME: &str = "outcome";
const F_REASON_CODE: &str = "reason_code";
const F_DETAIL: &str = "detail";
const F_AUDIT_COUNT: &str = "audit_count";
const F_AUDIT_EVENT: &str = "audit_event";
const F_KEY_COUNT: &str = "key_count";
const F_KEY_ENTRY: &str = "key_entry";
const F_CONN_ID: &str = "conn_id";
const F_HOST: &str = "host";
const F_PORT: &str = "port";
const F_DATA: &str = "data";
const F_REASON: &str = "reason";
const F_NONCE: &str = "nonce";
const F_CODE: &str = "code";
const F_MESSAGE: &str = "message";

/// The result of trying to decode one frame from the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// The buffer holds a prefix of a valid frame; at least `needed` bytes in total (from
    /// the start of the frame) are required before decoding can progress. Never larger than
    /// [`HEADER_LEN`] plus the limit, so a caller may reserve it.
    NeedMore {
        /// Total buffer length needed for the next step.
        needed: usize,
    },
    /// A complete frame, taking the first `consumed` bytes of the buffer.
    Frame {
        /// The frame.
        frame: Frame,
        /// Bytes consumed from the front of the buffer.
        consumed: usize,
    },
}

/// Checks the header fields present in `buf` (which may be shorter than the header) and
/// returns the body length once known. Checks happen as early as the bytes allow, and in a
/// fixed order (length, version, type), so the error does not depend on how input was split.
fn check_header(buf: &[u8], max_body_bytes: u32) -> Result<Option<(FrameType, u64, usize)>, Error> {
    let Some(len_bytes) = buf.get(0..4) else {
        return Ok(None);
    };
    let body_len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
    if body_len > max_body_bytes {
        return Err(Error::FrameTooLarge {
            length: u64::from(body_len),
            max: max_body_bytes,
        });
    }
    let Some(&version) = buf.get(4) else {
        return Ok(None);
    };
    if version != PROTOCOL_VERSION {
        return Err(Error::UnsupportedVersion { version });
    }
    let Some(&type_code) = buf.get(5) else {
        return Ok(None);
    };
    let frame_type = FrameType::from_code(type_code).ok_or(Error::UnknownFrameType {
        frame_type: type_code,
    })?;
    let Some(id_bytes) = buf.get(6..HEADER_LEN) else {
        return Ok(None);
    };
    let mut id = [0u8; 8];
    id.copy_from_slice(id_bytes);
    // u32 always fits in usize on the 32- and 64-bit targets this runs on.
    let body_len = usize::try_from(body_len).map_err(|_| Error::FrameTooLarge {
        length: u64::from(body_len),
        max: max_body_bytes,
    })?;
    Ok(Some((frame_type, u64::from_be_bytes(id), body_len)))
}

/// Decodes one frame from the front of `buf`, allowing bodies up to `max_body_bytes`.
///
/// Returns [`Decoded::NeedMore`] for every strict prefix of a valid frame, and an error as
/// soon as the bytes present prove the stream invalid. The declared body length is checked
/// against the limit before anything is allocated.
pub fn decode_frame(buf: &[u8], max_body_bytes: u32) -> Result<Decoded, Error> {
    let Some((frame_type, stream_id, body_len)) = check_header(buf, max_body_bytes)? else {
        return Ok(Decoded::NeedMore { needed: HEADER_LEN });
    };
    let total = HEADER_LEN + body_len;
    let Some(body) = buf.get(HEADER_LEN..total) else {
        return Ok(Decoded::NeedMore { needed: total });
    };
    let message = decode_body(frame_type, body)?;
    Ok(Decoded::Frame {
        frame: Frame { stream_id, message },
        consumed: total,
    })
}

struct Reader<'a> {
    buf: &'a [u8],
    frame: FrameType,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], Error> {
        if n > self.buf.len() {
            return Err(Error::Truncated {
                frame: self.frame,
                field,
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, Error> {
        Ok(self.array::<1>(field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }
    fn len_u32(&mut self, field: &'static str) -> Result<usize, Error> {
        let len = self.u32(field)?;
        usize::try_from(len).map_err(|_| Error::Truncated {
            frame: self.frame,
            field,
        })
    }
    /// `u32be length || bytes`. The length is checked against what is left of the body
    /// (itself bounded by the frame limit) before copying.
    fn opaque(&mut self, field: &'static str) -> Result<Opaque, Error> {
        let len = self.len_u32(field)?;
        Ok(Opaque::from(self.take(len, field)?))
    }
    /// `u16be count` (at most `max_items`) then that many `bytes` items.
    fn opaque_list(
        &mut self,
        count_field: &'static str,
        item_field: &'static str,
        max_items: usize,
    ) -> Result<Vec<Opaque>, Error> {
        let count = usize::from(self.u16(count_field)?);
        if count > max_items {
            return Err(Error::FieldTooLong {
                frame: self.frame,
                field: count_field,
                length: count,
                max: max_items,
            });
        }
        // Each item takes at least its 4-byte length: bound the allocation by what is left.
        if count > self.buf.len() / 4 {
            return Err(Error::Truncated {
                frame: self.frame,
                field: item_field,
            });
        }
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(self.opaque(item_field)?);
        }
        Ok(items)
    }
    fn text(&mut self, len: usize, max: usize, field: &'static str) -> Result<String, Error> {
        if len > max {
            return Err(Error::FieldTooLong {
                frame: self.frame,
                field,
                length: len,
                max,
            });
        }
        let bytes = self.take(len, field)?;
        let text = std::str::from_utf8(bytes).map_err(|_| Error::InvalidUtf8 {
            frame: self.frame,
            field,
        })?;
        Ok(text.to_owned())
    }
    /// `u8 length || UTF-8`.
    fn text8(&mut self, max: usize, field: &'static str) -> Result<String, Error> {
        let len = usize::from(self.u8(field)?);
        self.text(len, max, field)
    }
    /// `u16be length || UTF-8`.
    fn text16(&mut self, max: usize, field: &'static str) -> Result<String, Error> {
        let len = usize::from(self.u16(field)?);
        self.text(len, max, field)
    }
    fn role(&mut self) -> Result<Role, Error> {
        let code = self.u8(F_ROLE)?;
        Role::from_code(code).ok_or(Error::InvalidValue {
            frame: self.frame,
            field: F_ROLE,
            reason: "unknown role code",
        })
    }
    fn finish(self) -> Result<(), Error> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingBytes {
                frame: self.frame,
                count: self.buf.len(),
            })
        }
    }
}

fn decode_body(frame: FrameType, body: &[u8]) -> Result<Message, Error> {
    let mut r = Reader { buf: body, frame };
    let message = match frame {
        FrameType::Hello => Message::Hello {
            role: r.role()?,
            protocol_version: r.u8(F_PROTOCOL_VERSION)?,
        },
        FrameType::HelloAck => Message::HelloAck {
            role: r.role()?,
            protocol_version: r.u8(F_PROTOCOL_VERSION)?,
        },
        FrameType::Process => Message::Process {
            request_id: r.array(F_REQUEST_ID)?,
            envelope: r.opaque(F_ENVELOPE)?,
        },
        FrameType::Processed => {
            let request_id = r.array(F_REQUEST_ID)?;
            let outcome = match r.u8(F_OUTCOME)? {
                OUTCOME_RESULT => Outcome::Result {
                    envelope: r.opaque(F_ENVELOPE)?,
                },
                OUTCOME_DEAD_LETTER => {
                    let reason_code = r.text8(MAX_REASON_CODE_BYTES, F_REASON_CODE)?;
                    check_reason_code(frame, &reason_code)?;
                    let detail = r.text16(MAX_TEXT_BYTES, F_DETAIL)?;
                    Outcome::DeadLetter {
                        reason_code,
                        detail,
                    }
                }
                _ => {
                    return Err(Error::InvalidValue {
                        frame,
                        field: F_OUTCOME,
                        reason: "unknown outcome tag",
                    });
                }
            };
            let audit_events = r.opaque_list(F_AUDIT_COUNT, F_AUDIT_EVENT, MAX_AUDIT_EVENTS)?;
            Message::Processed {
                request_id,
                outcome,
                audit_events,
            }
        }
        FrameType::EgressOpen => {
            let conn_id = r.u32(F_CONN_ID)?;
            let host = r.text8(MAX_HOST_BYTES, F_HOST)?;
            if host.is_empty() {
                return Err(Error::InvalidValue {
                    frame,
                    field: F_HOST,
                    reason: "empty host",
                });
            }
            Message::EgressOpen {
                conn_id,
                host,
                port: r.u16(F_PORT)?,
            }
        }
        FrameType::EgressOpened => Message::EgressOpened {
            conn_id: r.u32(F_CONN_ID)?,
        },
        FrameType::EgressData => Message::EgressData {
            conn_id: r.u32(F_CONN_ID)?,
            data: r.opaque(F_DATA)?,
        },
        FrameType::EgressClose => {
            let conn_id = r.u32(F_CONN_ID)?;
            let code = r.u8(F_REASON)?;
            let reason = CloseReason::from_code(code).ok_or(Error::InvalidValue {
                frame,
                field: F_REASON,
                reason: "unknown close reason",
            })?;
            Message::EgressClose { conn_id, reason }
        }
        FrameType::KeysRequest => Message::KeysRequest,
        FrameType::Keys => Message::Keys {
            entries: r.opaque_list(F_KEY_COUNT, F_KEY_ENTRY, MAX_KEY_ENTRIES)?,
        },
        FrameType::Ping => Message::Ping {
            nonce: r.u64(F_NONCE)?,
        },
        FrameType::Pong => Message::Pong {
            nonce: r.u64(F_NONCE)?,
        },
        FrameType::Error => Message::Error {
            code: ErrorCode(r.u16(F_CODE)?),
            message: r.text16(MAX_TEXT_BYTES, F_MESSAGE)?,
        },
    };
    r.finish()?;
    Ok(message)
}

fn check_reason_code(frame: FrameType, code: &str) -> Result<(), Error> {
    let ok = !code.is_empty()
        && code
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidValue {
            frame,
            field: F_REASON_CODE,
            reason: "not 1 or more characters of [a-z0-9_.-]",
        })
    }
}

/// Encodes frames, refusing any that the peer's decoder would reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoder {
    max_body_bytes: u32,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// An encoder with [`DEFAULT_MAX_BODY_BYTES`].
    pub const fn new() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// An encoder with a different body limit (match the peer's decoder).
    pub const fn with_max_body_bytes(max_body_bytes: u32) -> Self {
        Self { max_body_bytes }
    }

    /// The body limit.
    pub const fn max_body_bytes(&self) -> u32 {
        self.max_body_bytes
    }

    /// Appends the encoding of `frame` to `out`. On error `out` is left as it was.
    pub fn encode(&self, frame: &Frame, out: &mut Vec<u8>) -> Result<(), Error> {
        let start = out.len();
        let result = self.encode_inner(frame, out, start);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// The encoding of `frame` as a new vector.
    pub fn encode_to_vec(&self, frame: &Frame) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.encode(frame, &mut out)?;
        Ok(out)
    }

    fn encode_inner(&self, frame: &Frame, out: &mut Vec<u8>, start: usize) -> Result<(), Error> {
        let frame_type = frame.message.frame_type();
        out.extend_from_slice(&[0; 4]); // body length, patched below
        out.push(PROTOCOL_VERSION);
        out.push(frame_type.code());
        out.extend_from_slice(&frame.stream_id.to_be_bytes());
        encode_body(frame_type, &frame.message, out, self.max_body_bytes)?;
        let body_len = out.len() - start - HEADER_LEN;
        let len = u32::try_from(body_len)
            .ok()
            .filter(|len| *len <= self.max_body_bytes)
            .ok_or(Error::FrameTooLarge {
                length: body_len as u64,
                max: self.max_body_bytes,
            })?;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }
}

/// Encodes `frame` with the default limit. Convenience for [`Encoder::encode_to_vec`].
pub fn encode_frame(frame: &Frame) -> Result<Vec<u8>, Error> {
    Encoder::new().encode_to_vec(frame)
}

fn put_opaque(bytes: &[u8], max: u32, out: &mut Vec<u8>) -> Result<(), Error> {
    // A field longer than the whole body limit can never be sent; fail before copying it.
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|len| *len <= max)
        .ok_or(Error::FrameTooLarge {
            length: bytes.len() as u64,
            max,
        })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn put_opaque_list(
    frame: FrameType,
    count_field: &'static str,
    items: &[Opaque],
    max_items: usize,
    max: u32,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let count = u16::try_from(items.len())
        .ok()
        .filter(|c| usize::from(*c) <= max_items)
        .ok_or(Error::FieldTooLong {
            frame,
            field: count_field,
            length: items.len(),
            max: max_items,
        })?;
    out.extend_from_slice(&count.to_be_bytes());
    for item in items {
        put_opaque(item.as_bytes(), max, out)?;
    }
    Ok(())
}

fn put_text8(
    frame: FrameType,
    field: &'static str,
    text: &str,
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let len = u8::try_from(text.len())
        .ok()
        .filter(|len| usize::from(*len) <= max)
        .ok_or(Error::FieldTooLong {
            frame,
            field,
            length: text.len(),
            max,
        })?;
    out.push(len);
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

fn put_text16(
    frame: FrameType,
    field: &'static str,
    text: &str,
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let len = u16::try_from(text.len())
        .ok()
        .filter(|len| usize::from(*len) <= max)
        .ok_or(Error::FieldTooLong {
            frame,
            field,
            length: text.len(),
            max,
        })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

fn encode_body(
    frame: FrameType,
    message: &Message,
    out: &mut Vec<u8>,
    max: u32,
) -> Result<(), Error> {
    match message {
        Message::Hello {
            role,
            protocol_version,
        }
        | Message::HelloAck {
            role,
            protocol_version,
        } => {
            out.push(role.code());
            out.push(*protocol_version);
        }
        Message::Process {
            request_id,
            envelope,
        } => {
            out.extend_from_slice(request_id);
            put_opaque(envelope.as_bytes(), max, out)?;
        }
        Message::Processed {
            request_id,
            outcome,
            audit_events,
        } => {
            out.extend_from_slice(request_id);
            match outcome {
                Outcome::Result { envelope } => {
                    out.push(OUTCOME_RESULT);
                    put_opaque(envelope.as_bytes(), max, out)?;
                }
                Outcome::DeadLetter {
                    reason_code,
                    detail,
                } => {
                    check_reason_code(frame, reason_code)?;
                    out.push(OUTCOME_DEAD_LETTER);
                    put_text8(
                        frame,
                        F_REASON_CODE,
                        reason_code,
                        MAX_REASON_CODE_BYTES,
                        out,
                    )?;
                    put_text16(frame, F_DETAIL, detail, MAX_TEXT_BYTES, out)?;
                }
            }
            put_opaque_list(
                frame,
                F_AUDIT_COUNT,
                audit_events,
                MAX_AUDIT_EVENTS,
                max,
                out,
            )?;
        }
        Message::KeysRequest => {}
        Message::Keys { entries } => {
            put_opaque_list(frame, F_KEY_COUNT, entries, MAX_KEY_ENTRIES, max, out)?;
        }
        Message::EgressOpen {
            conn_id,
            host,
            port,
        } => {
            if host.is_empty() {
                return Err(Error::InvalidValue {
                    frame,
                    field: F_HOST,
                    reason: "empty host",
                });
            }
            out.extend_from_slice(&conn_id.to_be_bytes());
            put_text8(frame, F_HOST, host, MAX_HOST_BYTES, out)?;
            out.extend_from_slice(&port.to_be_bytes());
        }
        Message::EgressOpened { conn_id } => out.extend_from_slice(&conn_id.to_be_bytes()),
        Message::EgressData { conn_id, data } => {
            out.extend_from_slice(&conn_id.to_be_bytes());
            put_opaque(data.as_bytes(), max, out)?;
        }
        Message::EgressClose { conn_id, reason } => {
            out.extend_from_slice(&conn_id.to_be_bytes());
            out.push(reason.code());
        }
        Message::Ping { nonce } | Message::Pong { nonce } => {
            out.extend_from_slice(&nonce.to_be_bytes())
        }
        Message::Error { code, message } => {
            out.extend_from_slice(&code.0.to_be_bytes());
            put_text16(frame, F_MESSAGE, message, MAX_TEXT_BYTES, out)?;
        }
    }
    Ok(())
}

/// An incremental decoder: feed bytes as they arrive, take complete frames out.
///
/// Handles partial input and many frames per buffer. After the first error it is poisoned:
/// every later call returns [`Error::Poisoned`] and fed bytes are dropped, because a framing
/// error means frame boundaries are lost.
#[derive(Debug, Clone)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Start of undecoded bytes in `buf`.
    pos: usize,
    max_body_bytes: u32,
    poisoned: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder with [`DEFAULT_MAX_BODY_BYTES`].
    pub fn new() -> Self {
        Self::with_max_body_bytes(DEFAULT_MAX_BODY_BYTES)
    }

    /// A decoder accepting bodies up to `max_body_bytes`.
    pub fn with_max_body_bytes(max_body_bytes: u32) -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            max_body_bytes,
            poisoned: false,
        }
    }

    /// The body limit.
    pub fn max_body_bytes(&self) -> u32 {
        self.max_body_bytes
    }

    /// Whether an error has made the stream unusable.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Bytes fed but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Appends received bytes. Nothing is decoded until [`Decoder::next_frame`].
    pub fn feed(&mut self, data: &[u8]) {
        if self.poisoned {
            return;
        }
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Error> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        match decode_frame(&self.buf[self.pos..], self.max_body_bytes) {
            Ok(Decoded::NeedMore { .. }) => Ok(None),
            Ok(Decoded::Frame { frame, consumed }) => {
                self.pos += consumed;
                if self.pos == self.buf.len() {
                    self.buf.clear();
                    self.pos = 0;
                }
                Ok(Some(frame))
            }
            Err(error) => {
                self.poisoned = true;
                self.buf = Vec::new();
                self.pos = 0;
                Err(error)
            }
        }
    }

    /// Feeds `data` and returns every frame now complete. On error, frames decoded earlier in
    /// this call are dropped with the stream.
    pub fn decode(&mut self, data: &[u8]) -> Result<Vec<Frame>, Error> {
        self.feed(data);
        let mut frames = Vec::new();
        while let Some(frame) = self.next_frame()? {
            frames.push(frame);
        }
        Ok(frames)
    }
}
