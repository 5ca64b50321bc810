//! Anthropic messages.
//!
//! `POST {base}/v1/messages` with `x-api-key`, `anthropic-version: 2023-06-01` and a body
//! `{"model", "max_tokens", "system"?, "messages": [{"role": "user", "content"}],
//! "temperature"?}`. `max_tokens` is required by the API: the request's
//! `max_output_tokens` or [`ProviderConfig::default_max_output_tokens`]. The answer's
//! `text` blocks in `content` (concatenated), `stop_reason`, `usage.input_tokens`,
//! `usage.output_tokens` and `model` fill the [`ModelResponse`].

use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::http::{Connector, HttpClient};
use super::{BoxFuture, ModelProvider, ModelRequest, ModelResponse, ProviderConfig, ProviderError};

/// Provider name reported in [`ModelResponse::provider`].
pub const ANTHROPIC_PROVIDER_NAME: &str = "anthropic";
/// Request path below the base URL.
pub const ANTHROPIC_MESSAGES_PATH: &str = "/v1/messages";
/// The API version header name.
pub const ANTHROPIC_VERSION_HEADER: &str = "anthropic-version";
/// The API version this client speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// The API key header name.
pub const ANTHROPIC_API_KEY_HEADER: &str = "x-api-key";

/// The Anthropic messages provider.
pub struct AnthropicProvider {
    client: HttpClient,
    api_key: Option<HeaderValue>,
    default_max_output_tokens: u32,
}

impl AnthropicProvider {
    /// Creates the provider; fails on an unusable base URL or API key.
    pub fn new(
        config: ProviderConfig,
        connector: Arc<dyn Connector>,
    ) -> Result<Self, ProviderError> {
        let api_key = match &config.api_key {
            Some(key) => {
                let mut value = HeaderValue::from_str(key.expose())
                    .map_err(|_| ProviderError::InvalidApiKey)?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(Self {
            client: HttpClient::new(&config.base_url, connector, config.retry.clone())?,
            api_key,
            default_max_output_tokens: config.default_max_output_tokens,
        })
    }

    async fn run(&self, request: ModelRequest) -> Result<ModelResponse, ProviderError> {
        let body = MessagesRequest {
            model: &request.model,
            max_tokens: request
                .max_output_tokens
                .unwrap_or(self.default_max_output_tokens),
            system: (!request.instruction.is_empty()).then_some(request.instruction.as_str()),
            messages: [Message {
                role: "user",
                content: &request.input,
            }],
            temperature: request.temperature,
        };
        let body = serde_json::to_vec(&body).map_err(|_| ProviderError::InvalidRequest {
            reason: "the request could not be serialised",
        })?;
        let mut headers: Vec<(HeaderName, HeaderValue)> = vec![(
            HeaderName::from_static(ANTHROPIC_VERSION_HEADER),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        )];
        if let Some(key) = &self.api_key {
            headers.push((
                HeaderName::from_static(ANTHROPIC_API_KEY_HEADER),
                key.clone(),
            ));
        }
        let response = self
            .client
            .post_json(ANTHROPIC_MESSAGES_PATH, &headers, Bytes::from(body))
            .await?;
        parse_response(&response.body, &request.model)
    }
}

impl ModelProvider for AnthropicProvider {
    fn name(&self) -> &'static str {
        ANTHROPIC_PROVIDER_NAME
    }

    fn complete(
        &self,
        request: ModelRequest,
    ) -> BoxFuture<'_, Result<ModelResponse, ProviderError>> {
        Box::pin(self.run(request))
    }
}

fn parse_response(body: &[u8], requested_model: &str) -> Result<ModelResponse, ProviderError> {
    let invalid = |reason| ProviderError::InvalidResponse { reason };
    let parsed: MessagesResponse =
        serde_json::from_slice(body).map_err(|_| invalid("not a messages JSON object"))?;
    let mut output = String::new();
    let mut any_text = false;
    for block in parsed.content {
        if block.kind == "text" {
            output.push_str(
                block
                    .text
                    .as_deref()
                    .ok_or_else(|| invalid("a text block has no text"))?,
            );
            any_text = true;
        }
    }
    if !any_text {
        return Err(invalid("the content has no text block"));
    }
    Ok(ModelResponse {
        output,
        model: parsed.model.unwrap_or_else(|| requested_model.to_owned()),
        provider: ANTHROPIC_PROVIDER_NAME,
        input_tokens: parsed.usage.as_ref().and_then(|u| u.input_tokens),
        output_tokens: parsed.usage.as_ref().and_then(|u| u.output_tokens),
        finish_reason: parsed.stop_reason,
    })
}

#[derive(Serialize)]
struct MessagesRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    messages: [Message<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Deserialize)]
struct MessagesResponse {
    content: Vec<ContentBlock>,
    model: Option<String>,
    stop_reason: Option<String>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct ContentBlock {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}
