//! The egress path on TCP loopback: the host proxy, tunnels, TLS through the tunnel, the
//! provider connector and the local forwarder. No internet.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use zenvelope_enclave::egress::{
    EgressConnector, EgressConnectorConfig, EgressError, EgressProxy, EgressProxyConfig,
    LocalForwarder, LocalForwarderConfig, TrustAnchors, TunnelStream, parse_certificates,
};
use zenvelope_enclave::providers::http::Endpoint;
use zenvelope_enclave::providers::{
    ApiKey, ModelRequest, ProviderConfig, ProviderError, ProviderKind, RetryPolicy, build_provider,
};
use zenvelope_enclave::transport::TransportAddr;
use zenvelope_enclave_protocol::EgressPolicy;

const TIMEOUT: Duration = Duration::from_secs(30);
const LOOPBACK: &str = "127.0.0.1";

/// A running proxy; cancelled (and awaited) on drop of the token by the test.
struct Proxy {
    addr: TransportAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Proxy {
    async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(TIMEOUT, self.task).await??;
        Ok(())
    }
}

async fn start_proxy(
    entries: &[String],
    tweak: impl FnOnce(&mut EgressProxyConfig),
) -> Result<Proxy> {
    let listen: TransportAddr = "tcp://127.0.0.1:0".parse()?;
    let mut config = EgressProxyConfig::new(listen, EgressPolicy::from_entries(entries)?);
    tweak(&mut config);
    let proxy = EgressProxy::new(config)?;
    let listener = proxy.bind().await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(proxy.serve(listener, shutdown.clone()));
    Ok(Proxy {
        addr,
        shutdown,
        task,
    })
}

/// An echo server: copies each connection's bytes back, then half-closes after EOF.
/// Counts accepted connections.
async fn echo_server() -> Result<(SocketAddr, Arc<AtomicUsize>)> {
    let listener = TcpListener::bind((LOOPBACK, 0)).await?;
    let addr = listener.local_addr()?;
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut read, mut write) = stream.into_split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    Ok((addr, accepted))
}

fn entry(addr: SocketAddr) -> String {
    addr.to_string()
}

/// Writes `data`, shuts down, and reads everything back concurrently.
async fn echo_through<S: AsyncRead + AsyncWrite>(stream: S, data: &[u8]) -> Result<Vec<u8>> {
    let (mut read, mut write) = tokio::io::split(stream);
    let writer = async {
        for chunk in data.chunks(100_000) {
            write.write_all(chunk).await?;
        }
        write.shutdown().await?;
        io::Result::Ok(())
    };
    let reader = async {
        let mut back = Vec::new();
        read.read_to_end(&mut back).await?;
        io::Result::Ok(back)
    };
    let ((), back) = tokio::try_join!(writer, reader)?;
    Ok(back)
}

#[tokio::test]
async fn tunnel_round_trips_bytes_with_half_close() -> Result<()> {
    tokio::time::timeout(TIMEOUT, async {
        let (echo, _) = echo_server().await?;
        let proxy = start_proxy(&[entry(echo)], |_| {}).await?;

        // A small exchange, then a transfer well above 1 MiB.
        let tunnel = TunnelStream::open(&proxy.addr, LOOPBACK, echo.port()).await?;
        assert_eq!(tunnel.host(), LOOPBACK);
        assert_eq!(echo_through(tunnel, b"hello").await?, b"hello");

        let big: Vec<u8> = (0..3 * 1024 * 1024 / 2)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let tunnel = TunnelStream::open(&proxy.addr, LOOPBACK, echo.port()).await?;
        let back = echo_through(tunnel, &big).await?;
        ensure!(
            back.len() == big.len(),
            "echoed {} of {} bytes",
            back.len(),
            big.len()
        );
        ensure!(back == big, "echoed bytes differ");

        // Half-close: after our shutdown the echo server still sends, and we still read.
        let mut tunnel = TunnelStream::open(&proxy.addr, LOOPBACK, echo.port()).await?;
        tunnel.write_all(b"half").await?;
        tunnel.shutdown().await?;
        let mut back = Vec::new();
        tunnel.read_to_end(&mut back).await?;
        assert_eq!(back, b"half");
        assert!(tunnel.write_all(b"more").await.is_err());
        proxy.stop().await
    })
    .await?
}

#[tokio::test]
async fn destination_off_the_allowlist_is_denied_without_a_connection() -> Result<()> {
    tokio::time::timeout(TIMEOUT, async {
        let (echo, accepted) = echo_server().await?;
        let (other, _) = echo_server().await?;
        let proxy = start_proxy(&[entry(other)], |_| {}).await?;
        let error = TunnelStream::open(&proxy.addr, LOOPBACK, echo.port())
            .await
            .expect_err("not on the allowlist");
        assert!(
            matches!(error, EgressError::Denied { port, .. } if port == echo.port()),
            "{error}"
        );
        let text = error.to_string();
        assert!(
            text.contains(&format!("127.0.0.1:{}", echo.port())),
            "{text}"
        );
        assert!(text.ends_with('.'), "{text}");
        assert_eq!(
            io::Error::from(error).kind(),
            io::ErrorKind::PermissionDenied
        );
        // A name with the right port is not the listed IP either.
        let error = TunnelStream::open(&proxy.addr, "example.com", echo.port())
            .await
            .expect_err("not on the allowlist");
        assert!(matches!(error, EgressError::Denied { .. }), "{error}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            0,
            "the target saw a connection"
        );
        proxy.stop().await
    })
    .await?
}

#[tokio::test]
async fn allowed_name_resolving_to_loopback_is_denied() -> Result<()> {
    tokio::time::timeout(TIMEOUT, async {
        let (echo, accepted) = echo_server().await?;
        let proxy = start_proxy(&[format!("localhost:{}", echo.port())], |_| {}).await?;
        let error = TunnelStream::open(&proxy.addr, "localhost", echo.port())
            .await
            .expect_err("loopback after resolution");
        assert!(matches!(error, EgressError::Denied { .. }), "{error}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 0);
        proxy.stop().await
    })
    .await?
}

#[tokio::test]
async fn closed_port_is_connect_failed() -> Result<()> {
    tokio::time::timeout(TIMEOUT, async {
        let closed = {
            let listener = TcpListener::bind((LOOPBACK, 0)).await?;
            listener.local_addr()?
        };
        let proxy = start_proxy(&[entry(closed)], |_| {}).await?;
        let error = TunnelStream::open(&proxy.addr, LOOPBACK, closed.port())
            .await
            .expect_err("nothing listens");
        assert!(
            matches!(error, EgressError::ConnectFailed { .. }),
            "{error}"
        );
        assert!(error.to_string().contains(&closed.to_string()), "{error}");
        proxy.stop().await
    })
    .await?
}

#[tokio::test]
async fn idle_stream_is_closed_with_timed_out() -> Result<()> {
    tokio::time::timeout(TIMEOUT, async {
        let (echo, _) = echo_server().await?;
        let proxy = start_proxy(&[entry(echo)], |config| config.idle_timeout_ms = 300).await?;
        let mut tunnel = TunnelStream::open(&proxy.addr, LOOPBACK, echo.port()).await?;
        // Activity keeps it open past the timeout...
        for _ in 0..4 {
            tunnel.write_all(b"x").await?;
            tunnel.flush().await?;
            let mut one = [0u8; 1];
            tunnel.read_exact(&mut one).await?;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        // ...silence closes it.
        let started = std::time::Instant::now();
        let mut buf = [0u8; 16];
        let error = tunnel.read(&mut buf).await.expect_err("idle timeout");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(tunnel.write_all(b"late").await.is_err());
        proxy.stop().await
    })
    .await?
}

/// A test CA and a server certificate for 127.0.0.1 signed by it.
struct TestPki {
    ca: CertificateDer<'static>,
    server_cert: CertificateDer<'static>,
    server_key: PrivatePkcs8KeyDer<'static>,
}

fn test_pki() -> Result<TestPki> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "zenvelope egress test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let server_key = KeyPair::generate()?;
    let server_cert =
        CertificateParams::new(vec![LOOPBACK.to_owned()])?.signed_by(&server_key, &ca)?;
    Ok(TestPki {
        ca: ca.der().clone(),
        server_cert: server_cert.der().clone(),
        server_key: PrivatePkcs8KeyDer::from(server_key.serialize_der()),
    })
}

/// Records the raw bytes a server reads and writes (here: what the proxy relayed).
struct Recording<S> {
    inner: S,
    read: Arc<Mutex<Vec<u8>>>,
    written: Arc<Mutex<Vec<u8>>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Recording<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let new = buf.filled()[before..].to_vec();
            self.read.lock().expect("lock").extend_from_slice(&new);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recording<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            self.written
                .lock()
                .expect("lock")
                .extend_from_slice(&buf[..n]);
        }
        result
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn tls_acceptor(pki: &TestPki) -> Result<tokio_rustls::TlsAcceptor> {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(
        vec![pki.server_cert.clone()],
        PrivateKeyDer::Pkcs8(pki.server_key.clone_key()),
    )?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn https_through_the_tunnel_keeps_plaintext_from_the_host() -> Result<()> {
    const REQUEST_MARKER: &[u8] = b"PLAINTEXT_MARKER_REQUEST_4b1d";
    const ANSWER_MARKER: &[u8] = b"PLAINTEXT_MARKER_ANSWER_93ce";
    tokio::time::timeout(TIMEOUT, async {
        let pki = test_pki()?;
        let acceptor = tls_acceptor(&pki)?;
        let listener = TcpListener::bind((LOOPBACK, 0)).await?;
        let server_addr = listener.local_addr()?;
        let relayed_in = Arc::new(Mutex::new(Vec::new()));
        let relayed_out = Arc::new(Mutex::new(Vec::new()));
        let (read_log, write_log) = (relayed_in.clone(), relayed_out.clone());
        let (line_tx, line_rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(async move {
            // First connection: the trusted client. Second: the untrusting one.
            let (stream, _) = listener.accept().await?;
            let recording = Recording {
                inner: stream,
                read: read_log,
                written: write_log,
            };
            let mut tls = acceptor.accept(recording).await?;
            let mut line = Vec::new();
            BufReader::new(&mut tls)
                .read_until(b'\n', &mut line)
                .await?;
            let mut answer = b"got it: ".to_vec();
            answer.extend_from_slice(ANSWER_MARKER);
            answer.push(b'\n');
            tls.write_all(&answer).await?;
            tls.shutdown().await?;
            let _ = line_tx.send(line);
            let (second, _) = listener.accept().await?;
            let _ = acceptor.accept(second).await;
            anyhow::Ok(())
        });

        let proxy = start_proxy(&[entry(server_addr)], |_| {}).await?;
        let mut config = EgressConnectorConfig::new(proxy.addr);
        config.trust_anchors = TrustAnchors::Only(vec![pki.ca.clone()]);
        let connector = EgressConnector::new(config)?;
        let endpoint = Endpoint {
            scheme: "https".to_owned(),
            host: LOOPBACK.to_owned(),
            port: server_addr.port(),
        };
        let mut stream = connector.open(&endpoint).await?;
        let mut request = b"hello ".to_vec();
        request.extend_from_slice(REQUEST_MARKER);
        request.push(b'\n');
        stream.write_all(&request).await?;
        stream.flush().await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        assert!(contains(&answer, ANSWER_MARKER));
        let line = line_rx.await?;
        assert_eq!(line, request, "the server read the plaintext");

        let relayed_in = relayed_in.lock().expect("lock").clone();
        let relayed_out = relayed_out.lock().expect("lock").clone();
        ensure!(!relayed_in.is_empty() && !relayed_out.is_empty());
        // TLS records only: a handshake record (0x16, version 3.x) opens each direction.
        assert_eq!(&relayed_in[..2], &[0x16, 0x03]);
        assert_eq!(&relayed_out[..2], &[0x16, 0x03]);
        assert!(
            !contains(&relayed_in, REQUEST_MARKER),
            "the proxy relayed plaintext"
        );
        assert!(
            !contains(&relayed_out, ANSWER_MARKER),
            "the proxy relayed plaintext"
        );

        // The default trust anchors (webpki-roots) do not trust the test CA.
        let connector = EgressConnector::new(EgressConnectorConfig::new(proxy.addr))?;
        let error = connector
            .open(&endpoint)
            .await
            .err()
            .context("untrusted CA")?;
        assert!(matches!(error, EgressError::Tls { .. }), "{error}");
        tokio::time::timeout(TIMEOUT, server).await???;
        proxy.stop().await
    })
    .await?
}

/// A tiny HTTP/1.1 server answering one chat completion per connection; returns the
/// request lines it saw.
async fn chat_server(
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Result<(SocketAddr, Arc<Mutex<Vec<String>>>)> {
    let listener = TcpListener::bind((LOOPBACK, 0)).await?;
    let addr = listener.local_addr()?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let stream: Box<dyn zenvelope_enclave::providers::http::ByteStream> = match tls {
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(stream) => Box::new(stream),
                        Err(_) => return,
                    },
                    None => Box::new(stream),
                };
                let mut stream = BufReader::new(stream);
                let mut request_line = String::new();
                if stream.read_line(&mut request_line).await.is_err() {
                    return;
                }
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; length];
                if stream.read_exact(&mut body).await.is_err() {
                    return;
                }
                let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                log.lock().expect("lock").push(format!(
                    "{} {}",
                    request_line.trim_end(),
                    parsed["model"]
                ));
                let answer = json!({
                    "model": "local-model",
                    "choices": [{"message": {"role": "assistant", "content": "All clear."}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 3}
                })
                .to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let mut stream = stream.into_inner();
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok((addr, seen))
}

fn provider_config(base_url: String) -> ProviderConfig {
    let mut config = ProviderConfig::from_env(ProviderKind::OpenAi, base_url);
    config.api_key = Some(ApiKey::new("sk-test"));
    config.retry = RetryPolicy {
        max_attempts: 1,
        attempt_timeout_ms: 10_000,
        ..RetryPolicy::default()
    };
    config
}

fn chat_request() -> ModelRequest {
    ModelRequest {
        instruction: "Summarise.".to_owned(),
        input: "The patient feels better.".to_owned(),
        model: "test-model".to_owned(),
        temperature: None,
        max_output_tokens: Some(50),
    }
}

#[tokio::test]
async fn openai_provider_through_the_egress_connector() -> Result<()> {
    tokio::time::timeout(TIMEOUT, async {
        let (server, seen) = chat_server(None).await?;
        let proxy = start_proxy(&[entry(server)], |_| {}).await?;
        let base_url = format!("http://{server}");

        let mut config = EgressConnectorConfig::new(proxy.addr);
        config.allow_plain_http = true;
        let connector = Arc::new(EgressConnector::new(config)?);
        let provider = build_provider(provider_config(base_url.clone()), connector)?;
        let response = provider.complete(chat_request()).await?;
        assert_eq!(response.output, "All clear.");
        assert_eq!(response.model, "local-model");
        assert_eq!(response.input_tokens, Some(12));
        assert_eq!(response.output_tokens, Some(3));
        assert_eq!(response.finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            seen.lock().expect("lock").clone(),
            vec!["POST /v1/chat/completions HTTP/1.1 \"test-model\"".to_owned()]
        );

        // Without allow_plain_http the same base URL is refused before any connection.
        let connector = Arc::new(EgressConnector::new(EgressConnectorConfig::new(
            proxy.addr,
        ))?);
        let provider = build_provider(provider_config(base_url), connector)?;
        let error = provider
            .complete(chat_request())
            .await
            .expect_err("plain http");
        assert!(
            matches!(error, ProviderError::UnsupportedScheme { .. }),
            "{error}"
        );
        assert_eq!(seen.lock().expect("lock").len(), 1);
        proxy.stop().await
    })
    .await?
}

#[tokio::test]
async fn local_forwarder_forwards_tcp() -> Result<()> {
    tokio::time::timeout(TIMEOUT, async {
        let (echo, accepted) = echo_server().await?;
        let proxy = start_proxy(&[entry(echo)], |_| {}).await?;
        let forwarder = LocalForwarder::bind(LocalForwarderConfig::new(
            "127.0.0.1:0".parse()?,
            proxy.addr,
            LOOPBACK,
            echo.port(),
        ))
        .await?;
        let local = forwarder.local_addr();
        assert!(local.ip().is_loopback() && local.port() != 0);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(forwarder.serve(shutdown.clone()));
        for message in [&b"first exchange"[..], &b"second exchange"[..]] {
            let client = TcpStream::connect(local).await?;
            assert_eq!(echo_through(client, message).await?, message);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2);

        // A non-loopback listen address is refused.
        let error = LocalForwarder::bind(LocalForwarderConfig::new(
            "0.0.0.0:0".parse()?,
            proxy.addr,
            LOOPBACK,
            echo.port(),
        ))
        .await
        .expect_err("not loopback");
        assert!(
            matches!(error, EgressError::InvalidConfig { .. }),
            "{error}"
        );

        shutdown.cancel();
        tokio::time::timeout(TIMEOUT, task).await??;
        proxy.stop().await
    })
    .await?
}

#[tokio::test]
async fn many_concurrent_tunnels_and_the_stream_limit() -> Result<()> {
    const STREAMS: usize = 50;
    tokio::time::timeout(TIMEOUT, async {
        let (echo, _) = echo_server().await?;
        let proxy = start_proxy(&[entry(echo)], |config| config.max_streams = STREAMS).await?;
        let addr = proxy.addr;

        // STREAMS tunnels open at once, each round-tripping its own bytes, all held open.
        let opened = futures_util::future::try_join_all((0..STREAMS).map(|i| async move {
            let mut tunnel = TunnelStream::open(&addr, LOOPBACK, echo.port()).await?;
            let message = format!("stream {i}");
            tunnel.write_all(message.as_bytes()).await?;
            tunnel.flush().await?;
            let mut back = vec![0u8; message.len()];
            tunnel.read_exact(&mut back).await?;
            ensure!(back == message.as_bytes(), "stream {i} echoed other bytes");
            anyhow::Ok(tunnel)
        }))
        .await?;
        assert_eq!(opened.len(), STREAMS);

        // One more is refused while they are open.
        let error = TunnelStream::open(&addr, LOOPBACK, echo.port())
            .await
            .expect_err("over the limit");
        assert!(matches!(error, EgressError::Busy { .. }), "{error}");

        // Closing one frees a slot (released when the proxy's stream task ends).
        let mut opened = opened;
        let mut first = opened.pop().context("one tunnel")?;
        first.shutdown().await?;
        let mut rest = Vec::new();
        first.read_to_end(&mut rest).await?;
        drop(first);
        let mut attempts = 0;
        let tunnel = loop {
            match TunnelStream::open(&addr, LOOPBACK, echo.port()).await {
                Ok(tunnel) => break tunnel,
                Err(EgressError::Busy { .. }) if attempts < 50 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => bail!("no slot after a close: {error}"),
            }
        };
        assert_eq!(echo_through(tunnel, b"again").await?, b"again");
        drop(opened);
        proxy.stop().await
    })
    .await?
}

#[test]
fn ca_certificates_parse_from_pem_and_der() -> Result<()> {
    let pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/recipient-cert.pem"
    ))?;
    let from_pem = parse_certificates(&pem)?;
    assert_eq!(from_pem.len(), 1);
    let from_der = parse_certificates(from_pem[0].as_ref())?;
    assert_eq!(from_der, from_pem);
    assert!(matches!(
        parse_certificates(b"not a certificate"),
        Err(EgressError::InvalidCertificate { .. })
    ));
    assert!(matches!(
        parse_certificates(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
        Err(EgressError::InvalidCertificate { .. })
    ));
    // An empty `Only` list is refused rather than trusting nothing silently.
    let config = EgressConnectorConfig {
        trust_anchors: TrustAnchors::Only(Vec::new()),
        ..EgressConnectorConfig::new("tcp://127.0.0.1:1".parse()?)
    };
    assert!(EgressConnector::new(config).is_err());
    Ok(())
}

#[tokio::test]
async fn proxy_speaks_the_egress_protocol_strictly() -> Result<()> {
    use zenvelope_enclave_protocol::{CloseReason, ErrorCode, Frame, Message, Role};
    tokio::time::timeout(TIMEOUT, async {
        let (echo, _) = echo_server().await?;
        let proxy = start_proxy(&[entry(echo)], |_| {}).await?;

        // Anything but EgressOpen after the handshake is refused.
        let mut conn = proxy.addr.connect().await?;
        conn.hello(Role::Enclave).await?;
        conn.send(Frame::new(1, Message::Ping { nonce: 1 })).await?;
        let reply = conn.recv().await?.context("an answer")?;
        assert!(
            matches!(
                reply.message,
                Message::Error {
                    code: ErrorCode::UNEXPECTED_FRAME,
                    ..
                }
            ),
            "{reply:?}"
        );

        // Once open: Ping is answered, data for another connection id is a protocol error.
        let mut conn = proxy.addr.connect().await?;
        conn.hello(Role::Enclave).await?;
        let open = Message::EgressOpen {
            conn_id: 7,
            host: LOOPBACK.to_owned(),
            port: echo.port(),
        };
        conn.send(Frame::new(7, open)).await?;
        assert_eq!(
            conn.recv().await?,
            Some(Frame::new(7, Message::EgressOpened { conn_id: 7 }))
        );
        conn.send(Frame::new(7, Message::Ping { nonce: 99 }))
            .await?;
        assert_eq!(
            conn.recv().await?,
            Some(Frame::new(7, Message::Pong { nonce: 99 }))
        );
        let stray = Message::EgressData {
            conn_id: 8,
            data: b"x".as_slice().into(),
        };
        conn.send(Frame::new(8, stray)).await?;
        assert_eq!(
            conn.recv().await?,
            Some(Frame::new(
                7,
                Message::EgressClose {
                    conn_id: 7,
                    reason: CloseReason::ProtocolError
                }
            ))
        );
        proxy.stop().await
    })
    .await?
}

#[tokio::test]
async fn proxy_shutdown_resets_open_streams() -> Result<()> {
    tokio::time::timeout(TIMEOUT, async {
        let (echo, _) = echo_server().await?;
        let proxy = start_proxy(&[entry(echo)], |_| {}).await?;
        let mut tunnel = TunnelStream::open(&proxy.addr, LOOPBACK, echo.port()).await?;
        let addr = proxy.addr;
        proxy.stop().await?;
        let mut buf = [0u8; 8];
        let error = tunnel.read(&mut buf).await.expect_err("reset by shutdown");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");
        assert!(
            TunnelStream::open(&addr, LOOPBACK, echo.port())
                .await
                .is_err()
        );
        Ok(())
    })
    .await?
}

#[tokio::test]
async fn openai_provider_over_https_through_the_tunnel() -> Result<()> {
    tokio::time::timeout(TIMEOUT, async {
        let pki = test_pki()?;
        let (server, seen) = chat_server(Some(tls_acceptor(&pki)?)).await?;
        let proxy = start_proxy(&[entry(server)], |_| {}).await?;
        let mut config = EgressConnectorConfig::new(proxy.addr);
        config.trust_anchors = TrustAnchors::WebPkiAnd(parse_certificates(pki.ca.as_ref())?);
        let connector = Arc::new(EgressConnector::new(config)?);
        let provider = build_provider(provider_config(format!("https://{server}")), connector)?;
        let response = provider.complete(chat_request()).await?;
        assert_eq!(response.output, "All clear.");
        assert_eq!(seen.lock().expect("lock").len(), 1);
        proxy.stop().await
    })
    .await?
}
