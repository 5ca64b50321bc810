//! A loopback TCP listener inside the enclave that forwards each connection through its
//! own egress tunnel to one fixed destination.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{EgressError, TunnelStream};
use crate::transport::TransportAddr;

/// Default [`LocalForwarderConfig::max_connections`].
pub const DEFAULT_FORWARDER_MAX_CONNECTIONS: usize = 64;

/// Configuration of a [`LocalForwarder`].
#[derive(Debug, Clone)]
pub struct LocalForwarderConfig {
    /// Where to listen: a loopback address (`127.0.0.1:443`, or port 0 for any).
    pub listen: SocketAddr,
    /// The host's egress listener (`vsock://3:PORT` from inside an enclave).
    pub proxy: TransportAddr,
    /// The fixed destination host (must be on the host's allowlist), e.g.
    /// `kms.eu-west-1.amazonaws.com`.
    pub host: String,
    /// The fixed destination port, e.g. 443.
    pub port: u16,
    /// Most connections forwarded at once; further ones wait in the listen backlog.
    pub max_connections: usize,
}

impl LocalForwarderConfig {
    /// A forwarder on `listen` to `host:port` with the default connection limit.
    pub fn new(
        listen: SocketAddr,
        proxy: TransportAddr,
        host: impl Into<String>,
        port: u16,
    ) -> Self {
        Self {
            listen,
            proxy,
            host: host.into(),
            port,
            max_connections: DEFAULT_FORWARDER_MAX_CONNECTIONS,
        }
    }
}

/// Forwards plain TCP connections accepted on a loopback address through egress tunnels
/// to one destination, like AWS's `vsock-proxy` pattern: a client with its own TLS (the
/// AWS SDK talking to KMS) points at the forwarder and keeps TLS end to end with the
/// destination; the forwarder and the host see only TLS records.
#[derive(Debug)]
pub struct LocalForwarder {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: Arc<LocalForwarderConfig>,
}

impl LocalForwarder {
    /// Binds the listener. Refuses a non-loopback address: the forwarder must not be
    /// reachable from outside the enclave.
    pub async fn bind(config: LocalForwarderConfig) -> Result<Self, EgressError> {
        if !config.listen.ip().is_loopback() {
            return Err(EgressError::InvalidConfig {
                reason: "the local forwarder listens on a loopback address only",
            });
        }
        if config.max_connections == 0 || config.max_connections > Semaphore::MAX_PERMITS {
            return Err(EgressError::InvalidConfig {
                reason: "max_connections must be positive",
            });
        }
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            local_addr,
            config: Arc::new(config),
        })
    }

    /// The address actually bound (useful after binding port 0): point the client here.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Forwards connections until `shutdown` is cancelled, then aborts the open ones and
    /// returns once they have ended.
    pub async fn serve(self, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        let permits = Arc::new(Semaphore::new(self.config.max_connections));
        tracing::info!(
            listen = %self.local_addr,
            destination_host = %self.config.host,
            destination_port = self.config.port,
            "Local egress forwarder listening."
        );
        loop {
            let permit = tokio::select! {
                () = shutdown.cancelled() => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((client, _)) => {
                    let config = self.config.clone();
                    let shutdown = shutdown.clone();
                    tracker.spawn(async move {
                        tokio::select! {
                            () = shutdown.cancelled() => {}
                            () = forward(client, &config) => {}
                        }
                        drop(permit);
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "Accepting a local egress connection failed.");
                    drop(permit);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
        tracker.close();
        tracker.wait().await;
    }
}

async fn forward(mut client: TcpStream, config: &LocalForwarderConfig) {
    let _ = client.set_nodelay(true);
    let mut tunnel = match TunnelStream::open(&config.proxy, &config.host, config.port).await {
        Ok(tunnel) => tunnel,
        Err(error) => {
            tracing::warn!(%error, "Forwarding a local connection failed.");
            return;
        }
    };
    match tokio::io::copy_bidirectional(&mut client, &mut tunnel).await {
        Ok((to_remote, from_remote)) => tracing::debug!(
            conn_id = tunnel.conn_id(),
            bytes_outbound = to_remote,
            bytes_inbound = from_remote,
            "Local egress connection closed."
        ),
        Err(error) => tracing::debug!(
            conn_id = tunnel.conn_id(),
            %error,
            "Local egress connection ended with an error."
        ),
    }
}
