//! The enclave's HTTP connector: the egress tunnel, wrapped in TLS for `https`.

use std::fmt;
use std::io;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

use super::{EgressError, TunnelStream};
use crate::providers::http::{ByteStream, Connector, Endpoint};
use crate::providers::{BoxFuture, ProviderError};
use crate::transport::TransportAddr;

/// The only ALPN protocol offered: the provider client speaks HTTP/1.1.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Which certificate authorities the TLS client trusts.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum TrustAnchors {
    /// The Mozilla root program, as compiled into `webpki-roots`.
    #[default]
    WebPki,
    /// The `webpki-roots` set plus these CAs (a private endpoint's CA).
    WebPkiAnd(Vec<CertificateDer<'static>>),
    /// Only these CAs (tests, fully private deployments).
    Only(Vec<CertificateDer<'static>>),
}

impl TrustAnchors {
    fn root_store(&self) -> Result<RootCertStore, EgressError> {
        let mut store = RootCertStore::empty();
        let extra = match self {
            TrustAnchors::WebPki => &[][..],
            TrustAnchors::WebPkiAnd(extra) => extra.as_slice(),
            TrustAnchors::Only(only) => {
                if only.is_empty() {
                    return Err(EgressError::InvalidCertificate {
                        reason: "an `Only` trust anchor list must name at least one CA",
                    });
                }
                only.as_slice()
            }
        };
        if !matches!(self, TrustAnchors::Only(_)) {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for cert in extra {
            store
                .add(cert.clone())
                .map_err(|_| EgressError::InvalidCertificate {
                    reason: "it is not a usable X.509 CA certificate",
                })?;
        }
        Ok(store)
    }
}

/// Parses CA certificates from PEM (one or more `CERTIFICATE` blocks; other blocks are
/// ignored) or from a single DER certificate.
pub fn parse_certificates(pem_or_der: &[u8]) -> Result<Vec<CertificateDer<'static>>, EgressError> {
    let looks_like_pem = pem_or_der
        .windows(b"-----BEGIN".len())
        .any(|w| w == b"-----BEGIN");
    if !looks_like_pem {
        if pem_or_der.first() != Some(&0x30) {
            return Err(EgressError::InvalidCertificate {
                reason: "it is neither PEM nor a DER certificate",
            });
        }
        return Ok(vec![CertificateDer::from(pem_or_der.to_vec())]);
    }
    let certs = CertificateDer::pem_slice_iter(pem_or_der)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| EgressError::InvalidCertificate {
            reason: "the PEM text is malformed",
        })?;
    if certs.is_empty() {
        return Err(EgressError::InvalidCertificate {
            reason: "the PEM text holds no CERTIFICATE block",
        });
    }
    Ok(certs)
}

/// Configuration of [`EgressConnector`].
#[derive(Debug, Clone)]
pub struct EgressConnectorConfig {
    /// The host's egress listener (`vsock://3:PORT` from inside an enclave).
    pub proxy: TransportAddr,
    /// Which CAs the TLS client trusts for `https` endpoints.
    pub trust_anchors: TrustAnchors,
    /// Allow `http://` endpoints (bytes in the clear through the host). Only for loopback
    /// tests and local model servers; off by default.
    pub allow_plain_http: bool,
}

impl EgressConnectorConfig {
    /// HTTPS only, trusting the `webpki-roots` CAs.
    pub fn new(proxy: TransportAddr) -> Self {
        Self {
            proxy,
            trust_anchors: TrustAnchors::default(),
            allow_plain_http: false,
        }
    }
}

/// A [`Connector`] for the model providers: opens a [`TunnelStream`] to the endpoint
/// through the host and, for `https`, runs TLS over it inside the enclave (rustls with
/// the aws-lc-rs provider, SNI and certificate name = the endpoint host, ALPN
/// `http/1.1`). The host relays only TLS records.
#[derive(Clone)]
pub struct EgressConnector {
    proxy: TransportAddr,
    tls: TlsConnector,
    allow_plain_http: bool,
}

impl fmt::Debug for EgressConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressConnector")
            .field("proxy", &self.proxy)
            .field("allow_plain_http", &self.allow_plain_http)
            .finish_non_exhaustive()
    }
}

impl EgressConnector {
    /// Builds the TLS client configuration once.
    pub fn new(config: EgressConnectorConfig) -> Result<Self, EgressError> {
        if config.allow_plain_http {
            tracing::warn!(
                proxy = %config.proxy,
                "Plain HTTP egress is allowed: http:// model endpoints travel unencrypted through the host."
            );
        }
        let roots = config.trust_anchors.root_store()?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        Ok(Self {
            proxy: config.proxy,
            tls: TlsConnector::from(Arc::new(tls)),
            allow_plain_http: config.allow_plain_http,
        })
    }

    /// Opens a stream to `endpoint`: TLS over the tunnel for `https`, the bare tunnel for
    /// `http` when allowed.
    pub async fn open(&self, endpoint: &Endpoint) -> Result<Box<dyn ByteStream>, EgressError> {
        let host = endpoint.host.as_str();
        let port = endpoint.port;
        match endpoint.scheme.as_str() {
            "https" => {
                let name = ServerName::try_from(host.to_owned()).map_err(|_| {
                    EgressError::InvalidServerName {
                        host: host.to_owned(),
                    }
                })?;
                let tunnel = TunnelStream::open(&self.proxy, host, port).await?;
                let tls =
                    self.tls
                        .connect(name, tunnel)
                        .await
                        .map_err(|source| EgressError::Tls {
                            host: host.to_owned(),
                            port,
                            source,
                        })?;
                Ok(Box::new(tls))
            }
            "http" if self.allow_plain_http => {
                Ok(Box::new(TunnelStream::open(&self.proxy, host, port).await?))
            }
            "http" => Err(EgressError::PlainHttpNotAllowed {
                host: host.to_owned(),
                port,
            }),
            _ => Err(EgressError::InvalidConfig {
                reason: "the endpoint scheme is neither http nor https",
            }),
        }
    }
}

impl Connector for EgressConnector {
    fn connect<'a>(
        &'a self,
        endpoint: &'a Endpoint,
    ) -> BoxFuture<'a, Result<Box<dyn ByteStream>, ProviderError>> {
        Box::pin(async move {
            self.open(endpoint).await.map_err(|error| match error {
                EgressError::PlainHttpNotAllowed { .. } | EgressError::InvalidConfig { .. } => {
                    ProviderError::UnsupportedScheme {
                        scheme: endpoint.scheme.clone(),
                    }
                }
                // Everything else is a connection failure naming the destination; the
                // provider retries those within its policy.
                other => ProviderError::Connect {
                    attempts: 1,
                    source: io::Error::from(other),
                },
            })
        })
    }
}
