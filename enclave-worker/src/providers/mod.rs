//! Model providers: the step between "request opened" and "answer sealed".
//!
//! A [`ModelProvider`] takes a [`ModelRequest`] (instruction, input text, model name,
//! sampling settings) and returns a [`ModelResponse`] (output text, token usage, finish
//! reason) or a [`ProviderError`]. Three providers exist:
//!
//! - [`OpenAiProvider`]: `POST {base}/v1/chat/completions`, for OpenAI and every
//!   OpenAI-compatible server (vLLM, Ollama, llama.cpp `llama-server`).
//! - [`AnthropicProvider`]: `POST {base}/v1/messages`.
//! - [`OfflineAnalyser`]: deterministic word and sentence counts for local runs. It is
//!   **not a model** and says so in its provider name and in every output.
//!
//! HTTP runs over any byte stream: [`http::Connector`] yields a stream for a host and
//! port, and the client speaks HTTP/1.1 over it with hyper's connection API.
//! [`http::TcpConnector`] covers plain `http://` base URLs (loopback, tests, a local vLLM).
//! TLS is not done here: in the enclave, [`crate::egress::EgressConnector`] opens the egress
//! tunnel and wraps the stream in rustls before handing it over; an `https://` base URL on
//! the plain TCP connector fails with [`ProviderError::UnsupportedScheme`].
//!
//! Robustness: every attempt has a timeout; 429, 500, 502, 503, 504, 529, connection errors,
//! transport errors and timeouts are retried a bounded number of times with exponential
//! backoff and jitter, honouring `retry-after` (seconds) up to a cap; other statuses fail
//! at once. Response bodies are capped while they are read.
//!
//! Prompts and outputs are PHI: [`ModelRequest`] and [`ModelResponse`] redact them in
//! `Debug`, and no [`ProviderError`] carries request or response text. Error bodies from
//! a provider contribute only a sanitised error type and code.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub mod anthropic;
pub mod http;
pub mod offline;
pub mod openai;

pub use anthropic::AnthropicProvider;
pub use offline::OfflineAnalyser;
pub use openai::{MaxTokensField, OpenAiProvider};

/// Environment variable holding the OpenAI (or OpenAI-compatible server) API key.
pub const OPENAI_API_KEY_ENV: &str = "ZENVELOPE_OPENAI_API_KEY";
/// Environment variable holding the Anthropic API key.
pub const ANTHROPIC_API_KEY_ENV: &str = "ZENVELOPE_ANTHROPIC_API_KEY";

/// A boxed, sendable future, so [`ModelProvider`] and [`http::Connector`] stay
/// dyn-compatible.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One call to a model.
#[derive(Clone, PartialEq)]
pub struct ModelRequest {
    /// The instruction (system prompt). Empty means none is sent.
    pub instruction: String,
    /// The user input text. PHI.
    pub input: String,
    /// The model name as the provider knows it.
    pub model: String,
    /// Sampling temperature; `None` leaves the provider default.
    pub temperature: Option<f32>,
    /// Upper bound on output tokens; `None` uses the provider default (Anthropic
    /// requires a value, so [`ProviderConfig::default_max_output_tokens`] fills in).
    pub max_output_tokens: Option<u32>,
}

impl fmt::Debug for ModelRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Instruction and input are PHI: show sizes only.
        f.debug_struct("ModelRequest")
            .field("instruction_bytes", &self.instruction.len())
            .field("input_bytes", &self.input.len())
            .field("model", &self.model)
            .field("temperature", &self.temperature)
            .field("max_output_tokens", &self.max_output_tokens)
            .finish()
    }
}

/// What a model returned.
#[derive(Clone, PartialEq, Eq)]
pub struct ModelResponse {
    /// The generated text. PHI.
    pub output: String,
    /// The model that answered, as the provider reports it.
    pub model: String,
    /// Which provider answered (for the offline analyser this says it is not a model).
    pub provider: &'static str,
    /// Input (prompt) tokens, when reported.
    pub input_tokens: Option<u64>,
    /// Output (completion) tokens, when reported.
    pub output_tokens: Option<u64>,
    /// Why generation stopped (`stop`, `length`, `end_turn`, `max_tokens`, ...), when
    /// reported.
    pub finish_reason: Option<String>,
}

impl fmt::Debug for ModelResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The output is PHI: show its size only.
        f.debug_struct("ModelResponse")
            .field("output_bytes", &self.output.len())
            .field("model", &self.model)
            .field("provider", &self.provider)
            .field("input_tokens", &self.input_tokens)
            .field("output_tokens", &self.output_tokens)
            .field("finish_reason", &self.finish_reason)
            .finish()
    }
}

/// A model provider.
pub trait ModelProvider: Send + Sync {
    /// The provider name put into [`ModelResponse::provider`].
    fn name(&self) -> &'static str;

    /// Runs one completion, with the retries and timeouts of the provider's policy.
    fn complete(
        &self,
        request: ModelRequest,
    ) -> BoxFuture<'_, Result<ModelResponse, ProviderError>>;
}

/// An API key. It never prints: `Debug` shows `ApiKey(***)`, there is no `Display`,
/// and the bytes are zeroed on drop.
#[derive(Clone)]
pub struct ApiKey(zeroize::Zeroizing<String>);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(zeroize::Zeroizing::new(key.into()))
    }

    /// Reads a key from the environment variable `var` (one of the `*_API_KEY_ENV`
    /// consts). `None` when unset or empty.
    pub fn from_env(var: &str) -> Option<Self> {
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Self::new)
    }

    /// The key text. Exposed only to build the authentication header of a request.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Retries, timeouts and limits for HTTP providers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, first one included (at least 1).
    pub max_attempts: u32,
    /// Timeout of one attempt (connect, send, whole response body).
    pub attempt_timeout_ms: u64,
    /// Backoff before the second attempt; doubles for each further attempt.
    pub backoff_base_ms: u64,
    /// Upper bound on a computed backoff.
    pub backoff_max_ms: u64,
    /// Upper bound on a wait requested by `retry-after`.
    pub retry_after_cap_ms: u64,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            attempt_timeout_ms: 60_000,
            backoff_base_ms: 500,
            backoff_max_ms: 8_000,
            retry_after_cap_ms: 30_000,
            max_response_bytes: 1024 * 1024,
        }
    }
}

impl RetryPolicy {
    pub(crate) fn attempt_timeout(&self) -> Duration {
        Duration::from_millis(self.attempt_timeout_ms)
    }
}

/// Which provider a [`ProviderConfig`] selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderKind {
    /// OpenAI chat completions, or any OpenAI-compatible server.
    OpenAi,
    /// Anthropic messages.
    Anthropic,
    /// The offline analyser: not a model.
    Offline,
}

/// Configuration of one provider.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Which provider.
    pub kind: ProviderKind,
    /// Base URL without the `/v1/...` suffix, e.g. `https://api.openai.com` or
    /// `http://127.0.0.1:11434`. A path prefix is kept. Ignored by the offline analyser.
    pub base_url: String,
    /// API key; `None` sends no authentication header (local OpenAI-compatible servers).
    pub api_key: Option<ApiKey>,
    /// `max_tokens` sent to Anthropic when the request has no `max_output_tokens`.
    pub default_max_output_tokens: u32,
    /// Which field carries the output-token limit for OpenAI-style servers.
    pub openai_max_tokens_field: MaxTokensField,
    /// Retries, timeouts and limits.
    pub retry: RetryPolicy,
}

impl ProviderConfig {
    /// A configuration with default policy for `kind` at `base_url`, reading the API key
    /// from the kind's environment variable ([`OPENAI_API_KEY_ENV`],
    /// [`ANTHROPIC_API_KEY_ENV`]).
    pub fn from_env(kind: ProviderKind, base_url: impl Into<String>) -> Self {
        let api_key = match kind {
            ProviderKind::OpenAi => ApiKey::from_env(OPENAI_API_KEY_ENV),
            ProviderKind::Anthropic => ApiKey::from_env(ANTHROPIC_API_KEY_ENV),
            ProviderKind::Offline => None,
        };
        Self {
            kind,
            base_url: base_url.into(),
            api_key,
            default_max_output_tokens: 1024,
            openai_max_tokens_field: MaxTokensField::default(),
            retry: RetryPolicy::default(),
        }
    }
}

/// Builds the provider a configuration selects, dialling through `connector`.
pub fn build_provider(
    config: ProviderConfig,
    connector: Arc<dyn http::Connector>,
) -> Result<Box<dyn ModelProvider>, ProviderError> {
    Ok(match config.kind {
        ProviderKind::OpenAi => Box::new(OpenAiProvider::new(config, connector)?),
        ProviderKind::Anthropic => Box::new(AnthropicProvider::new(config, connector)?),
        ProviderKind::Offline => Box::new(OfflineAnalyser),
    })
}

/// Everything that can go wrong when calling a model provider. No variant carries
/// prompt or output text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The base URL cannot be used.
    #[error("The model provider base URL is invalid: {reason}.")]
    InvalidBaseUrl {
        /// What was wrong.
        reason: &'static str,
    },
    /// The connector cannot speak the base URL's scheme (e.g. `https` on plain TCP).
    #[error("The connector does not support the `{scheme}` scheme.")]
    UnsupportedScheme {
        /// The scheme of the base URL.
        scheme: String,
    },
    /// The API key cannot be put into a header.
    #[error("The model provider API key is not a valid header value.")]
    InvalidApiKey,
    /// The HTTP request could not be built.
    #[error("The model provider request could not be built: {reason}.")]
    InvalidRequest {
        /// What was wrong.
        reason: &'static str,
    },
    /// Connecting to the provider failed on every attempt.
    #[error("Connecting to the model provider failed after {attempts} attempt(s): {source}.")]
    Connect {
        /// Attempts made.
        attempts: u32,
        /// The last connection error.
        source: std::io::Error,
    },
    /// The HTTP exchange failed (connection reset, malformed HTTP) on every attempt.
    #[error(
        "The HTTP exchange with the model provider failed after {attempts} attempt(s): {source}."
    )]
    Transport {
        /// Attempts made.
        attempts: u32,
        /// The last transport error.
        source: hyper::Error,
    },
    /// Every attempt ran past the per-attempt timeout.
    #[error(
        "The model provider did not answer within {timeout_ms} ms, after {attempts} attempt(s)."
    )]
    Timeout {
        /// Attempts made.
        attempts: u32,
        /// The per-attempt timeout.
        timeout_ms: u64,
    },
    /// The provider answered with an error status (after retries, if it was retryable).
    #[error("The model provider answered HTTP {status}{detail} after {attempts} attempt(s).")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// Attempts made.
        attempts: u32,
        /// Sanitised provider error type and code, e.g. ` (type rate_limit_error)`;
        /// empty when none. Never the provider's free-text message.
        detail: String,
    },
    /// The response body is larger than allowed.
    #[error("The model provider response is larger than the {max_bytes} bytes accepted.")]
    ResponseTooLarge {
        /// The limit in bytes.
        max_bytes: usize,
    },
    /// The response is not the JSON the provider API defines.
    #[error("The model provider response is invalid: {reason}.")]
    InvalidResponse {
        /// What was wrong (never contains response text).
        reason: &'static str,
    },
}
