//! The only zenvelope crate that knows rdkafka.
//!
//! Status: skeleton. Issue 3 ("Enclave worker … end to end on a real broker") fills it with
//! typed configuration, idempotent producer and consumer builders, the at-least-once
//! processing loop (an offset is stored only after everything produced for it is acked),
//! DLQ routing with reason codes, telemetry and graceful shutdown.
