//! The offline analyser: deterministic text statistics for local runs and demos.
//!
//! It is **not a model**. Its provider name and every output it produces say so, so a
//! demo answer can never be mistaken for a model's.

use super::{BoxFuture, ModelProvider, ModelRequest, ModelResponse, ProviderError};

/// Provider name reported in [`ModelResponse::provider`].
pub const OFFLINE_PROVIDER_NAME: &str = "offline-analyser (NOT a model)";
/// The label that starts every output.
pub const OFFLINE_LABEL: &str = "[offline analyser, NOT a model]";
/// The model name reported in [`ModelResponse::model`].
pub const OFFLINE_MODEL_NAME: &str = "offline-analyser";

/// Counts words, sentences and characters of the input. Not a model.
#[derive(Debug, Clone, Copy, Default)]
pub struct OfflineAnalyser;

impl OfflineAnalyser {
    /// The analysis, synchronously.
    pub fn analyse(&self, request: &ModelRequest) -> ModelResponse {
        let input = &request.input;
        let words = input.split_whitespace().count();
        let sentences = input
            .split(['.', '!', '?'])
            .filter(|s| s.chars().any(char::is_alphanumeric))
            .count();
        let chars = input.chars().count();
        let output = format!(
            "{OFFLINE_LABEL} The input has {words} word(s), {sentences} sentence(s) and {chars} character(s)."
        );
        ModelResponse {
            output_tokens: Some(output.split_whitespace().count() as u64),
            output,
            model: OFFLINE_MODEL_NAME.to_owned(),
            provider: OFFLINE_PROVIDER_NAME,
            input_tokens: Some(words as u64),
            finish_reason: Some("stop".to_owned()),
        }
    }
}

impl ModelProvider for OfflineAnalyser {
    fn name(&self) -> &'static str {
        OFFLINE_PROVIDER_NAME
    }

    fn complete(
        &self,
        request: ModelRequest,
    ) -> BoxFuture<'_, Result<ModelResponse, ProviderError>> {
        let response = self.analyse(&request);
        Box::pin(async move { Ok(response) })
    }
}
