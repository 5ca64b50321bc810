//! The enclave side of one egress stream: a byte stream over `Egress*` frames.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use zenvelope_enclave_protocol::{CloseReason, ErrorCode, Frame, Message, Role};

use super::{EgressError, MAX_CHUNK_BYTES};
use crate::transport::{self, TransportAddr};

/// Connection ids are unique per process (for log correlation); 0 is never used because
/// stream 0 is the connection stream.
static NEXT_CONN_ID: AtomicU32 = AtomicU32::new(1);

fn next_conn_id() -> u32 {
    loop {
        let id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
        if id != 0 {
            return id;
        }
    }
}

/// A framed transport connection, type-erased (the transport's `Framed` type is opaque).
trait FrameChannel:
    Stream<Item = Result<Frame, transport::Error>>
    + Sink<Frame, Error = transport::Error>
    + Send
    + Unpin
{
}

impl<T> FrameChannel for T where
    T: Stream<Item = Result<Frame, transport::Error>>
        + Sink<Frame, Error = transport::Error>
        + Send
        + Unpin
{
}

/// The state of the read direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    /// Data may still arrive.
    Open,
    /// The host sent `EgressClose{Normal}`: end of stream.
    Eof,
    /// The stream failed; every further read or write returns this error.
    Failed(io::ErrorKind, &'static str),
}

/// One outbound TCP connection of the enclave, relayed by the host's egress proxy over its
/// own transport connection (vsock in production, TCP in tests).
///
/// Reads return the destination's bytes and end (`Ok(0)`) when the destination closed its
/// side; writes become `EgressData` frames of at most [`MAX_CHUNK_BYTES`], buffered until a
/// flush or until the transport's write buffer is full (backpressure comes from the
/// transport socket). `shutdown` sends `EgressClose{Normal}`: the host half-closes the TCP
/// connection to the destination, and reading can go on. A reset or timeout reported by
/// the host is an I/O error naming the destination. Dropping the stream without shutdown
/// closes the transport connection, which the host treats as a reset.
pub struct TunnelStream {
    frames: Box<dyn FrameChannel>,
    conn_id: u32,
    host: String,
    port: u16,
    read_buf: Bytes,
    read_state: ReadState,
    write_closed: bool,
    /// A `Pong` to send (stream id, nonce), answering a `Ping` from the host.
    pong: Option<(u64, u64)>,
    /// A control frame was queued and still needs a flush.
    control_flush: bool,
}

impl fmt::Debug for TunnelStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelStream")
            .field("conn_id", &self.conn_id)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("buffered_bytes", &self.read_buf.len())
            .field("read_state", &self.read_state)
            .field("write_closed", &self.write_closed)
            .finish_non_exhaustive()
    }
}

impl TunnelStream {
    /// Connects to the host's egress listener at `addr`, performs the `Hello` handshake and
    /// asks for a TCP connection to `host:port`. Returns once the host answered
    /// `EgressOpened`; a refusal is [`EgressError::Denied`], [`EgressError::ConnectFailed`],
    /// [`EgressError::TimedOut`] or [`EgressError::Busy`], naming the destination.
    ///
    /// There is no timeout here beyond the host's connect timeout; wrap the call in
    /// `tokio::time::timeout` if the host itself may hang.
    pub async fn open(addr: &TransportAddr, host: &str, port: u16) -> Result<Self, EgressError> {
        let mut conn = addr.connect().await?;
        conn.hello(Role::Enclave).await?;
        let conn_id = next_conn_id();
        conn.send(Frame::new(
            u64::from(conn_id),
            Message::EgressOpen {
                conn_id,
                host: host.to_owned(),
                port,
            },
        ))
        .await?;
        let host = host.to_owned();
        let reply = conn.recv().await?;
        let Some(Frame { message, .. }) = reply else {
            return Err(EgressError::Closed {
                host,
                port,
                reason: CloseReason::Reset,
            });
        };
        match message {
            Message::EgressOpened { conn_id: id } if id == conn_id => {}
            Message::EgressClose {
                conn_id: id,
                reason,
            } if id == conn_id => {
                return Err(match reason {
                    CloseReason::Denied => EgressError::Denied { host, port },
                    CloseReason::ConnectFailed => EgressError::ConnectFailed { host, port },
                    CloseReason::TimedOut => EgressError::TimedOut { host, port },
                    reason => EgressError::Closed { host, port, reason },
                });
            }
            Message::Error {
                code: ErrorCode::BUSY,
                ..
            } => return Err(EgressError::Busy { host, port }),
            other => {
                return Err(EgressError::UnexpectedFrame {
                    host,
                    port,
                    frame: other.frame_type(),
                });
            }
        }
        tracing::debug!(conn_id, host = %host, port, "Egress stream opened.");
        Ok(Self {
            frames: Box::new(conn.into_framed()),
            conn_id,
            host,
            port,
            read_buf: Bytes::new(),
            read_state: ReadState::Open,
            write_closed: false,
            pong: None,
            control_flush: false,
        })
    }

    /// The connection id used on the wire (for correlating with the host's log).
    pub fn conn_id(&self) -> u32 {
        self.conn_id
    }

    /// The destination host, as requested.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The destination port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn error(&self, kind: io::ErrorKind, what: &'static str) -> io::Error {
        io::Error::new(
            kind,
            format!("The egress stream to {}:{} {what}.", self.host, self.port),
        )
    }

    fn fail(&mut self, kind: io::ErrorKind, what: &'static str) -> io::Error {
        self.read_state = ReadState::Failed(kind, what);
        self.error(kind, what)
    }

    fn transport_failed(&mut self, error: &transport::Error) -> io::Error {
        let kind = match error {
            transport::Error::Io(error) => error.kind(),
            _ => io::ErrorKind::InvalidData,
        };
        self.fail(kind, "failed in the transport to the host")
    }

    /// Sends a queued `Pong` and flushes control frames, best effort: a transport error
    /// here surfaces on the next read or write.
    fn poll_control(&mut self, cx: &mut Context<'_>) {
        if let Some((stream_id, nonce)) = self.pong {
            match self.frames.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {
                    self.pong = None;
                    if self
                        .frames
                        .start_send_unpin(Frame::new(stream_id, Message::Pong { nonce }))
                        .is_ok()
                    {
                        self.control_flush = true;
                    }
                }
                Poll::Ready(Err(_)) => self.pong = None,
                Poll::Pending => return,
            }
        }
        if self.control_flush && self.frames.poll_flush_unpin(cx).is_ready() {
            self.control_flush = false;
        }
    }
}

impl AsyncRead for TunnelStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.poll_control(cx);
        loop {
            if !this.read_buf.is_empty() {
                let n = this.read_buf.len().min(buf.remaining());
                buf.put_slice(&this.read_buf[..n]);
                this.read_buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            match this.read_state {
                ReadState::Open => {}
                ReadState::Eof => return Poll::Ready(Ok(())),
                ReadState::Failed(kind, what) => return Poll::Ready(Err(this.error(kind, what))),
            }
            let frame = match ready!(this.frames.poll_next_unpin(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(error)) => return Poll::Ready(Err(this.transport_failed(&error))),
                None => {
                    return Poll::Ready(Err(this.fail(
                        io::ErrorKind::UnexpectedEof,
                        "lost its transport without a close from the host",
                    )));
                }
            };
            let own = frame.stream_id == u64::from(this.conn_id);
            match frame.message {
                Message::EgressData { conn_id, data } if own && conn_id == this.conn_id => {
                    this.read_buf = Bytes::from(data.into_vec());
                }
                Message::EgressClose { conn_id, reason } if own && conn_id == this.conn_id => {
                    let error = match reason {
                        CloseReason::Normal => {
                            this.read_state = ReadState::Eof;
                            continue;
                        }
                        CloseReason::TimedOut => this.fail(
                            io::ErrorKind::TimedOut,
                            "was closed by the host after its idle timeout",
                        ),
                        CloseReason::Reset => this.fail(
                            io::ErrorKind::ConnectionReset,
                            "was reset by the destination or the host",
                        ),
                        _ => this.fail(io::ErrorKind::ConnectionAborted, "was aborted by the host"),
                    };
                    return Poll::Ready(Err(error));
                }
                Message::Ping { nonce } => {
                    this.pong = Some((frame.stream_id, nonce));
                    this.poll_control(cx);
                }
                Message::Pong { .. } => {}
                Message::Error { .. } => {
                    return Poll::Ready(Err(this.fail(
                        io::ErrorKind::ConnectionAborted,
                        "was aborted by an error from the host",
                    )));
                }
                _ => {
                    return Poll::Ready(Err(this.fail(
                        io::ErrorKind::InvalidData,
                        "received a frame that breaks the egress protocol",
                    )));
                }
            }
        }
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let ReadState::Failed(kind, what) = this.read_state {
            return Poll::Ready(Err(this.error(kind, what)));
        }
        if this.write_closed {
            return Poll::Ready(Err(this.error(
                io::ErrorKind::BrokenPipe,
                "was already shut down for writing",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Backpressure: `poll_ready` flushes the transport's write buffer once it holds
        // more than its boundary, and stays pending while the socket cannot take more.
        if let Err(error) = ready!(this.frames.poll_ready_unpin(cx)) {
            return Poll::Ready(Err(this.transport_failed(&error)));
        }
        let n = buf.len().min(MAX_CHUNK_BYTES);
        let frame = Frame::new(
            u64::from(this.conn_id),
            Message::EgressData {
                conn_id: this.conn_id,
                data: buf[..n].into(),
            },
        );
        if let Err(error) = this.frames.start_send_unpin(frame) {
            return Poll::Ready(Err(this.transport_failed(&error)));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(error) = ready!(this.frames.poll_flush_unpin(cx)) {
            return Poll::Ready(Err(this.transport_failed(&error)));
        }
        this.control_flush = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_closed {
            if let ReadState::Failed(kind, what) = this.read_state {
                return Poll::Ready(Err(this.error(kind, what)));
            }
            if let Err(error) = ready!(this.frames.poll_ready_unpin(cx)) {
                return Poll::Ready(Err(this.transport_failed(&error)));
            }
            let close = Frame::new(
                u64::from(this.conn_id),
                Message::EgressClose {
                    conn_id: this.conn_id,
                    reason: CloseReason::Normal,
                },
            );
            if let Err(error) = this.frames.start_send_unpin(close) {
                return Poll::Ready(Err(this.transport_failed(&error)));
            }
            this.write_closed = true;
        }
        if let Err(error) = ready!(this.frames.poll_flush_unpin(cx)) {
            return Poll::Ready(Err(this.transport_failed(&error)));
        }
        Poll::Ready(Ok(()))
    }
}
