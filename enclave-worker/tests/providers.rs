//! Model providers against an in-process HTTP/1.1 server that speaks each provider's JSON.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use zenvelope_enclave::providers::http::TcpConnector;
use zenvelope_enclave::providers::{
    AnthropicProvider, ApiKey, MaxTokensField, ModelProvider, ModelRequest, OfflineAnalyser,
    OpenAiProvider, ProviderConfig, ProviderError, ProviderKind, RetryPolicy, build_provider,
};

const CANARY: &str = "CANARY_PHI_7f3a9c";

/// What the server does with the n-th connection.
#[derive(Clone)]
enum Reply {
    /// Answer with a status, extra headers and a body (with `content-length`).
    Status(u16, Vec<(&'static str, String)>, String),
    /// Answer 200 with a body delimited by closing the connection (no `content-length`).
    CloseDelimited(String),
    /// Raw bytes, as they are.
    Raw(Vec<u8>),
    /// Read the request and never answer.
    Hang,
}

fn ok(body: Value) -> Reply {
    Reply::Status(200, vec![], body.to_string())
}

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Value,
}

struct Server {
    base_url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }
}

/// Serves `replies` in order, one connection each; the last one repeats.
async fn serve(replies: Vec<Reply>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let requests = Arc::new(Mutex::new(Vec::new()));
    let recorded = requests.clone();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let reply = replies[n.min(replies.len() - 1)].clone();
            n += 1;
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                let Some(request) = read_request(&mut stream).await else {
                    return;
                };
                recorded.lock().expect("lock").push(request);
                let mut stream = stream.into_inner();
                let bytes = match reply {
                    Reply::Status(status, headers, body) => {
                        let mut head = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                            body.len()
                        );
                        for (name, value) in headers {
                            head.push_str(&format!("{name}: {value}\r\n"));
                        }
                        head.push_str("\r\n");
                        [head.into_bytes(), body.into_bytes()].concat()
                    }
                    Reply::CloseDelimited(body) => [
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n"
                            .to_vec(),
                        body.into_bytes(),
                    ]
                    .concat(),
                    Reply::Raw(bytes) => bytes,
                    Reply::Hang => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                };
                let _ = stream.write_all(&bytes).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Server {
        base_url: format!("http://{addr}"),
        requests,
    }
}

async fn read_request(stream: &mut BufReader<tokio::net::TcpStream>) -> Option<Recorded> {
    let mut line = String::new();
    stream.read_line(&mut line).await.ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await.ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let len: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await.ok()?;
    Some(Recorded {
        method,
        path,
        headers,
        body: serde_json::from_slice(&body).ok()?,
    })
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        attempt_timeout_ms: 2_000,
        backoff_base_ms: 10,
        backoff_max_ms: 40,
        retry_after_cap_ms: 300,
        max_response_bytes: 64 * 1024,
    }
}

fn config(kind: ProviderKind, base_url: &str, key: Option<&str>) -> ProviderConfig {
    ProviderConfig {
        kind,
        base_url: base_url.to_owned(),
        api_key: key.map(ApiKey::new),
        default_max_output_tokens: 777,
        openai_max_tokens_field: MaxTokensField::MaxCompletionTokens,
        retry: fast_policy(),
    }
}

fn openai(base_url: &str) -> OpenAiProvider {
    OpenAiProvider::new(
        config(ProviderKind::OpenAi, base_url, Some("sk-test-123")),
        Arc::new(TcpConnector),
    )
    .expect("provider")
}

fn anthropic(base_url: &str) -> AnthropicProvider {
    AnthropicProvider::new(
        config(ProviderKind::Anthropic, base_url, Some("sk-ant-test")),
        Arc::new(TcpConnector),
    )
    .expect("provider")
}

fn request() -> ModelRequest {
    ModelRequest {
        instruction: "Summarise the note.".to_owned(),
        input: format!("Patient note {CANARY}. Feels better."),
        model: "test-model".to_owned(),
        temperature: Some(0.5),
        max_output_tokens: Some(100),
    }
}

fn openai_answer(text: &str) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "test-model-2025",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
    })
}

fn anthropic_answer() -> Value {
    json!({
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [
            {"type": "text", "text": "Hello, "},
            {"type": "text", "text": "world."}
        ],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": 21, "output_tokens": 4}
    })
}

#[tokio::test]
async fn openai_success_sends_the_real_request_shape() {
    let server = serve(vec![ok(openai_answer("A summary."))]).await;
    let response = openai(&server.base_url)
        .complete(request())
        .await
        .expect("success");
    assert_eq!(response.output, "A summary.");
    assert_eq!(response.model, "test-model-2025");
    assert_eq!(response.provider, "openai");
    assert_eq!(response.input_tokens, Some(12));
    assert_eq!(response.output_tokens, Some(5));
    assert_eq!(response.finish_reason.as_deref(), Some("stop"));

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.headers["authorization"], "Bearer sk-test-123");
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(r.headers["host"].starts_with("127.0.0.1:"));
    assert_eq!(
        r.body,
        json!({
            "model": "test-model",
            "messages": [
                {"role": "system", "content": "Summarise the note."},
                {"role": "user", "content": format!("Patient note {CANARY}. Feels better.")}
            ],
            "temperature": 0.5,
            "max_completion_tokens": 100
        })
    );
}

#[tokio::test]
async fn openai_compatible_server_without_key_and_legacy_max_tokens() {
    let server = serve(vec![ok(openai_answer("ok"))]).await;
    let mut cfg = config(
        ProviderKind::OpenAi,
        &format!("{}/proxy/", server.base_url),
        None,
    );
    cfg.openai_max_tokens_field = MaxTokensField::MaxTokens;
    let provider = build_provider(cfg, Arc::new(TcpConnector)).expect("provider");
    let mut req = request();
    req.instruction.clear();
    req.temperature = None;
    provider.complete(req).await.expect("success");
    let r = &server.requests()[0];
    assert_eq!(r.path, "/proxy/v1/chat/completions");
    assert!(!r.headers.contains_key("authorization"));
    assert_eq!(
        r.body,
        json!({
            "model": "test-model",
            "messages": [{"role": "user", "content": format!("Patient note {CANARY}. Feels better.")}],
            "max_tokens": 100
        })
    );
}

#[tokio::test]
async fn anthropic_success_sends_the_real_request_shape() {
    let server = serve(vec![ok(anthropic_answer())]).await;
    let response = anthropic(&server.base_url)
        .complete(request())
        .await
        .expect("success");
    assert_eq!(response.output, "Hello, world.");
    assert_eq!(response.model, "claude-test");
    assert_eq!(response.provider, "anthropic");
    assert_eq!(response.input_tokens, Some(21));
    assert_eq!(response.output_tokens, Some(4));
    assert_eq!(response.finish_reason.as_deref(), Some("end_turn"));

    let r = &server.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.headers["x-api-key"], "sk-ant-test");
    assert_eq!(r.headers["anthropic-version"], "2023-06-01");
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(!r.headers.contains_key("authorization"));
    assert_eq!(
        r.body,
        json!({
            "model": "test-model",
            "max_tokens": 100,
            "system": "Summarise the note.",
            "messages": [{"role": "user", "content": format!("Patient note {CANARY}. Feels better.")}],
            "temperature": 0.5
        })
    );
}

#[tokio::test]
async fn anthropic_fills_in_the_required_max_tokens() {
    let server = serve(vec![ok(anthropic_answer())]).await;
    let mut req = request();
    req.max_output_tokens = None;
    req.instruction.clear();
    anthropic(&server.base_url)
        .complete(req)
        .await
        .expect("success");
    let body = &server.requests()[0].body;
    assert_eq!(body["max_tokens"], 777);
    assert!(body.get("system").is_none());
}

#[tokio::test]
async fn retries_429_and_honours_a_capped_retry_after() {
    let server = serve(vec![
        Reply::Status(
            429,
            vec![("retry-after", "30".to_owned())],
            json!({"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}})
                .to_string(),
        ),
        ok(openai_answer("after retry")),
    ])
    .await;
    let start = Instant::now();
    let response = openai(&server.base_url)
        .complete(request())
        .await
        .expect("success after retry");
    let elapsed = start.elapsed();
    assert_eq!(response.output, "after retry");
    assert_eq!(server.requests().len(), 2);
    // retry-after: 30 s, capped at 300 ms: it waited at least the cap, and nowhere near the
    // 30 s asked for (the ceiling is generous so a loaded CI machine cannot flake it).
    assert!(elapsed >= Duration::from_millis(290), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[tokio::test]
async fn gives_up_after_max_attempts_on_500() {
    let server = serve(vec![Reply::Status(500, vec![], "{}".to_owned())]).await;
    let error = openai(&server.base_url)
        .complete(request())
        .await
        .expect_err("fails");
    assert!(
        matches!(
            error,
            ProviderError::Status {
                status: 500,
                attempts: 3,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(server.requests().len(), 3);
    assert_eq!(
        error.to_string(),
        "The model provider answered HTTP 500 after 3 attempt(s)."
    );
}

#[tokio::test]
async fn anthropic_overloaded_reports_the_error_type() {
    let body =
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
    let server = serve(vec![Reply::Status(529, vec![], body.to_string())]).await;
    let error = anthropic(&server.base_url)
        .complete(request())
        .await
        .expect_err("fails");
    // 529 (overloaded) is retried like 503.
    assert_eq!(server.requests().len(), 3);
    assert_eq!(
        error.to_string(),
        "The model provider answered HTTP 529 (type overloaded_error) after 3 attempt(s)."
    );
}

#[tokio::test]
async fn does_not_retry_401() {
    let body = json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}});
    let server = serve(vec![Reply::Status(401, vec![], body.to_string())]).await;
    let error = openai(&server.base_url)
        .complete(request())
        .await
        .expect_err("fails");
    assert!(
        matches!(
            error,
            ProviderError::Status {
                status: 401,
                attempts: 1,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(server.requests().len(), 1);
    assert!(error.to_string().contains("invalid_api_key"));
}

#[tokio::test]
async fn times_out_within_bounds() {
    let server = serve(vec![Reply::Hang]).await;
    let mut cfg = config(ProviderKind::OpenAi, &server.base_url, Some("k"));
    cfg.retry.attempt_timeout_ms = 200;
    cfg.retry.max_attempts = 2;
    let provider = OpenAiProvider::new(cfg, Arc::new(TcpConnector)).expect("provider");
    let start = Instant::now();
    let error = provider.complete(request()).await.expect_err("times out");
    let elapsed = start.elapsed();
    assert!(
        matches!(
            error,
            ProviderError::Timeout {
                attempts: 2,
                timeout_ms: 200
            }
        ),
        "{error:?}"
    );
    // Two attempts of 200 ms each: at least 400 ms, and it did not hang (the server never
    // answers); the ceiling is generous so a loaded CI machine cannot flake it.
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[tokio::test]
async fn garbage_and_incomplete_json_are_invalid_responses() {
    for body in [
        "this is not json".to_owned(),
        json!({"choices": []}).to_string(),
        json!({"choices": [{"message": {"content": null}}]}).to_string(),
    ] {
        let server = serve(vec![Reply::Status(200, vec![], body)]).await;
        let error = openai(&server.base_url)
            .complete(request())
            .await
            .expect_err("invalid");
        assert!(
            matches!(error, ProviderError::InvalidResponse { .. }),
            "{error:?}"
        );
        assert_eq!(server.requests().len(), 1, "parse errors are not retried");
    }
    for body in [
        "{".to_owned(),
        json!({"content": [{"type": "tool_use", "id": "x", "name": "y", "input": {}}]}).to_string(),
    ] {
        let server = serve(vec![Reply::Status(200, vec![], body)]).await;
        let error = anthropic(&server.base_url)
            .complete(request())
            .await
            .expect_err("invalid");
        assert!(
            matches!(error, ProviderError::InvalidResponse { .. }),
            "{error:?}"
        );
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let big = format!("\"{}\"", "x".repeat(200 * 1024));
    // Declared by content-length, and delimited by close (read until the cap).
    for reply in [
        Reply::Status(200, vec![], big.clone()),
        Reply::CloseDelimited(big),
    ] {
        let server = serve(vec![reply]).await;
        let error = openai(&server.base_url)
            .complete(request())
            .await
            .expect_err("too large");
        assert!(
            matches!(error, ProviderError::ResponseTooLarge { max_bytes: 65_536 }),
            "{error:?}"
        );
        assert_eq!(server.requests().len(), 1);
    }
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let error = openai(&format!("http://{addr}"))
        .complete(request())
        .await
        .expect_err("refused");
    assert!(
        matches!(error, ProviderError::Connect { attempts: 3, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn https_needs_a_tls_connector() {
    let error = openai("https://api.openai.com")
        .complete(request())
        .await
        .expect_err("no TLS on plain TCP");
    assert!(
        matches!(error, ProviderError::UnsupportedScheme { ref scheme } if scheme == "https"),
        "{error:?}"
    );
    assert!(matches!(
        OpenAiProvider::new(
            config(ProviderKind::OpenAi, "ftp://x", None),
            Arc::new(TcpConnector)
        ),
        Err(ProviderError::InvalidBaseUrl { .. })
    ));
}

#[tokio::test]
async fn the_canary_prompt_never_appears_in_errors_or_debug() {
    let echo = json!({"error": {"message": format!("bad input: {CANARY}"), "type": CANARY, "code": CANARY}})
        .to_string();
    let replies = vec![
        Reply::Status(400, vec![], echo.clone()),
        Reply::Status(500, vec![], echo),
        Reply::Status(200, vec![], format!("not json {CANARY}")),
        Reply::Status(
            200,
            vec![],
            json!({"choices": [{"message": {"content": 5}}], "model": CANARY}).to_string(),
        ),
        Reply::Status(
            200,
            vec![],
            json!({"content": [{"type": "text", "text": 5}], "echo": CANARY}).to_string(),
        ),
        Reply::Raw(format!("HTTP/1.1 2{CANARY}\r\n\r\n").into_bytes()),
    ];
    let mut errors = Vec::new();
    for reply in replies {
        let server = serve(vec![reply]).await;
        errors.push(
            openai(&server.base_url)
                .complete(request())
                .await
                .expect_err("fails"),
        );
        errors.push(
            anthropic(&server.base_url)
                .complete(request())
                .await
                .expect_err("fails"),
        );
    }
    for error in &errors {
        let text = format!("{error} {error:?}");
        assert!(!text.contains(CANARY), "leak: {text}");
        assert!(!text.contains("sk-test-123") && !text.contains("sk-ant-test"));
    }

    let text = format!("{:?}", request());
    assert!(!text.contains(CANARY), "{text}");
    let server = serve(vec![ok(openai_answer(CANARY))]).await;
    let response = openai(&server.base_url)
        .complete(request())
        .await
        .expect("ok");
    assert!(!format!("{response:?}").contains(CANARY));
    let cfg = config(ProviderKind::OpenAi, "http://x", Some("sk-secret"));
    assert!(!format!("{cfg:?}").contains("sk-secret"));
    assert_eq!(format!("{:?}", ApiKey::new("sk-secret")), "ApiKey(***)");
}

#[tokio::test]
async fn offline_analyser_is_labelled_and_deterministic() {
    let provider = OfflineAnalyser;
    let mut req = request();
    req.input = "One two three. Four five! Six?".to_owned();
    let a = provider.complete(req.clone()).await.expect("ok");
    let b = provider.complete(req).await.expect("ok");
    assert_eq!(a, b);
    assert!(a.output.starts_with("[offline analyser, NOT a model]"));
    assert!(a.provider.contains("NOT a model"));
    assert!(
        a.output.contains("6 word(s), 3 sentence(s)"),
        "{}",
        a.output
    );
    assert_eq!(provider.name(), a.provider);
}
