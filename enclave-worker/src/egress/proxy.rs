//! The host side: the egress proxy that opens allowlisted TCP connections for the enclave.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use zenvelope_enclave_protocol::{
    CloseReason, Destination, EgressHost, EgressPolicy, ErrorCode, Frame, Message, Role,
};

use super::telemetry::{EgressStreamClosed, StreamOutcome};
use super::{EgressError, MAX_CHUNK_BYTES};
use crate::transport::{Connection, Listener, TransportAddr};

/// Default [`EgressProxyConfig::connect_timeout_ms`].
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;
/// Default [`EgressProxyConfig::idle_timeout_ms`]: longer than a model call's per-attempt
/// timeout, because a non-streaming model answer leaves the connection silent while the
/// model generates.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 300_000;
/// Default [`EgressProxyConfig::max_streams`].
pub const DEFAULT_MAX_STREAMS: usize = 256;

/// How long a best-effort final `EgressClose` may take before the connection is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` (e.g. out of file descriptors) before the next one.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Configuration of the host's egress proxy.
#[derive(Debug, Clone)]
pub struct EgressProxyConfig {
    /// Where the proxy listens for the enclave's egress connections; in production a vsock
    /// address on the parent (`vsock://4294967295:PORT`, any CID), in tests TCP loopback.
    pub listen: TransportAddr,
    /// The allowlist of destinations.
    pub policy: EgressPolicy,
    /// Timeout for the enclave's handshake and `EgressOpen`, and separately for resolving
    /// and connecting to the destination, in milliseconds.
    pub connect_timeout_ms: u64,
    /// A stream with no bytes in either direction for this long is closed
    /// (`EgressClose{TimedOut}`), in milliseconds.
    pub idle_timeout_ms: u64,
    /// Most streams relayed at once; further `EgressOpen`s are refused with an `Error`
    /// frame (code busy).
    pub max_streams: usize,
}

impl EgressProxyConfig {
    /// A configuration with the default timeouts and stream limit.
    pub fn new(listen: TransportAddr, policy: EgressPolicy) -> Self {
        Self {
            listen,
            policy,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            max_streams: DEFAULT_MAX_STREAMS,
        }
    }
}

/// The host's egress proxy. Each enclave connection to its listener carries exactly one
/// egress stream: `Hello`, `EgressOpen`, then `EgressData` both ways until `EgressClose`.
///
/// The proxy checks the [`EgressPolicy`], resolves names (refusing loopback, link-local,
/// unspecified, multicast and broadcast results; IP literals are used only when listed
/// exactly), connects with a timeout, and relays bytes with an idle timeout. It never
/// looks inside the bytes: HTTPS is end to end between the enclave and the destination.
/// Each stream ends with one log event (destination, bytes each way, outcome) and the
/// metrics in [`telemetry`](super::telemetry).
#[derive(Debug)]
pub struct EgressProxy {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: EgressProxyConfig,
    permits: Arc<Semaphore>,
}

impl EgressProxy {
    /// Creates the proxy; fails on a zero timeout or stream limit.
    pub fn new(config: EgressProxyConfig) -> Result<Self, EgressError> {
        if config.connect_timeout_ms == 0 || config.idle_timeout_ms == 0 {
            return Err(EgressError::InvalidConfig {
                reason: "the connect and idle timeouts must be positive",
            });
        }
        if config.max_streams == 0 || config.max_streams > Semaphore::MAX_PERMITS {
            return Err(EgressError::InvalidConfig {
                reason: "max_streams must be positive",
            });
        }
        let permits = Arc::new(Semaphore::new(config.max_streams));
        Ok(Self {
            shared: Arc::new(Shared { config, permits }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EgressProxyConfig {
        &self.shared.config
    }

    /// Binds the configured listen address.
    pub async fn bind(&self) -> Result<Listener, EgressError> {
        Ok(self.shared.config.listen.bind().await?)
    }

    /// Accepts egress connections on `listener` until `shutdown` is cancelled, then aborts
    /// the streams still open (`EgressClose{Reset}`) and returns once they have ended.
    /// Stop the enclave's work before cancelling, so that no model call is cut off.
    pub async fn serve(self, listener: Listener, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        tracing::info!(
            listen = %self.shared.config.listen,
            destinations = self.shared.config.policy.destinations().count(),
            max_streams = self.shared.config.max_streams,
            "Egress proxy listening."
        );
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok(conn) => {
                    let permit = self.shared.permits.clone().try_acquire_owned().ok();
                    let shared = self.shared.clone();
                    let shutdown = shutdown.clone();
                    tracker.spawn(handle_connection(conn, permit, shared, shutdown));
                }
                Err(error) => {
                    tracing::warn!(%error, "Accepting an egress connection failed.");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            }
        }
        tracker.close();
        tracker.wait().await;
        tracing::info!("Egress proxy stopped.");
    }
}

/// What one stream did, for its single log event.
struct StreamRecord {
    conn_id: u32,
    destination: String,
    start: Instant,
    outbound: AtomicU64,
    inbound: AtomicU64,
}

impl StreamRecord {
    fn emit(&self, outcome: StreamOutcome) {
        EgressStreamClosed {
            conn_id: self.conn_id,
            destination: &self.destination,
            outcome,
            bytes_outbound: self.outbound.load(Ordering::Relaxed),
            bytes_inbound: self.inbound.load(Ordering::Relaxed),
            duration: self.start.elapsed(),
        }
        .emit();
    }
}

/// The destination as it goes into the log: normalised when it parses, escaped otherwise.
fn log_destination(host: &str, port: u16) -> String {
    match EgressHost::parse(host) {
        Ok(host) => Destination { host, port }.to_string(),
        Err(_) => format!("{host:?}:{port}"),
    }
}

async fn handle_connection(
    mut conn: Connection,
    permit: Option<OwnedSemaphorePermit>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let config = &shared.config;
    let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
    let mut record = StreamRecord {
        conn_id: 0,
        destination: String::new(),
        start: Instant::now(),
        outbound: AtomicU64::new(0),
        inbound: AtomicU64::new(0),
    };

    // Handshake and the open request, bounded by the connect timeout and by shutdown.
    let opening = tokio::time::timeout(connect_timeout, async {
        conn.accept_hello(Role::Host).await?;
        conn.recv().await
    });
    let opening = tokio::select! {
        opening = opening => opening,
        () = shutdown.cancelled() => return record.emit(StreamOutcome::Shutdown),
    };
    let (conn_id, host, port) = match opening {
        Ok(Ok(Some(Frame {
            stream_id,
            message:
                Message::EgressOpen {
                    conn_id,
                    host,
                    port,
                },
        }))) if conn_id != 0 && stream_id == u64::from(conn_id) => (conn_id, host, port),
        Ok(Ok(Some(_))) => {
            conn.abort(
                ErrorCode::UNEXPECTED_FRAME,
                "The first frame after the handshake must be EgressOpen.",
            )
            .await;
            return record.emit(StreamOutcome::ProtocolError);
        }
        Ok(Ok(None)) => return record.emit(StreamOutcome::Reset),
        Ok(Err(error)) => {
            tracing::warn!(%error, "An egress connection failed before EgressOpen.");
            conn.abort(
                ErrorCode::PROTOCOL_VIOLATION,
                "The egress handshake failed.",
            )
            .await;
            return record.emit(StreamOutcome::ProtocolError);
        }
        Err(_) => return record.emit(StreamOutcome::TimedOut),
    };
    record.conn_id = conn_id;
    record.destination = log_destination(&host, port);

    let Some(permit) = permit else {
        conn.abort(ErrorCode::BUSY, "The egress proxy is at its stream limit.")
            .await;
        return record.emit(StreamOutcome::Busy);
    };

    let refuse = |reason| Frame::new(u64::from(conn_id), Message::EgressClose { conn_id, reason });
    let destination = match config.policy.check(&host, port) {
        Ok(destination) => destination,
        Err(_) => {
            let _ = send_and_close(conn, refuse(CloseReason::Denied)).await;
            return record.emit(StreamOutcome::Denied);
        }
    };
    let connecting = tokio::time::timeout(connect_timeout, connect(&destination));
    let connected = tokio::select! {
        connected = connecting => connected,
        () = shutdown.cancelled() => {
            let _ = send_and_close(conn, refuse(CloseReason::Reset)).await;
            return record.emit(StreamOutcome::Shutdown);
        }
    };
    let tcp = match connected {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(ConnectError::Forbidden)) => {
            tracing::warn!(
                conn_id,
                destination = %record.destination,
                "An allowed egress name resolved only to forbidden addresses."
            );
            let _ = send_and_close(conn, refuse(CloseReason::Denied)).await;
            return record.emit(StreamOutcome::Denied);
        }
        Ok(Err(ConnectError::Io(error))) => {
            tracing::debug!(conn_id, %error, "Egress connect failed.");
            let _ = send_and_close(conn, refuse(CloseReason::ConnectFailed)).await;
            return record.emit(StreamOutcome::ConnectFailed);
        }
        Err(_) => {
            let _ = send_and_close(conn, refuse(CloseReason::TimedOut)).await;
            return record.emit(StreamOutcome::TimedOut);
        }
    };
    let opened = Frame::new(u64::from(conn_id), Message::EgressOpened { conn_id });
    if conn.send(opened).await.is_err() {
        return record.emit(StreamOutcome::Reset);
    }
    let outcome = relay(conn, tcp, conn_id, config, &record, &shutdown).await;
    drop(permit);
    record.emit(outcome);
}

/// Sends one last frame and closes, bounded by [`CLOSE_GRACE`].
async fn send_and_close(mut conn: Connection, frame: Frame) -> Result<(), ()> {
    let done = tokio::time::timeout(CLOSE_GRACE, async {
        conn.send(frame).await?;
        conn.close().await
    })
    .await;
    match done {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

enum ConnectError {
    /// The name resolved, but only to addresses the proxy never connects to.
    Forbidden,
    Io(std::io::Error),
}

/// Addresses a resolved name must never lead to: loopback, link-local (instance
/// metadata), unspecified, multicast, broadcast. IP literals on the allowlist bypass this
/// check, because an operator listed that exact address.
fn is_forbidden(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(ip) => {
            ip.is_loopback()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_multicast()
                || ip.is_broadcast()
        }
        IpAddr::V6(ip) => {
            ip.is_loopback()
                || ip.is_unicast_link_local()
                || ip.is_unspecified()
                || ip.is_multicast()
        }
    }
}

async fn connect(destination: &Destination) -> Result<TcpStream, ConnectError> {
    let candidates: Vec<SocketAddr> = match &destination.host {
        EgressHost::Ip(ip) => vec![SocketAddr::new(*ip, destination.port)],
        EgressHost::Name(name) => {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), destination.port))
                    .await
                    .map_err(ConnectError::Io)?
                    .collect();
            let allowed: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|addr| !is_forbidden(addr.ip()))
                .collect();
            if allowed.is_empty() && !resolved.is_empty() {
                return Err(ConnectError::Forbidden);
            }
            allowed
        }
    };
    let mut last_error = std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "the name resolved to no address",
    );
    for addr in candidates {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // TLS records are small and latency-bound; Nagle only delays them.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(error) => last_error = error,
        }
    }
    Err(ConnectError::Io(last_error))
}

/// Why a relay ended early.
enum Abort {
    /// The destination reset or failed: tell the enclave `Reset`.
    Remote,
    /// The enclave reset or aborted the stream: nothing to tell it.
    Enclave,
    /// The enclave broke the protocol.
    Protocol,
}

/// What the enclave-to-destination direction saw last.
enum UpEnd {
    /// `EgressClose{Normal}`: the destination's write side was shut down.
    HalfClosed,
    /// The enclave closed the transport connection: the stream is over.
    Gone,
}

/// Relays until both sides closed, one side aborted, the idle timeout or shutdown.
async fn relay(
    conn: Connection,
    mut tcp: TcpStream,
    conn_id: u32,
    config: &EgressProxyConfig,
    record: &StreamRecord,
    shutdown: &CancellationToken,
) -> StreamOutcome {
    let stream_id = u64::from(conn_id);
    let (sink, mut frames) = conn.into_framed().split();
    let sink = Mutex::new(sink);
    let (mut tcp_read, mut tcp_write) = tcp.split();
    let last_activity_ms = AtomicU64::new(0);
    let touch = || {
        let ms = u64::try_from(record.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        last_activity_ms.store(ms, Ordering::Relaxed);
    };
    let idle = Duration::from_millis(config.idle_timeout_ms);

    // The direction futures live in this block, so that any lock they hold on the sink is
    // released before the final close frame is sent.
    let (outcome, tell) = {
        let up = async {
            loop {
                let frame = match frames.next().await {
                    Some(Ok(frame)) => frame,
                    Some(Err(_)) => return Err(Abort::Protocol),
                    None => return Ok(UpEnd::Gone),
                };
                touch();
                let own = frame.stream_id == stream_id;
                match frame.message {
                    Message::EgressData { conn_id: id, data } if own && id == conn_id => {
                        tcp_write
                            .write_all(data.as_bytes())
                            .await
                            .map_err(|_| Abort::Remote)?;
                        record
                            .outbound
                            .fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    Message::EgressClose {
                        conn_id: id,
                        reason: CloseReason::Normal,
                    } if own && id == conn_id => {
                        let _ = tcp_write.shutdown().await;
                        return Ok(UpEnd::HalfClosed);
                    }
                    Message::EgressClose { conn_id: id, .. } if own && id == conn_id => {
                        return Err(Abort::Enclave);
                    }
                    Message::Ping { nonce } => {
                        let pong = Frame::new(frame.stream_id, Message::Pong { nonce });
                        sink.lock()
                            .await
                            .send(pong)
                            .await
                            .map_err(|_| Abort::Enclave)?;
                    }
                    Message::Pong { .. } => {}
                    Message::Error { .. } => return Err(Abort::Enclave),
                    _ => return Err(Abort::Protocol),
                }
            }
        };

        let down = async {
            let mut buf = vec![0u8; MAX_CHUNK_BYTES];
            loop {
                let n = tcp_read.read(&mut buf).await.map_err(|_| Abort::Remote)?;
                let message = if n == 0 {
                    Message::EgressClose {
                        conn_id,
                        reason: CloseReason::Normal,
                    }
                } else {
                    touch();
                    Message::EgressData {
                        conn_id,
                        data: buf[..n].into(),
                    }
                };
                sink.lock()
                    .await
                    .send(Frame::new(stream_id, message))
                    .await
                    .map_err(|_| Abort::Enclave)?;
                if n == 0 {
                    return Ok(());
                }
                record.inbound.fetch_add(n as u64, Ordering::Relaxed);
            }
        };

        let idle_expired = async {
            loop {
                let seen = last_activity_ms.load(Ordering::Relaxed);
                let deadline = record.start + Duration::from_millis(seen) + idle;
                tokio::time::sleep_until(deadline).await;
                if last_activity_ms.load(Ordering::Relaxed) == seen {
                    return;
                }
            }
        };

        tokio::pin!(up, down, idle_expired);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            tokio::select! {
                result = &mut up, if !up_done => match result {
                    Ok(UpEnd::HalfClosed) => up_done = true,
                    Ok(UpEnd::Gone) => break (StreamOutcome::Normal, None),
                    Err(abort) => break abort_outcome(abort),
                },
                result = &mut down, if !down_done => match result {
                    Ok(()) => down_done = true,
                    Err(abort) => break abort_outcome(abort),
                },
                () = &mut idle_expired => break (StreamOutcome::TimedOut, Some(CloseReason::TimedOut)),
                () = shutdown.cancelled() => break (StreamOutcome::Shutdown, Some(CloseReason::Reset)),
            }
            if up_done && down_done {
                break (StreamOutcome::Normal, None);
            }
        }
    };
    if let Some(reason) = tell {
        let close = Frame::new(stream_id, Message::EgressClose { conn_id, reason });
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            let mut sink = sink.lock().await;
            let _ = sink.send(close).await;
            let _ = sink.close().await;
        })
        .await;
    }
    outcome
}

fn abort_outcome(abort: Abort) -> (StreamOutcome, Option<CloseReason>) {
    match abort {
        Abort::Remote => (StreamOutcome::Reset, Some(CloseReason::Reset)),
        Abort::Enclave => (StreamOutcome::Reset, None),
        Abort::Protocol => (
            StreamOutcome::ProtocolError,
            Some(CloseReason::ProtocolError),
        ),
    }
}
