//! Cross-component end-to-end tests.
//!
//! Status: skeleton. The end-to-end tests against a real Kafka-protocol broker (tansu)
//! arrive with issue 3; the per-crate tests live beside each crate until then.
