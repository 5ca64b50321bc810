//! Drives the browser SDK (`producers/browser`, TypeScript) from Rust tests: its interop
//! tool under Node, and a real headless Chromium through playwright-core.
//!
//! The package must be built first (`scripts/test` does it):
//! `npm --prefix producers/browser ci && npm --prefix producers/browser run build`.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

/// The package's directory.
pub fn package_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../producers/browser"))
}

/// A compiled file of the package, or an error that says how to build it.
pub fn built(rel: &str) -> Result<PathBuf> {
    let path = package_dir().join("dist").join(rel);
    ensure!(
        path.exists(),
        "{} is missing: build the browser SDK first (npm --prefix producers/browser ci && npm --prefix producers/browser run build; scripts/test does it)",
        path.display()
    );
    Ok(path)
}

/// Runs `node dist/tools/interop.js COMMAND input.json` and parses its JSON output.
pub async fn interop(command: &str, input: &Value) -> Result<Value> {
    let tool = built("tools/interop.js")?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("input.json");
    std::fs::write(&file, serde_json::to_vec(input)?)?;
    let output = tokio::process::Command::new(node())
        .arg(&tool)
        .arg(command)
        .arg(&file)
        .output()
        .await
        .with_context(|| format!("cannot run node {}", tool.display()))?;
    ensure!(
        output.status.success(),
        "interop {command} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).context("interop output is not JSON")
}

/// The Node.js binary (`ZENVELOPE_NODE`, default `node` on `PATH`).
pub fn node() -> String {
    std::env::var("ZENVELOPE_NODE").unwrap_or_else(|_| "node".to_owned())
}

/// TEST ONLY, not a model for production (no authentication: one global session, the
/// page's pinned trust served by the backend itself): a journal app's backend for the
/// headless-browser test. It serves the example page
/// (`producers/browser/example`) and the built SDK, tells the page its user's subject
/// pseudonym, serves the key directory's records, signs and produces the sealed
/// requests the page posts (`Client::forward`, never opening them), and hands back the
/// sealed answers. It holds no user key: it could not read the journal if it wanted to.
pub mod web {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use anyhow::Result;
    use base64::Engine as _;
    use http_body_util::{BodyExt, Full};
    use hyper::body::{Bytes, Incoming};
    use hyper::{Method, Request, Response, StatusCode};
    use hyper_util::rt::TokioIo;
    use serde_json::{Value, json};
    use tokio::net::TcpListener;
    use zenvelope_runtime::{KafkaConfig, Subscriber};
    use zenvelope_schemas::names::{header, topic};

    /// What the page pins at build time (served as `/config.js`).
    pub struct PageTrust {
        /// The tenant.
        pub tenant: String,
        /// DER of the DEV attestation root.
        pub dev_root_der: Vec<u8>,
        /// PCR index → value.
        pub pcrs: Vec<(u32, Vec<u8>)>,
    }

    struct State {
        client: zenvelope_producer::Client,
        trust: PageTrust,
        records: Vec<Vec<u8>>,
        iterations: u32,
        subject: Mutex<Option<String>>,
        /// Registered key ids by subject (the id of the user's key, never the key).
        kek_ids: Mutex<HashMap<String, String>>,
        answers: Mutex<HashMap<String, Vec<u8>>>,
        received: Mutex<Vec<String>>,
    }

    /// A running backend; stops when dropped.
    pub struct Backend {
        addr: SocketAddr,
        state: Arc<State>,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    }

    impl Backend {
        /// Starts on a free loopback port. `records` are the key directory's records
        /// (the backend reads `zenvelope.keys`); answers are followed on `kafka`.
        pub async fn start(
            client: zenvelope_producer::Client,
            kafka: &KafkaConfig,
            trust: PageTrust,
            records: Vec<Vec<u8>>,
            iterations: u32,
        ) -> Result<Self> {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let state = Arc::new(State {
                client,
                trust,
                records,
                iterations,
                subject: Mutex::new(None),
                kek_ids: Mutex::new(HashMap::new()),
                answers: Mutex::new(HashMap::new()),
                received: Mutex::new(Vec::new()),
            });
            // Follows the results topic (metadata only: the backend cannot open answers).
            let group = format!("web-backend-{}", uuid::Uuid::now_v7());
            let subscriber = Subscriber::new(kafka, &group, &[topic::RESULTS], true)?;
            let follower = {
                let state = state.clone();
                tokio::spawn(async move {
                    while let Ok(record) = subscriber.recv().await {
                        let Some(id) = record.header(header::CORRELATION_ID) else {
                            continue;
                        };
                        let Ok((_, envelope)) =
                            zenvelope_schemas::framing::unframe(&record.payload)
                        else {
                            continue;
                        };
                        lock(&state.answers)
                            .insert(String::from_utf8_lossy(id).into_owned(), envelope.to_vec());
                    }
                })
            };
            let server = {
                let state = state.clone();
                tokio::spawn(async move {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let state = state.clone();
                        tokio::spawn(async move {
                            let service = hyper::service::service_fn(move |req| {
                                let state = state.clone();
                                async move {
                                    Ok::<_, std::convert::Infallible>(route(&state, req).await)
                                }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                })
            };
            Ok(Self {
                addr,
                state,
                tasks: vec![follower, server],
            })
        }

        /// `http://127.0.0.1:PORT/`.
        pub fn url(&self) -> String {
            format!("http://{}/", self.addr)
        }

        /// Every request line and body the backend received, for leak checks.
        pub fn received(&self) -> Vec<String> {
            lock(&self.state.received).clone()
        }
    }

    impl Drop for Backend {
        fn drop(&mut self) {
            for t in &self.tasks {
                t.abort();
            }
        }
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .header("cache-control", "no-store")
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    }

    fn json_reply(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
        reply(status, "application/json", body.to_string().into_bytes())
    }

    /// `name`'s value in a query string, percent-decoded (`+` is a space).
    fn query_param(query: &str, name: &str) -> Option<String> {
        let raw = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)?
            .1;
        let mut out = Vec::new();
        let mut bytes = raw.bytes();
        while let Some(b) = bytes.next() {
            match b {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                    out.push(u8::from_str_radix(&hex, 16).ok()?);
                }
                b => out.push(b),
            }
        }
        String::from_utf8(out).ok()
    }

    fn static_file(path: &str) -> Response<Full<Bytes>> {
        let not_found = || reply(StatusCode::NOT_FOUND, "text/plain", b"not found".to_vec());
        let ok_path = !path.contains("..")
            && path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
        if !ok_path {
            return not_found();
        }
        let file: PathBuf = if let Some(rest) = path.strip_prefix("/sdk/") {
            super::package_dir().join("dist/src").join(rest)
        } else if path == "/" {
            super::package_dir().join("example/index.html")
        } else {
            super::package_dir().join("example").join(&path[1..])
        };
        let content_type = match file.extension().and_then(|e| e.to_str()) {
            Some("html") => "text/html; charset=utf-8",
            Some("js") => "text/javascript; charset=utf-8",
            _ => "application/octet-stream",
        };
        match std::fs::read(&file) {
            Ok(body) => reply(StatusCode::OK, content_type, body),
            Err(_) => not_found(),
        }
    }

    async fn route(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => Bytes::new(),
        };
        lock(&state.received).push(format!(
            "{method} {path}?{query} {}",
            String::from_utf8_lossy(&body)
        ));
        match (method, path.as_str()) {
            (Method::GET, "/config.js") => {
                let t = &state.trust;
                let pcrs: serde_json::Map<String, Value> = t
                    .pcrs
                    .iter()
                    .map(|(i, v)| (i.to_string(), json!(hex::encode(v))))
                    .collect();
                let js = format!(
                    "export const trust = {{ dangerDevRootBase64: {}, pcrs: {} }};\nexport const tenant = {};\nexport const iterations = {};\n",
                    json!(b64.encode(&t.dev_root_der)),
                    Value::Object(pcrs),
                    json!(t.tenant),
                    state.iterations,
                );
                reply(
                    StatusCode::OK,
                    "text/javascript; charset=utf-8",
                    js.into_bytes(),
                )
            }
            (Method::GET, "/api/session") => {
                // A real backend authenticates the user here; the page sends only the email.
                let identity = query_param(&query, "identity").unwrap_or_default();
                let subject = state.client.subject_for(&identity);
                *lock(&state.subject) = Some(subject.clone());
                let kek_id = lock(&state.kek_ids).get(&subject).cloned();
                json_reply(
                    StatusCode::OK,
                    &json!({"subject": subject, "kekId": kek_id}),
                )
            }
            (Method::POST, "/api/register") => {
                let Some(subject) = lock(&state.subject).clone() else {
                    return json_reply(
                        StatusCode::UNAUTHORIZED,
                        &json!({"error": "not signed in"}),
                    );
                };
                let kek_id = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["kekId"].as_str().map(str::to_owned));
                let Some(kek_id) = kek_id else {
                    return json_reply(StatusCode::BAD_REQUEST, &json!({"error": "no kekId"}));
                };
                lock(&state.kek_ids).entry(subject).or_insert(kek_id);
                json_reply(StatusCode::OK, &json!({"ok": true}))
            }
            (Method::GET, "/api/keys") => json_reply(
                StatusCode::OK,
                &json!({"records": state.records.iter().map(|r| b64.encode(r)).collect::<Vec<_>>()}),
            ),
            (Method::POST, "/api/requests") => {
                let Some(subject) = lock(&state.subject).clone() else {
                    return json_reply(
                        StatusCode::UNAUTHORIZED,
                        &json!({"error": "not signed in"}),
                    );
                };
                let envelope = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["envelope"].as_str().map(str::to_owned))
                    .and_then(|t| b64.decode(t).ok());
                let Some(envelope) = envelope else {
                    return json_reply(StatusCode::BAD_REQUEST, &json!({"error": "no envelope"}));
                };
                match state
                    .client
                    .forward(
                        &envelope,
                        &subject,
                        &[zenvelope_envelope::Purpose::IndividualRequest],
                    )
                    .await
                {
                    Ok(sent) => json_reply(
                        StatusCode::OK,
                        &json!({"messageId": sent.message_id, "partition": sent.partition, "offset": sent.offset}),
                    ),
                    Err(e) => json_reply(StatusCode::BAD_REQUEST, &json!({"error": e.to_string()})),
                }
            }
            (Method::GET, p) if p.starts_with("/api/answers/") => {
                let id = &p["/api/answers/".len()..];
                for _ in 0..600 {
                    if let Some(envelope) = lock(&state.answers).get(id).cloned() {
                        return json_reply(
                            StatusCode::OK,
                            &json!({"envelope": b64.encode(envelope)}),
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                json_reply(
                    StatusCode::GATEWAY_TIMEOUT,
                    &json!({"error": "no answer yet"}),
                )
            }
            (Method::GET, p) => static_file(p),
            _ => reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", Vec::new()),
        }
    }
}
