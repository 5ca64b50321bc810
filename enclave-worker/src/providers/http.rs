//! HTTP/1.1 over any byte stream, with timeouts, bounded retries and a body cap.
//!
//! A [`Connector`] yields a stream for an [`Endpoint`]; hyper's connection API
//! (`hyper::client::conn::http1`) speaks HTTP over it. One connection per attempt keeps
//! the state simple; model calls are long compared with a connection set-up.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{BoxFuture, ProviderError, RetryPolicy};

/// A bidirectional byte stream a connector hands to the HTTP client.
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> ByteStream for T {}

/// Where to connect, from the provider base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: String,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// The endpoint of a provider base URL (`https://api.openai.com`,
    /// `http://127.0.0.1:11434/v1`), checked as the providers check it.
    pub fn from_base_url(base: &str) -> Result<Self, ProviderError> {
        BaseUrl::parse(base).map(|b| b.endpoint)
    }

    /// The egress allowlist entry for this endpoint (`host:port`, IPv6 in brackets).
    pub fn allow_entry(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Opens byte streams to endpoints. The enclave's connector will dial the egress tunnel
/// and wrap the stream in TLS; [`TcpConnector`] dials plain TCP.
pub trait Connector: Send + Sync {
    /// Opens a stream to `endpoint`.
    fn connect<'a>(
        &'a self,
        endpoint: &'a Endpoint,
    ) -> BoxFuture<'a, Result<Box<dyn ByteStream>, ProviderError>>;
}

/// Plain TCP, for `http://` base URLs only (loopback, tests, local servers).
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpConnector;

impl Connector for TcpConnector {
    fn connect<'a>(
        &'a self,
        endpoint: &'a Endpoint,
    ) -> BoxFuture<'a, Result<Box<dyn ByteStream>, ProviderError>> {
        Box::pin(async move {
            if endpoint.scheme != "http" {
                return Err(ProviderError::UnsupportedScheme {
                    scheme: endpoint.scheme.clone(),
                });
            }
            let stream = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port))
                .await
                .map_err(|source| ProviderError::Connect {
                    attempts: 1,
                    source,
                })?;
            // Nagle only delays a request written in two parts.
            let _ = stream.set_nodelay(true);
            Ok(Box::new(stream) as Box<dyn ByteStream>)
        })
    }
}

/// A parsed base URL.
#[derive(Debug, Clone)]
pub(crate) struct BaseUrl {
    pub(crate) endpoint: Endpoint,
    /// `Host` header value (with the port when it is not the scheme default).
    host_header: HeaderValue,
    /// Path prefix without a trailing slash (may be empty).
    prefix: String,
}

impl BaseUrl {
    pub(crate) fn parse(base: &str) -> Result<Self, ProviderError> {
        let invalid = |reason| ProviderError::InvalidBaseUrl { reason };
        let uri: Uri = base.parse().map_err(|_| invalid("not a URL"))?;
        let scheme = uri
            .scheme_str()
            .ok_or_else(|| invalid("no scheme"))?
            .to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(invalid("the scheme is neither http nor https")),
        };
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("user information is not allowed"));
        }
        if uri.query().is_some() {
            return Err(invalid("a query is not allowed"));
        }
        let host = authority.host();
        let port = authority.port_u16().unwrap_or(default_port);
        let host_header = HeaderValue::from_str(authority.as_str())
            .map_err(|_| invalid("the host is not a valid header value"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        Ok(Self {
            endpoint: Endpoint { scheme, host, port },
            host_header,
            prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    fn path(&self, suffix: &str) -> String {
        format!("{}{}", self.prefix, suffix)
    }
}

/// A successful (2xx) answer.
pub(crate) struct HttpResponse {
    pub(crate) body: Bytes,
}

/// An HTTP client bound to one base URL and policy.
pub(crate) struct HttpClient {
    base: BaseUrl,
    connector: Arc<dyn Connector>,
    policy: RetryPolicy,
}

/// The result of one attempt that did not succeed.
enum AttemptError {
    /// Worth another attempt; `wait` overrides the backoff (from `retry-after`).
    Retryable {
        error: ProviderError,
        wait: Option<Duration>,
    },
    /// Final.
    Fatal(ProviderError),
}

impl HttpClient {
    pub(crate) fn new(
        base_url: &str,
        connector: Arc<dyn Connector>,
        policy: RetryPolicy,
    ) -> Result<Self, ProviderError> {
        Ok(Self {
            base: BaseUrl::parse(base_url)?,
            connector,
            policy,
        })
    }

    /// POSTs `body` as JSON to `path` (appended to the base path) with extra headers,
    /// retrying per the policy. Returns the body of a 2xx answer.
    pub(crate) async fn post_json(
        &self,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<HttpResponse, ProviderError> {
        let path = self.base.path(path);
        let max_attempts = self.policy.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let result = tokio::time::timeout(
                self.policy.attempt_timeout(),
                self.attempt(&path, headers, body.clone(), attempt),
            )
            .await
            .unwrap_or_else(|_| {
                Err(AttemptError::Retryable {
                    error: ProviderError::Timeout {
                        attempts: attempt,
                        timeout_ms: self.policy.attempt_timeout_ms,
                    },
                    wait: None,
                })
            });
            match result {
                Ok(response) => return Ok(response),
                Err(AttemptError::Fatal(error)) => return Err(error),
                Err(AttemptError::Retryable { error, wait }) => {
                    if attempt >= max_attempts {
                        return Err(error);
                    }
                    tokio::time::sleep(wait.unwrap_or_else(|| self.backoff(attempt))).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Exponential backoff with jitter: a random delay in `[d/2, d]` where
    /// `d = min(base * 2^(attempt-1), max)`.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .policy
            .backoff_base_ms
            .saturating_mul(1u64 << (attempt - 1).min(20));
        let d = exp.min(self.policy.backoff_max_ms);
        let mut buf = [0u8; 8];
        let r = match aws_lc_rs::rand::fill(&mut buf) {
            Ok(()) => u64::from_le_bytes(buf),
            Err(_) => 0,
        };
        let half = d / 2;
        Duration::from_millis(half + r % (d - half + 1))
    }

    async fn attempt(
        &self,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
        attempt: u32,
    ) -> Result<HttpResponse, AttemptError> {
        let request_body = body.clone();
        let request_body = request_body.as_ref();
        let stream =
            self.connector
                .connect(&self.base.endpoint)
                .await
                .map_err(|error| match error {
                    ProviderError::Connect { source, .. } => AttemptError::Retryable {
                        error: ProviderError::Connect {
                            attempts: attempt,
                            source,
                        },
                        wait: None,
                    },
                    other => AttemptError::Fatal(other),
                })?;
        let transport = |source| AttemptError::Retryable {
            error: ProviderError::Transport {
                attempts: attempt,
                source,
            },
            wait: None,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(transport)?;
        // The connection future drives the I/O; abort it when this attempt ends.
        let driver = AbortOnDrop(tokio::spawn(async move {
            let _ = connection.await;
        }));

        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, self.base.host_header.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(CONTENT_LENGTH, body.len());
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let request = builder.body(Full::new(body)).map_err(|_| {
            AttemptError::Fatal(ProviderError::InvalidRequest {
                reason: "the path or a header is invalid",
            })
        })?;
        let response = sender.send_request(request).await.map_err(transport)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|secs| {
                Duration::from_secs(secs).min(Duration::from_millis(self.policy.retry_after_cap_ms))
            });

        let max = self.policy.max_response_bytes;
        let too_large = AttemptError::Fatal(ProviderError::ResponseTooLarge { max_bytes: max });
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max as u64) {
            return Err(too_large);
        }
        let body = match Limited::new(response.into_body(), max).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                if error.is::<http_body_util::LengthLimitError>() {
                    return Err(too_large);
                }
                return match error.downcast::<hyper::Error>() {
                    Ok(source) => Err(transport(*source)),
                    Err(_) => Err(AttemptError::Fatal(ProviderError::InvalidResponse {
                        reason: "the response body could not be read",
                    })),
                };
            }
        };
        drop(driver);

        if status.is_success() {
            return Ok(HttpResponse { body });
        }
        let error = ProviderError::Status {
            status: status.as_u16(),
            attempts: attempt,
            detail: error_detail(&body, request_body),
        };
        if is_retryable(status) {
            Err(AttemptError::Retryable {
                error,
                wait: retry_after,
            })
        } else {
            Err(AttemptError::Fatal(error))
        }
    }
}

/// 429 and the transient 5xx statuses (529 is Anthropic's "overloaded") are retried;
/// everything else is final.
fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504 | 529)
}

/// Extracts `error.type` and `error.code` from an OpenAI- or Anthropic-style error body,
/// keeping only short identifier-like values. The free-text `message` is never used: it
/// can echo the input, and so could the identifiers: any value that occurs in the request
/// body is dropped too.
fn error_detail(body: &[u8], request_body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let error = value.get("error");
    let field = |name: &str| {
        error
            .and_then(|e| e.get(name))
            .and_then(|v| v.as_str())
            .filter(|s| is_identifier(s))
            .filter(|s| !contains(request_body, s.as_bytes()))
    };
    match (field("type"), field("code")) {
        (Some(t), Some(c)) => format!(" (type {t}, code {c})"),
        (Some(t), None) => format!(" (type {t})"),
        (None, Some(c)) => format!(" (code {c})"),
        (None, None) => String::new(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base_urls() {
        let b = BaseUrl::parse("http://127.0.0.1:8080/proxy/").expect("valid");
        assert_eq!(b.endpoint.host, "127.0.0.1");
        assert_eq!(b.endpoint.port, 8080);
        assert_eq!(b.path("/v1/messages"), "/proxy/v1/messages");
        let b = BaseUrl::parse("https://api.openai.com").expect("valid");
        assert_eq!(b.endpoint.port, 443);
        assert_eq!(b.path("/v1/chat/completions"), "/v1/chat/completions");
        let b = BaseUrl::parse("http://[::1]:9/").expect("valid");
        assert_eq!(b.endpoint.host, "::1");
        assert!(BaseUrl::parse("ftp://x").is_err());
        assert!(BaseUrl::parse("http://u:p@x").is_err());
        assert!(BaseUrl::parse("not a url").is_err());
    }

    #[test]
    fn error_detail_keeps_identifiers_only() {
        let body = br#"{"error":{"message":"echo SECRET","type":"invalid_request_error","code":"bad value"}}"#;
        assert_eq!(error_detail(body, b"{}"), " (type invalid_request_error)");
        let body = br#"{"error":{"type":"ECHO_1","code":"rate_limit"}}"#;
        assert_eq!(
            error_detail(body, b"{\"input\":\"ECHO_1\"}"),
            " (code rate_limit)"
        );
        let body = br#"{"type":"error","error":{"type":"overloaded_error","message":"x"}}"#;
        assert_eq!(error_detail(body, b"{}"), " (type overloaded_error)");
        assert_eq!(error_detail(b"<html>", b"{}"), "");
    }
}
