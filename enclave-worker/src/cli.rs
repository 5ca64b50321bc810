//! What the `enclave-host` and `enclave-app` binaries share: logging set-up and signals
//! (the runtime's, shared with every zenvelope service).

pub use zenvelope_runtime::service::{cancel_on_signals, init_tracing};
