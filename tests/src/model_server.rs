//! An HTTP/1.1 server that speaks the two model APIs zenvelope calls, OpenAI chat
//! completions (`POST /v1/chat/completions`) and Anthropic messages (`POST /v1/messages`),
//! with the real request and response JSON shapes, and injectable faults.
//!
//! The "model" is deterministic so tests can check every answer: for each token
//! `REQ-<n>` in the prompt it answers `ANSWER-<n>`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// One injected fault, used by the next call.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this HTTP status and an error body in the provider's format.
    Status(u16),
    /// Answer 200 with a body that is not JSON.
    Garbage,
    /// Wait this long before answering normally (longer than the provider timeout = a
    /// timeout).
    Delay(Duration),
}

#[derive(Default)]
struct State {
    calls: AtomicU64,
    faults: Mutex<VecDeque<Fault>>,
    latency: Mutex<Duration>,
}

/// A running model server. Stops when dropped.
pub struct ModelServer {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl ModelServer {
    /// Starts on a free loopback port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(&state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    /// `http://127.0.0.1:PORT`, the provider base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Calls answered so far (faults included).
    pub fn calls(&self) -> u64 {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// Queues faults for the next calls, in order.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(faults);
    }

    /// Sets the model's latency for every answer.
    pub fn set_latency(&self, latency: Duration) {
        *self.state.latency.lock().unwrap_or_else(|e| e.into_inner()) = latency;
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn json_response(status: u16, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

/// `ANSWER-<n>` for every `REQ-<n>` in `prompt`, space-separated.
pub fn expected_answer(prompt: &str) -> String {
    let mut answers = Vec::new();
    let mut rest = prompt;
    while let Some(i) = rest.find("REQ-") {
        rest = &rest[i + 4..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() {
            answers.push(format!("ANSWER-{digits}"));
        }
    }
    if answers.is_empty() {
        "NO-REQUEST-TOKEN".to_owned()
    } else {
        answers.join(" ")
    }
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

async fn answer(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    let anthropic = path.ends_with("/v1/messages");
    if !anthropic && !path.ends_with("/v1/chat/completions") {
        return json_response(404, &json!({"error": {"message": "unknown path"}}));
    }
    let Ok(body) = req.into_body().collect().await else {
        return json_response(400, &json!({"error": {"message": "unreadable body"}}));
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
        return json_response(400, &json!({"error": {"message": "body is not JSON"}}));
    };
    let fault = state
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop_front();
    let latency = *state.latency.lock().unwrap_or_else(|e| e.into_inner());
    match fault {
        Some(Fault::Status(status)) => {
            let body = if anthropic {
                json!({"type": "error", "error": {"type": "api_error", "message": "injected"}})
            } else {
                json!({"error": {"message": "injected", "type": "server_error"}})
            };
            return json_response(status, &body);
        }
        Some(Fault::Garbage) => {
            return Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(b"{\"choices\": [tru")))
                .unwrap_or_default();
        }
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("test-model")
        .to_owned();
    let mut prompt = String::new();
    if let Some(system) = request.get("system") {
        prompt.push_str(&text_of(system));
    }
    for message in request
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        prompt.push('\n');
        prompt.push_str(&text_of(message.get("content").unwrap_or(&Value::Null)));
    }
    let text = expected_answer(&prompt);
    let body = if anthropic {
        json!({
            "id": "msg_test", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": prompt.len() / 4, "output_tokens": text.len() / 4}
        })
    } else {
        json!({
            "id": "chatcmpl-test", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt.len() / 4, "completion_tokens": text.len() / 4,
                      "total_tokens": (prompt.len() + text.len()) / 4}
        })
    };
    json_response(200, &body)
}
