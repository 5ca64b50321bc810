//! OpenAI chat completions, also spoken by vLLM, Ollama and llama.cpp `llama-server`.
//!
//! `POST {base}/v1/chat/completions` with `Authorization: Bearer <key>` (omitted when no
//! key is configured, for local servers) and a body
//! `{"model", "messages": [{"role": "system", ...}, {"role": "user", ...}], "temperature"?,
//! "max_completion_tokens"? | "max_tokens"?}`. The answer's `choices[0].message.content`,
//! `choices[0].finish_reason`, `usage.prompt_tokens`, `usage.completion_tokens` and
//! `model` fill the [`ModelResponse`].

use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::http::{Connector, HttpClient};
use super::{BoxFuture, ModelProvider, ModelRequest, ModelResponse, ProviderConfig, ProviderError};

/// Provider name reported in [`ModelResponse::provider`].
pub const OPENAI_PROVIDER_NAME: &str = "openai";
/// Request path below the base URL.
pub const OPENAI_CHAT_COMPLETIONS_PATH: &str = "/v1/chat/completions";

/// Which JSON field carries the output-token limit.
///
/// OpenAI deprecated `max_tokens` in favour of `max_completion_tokens` (and its reasoning
/// models reject `max_tokens`); older OpenAI-compatible servers only know `max_tokens`.
/// The default is `max_completion_tokens`; choose [`MaxTokensField::MaxTokens`] for a
/// server that ignores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MaxTokensField {
    /// `max_completion_tokens` (current OpenAI API).
    #[default]
    MaxCompletionTokens,
    /// `max_tokens` (legacy field, widest support among compatible servers).
    MaxTokens,
}

/// The OpenAI chat completions provider.
pub struct OpenAiProvider {
    client: HttpClient,
    auth: Option<HeaderValue>,
    max_tokens_field: MaxTokensField,
}

impl OpenAiProvider {
    /// Creates the provider; fails on an unusable base URL or API key.
    pub fn new(
        config: ProviderConfig,
        connector: Arc<dyn Connector>,
    ) -> Result<Self, ProviderError> {
        let auth = match &config.api_key {
            Some(key) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                    .map_err(|_| ProviderError::InvalidApiKey)?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(Self {
            client: HttpClient::new(&config.base_url, connector, config.retry.clone())?,
            auth,
            max_tokens_field: config.openai_max_tokens_field,
        })
    }

    async fn run(&self, request: ModelRequest) -> Result<ModelResponse, ProviderError> {
        let mut messages = Vec::with_capacity(2);
        if !request.instruction.is_empty() {
            messages.push(Message {
                role: "system",
                content: &request.instruction,
            });
        }
        messages.push(Message {
            role: "user",
            content: &request.input,
        });
        let (max_completion_tokens, max_tokens) = match self.max_tokens_field {
            MaxTokensField::MaxCompletionTokens => (request.max_output_tokens, None),
            MaxTokensField::MaxTokens => (None, request.max_output_tokens),
        };
        let body = ChatRequest {
            model: &request.model,
            messages,
            temperature: request.temperature,
            max_completion_tokens,
            max_tokens,
        };
        let body = serde_json::to_vec(&body).map_err(|_| ProviderError::InvalidRequest {
            reason: "the request could not be serialised",
        })?;
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(1);
        if let Some(auth) = &self.auth {
            headers.push((AUTHORIZATION, auth.clone()));
        }
        let response = self
            .client
            .post_json(OPENAI_CHAT_COMPLETIONS_PATH, &headers, Bytes::from(body))
            .await?;
        parse_response(&response.body, &request.model)
    }
}

impl ModelProvider for OpenAiProvider {
    fn name(&self) -> &'static str {
        OPENAI_PROVIDER_NAME
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
    let parsed: ChatResponse =
        serde_json::from_slice(body).map_err(|_| invalid("not a chat completion JSON object"))?;
    let choice = parsed
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| invalid("no choices"))?;
    let output = choice
        .message
        .content
        .ok_or_else(|| invalid("the first choice has no text content"))?;
    Ok(ModelResponse {
        output,
        model: parsed.model.unwrap_or_else(|| requested_model.to_owned()),
        provider: OPENAI_PROVIDER_NAME,
        input_tokens: parsed.usage.as_ref().and_then(|u| u.prompt_tokens),
        output_tokens: parsed.usage.as_ref().and_then(|u| u.completion_tokens),
        finish_reason: choice.finish_reason,
    })
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
    model: Option<String>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ResponseMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ResponseMessage {
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}
