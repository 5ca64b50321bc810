//! `AnalysisRequest`: the plaintext of a request envelope (`analysis-request.avsc`).

use core::fmt;

use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};

/// Plaintext of a REQUEST envelope: everything the model sees.
///
/// Exists only in the producer SDK and inside the enclave. `Debug` shows lengths and
/// media types, never the text or bytes.
#[derive(Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "io.zenvelope.v1")]
pub struct AnalysisRequest {
    /// What the model is asked to do with the input.
    pub instruction: String,
    /// The data to analyse.
    pub input: AnalysisInput,
    /// Model preferences.
    pub model: ModelPreferences,
    /// Processing limits.
    pub limits: RequestLimits,
    /// Opaque reference chosen by the client, echoed in the result.
    pub client_reference: Option<String>,
}

/// The data to analyse: an Avro union of two records.
#[derive(Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "io.zenvelope.v1", repr = "bare_union")]
pub enum AnalysisInput {
    /// Text.
    Text(TextInput),
    /// Bytes with a media type.
    Binary(BinaryInput),
}

/// Text input.
#[derive(Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "io.zenvelope.v1")]
pub struct TextInput {
    /// The text itself.
    pub text: String,
    /// Media type of the text (default `text/plain`).
    #[avro(default = r#""text/plain""#)]
    pub media_type: String,
}

/// Binary input (an image, a PDF, audio).
#[derive(Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "io.zenvelope.v1")]
pub struct BinaryInput {
    /// The raw bytes.
    #[avro(with)]
    #[serde(with = "apache_avro::serde::bytes")]
    pub data: Vec<u8>,
    /// Media type of the bytes, e.g. `image/png`.
    pub media_type: String,
}

/// Which model to use and how; `None` means the tenant's default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "io.zenvelope.v1")]
pub struct ModelPreferences {
    /// Provider hint, e.g. `openai` or `anthropic`.
    pub provider: Option<String>,
    /// Model name at that provider.
    pub model: Option<String>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Upper bound on generated tokens.
    pub max_output_tokens: Option<i32>,
}

/// Processing limits; `None` means the tenant's default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "io.zenvelope.v1")]
pub struct RequestLimits {
    /// Give up after this many milliseconds.
    pub max_latency_ms: Option<i64>,
    /// Most model calls for this request, retries included.
    pub max_attempts: Option<i32>,
}

impl TextInput {
    /// Media type of [`TextInput::media_type`] when the producer does not say.
    pub const DEFAULT_MEDIA_TYPE: &'static str = "text/plain";

    /// Plain text.
    pub fn plain(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            media_type: Self::DEFAULT_MEDIA_TYPE.to_owned(),
        }
    }
}

impl AnalysisInput {
    /// The input's media type.
    pub fn media_type(&self) -> &str {
        match self {
            AnalysisInput::Text(t) => &t.media_type,
            AnalysisInput::Binary(b) => &b.media_type,
        }
    }

    /// The input's size in bytes (UTF-8 bytes for text).
    pub fn len(&self) -> usize {
        match self {
            AnalysisInput::Text(t) => t.text.len(),
            AnalysisInput::Binary(b) => b.data.len(),
        }
    }

    /// Whether the input is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for AnalysisRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnalysisRequest")
            .field("instruction_len", &self.instruction.len())
            .field("input", &self.input)
            .field("model", &self.model)
            .field("limits", &self.limits)
            .field("has_client_reference", &self.client_reference.is_some())
            .finish()
    }
}

impl fmt::Debug for AnalysisInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnalysisInput::Text(t) => t.fmt(f),
            AnalysisInput::Binary(b) => b.fmt(f),
        }
    }
}

impl fmt::Debug for TextInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextInput")
            .field("media_type", &self.media_type)
            .field("len", &self.text.len())
            .finish()
    }
}

impl fmt::Debug for BinaryInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BinaryInput")
            .field("media_type", &self.media_type)
            .field("len", &self.data.len())
            .finish()
    }
}
