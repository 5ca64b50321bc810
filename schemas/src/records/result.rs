//! `AnalysisResult`: the plaintext of a result envelope (`analysis-result.avsc`).

use core::fmt;

use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};

use super::logical::avro_enum;

/// Plaintext of a RESULT envelope: the model's answer and how it was produced.
///
/// `Debug` shows the output's length, never the output.
#[derive(Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "io.zenvelope.v1")]
pub struct AnalysisResult {
    /// The model's output text.
    pub output: String,
    /// Provider that answered.
    pub provider: String,
    /// Model that answered, as reported by the provider.
    pub model: String,
    /// Token usage, if the provider reported it.
    pub usage: Option<TokenUsage>,
    /// Why the model stopped generating.
    pub finish_reason: FinishReason,
    /// Time spent in the model call, in milliseconds.
    pub latency_ms: i64,
    /// The request's `client_reference`, echoed.
    pub client_reference: Option<String>,
}

/// Token counts reported by the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "io.zenvelope.v1")]
pub struct TokenUsage {
    /// Tokens in the prompt.
    pub input_tokens: i64,
    /// Tokens generated.
    pub output_tokens: i64,
}

avro_enum! {
    /// Why the model stopped generating. Symbols a reader does not know read as `Unknown`.
    FinishReason = "FinishReason", default Unknown {
        /// Not reported, or a reason newer than this reader.
        Unknown = "UNKNOWN",
        /// The model finished on its own.
        Stop = "STOP",
        /// The output-token limit was reached.
        Length = "LENGTH",
        /// The provider's content filter stopped the output.
        ContentFilter = "CONTENT_FILTER",
    }
}

impl fmt::Debug for AnalysisResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnalysisResult")
            .field("output_len", &self.output.len())
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field("usage", &self.usage)
            .field("finish_reason", &self.finish_reason)
            .field("latency_ms", &self.latency_ms)
            .field("has_client_reference", &self.client_reference.is_some())
            .finish()
    }
}
