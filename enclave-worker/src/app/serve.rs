//! [`serve`]: the enclave side of the host connection.
//!
//! The host connects and sends `Hello`; the enclave answers `HelloAck`. Then every
//! `Process` frame runs on its own task (at most `max_in_flight` at once, across
//! connections; above that the frame gets `Error { BUSY }` on its stream id) and is
//! answered with `Processed` on the same stream id. `Ping` gets `Pong`. One writer task
//! owns the write half and takes frames from a channel, so concurrent requests (and the
//! egress relay, see [`FrameRelay`]) share the connection. When the connection is lost,
//! requests in flight still finish (their answers land in the duplicate cache, so the
//! host's redelivery is cheap) and the enclave waits for the next connection.
//!
//! What runs for a `Process` frame is a [`RequestProcessor`]: [`Processor`] in every
//! service. The trait exists so that benchmarks can measure this serving path around a
//! stand-in (`zenvelope-tests`' plaintext baseline); no service builds one.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use zenvelope_enclave_protocol::{CONNECTION_STREAM_ID, ErrorCode, Frame, Message, Opaque, Role};

use super::telemetry::{Busy, HostConnection};
use super::{ProcessedOutcome, Processor};
use crate::transport::{Connection, Listener};

/// How long the host has to send `Hello` after connecting.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept`, so a persistent error does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(200);
/// How long the writer may take to drain at shutdown.
const WRITER_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames queued for the writer beyond the in-flight bound (pongs, busy replies, relay).
const WRITER_QUEUE_SLACK: usize = 64;

/// The per-request work [`serve`] runs for each `Process` frame, on its own task.
///
/// [`Processor`] (open, call the model, seal) is the implementation every service uses.
pub trait RequestProcessor: Send + Sync + 'static {
    /// Processes the request carried by one `Process` frame. Never fails: problems
    /// become dead letters in the outcome.
    fn process(
        &self,
        request_id: [u8; 16],
        bytes: &[u8],
    ) -> impl Future<Output = ProcessedOutcome> + Send;

    /// The encoded key directory entries for a `Keys` frame; none by default.
    fn key_directory(&self) -> impl Future<Output = Vec<Opaque>> + Send {
        async { Vec::new() }
    }
}

impl RequestProcessor for Processor {
    fn process(
        &self,
        request_id: [u8; 16],
        bytes: &[u8],
    ) -> impl Future<Output = ProcessedOutcome> + Send {
        Processor::process(self, request_id, bytes)
    }

    fn key_directory(&self) -> impl Future<Output = Vec<Opaque>> + Send {
        Processor::key_directory(self)
    }
}

/// Where the egress frames of a host connection go (`EgressOpened`, `EgressData`,
/// `EgressClose` from the host). Implemented by the egress tunnel; [`serve`] uses none
/// and drops such frames with a warning.
pub trait FrameRelay: Send + Sync {
    /// A host connection is up: frames sent on `outbound` are written to the host.
    fn connected(&self, outbound: mpsc::Sender<Frame>);
    /// An egress frame from the host.
    fn deliver(&self, frame: Frame);
    /// The host connection is gone; tunnelled connections over it are dead.
    fn disconnected(&self);
}

/// Serves host connections until `shutdown` is cancelled, then lets requests in flight
/// finish and write their answers.
pub async fn serve<P: RequestProcessor>(
    listener: Listener,
    processor: Arc<P>,
    shutdown: CancellationToken,
    max_in_flight: usize,
) {
    serve_with_relay(listener, processor, shutdown, max_in_flight, None).await;
}

/// [`serve`] with an egress relay that receives the host's egress frames.
pub async fn serve_with_relay<P: RequestProcessor>(
    listener: Listener,
    processor: Arc<P>,
    shutdown: CancellationToken,
    max_in_flight: usize,
    relay: Option<Arc<dyn FrameRelay>>,
) {
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let mut conn = match accepted {
            Ok(conn) => conn,
            Err(error) => {
                HostConnection {
                    outcome: "accept_failed",
                    error: Some(&error),
                }
                .emit();
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let hello = tokio::select! {
            () = shutdown.cancelled() => break,
            hello = tokio::time::timeout(HELLO_TIMEOUT, conn.accept_hello(Role::Enclave)) => hello,
        };
        match hello {
            Ok(Ok(_)) => HostConnection {
                outcome: "accepted",
                error: None,
            }
            .emit(),
            Ok(Err(error)) => {
                HostConnection {
                    outcome: "handshake_failed",
                    error: Some(&error),
                }
                .emit();
                continue;
            }
            Err(_) => {
                HostConnection {
                    outcome: "handshake_timeout",
                    error: None,
                }
                .emit();
                continue;
            }
        }
        let session = Session {
            processor: &processor,
            permits: &permits,
            tracker: &tracker,
            max_in_flight,
            relay: relay.as_deref(),
        };
        let writer = session.run(conn, &shutdown).await;
        if shutdown.is_cancelled() {
            tracker.close();
            tracker.wait().await;
            // Every task's sender is gone: the writer drains and closes (bounded, in case
            // a relay still holds a sender).
            let _ = tokio::time::timeout(WRITER_DRAIN_TIMEOUT, writer).await;
            return;
        }
    }
    tracker.close();
    tracker.wait().await;
}

struct Session<'a, P> {
    processor: &'a Arc<P>,
    permits: &'a Arc<Semaphore>,
    tracker: &'a TaskTracker,
    max_in_flight: usize,
    relay: Option<&'a dyn FrameRelay>,
}

impl<P: RequestProcessor> Session<'_, P> {
    /// Reads frames until the connection ends or shutdown; returns the writer task.
    async fn run(
        &self,
        conn: Connection,
        shutdown: &CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let (mut sink, mut stream) = conn.into_framed().split();
        let (tx, mut rx) = mpsc::channel::<Frame>(self.max_in_flight + WRITER_QUEUE_SLACK);
        let writer = tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if let Err(error) = sink.send(frame).await {
                    HostConnection {
                        outcome: "write_failed",
                        error: Some(&error),
                    }
                    .emit();
                    return;
                }
            }
            let _ = SinkExt::<Frame>::close(&mut sink).await;
        });
        if let Some(relay) = self.relay {
            relay.connected(tx.clone());
        }
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => break,
                next = stream.next() => next,
            };
            let frame = match next {
                None => {
                    HostConnection {
                        outcome: "closed",
                        error: None,
                    }
                    .emit();
                    break;
                }
                Some(Err(error)) => {
                    HostConnection {
                        outcome: "lost",
                        error: Some(&error),
                    }
                    .emit();
                    break;
                }
                Some(Ok(frame)) => frame,
            };
            if !self.handle(frame, &tx).await {
                break;
            }
        }
        if let Some(relay) = self.relay {
            relay.disconnected();
        }
        writer
    }

    /// Handles one frame; false when the connection should end.
    async fn handle(&self, frame: Frame, tx: &mpsc::Sender<Frame>) -> bool {
        let stream_id = frame.stream_id;
        match frame.message {
            Message::Process {
                request_id,
                envelope,
            } => {
                let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                    Busy {
                        max_in_flight: self.max_in_flight,
                    }
                    .emit();
                    let busy = Message::Error {
                        code: ErrorCode::BUSY,
                        message: "The enclave is at its in-flight limit; retry later.".to_owned(),
                    };
                    return tx.send(Frame::new(stream_id, busy)).await.is_ok();
                };
                let processor = self.processor.clone();
                let tx = tx.clone();
                self.tracker.spawn(async move {
                    // A separate task, so a panic becomes an INTERNAL error on the stream
                    // instead of a request the host waits for forever.
                    let work = tokio::spawn(async move {
                        processor.process(request_id, envelope.as_bytes()).await
                    });
                    let message = match work.await {
                        Ok(processed) => processed.into_message(),
                        Err(_) => Message::Error {
                            code: ErrorCode::INTERNAL,
                            message: "The enclave failed while processing the request.".to_owned(),
                        },
                    };
                    drop(permit);
                    // If the connection is gone the answer is dropped; the host redelivers.
                    let _ = tx.send(Frame::new(stream_id, message)).await;
                });
                true
            }
            Message::KeysRequest => {
                let processor = self.processor.clone();
                let tx = tx.clone();
                self.tracker.spawn(async move {
                    let entries = processor.key_directory().await;
                    let _ = tx
                        .send(Frame::new(stream_id, Message::Keys { entries }))
                        .await;
                });
                true
            }
            Message::Ping { nonce } => tx
                .send(Frame::new(stream_id, Message::Pong { nonce }))
                .await
                .is_ok(),
            Message::Pong { .. } => true,
            message @ (Message::EgressOpened { .. }
            | Message::EgressData { .. }
            | Message::EgressClose { .. }) => {
                match self.relay {
                    Some(relay) => relay.deliver(Frame::new(stream_id, message)),
                    None => tracing::warn!(
                        stream_id,
                        "Egress frame from the host dropped: no egress relay is attached."
                    ),
                }
                true
            }
            Message::Error { code, .. } if stream_id == CONNECTION_STREAM_ID => {
                tracing::warn!(
                    code = code.0,
                    "The host reported a connection error; closing."
                );
                false
            }
            Message::Error { code, .. } => {
                tracing::warn!(
                    stream_id,
                    code = code.0,
                    "The host reported a stream error."
                );
                true
            }
            other => {
                tracing::warn!(
                    stream_id,
                    frame_type = %other.frame_type(),
                    "Unexpected frame from the host."
                );
                let error = Message::Error {
                    code: ErrorCode::UNEXPECTED_FRAME,
                    message: format!("The enclave does not accept {} frames.", other.frame_type()),
                };
                tx.send(Frame::new(stream_id, error)).await.is_ok()
            }
        }
    }
}
