//! The usage endpoint: `GET /v1/usage?tenant=ID&period=P` (JSON) and `GET /v1/health`.
//! Internal: it serves counts per tenant, so bind it to a private address and put it
//! behind the dashboard's own authentication.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use zenvelope_runtime::KafkaConfig;
use zenvelope_schemas::SchemaCodec;

/// What the endpoint reads and reports.
pub struct UsageEndpoint {
    /// The cluster.
    pub kafka: KafkaConfig,
    /// The codec.
    pub codec: Arc<SchemaCodec>,
    /// The usage topic.
    pub topic: String,
    /// Set while the processing loops run.
    pub running: Arc<AtomicBool>,
}

/// Serves until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    endpoint: Arc<UsageEndpoint>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else { continue };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let endpoint = endpoint.clone();
                async move { Ok::<_, std::convert::Infallible>(route(&endpoint, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn reply(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

/// The value of `name` in a query string (no percent-decoding: ids are plain).
fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

async fn route(e: &UsageEndpoint, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "only GET"}),
        );
    }
    let query = req.uri().query().unwrap_or_default().to_owned();
    match req.uri().path() {
        "/v1/health" => {
            let running = e.running.load(Ordering::SeqCst);
            reply(
                if running {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                &json!({"status": if running { "ok" } else { "starting" }}),
            )
        }
        "/v1/usage" => {
            let tenant = param(&query, "tenant");
            let period = param(&query, "period");
            match crate::usage::read(&e.kafka, &e.codec, &e.topic, tenant, period).await {
                Ok(usage) => reply(StatusCode::OK, &json!({"usage": usage})),
                Err(error) => {
                    tracing::warn!(%error, "Cannot read usage.");
                    reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &json!({"error": error.to_string()}),
                    )
                }
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            &json!({"error": "not found; try /v1/usage or /v1/health"}),
        ),
    }
}
