//! Transports for host⇄enclave frames: TCP (loopback, for development and tests) and vsock
//! (production, Linux only).
//!
//! A [`TransportAddr`] is parsed from `tcp://IP:PORT` or `vsock://CID:PORT`. It can
//! [`bind`](TransportAddr::bind) a [`Listener`] or [`connect`](TransportAddr::connect); both
//! give a [`Connection`] that sends and receives [`Frame`]s through the sans-io codec of
//! `zenvelope-enclave-protocol`, adapted to tokio by [`FrameCodec`].
//!
//! A framing error ends the connection: [`Connection::recv`] returns it once, and the
//! connection yields nothing after that. Frame bodies are never logged or put into errors.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;
use zenvelope_enclave_protocol::{
    self as protocol, CONNECTION_STREAM_ID, DEFAULT_MAX_BODY_BYTES, Decoded, ErrorCode, Frame,
    Message, PROTOCOL_VERSION, Role,
};

/// URL scheme of TCP transport addresses.
pub const TCP_SCHEME: &str = "tcp";
/// URL scheme of vsock transport addresses.
pub const VSOCK_SCHEME: &str = "vsock";
/// The vsock CID meaning "any local CID" (`VMADDR_CID_ANY`), for listening.
pub const VSOCK_CID_ANY: u32 = u32::MAX;
/// The vsock CID of the parent instance as seen from an enclave (`VMADDR_CID_HOST`).
pub const VSOCK_CID_HOST: u32 = 3;

/// Errors of the transport layer.
///
/// (The crate's single error type once `zenvelope-enclave` grows beyond its transport.)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A transport address string could not be parsed.
    #[error("The transport address {address:?} is invalid: {reason}.")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// Why it is invalid.
        reason: &'static str,
    },

    /// A vsock address was used on a platform without vsock.
    #[error("The vsock transport is only available on Linux.")]
    VsockUnsupported,

    /// The socket failed.
    #[error("The transport socket failed: {0}.")]
    Io(#[from] io::Error),

    /// The peer sent bytes that are not a valid frame stream; the connection is unusable.
    #[error(transparent)]
    Protocol(#[from] protocol::Error),

    /// The peer did not complete the `Hello`/`HelloAck` exchange as expected.
    #[error("The protocol handshake failed: {reason}.")]
    Handshake {
        /// What went wrong.
        reason: &'static str,
    },
}

/// Where to listen or connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportAddr {
    /// TCP, to an IP address (no name resolution). Loopback in development and tests.
    Tcp(SocketAddr),
    /// AF_VSOCK, a context id and a port.
    Vsock {
        /// The context id (3 is the parent instance; [`VSOCK_CID_ANY`] to listen on any).
        cid: u32,
        /// The port.
        port: u32,
    },
}

impl FromStr for TransportAddr {
    type Err = Error;

    fn from_str(address: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidAddress {
            address: address.to_owned(),
            reason,
        };
        let (scheme, rest) = address
            .split_once("://")
            .ok_or_else(|| invalid("expected tcp://IP:PORT or vsock://CID:PORT"))?;
        match scheme {
            TCP_SCHEME => {
                let socket: SocketAddr = rest.parse().map_err(|_| {
                    invalid("a tcp address is IP:PORT, with an IPv6 address in brackets")
                })?;
                if socket.port() == 0 && !rest.ends_with(":0") {
                    return Err(invalid("the port is missing"));
                }
                Ok(TransportAddr::Tcp(socket))
            }
            VSOCK_SCHEME => {
                let (cid, port) = rest
                    .split_once(':')
                    .ok_or_else(|| invalid("a vsock address is CID:PORT"))?;
                let number = |s: &str, what| {
                    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(invalid(what));
                    }
                    s.parse::<u32>().map_err(|_| invalid(what))
                };
                let cid = number(cid, "the vsock CID is a decimal number up to 4294967295")?;
                let port = number(port, "the vsock port is a decimal number up to 4294967295")?;
                Ok(TransportAddr::Vsock { cid, port })
            }
            _ => Err(invalid("the scheme is neither tcp nor vsock")),
        }
    }
}

impl fmt::Display for TransportAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportAddr::Tcp(socket) => write!(f, "{TCP_SCHEME}://{socket}"),
            TransportAddr::Vsock { cid, port } => write!(f, "{VSOCK_SCHEME}://{cid}:{port}"),
        }
    }
}

impl TransportAddr {
    /// Listens on this address, with the default frame size limit.
    pub async fn bind(&self) -> Result<Listener, Error> {
        let inner = match *self {
            TransportAddr::Tcp(socket) => ListenerInner::Tcp(TcpListener::bind(socket).await?),
            TransportAddr::Vsock { cid, port } => vsock::bind(cid, port)?,
        };
        Ok(Listener {
            inner,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        })
    }

    /// Connects to this address, with the default frame size limit.
    pub async fn connect(&self) -> Result<Connection, Error> {
        self.connect_with_max_body_bytes(DEFAULT_MAX_BODY_BYTES)
            .await
    }

    /// Connects to this address, accepting and sending bodies up to `max_body_bytes`.
    pub async fn connect_with_max_body_bytes(
        &self,
        max_body_bytes: u32,
    ) -> Result<Connection, Error> {
        let stream = match *self {
            TransportAddr::Tcp(socket) => {
                let stream = TcpStream::connect(socket).await?;
                stream.set_nodelay(true)?;
                Stream::Tcp(stream)
            }
            TransportAddr::Vsock { cid, port } => vsock::connect(cid, port).await?,
        };
        Ok(Connection::new(stream, *self, max_body_bytes))
    }
}

/// The tokio-util adapter around the sans-io codec. Poisoned after the first decode error.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    encoder: protocol::Encoder,
    poisoned: bool,
}

impl FrameCodec {
    /// A codec accepting and sending bodies up to `max_body_bytes`.
    pub fn new(max_body_bytes: u32) -> Self {
        Self {
            encoder: protocol::Encoder::with_max_body_bytes(max_body_bytes),
            poisoned: false,
        }
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BODY_BYTES)
    }
}

impl tokio_util::codec::Decoder for FrameCodec {
    type Item = Frame;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Error> {
        if self.poisoned {
            return Err(protocol::Error::Poisoned.into());
        }
        // No reserve for the declared length: the buffer grows only as bytes really arrive,
        // and the length was checked against the limit before anything else.
        match protocol::decode_frame(src, self.encoder.max_body_bytes()) {
            Ok(Decoded::NeedMore { .. }) => Ok(None),
            Ok(Decoded::Frame { frame, consumed }) => {
                src.advance(consumed);
                Ok(Some(frame))
            }
            Err(error) => {
                self.poisoned = true;
                src.clear();
                Err(error.into())
            }
        }
    }
}

impl tokio_util::codec::Encoder<Frame> for FrameCodec {
    type Error = Error;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), Error> {
        let bytes = self.encoder.encode_to_vec(&frame)?;
        dst.extend_from_slice(&bytes);
        Ok(())
    }
}

/// A bound listener.
#[derive(Debug)]
pub struct Listener {
    inner: ListenerInner,
    max_body_bytes: u32,
}

#[derive(Debug)]
enum ListenerInner {
    Tcp(TcpListener),
    #[cfg(target_os = "linux")]
    Vsock(tokio_vsock::VsockListener),
}

impl Listener {
    /// Sets the body limit of connections accepted from now on.
    pub fn with_max_body_bytes(mut self, max_body_bytes: u32) -> Self {
        self.max_body_bytes = max_body_bytes;
        self
    }

    /// The address actually bound (useful after binding port 0).
    pub fn local_addr(&self) -> Result<TransportAddr, Error> {
        match &self.inner {
            ListenerInner::Tcp(listener) => Ok(TransportAddr::Tcp(listener.local_addr()?)),
            #[cfg(target_os = "linux")]
            ListenerInner::Vsock(listener) => {
                let addr = listener.local_addr()?;
                Ok(TransportAddr::Vsock {
                    cid: addr.cid(),
                    port: addr.port(),
                })
            }
        }
    }

    /// Waits for the next connection.
    pub async fn accept(&self) -> Result<Connection, Error> {
        let (stream, peer) = match &self.inner {
            ListenerInner::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                stream.set_nodelay(true)?;
                (Stream::Tcp(stream), TransportAddr::Tcp(peer))
            }
            #[cfg(target_os = "linux")]
            ListenerInner::Vsock(listener) => {
                let (stream, peer) = listener.accept().await?;
                (
                    Stream::Vsock(stream),
                    TransportAddr::Vsock {
                        cid: peer.cid(),
                        port: peer.port(),
                    },
                )
            }
        };
        Ok(Connection::new(stream, peer, self.max_body_bytes))
    }
}

/// A framed connection.
#[derive(Debug)]
pub struct Connection {
    framed: Framed<Stream, FrameCodec>,
    peer: TransportAddr,
}

impl Connection {
    fn new(stream: Stream, peer: TransportAddr, max_body_bytes: u32) -> Self {
        Self {
            framed: Framed::new(stream, FrameCodec::new(max_body_bytes)),
            peer,
        }
    }

    /// The peer's address.
    pub fn peer(&self) -> TransportAddr {
        self.peer
    }

    /// Sends one frame and flushes it.
    pub async fn send(&mut self, frame: Frame) -> Result<(), Error> {
        self.framed.send(frame).await
    }

    /// Receives the next frame; `Ok(None)` when the peer closed the connection cleanly
    /// (between frames) or after an earlier error. A connection closed in the middle of a
    /// frame is an [`Error::Io`] of kind `UnexpectedEof`.
    pub async fn recv(&mut self) -> Result<Option<Frame>, Error> {
        self.framed.next().await.transpose()
    }

    /// Best effort: tells the peer why the connection ends (an `Error` frame on the
    /// connection stream), then shuts the connection down. Errors are ignored: the
    /// connection is being abandoned anyway.
    pub async fn abort(mut self, code: ErrorCode, message: &str) {
        let frame = Frame::new(
            CONNECTION_STREAM_ID,
            Message::Error {
                code,
                message: message.to_owned(),
            },
        );
        let _ = self.framed.send(frame).await;
        let _ = self.framed.close().await;
    }

    /// Flushes and shuts down the write side.
    pub async fn close(mut self) -> Result<(), Error> {
        SinkExt::<Frame>::close(&mut self.framed).await
    }

    /// The underlying `Framed` (a `Stream` and `Sink` of frames), e.g. to split it.
    pub fn into_framed(
        self,
    ) -> Framed<impl AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug, FrameCodec> {
        self.framed
    }

    /// Client side of the handshake: sends `Hello`, expects `HelloAck` with our version.
    pub async fn hello(&mut self, role: Role) -> Result<Role, Error> {
        self.send(Frame::new(
            CONNECTION_STREAM_ID,
            Message::Hello {
                role,
                protocol_version: PROTOCOL_VERSION,
            },
        ))
        .await?;
        match self.recv().await? {
            Some(Frame {
                message:
                    Message::HelloAck {
                        role: peer,
                        protocol_version,
                    },
                ..
            }) => {
                if protocol_version != PROTOCOL_VERSION {
                    return Err(Error::Handshake {
                        reason: "the peer chose an unsupported protocol version",
                    });
                }
                if peer == role {
                    return Err(Error::Handshake {
                        reason: "the peer claims the same role",
                    });
                }
                Ok(peer)
            }
            Some(_) => Err(Error::Handshake {
                reason: "the first frame from the peer was not HelloAck",
            }),
            None => Err(Error::Handshake {
                reason: "the peer closed the connection",
            }),
        }
    }

    /// Server side of the handshake: expects `Hello`, answers `HelloAck`.
    pub async fn accept_hello(&mut self, role: Role) -> Result<Role, Error> {
        match self.recv().await? {
            Some(Frame {
                message:
                    Message::Hello {
                        role: peer,
                        protocol_version,
                    },
                ..
            }) => {
                if protocol_version < PROTOCOL_VERSION {
                    return Err(Error::Handshake {
                        reason: "the peer speaks only older protocol versions",
                    });
                }
                if peer == role {
                    return Err(Error::Handshake {
                        reason: "the peer claims the same role",
                    });
                }
                let ack = Message::HelloAck {
                    role,
                    protocol_version: PROTOCOL_VERSION,
                };
                self.send(Frame::new(CONNECTION_STREAM_ID, ack)).await?;
                Ok(peer)
            }
            Some(_) => Err(Error::Handshake {
                reason: "the first frame from the peer was not Hello",
            }),
            None => Err(Error::Handshake {
                reason: "the peer closed the connection",
            }),
        }
    }

    /// Capacity of the read buffer (tests check that a declared length never sizes it).
    #[cfg(test)]
    fn read_buffer_capacity(&self) -> usize {
        self.framed.read_buffer().capacity()
    }
}

/// A connected byte stream of either kind.
#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    #[cfg(target_os = "linux")]
    Vsock(tokio_vsock::VsockStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(target_os = "linux")]
            Stream::Vsock(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(target_os = "linux")]
            Stream::Vsock(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            #[cfg(target_os = "linux")]
            Stream::Vsock(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(target_os = "linux")]
            Stream::Vsock(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(target_os = "linux")]
mod vsock {
    use super::{Error, ListenerInner, Stream};
    use tokio_vsock::{VsockAddr, VsockListener, VsockStream};

    pub(super) fn bind(cid: u32, port: u32) -> Result<ListenerInner, Error> {
        Ok(ListenerInner::Vsock(VsockListener::bind(VsockAddr::new(
            cid, port,
        ))?))
    }

    pub(super) async fn connect(cid: u32, port: u32) -> Result<Stream, Error> {
        Ok(Stream::Vsock(
            VsockStream::connect(VsockAddr::new(cid, port)).await?,
        ))
    }
}

#[cfg(not(target_os = "linux"))]
mod vsock {
    use super::{Error, ListenerInner, Stream};

    pub(super) fn bind(_cid: u32, _port: u32) -> Result<ListenerInner, Error> {
        Err(Error::VsockUnsupported)
    }

    pub(super) async fn connect(_cid: u32, _port: u32) -> Result<Stream, Error> {
        Err(Error::VsockUnsupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use zenvelope_enclave_protocol::{Opaque, Outcome};

    const TIMEOUT: Duration = Duration::from_secs(20);
    const LOOPBACK: &str = "tcp://127.0.0.1:0";

    async fn loopback() -> (Listener, TransportAddr) {
        let listener = LOOPBACK
            .parse::<TransportAddr>()
            .unwrap()
            .bind()
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    #[test]
    fn addresses_parse_and_display() {
        let tcp: TransportAddr = "tcp://127.0.0.1:5005".parse().unwrap();
        assert_eq!(tcp, TransportAddr::Tcp("127.0.0.1:5005".parse().unwrap()));
        assert_eq!(tcp.to_string(), "tcp://127.0.0.1:5005");
        let v6: TransportAddr = "tcp://[::1]:7".parse().unwrap();
        assert_eq!(v6.to_string(), "tcp://[::1]:7");
        let vsock: TransportAddr = "vsock://16:5005".parse().unwrap();
        assert_eq!(
            vsock,
            TransportAddr::Vsock {
                cid: 16,
                port: 5005
            }
        );
        assert_eq!(vsock.to_string(), "vsock://16:5005");
        assert_eq!(
            "vsock://4294967295:1".parse::<TransportAddr>().unwrap(),
            TransportAddr::Vsock {
                cid: VSOCK_CID_ANY,
                port: 1
            }
        );
        for bad in [
            "127.0.0.1:5005",
            "udp://127.0.0.1:1",
            "tcp://localhost:5005",
            "tcp://127.0.0.1",
            "tcp://::1:5",
            "tcp://127.0.0.1:65536",
            "vsock://16",
            "vsock://x:1",
            "vsock://16:",
            "vsock://-1:5",
            "vsock://+1:5",
            "vsock://4294967296:1",
            "vsock://1:2:3",
            "",
        ] {
            let err = bad.parse::<TransportAddr>().unwrap_err();
            assert!(matches!(err, Error::InvalidAddress { .. }), "{bad:?}");
            let text = err.to_string();
            assert!(
                text.starts_with("The transport address") && text.ends_with('.'),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn tcp_loopback_exchange() {
        let (listener, addr) = loopback().await;
        let big = vec![0x5a; 7 * 1024 * 1024];
        let big_for_server = big.clone();
        let server = tokio::spawn(async move {
            let mut conn = listener.accept().await?;
            assert_eq!(conn.accept_hello(Role::Enclave).await?, Role::Host);
            while let Some(frame) = conn.recv().await? {
                let reply = match frame.message {
                    Message::Ping { nonce } => Message::Pong { nonce },
                    Message::Process {
                        request_id,
                        envelope,
                    } => {
                        assert_eq!(envelope.len(), big_for_server.len());
                        assert!(envelope.as_bytes() == &big_for_server[..]);
                        Message::Processed {
                            request_id,
                            outcome: Outcome::Result { envelope },
                            audit_events: vec![Opaque::new(vec![1, 2, 3])],
                        }
                    }
                    other => panic!("unexpected {:?}", other.frame_type()),
                };
                conn.send(Frame::new(frame.stream_id, reply)).await?;
            }
            Ok::<_, Error>(())
        });

        let client = async {
            let mut conn = addr.connect().await?;
            assert_eq!(conn.hello(Role::Host).await?, Role::Enclave);
            conn.send(Frame::new(1, Message::Ping { nonce: 42 }))
                .await?;
            assert_eq!(
                conn.recv().await?,
                Some(Frame::new(1, Message::Pong { nonce: 42 }))
            );
            let request_id = [7; 16];
            conn.send(Frame::new(
                2,
                Message::Process {
                    request_id,
                    envelope: Opaque::new(big.clone()),
                },
            ))
            .await?;
            let Some(Frame {
                stream_id: 2,
                message:
                    Message::Processed {
                        request_id: id,
                        outcome,
                        audit_events,
                    },
            }) = conn.recv().await?
            else {
                panic!("expected Processed on stream 2");
            };
            assert_eq!(id, request_id);
            assert_eq!(
                outcome,
                Outcome::Result {
                    envelope: Opaque::new(big.clone())
                }
            );
            assert_eq!(audit_events, vec![Opaque::new(vec![1, 2, 3])]);
            conn.close().await?;
            Ok::<_, Error>(())
        };
        tokio::time::timeout(TIMEOUT, client)
            .await
            .unwrap()
            .unwrap();
        tokio::time::timeout(TIMEOUT, server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    /// Server loop used by the misbehaving-peer tests: report the first error, abort.
    async fn serve_one(listener: Listener) -> Error {
        let mut conn = listener.accept().await.unwrap();
        loop {
            match conn.recv().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("connection closed without error"),
                Err(error) => {
                    let capacity = conn.read_buffer_capacity();
                    assert!(capacity < 1024 * 1024, "read buffer grew to {capacity}");
                    // After the error the connection yields nothing more.
                    assert!(matches!(conn.recv().await, Ok(None)));
                    conn.abort(
                        ErrorCode::PROTOCOL_VIOLATION,
                        "The frame stream is invalid.",
                    )
                    .await;
                    return error;
                }
            }
        }
    }

    /// Reads everything until EOF from a raw socket and decodes the frames in it.
    async fn read_to_eof(mut socket: TcpStream) -> Vec<Frame> {
        let mut bytes = Vec::new();
        socket.read_to_end(&mut bytes).await.unwrap();
        protocol::Decoder::new().decode(&bytes).unwrap()
    }

    #[tokio::test]
    async fn garbage_gives_a_clean_error_and_closes() {
        for garbage in [
            &b"GET / HTTP/1.1\r\nHost: enclave\r\n\r\n"[..],
            &[0, 0, 0, 0, 1, 0x55, 0, 0, 0, 0, 0, 0, 0, 0][..],
            &[0, 0, 0, 1, 7, 0x30, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
            &[
                0, 0, 0, 9, 1, 0x30, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
            ][..],
        ] {
            let (listener, addr) = loopback().await;
            let server = tokio::spawn(serve_one(listener));
            let TransportAddr::Tcp(socket_addr) = addr else {
                unreachable!()
            };
            let mut socket = TcpStream::connect(socket_addr).await.unwrap();
            socket.write_all(garbage).await.unwrap();
            let frames = tokio::time::timeout(TIMEOUT, read_to_eof(socket))
                .await
                .unwrap();
            assert!(
                matches!(
                    &frames[..],
                    [Frame {
                        stream_id: 0,
                        message: Message::Error {
                            code: ErrorCode::PROTOCOL_VIOLATION,
                            ..
                        }
                    }]
                ),
                "{frames:?}"
            );
            let error = tokio::time::timeout(TIMEOUT, server)
                .await
                .unwrap()
                .unwrap();
            assert!(matches!(error, Error::Protocol(_)), "{error}");
        }
    }

    #[tokio::test]
    async fn oversized_length_prefix_is_rejected_without_allocating() {
        let (listener, addr) = loopback().await;
        let server = tokio::spawn(serve_one(listener));
        let TransportAddr::Tcp(socket_addr) = addr else {
            unreachable!()
        };
        let mut socket = TcpStream::connect(socket_addr).await.unwrap();
        // Only the header: the server must reject it without waiting for (or sizing a
        // buffer for) 4 GiB of body.
        let mut header = u32::MAX.to_be_bytes().to_vec();
        header.extend_from_slice(&[PROTOCOL_VERSION, 0x10, 0, 0, 0, 0, 0, 0, 0, 1]);
        socket.write_all(&header).await.unwrap();
        let error = tokio::time::timeout(TIMEOUT, server)
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(
                error,
                Error::Protocol(protocol::Error::FrameTooLarge {
                    length: 4_294_967_295,
                    max: DEFAULT_MAX_BODY_BYTES
                })
            ),
            "{error}"
        );
        let frames = tokio::time::timeout(TIMEOUT, read_to_eof(socket))
            .await
            .unwrap();
        assert_eq!(frames.len(), 1);
    }

    #[tokio::test]
    async fn configured_limit_applies_to_both_directions() {
        let (listener, addr) = loopback().await;
        let listener = listener.with_max_body_bytes(1024);
        let server = tokio::spawn(async move { listener.accept().await.unwrap().recv().await });
        // A client with a larger limit gets rejected by the server.
        let mut conn = addr.connect().await.unwrap();
        // (The server may reset the connection before the send completes.)
        let _ = conn
            .send(Frame::new(
                1,
                Message::EgressData {
                    conn_id: 1,
                    data: Opaque::new(vec![0; 2048]),
                },
            ))
            .await;
        // A client with the same limit refuses to send what the server would reject.
        let too_big = Frame::new(
            1,
            Message::EgressData {
                conn_id: 1,
                data: Opaque::new(vec![0; 1024]),
            },
        );
        let mut out = BytesMut::new();
        let encoded =
            tokio_util::codec::Encoder::encode(&mut FrameCodec::new(1024), too_big, &mut out);
        assert!(matches!(
            encoded,
            Err(Error::Protocol(protocol::Error::FrameTooLarge { .. }))
        ));
        assert!(out.is_empty());
        let result = tokio::time::timeout(TIMEOUT, server)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            result,
            Err(Error::Protocol(protocol::Error::FrameTooLarge {
                max: 1024,
                ..
            }))
        ));
    }

    #[tokio::test]
    async fn eof_inside_a_frame_is_an_error_and_between_frames_is_none() {
        let (listener, addr) = loopback().await;
        let server = tokio::spawn(async move {
            let mut conn = listener.accept().await.unwrap();
            let first = conn.recv().await;
            let second = conn.recv().await;
            (first, second)
        });
        let TransportAddr::Tcp(socket_addr) = addr else {
            unreachable!()
        };
        let mut socket = TcpStream::connect(socket_addr).await.unwrap();
        let ping = protocol::encode_frame(&Frame::new(1, Message::Ping { nonce: 1 })).unwrap();
        socket.write_all(&ping).await.unwrap();
        socket.write_all(&ping[..5]).await.unwrap();
        drop(socket);
        let (first, second) = tokio::time::timeout(TIMEOUT, server)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            first.unwrap(),
            Some(Frame::new(1, Message::Ping { nonce: 1 }))
        );
        assert!(
            matches!(second, Err(Error::Io(ref e)) if e.kind() == io::ErrorKind::UnexpectedEof || e.kind() == io::ErrorKind::Other),
            "{second:?}"
        );
    }

    #[tokio::test]
    async fn handshake_rejects_wrong_first_frame() {
        let (listener, addr) = loopback().await;
        let server = tokio::spawn(async move {
            listener
                .accept()
                .await
                .unwrap()
                .accept_hello(Role::Enclave)
                .await
        });
        let mut conn = addr.connect().await.unwrap();
        conn.send(Frame::new(1, Message::Ping { nonce: 1 }))
            .await
            .unwrap();
        let result = tokio::time::timeout(TIMEOUT, server)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(result, Err(Error::Handshake { .. })));
    }

    /// Needs AF_VSOCK with loopback (`vsock_loopback` module); opt in with
    /// ZENVELOPE_VSOCK_TEST=1.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    #[ignore = "needs AF_VSOCK loopback; run with ZENVELOPE_VSOCK_TEST=1 and --ignored"]
    async fn vsock_loopback_exchange() {
        assert_eq!(
            std::env::var("ZENVELOPE_VSOCK_TEST").as_deref(),
            Ok("1"),
            "set ZENVELOPE_VSOCK_TEST=1 on a machine with vsock loopback"
        );
        const VSOCK_CID_LOCAL: u32 = 1;
        let port = 50_000 + std::process::id() % 10_000;
        let listener = TransportAddr::Vsock {
            cid: VSOCK_CID_ANY,
            port,
        }
        .bind()
        .await
        .unwrap();
        let server = tokio::spawn(async move {
            let mut conn = listener.accept().await?;
            conn.accept_hello(Role::Enclave).await?;
            if let Some(Frame {
                stream_id,
                message: Message::Ping { nonce },
            }) = conn.recv().await?
            {
                conn.send(Frame::new(stream_id, Message::Pong { nonce }))
                    .await?;
            }
            Ok::<_, Error>(())
        });
        let mut conn = TransportAddr::Vsock {
            cid: VSOCK_CID_LOCAL,
            port,
        }
        .connect()
        .await
        .unwrap();
        conn.hello(Role::Host).await.unwrap();
        conn.send(Frame::new(9, Message::Ping { nonce: 9 }))
            .await
            .unwrap();
        assert_eq!(
            conn.recv().await.unwrap(),
            Some(Frame::new(9, Message::Pong { nonce: 9 }))
        );
        tokio::time::timeout(TIMEOUT, server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
