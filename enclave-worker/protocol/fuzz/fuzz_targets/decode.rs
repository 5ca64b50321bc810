//! Fuzzes the frame decoder: it must never panic, never ask for more than the limit, accept
//! only canonical frames (re-encoding gives back the input), and the buffering decoder must
//! agree with the one-shot decoder however the input is split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zenvelope_enclave_protocol::{Decoded, Decoder, Encoder, HEADER_LEN, decode_frame};

const MAX_BODY_BYTES: u32 = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    // First byte picks a chunk size for the incremental decoder; the rest is the stream.
    let Some((&chunk, stream)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let encoder = Encoder::with_max_body_bytes(MAX_BODY_BYTES);

    // One-shot decoding of the whole stream, frame after frame.
    let mut expected = Vec::new();
    let mut rest = stream;
    let mut failed = false;
    loop {
        match decode_frame(rest, MAX_BODY_BYTES) {
            Ok(Decoded::Frame { frame, consumed }) => {
                let bytes = encoder.encode_to_vec(&frame).expect("accepted frames re-encode");
                assert_eq!(bytes, &rest[..consumed], "decoding is canonical");
                rest = &rest[consumed..];
                expected.push(frame);
            }
            Ok(Decoded::NeedMore { needed }) => {
                assert!(needed > rest.len());
                assert!(needed <= HEADER_LEN + MAX_BODY_BYTES as usize);
                break;
            }
            Err(_) => {
                failed = true;
                break;
            }
        }
    }

    // The incremental decoder, fed in chunks, sees the same frames and the same outcome.
    let mut decoder = Decoder::with_max_body_bytes(MAX_BODY_BYTES);
    let mut got = Vec::new();
    let mut errored = false;
    for piece in stream.chunks(chunk) {
        decoder.feed(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => got.push(frame),
                Ok(None) => break,
                Err(_) => {
                    errored = true;
                    break;
                }
            }
        }
        if errored {
            break;
        }
    }
    assert_eq!(errored, failed);
    assert_eq!(got, expected);
});
