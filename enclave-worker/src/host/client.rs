//! The host's side of the processing connection: many concurrent `Process` exchanges over one
//! transport connection, matched by stream id, reconnecting when the enclave goes away.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Mutex, mpsc, oneshot};
use zenvelope_enclave_protocol::{CONNECTION_STREAM_ID, Frame, Message, Opaque, Role};

use crate::lock;
use crate::transport::{self, TransportAddr};

/// What the enclave answered for one request.
#[derive(Debug)]
pub struct Processed {
    /// The sealed result or the dead letter.
    pub outcome: zenvelope_enclave_protocol::Outcome,
    /// Encoded audit events for `zenvelope.audit`.
    pub audit_events: Vec<Opaque>,
}

/// Why an exchange with the enclave did not produce an answer. None of these carry frame
/// contents. All are transient from the host's point of view: the request is sent again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The enclave could not be reached.
    #[error("The enclave at {addr} cannot be reached: {source}")]
    Connect {
        /// The enclave's address.
        addr: TransportAddr,
        /// The transport error.
        source: transport::Error,
    },
    /// The connection broke before the answer arrived.
    #[error("The connection to the enclave was lost before it answered.")]
    ConnectionLost,
    /// No answer within the configured time.
    #[error("The enclave did not answer within {0:?}.")]
    TimedOut(Duration),
    /// The enclave refused the request (busy, shutting down, internal error).
    #[error("The enclave refused the request with error code {code}: {message}")]
    Refused {
        /// The protocol error code.
        code: u16,
        /// The enclave's sentence (no PHI by protocol rule).
        message: String,
    },
    /// The enclave answered with a frame that does not belong to the exchange.
    #[error("The enclave answered with an unexpected {0} frame.")]
    Unexpected(&'static str),
}

type Pending = Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Result<Message, ClientError>>>>>;

struct Link {
    outbound: mpsc::Sender<Frame>,
    pending: Pending,
    alive: tokio_util::sync::CancellationToken,
}

/// A multiplexing client for the enclave's processing port.
pub struct EnclaveClient {
    addr: TransportAddr,
    timeout: Duration,
    link: Mutex<Option<Arc<Link>>>,
    next_stream: AtomicU64,
}

impl EnclaveClient {
    /// A client for the enclave at `addr`; each request waits at most `timeout` for its
    /// answer. Connects lazily.
    pub fn new(addr: TransportAddr, timeout: Duration) -> Self {
        Self {
            addr,
            timeout,
            link: Mutex::new(None),
            next_stream: AtomicU64::new(1),
        }
    }

    /// The enclave's address.
    pub fn addr(&self) -> TransportAddr {
        self.addr
    }

    /// Sends one sealed request and waits for its outcome.
    pub async fn process(
        &self,
        request_id: [u8; 16],
        envelope: Vec<u8>,
    ) -> Result<Processed, ClientError> {
        let request = Message::Process {
            request_id,
            envelope: Opaque::new(envelope),
        };
        match self.exchange(request).await? {
            Message::Processed {
                outcome,
                audit_events,
                ..
            } => Ok(Processed {
                outcome,
                audit_events,
            }),
            other => Err(ClientError::Unexpected(other.frame_type().name())),
        }
    }

    /// Asks the enclave for its attested key directory entries (encoded
    /// `KeyDirectoryEntry` datums, Confluent-framed).
    pub async fn keys(&self) -> Result<Vec<Opaque>, ClientError> {
        match self.exchange(Message::KeysRequest).await? {
            Message::Keys { entries } => Ok(entries),
            other => Err(ClientError::Unexpected(other.frame_type().name())),
        }
    }

    /// Sends `message` on a fresh stream id and waits for the frame answering it.
    async fn exchange(&self, message: Message) -> Result<Message, ClientError> {
        let link = self.link().await?;
        let stream_id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&link.pending).insert(stream_id, tx);
        if link
            .outbound
            .send(Frame::new(stream_id, message))
            .await
            .is_err()
        {
            lock(&link.pending).remove(&stream_id);
            return Err(ClientError::ConnectionLost);
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(ClientError::ConnectionLost),
            Err(_) => {
                lock(&link.pending).remove(&stream_id);
                Err(ClientError::TimedOut(self.timeout))
            }
        }
    }

    /// Connects (or reconnects) now; used at start-up to fail fast with a clear message.
    pub async fn ensure_connected(&self) -> Result<(), ClientError> {
        self.link().await.map(drop)
    }

    async fn link(&self) -> Result<Arc<Link>, ClientError> {
        let mut guard = self.link.lock().await;
        if let Some(link) = guard.as_ref()
            && !link.alive.is_cancelled()
        {
            return Ok(link.clone());
        }
        let connect_error = |source| ClientError::Connect {
            addr: self.addr,
            source,
        };
        let mut conn = self.addr.connect().await.map_err(connect_error)?;
        conn.hello(Role::Host).await.map_err(connect_error)?;
        tracing::info!(enclave = %self.addr, "Connected to the enclave.");
        let link = Arc::new(spawn_link(conn));
        *guard = Some(link.clone());
        Ok(link)
    }
}

fn spawn_link(conn: transport::Connection) -> Link {
    let (mut sink, mut stream) = conn.into_framed().split();
    let (outbound, mut rx) = mpsc::channel::<Frame>(1024);
    let pending: Pending = Arc::default();
    let alive = tokio_util::sync::CancellationToken::new();

    // Writer: one task owns the sink, so concurrent requests share the connection.
    let writer_alive = alive.clone();
    let writer_tx = outbound.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = writer_alive.cancelled() => break,
                frame = rx.recv() => match frame {
                    Some(frame) => if sink.send(frame).await.is_err() { break },
                    None => break,
                },
            }
        }
        writer_alive.cancel();
        drop(writer_tx);
    });

    // Reader: routes answers to the waiting requests by stream id.
    let reader_pending = pending.clone();
    let reader_alive = alive.clone();
    let pong_tx = outbound.clone();
    tokio::spawn(async move {
        let reason = loop {
            let frame = tokio::select! {
                () = reader_alive.cancelled() => break "closed",
                frame = stream.next() => frame,
            };
            let frame = match frame {
                Some(Ok(frame)) => frame,
                Some(Err(error)) => {
                    tracing::warn!(%error, "The enclave connection failed.");
                    break "failed";
                }
                None => break "closed by the enclave",
            };
            let Frame { stream_id, message } = frame;
            let answer = match message {
                answer @ (Message::Processed { .. } | Message::Keys { .. }) => Ok(answer),
                Message::Ping { nonce } => {
                    let _ = pong_tx.try_send(Frame::new(stream_id, Message::Pong { nonce }));
                    continue;
                }
                Message::Pong { .. } => continue,
                Message::Error { code, message } if stream_id == CONNECTION_STREAM_ID => {
                    tracing::warn!(code = code.0, %message, "The enclave closed the connection.");
                    break "error frame";
                }
                Message::Error { code, message } => Err(ClientError::Refused {
                    code: code.0,
                    message,
                }),
                other => Err(ClientError::Unexpected(other.frame_type().name())),
            };
            if let Some(waiter) = lock(&reader_pending).remove(&stream_id) {
                let _ = waiter.send(answer);
            }
        };
        tracing::info!(
            reason,
            "The enclave connection ended; requests in flight will be sent again."
        );
        reader_alive.cancel();
        // Dropping the senders wakes every waiter with ConnectionLost.
        lock(&reader_pending).clear();
    });

    Link {
        outbound,
        pending,
        alive,
    }
}
