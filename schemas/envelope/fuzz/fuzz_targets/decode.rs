//! Fuzzes the envelope decoder: it must never panic, never allocate past the limits, and
//! whatever it accepts must re-encode to exactly the input (strict, canonical decoding).
#![no_main]

use libfuzzer_sys::fuzz_target;
use zenvelope_envelope::{Limits, decode, encode};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_envelope_bytes: 64 * 1024, max_payload_bytes: 32 * 1024, ..Limits::default() };
    if let Ok(env) = decode(data, &limits) {
        assert_eq!(encode(&env), data, "accepted input must re-encode identically");
    }
});
