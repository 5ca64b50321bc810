//! Stream processors that sit between producers and the enclave workers.
//!
//! Status: skeleton. Issue 6 fills it with the admission processor (framing, structure,
//! size, signature and purpose checks, tier quotas), usage metering and DLQ redrive. None
//! of these ever holds a key or opens an envelope.
