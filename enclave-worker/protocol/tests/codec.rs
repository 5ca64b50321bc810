//! Frame codec: known answers, round trips, incremental decoding, bounds and every error.

use proptest::prelude::*;
use zenvelope_enclave_protocol::{
    CloseReason, DEFAULT_MAX_BODY_BYTES, Decoded, Decoder, Encoder, Error, ErrorCode, Frame,
    FrameType, HEADER_LEN, MAX_AUDIT_EVENTS, MAX_KEY_ENTRIES, MAX_TEXT_BYTES, Message, Opaque,
    Outcome, PROTOCOL_VERSION, Role, decode_frame, encode_frame,
};

fn header(body_len: u32, version: u8, frame_type: u8, stream_id: u64) -> Vec<u8> {
    let mut out = body_len.to_be_bytes().to_vec();
    out.push(version);
    out.push(frame_type);
    out.extend_from_slice(&stream_id.to_be_bytes());
    out
}

fn raw_frame(frame_type: FrameType, body: &[u8]) -> Vec<u8> {
    let mut out = header(body.len() as u32, PROTOCOL_VERSION, frame_type.code(), 7);
    out.extend_from_slice(body);
    out
}

fn decode_one(bytes: &[u8]) -> Result<Frame, Error> {
    match decode_frame(bytes, DEFAULT_MAX_BODY_BYTES)? {
        Decoded::Frame { frame, consumed } => {
            assert_eq!(consumed, bytes.len());
            Ok(frame)
        }
        Decoded::NeedMore { needed } => panic!("complete frame reported as needing {needed} bytes"),
    }
}

// ---- known answers (the examples in docs/enclave-protocol.md) ----

#[test]
fn ping_known_answer() {
    let frame = Frame::new(
        0x0102_0304_0506_0708,
        Message::Ping {
            nonce: 0x1122_3344_5566_7788,
        },
    );
    let bytes = encode_frame(&frame).unwrap();
    assert_eq!(
        hex(&bytes),
        "00000008".to_owned() + "01" + "30" + "0102030405060708" + "1122334455667788"
    );
    assert_eq!(decode_one(&bytes).unwrap(), frame);
}

#[test]
fn keys_known_answers() {
    let request = Frame::new(9, Message::KeysRequest);
    let bytes = encode_frame(&request).unwrap();
    assert_eq!(
        hex(&bytes),
        "00000000".to_owned() + "01" + "40" + "0000000000000009"
    );
    assert_eq!(decode_one(&bytes).unwrap(), request);

    let keys = Frame::new(
        9,
        Message::Keys {
            entries: vec![Opaque::new(vec![0xab, 0xcd]), Opaque::new(vec![])],
        },
    );
    let bytes = encode_frame(&keys).unwrap();
    assert_eq!(
        hex(&bytes),
        "0000000c".to_owned()
            + "01"
            + "41"
            + "0000000000000009"
            + "0002"
            + "00000002abcd"
            + "00000000"
    );
    assert_eq!(decode_one(&bytes).unwrap(), keys);
}

#[test]
fn keys_frame_bounds_its_entry_count() {
    let too_many = Message::Keys {
        entries: vec![Opaque::new(vec![1]); MAX_KEY_ENTRIES + 1],
    };
    assert!(matches!(
        encode_frame(&Frame::new(1, too_many)),
        Err(Error::FieldTooLong {
            field: "key_count",
            max: MAX_KEY_ENTRIES,
            ..
        })
    ));
    // A count above the bound is refused before anything is allocated for it.
    let count = u16::try_from(MAX_KEY_ENTRIES + 1).unwrap().to_be_bytes();
    let bytes = header(2, PROTOCOL_VERSION, FrameType::Keys.code(), 1);
    let bytes = [bytes, count.to_vec()].concat();
    assert!(matches!(
        decode_frame(&bytes, DEFAULT_MAX_BODY_BYTES),
        Err(Error::FieldTooLong {
            field: "key_count",
            ..
        })
    ));
    // A count the remaining bytes cannot hold is truncation, not a huge allocation.
    let bytes = [
        header(2, PROTOCOL_VERSION, FrameType::Keys.code(), 1),
        vec![0, 5],
    ]
    .concat();
    assert!(matches!(
        decode_frame(&bytes, DEFAULT_MAX_BODY_BYTES),
        Err(Error::Truncated {
            field: "key_entry",
            ..
        })
    ));
}

#[test]
fn processed_dead_letter_known_answer() {
    let frame = Frame::new(
        1,
        Message::Processed {
            request_id: [0xaa; 16],
            outcome: Outcome::DeadLetter {
                reason_code: "bad_signature".into(),
                detail: "No.".into(),
            },
            audit_events: vec![Opaque::new(vec![0xde, 0xad])],
        },
    );
    let bytes = encode_frame(&frame).unwrap();
    let expected = String::from("0000002c") // body length 44
        + "01" + "11" + "0000000000000001"
        + &"aa".repeat(16)
        + "02"                                  // dead letter
        + "0d" + &hex(b"bad_signature")
        + "0003" + &hex(b"No.")
        + "0001" + "00000002" + "dead";
    assert_eq!(hex(&bytes), expected);
    assert_eq!(decode_one(&bytes).unwrap(), frame);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- property tests ----

fn opaque(max: usize) -> impl Strategy<Value = Opaque> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Opaque::new)
}

fn text(max_chars: usize) -> impl Strategy<Value = String> {
    // Multi-byte characters included; at most 4 bytes each keeps the byte limit.
    proptest::collection::vec(any::<char>(), 0..max_chars).prop_map(|c| c.into_iter().collect())
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Host), Just(Role::Enclave)]
}

fn close_reason() -> impl Strategy<Value = CloseReason> {
    prop_oneof![
        Just(CloseReason::Normal),
        Just(CloseReason::Denied),
        Just(CloseReason::ConnectFailed),
        Just(CloseReason::Reset),
        Just(CloseReason::TimedOut),
        Just(CloseReason::ProtocolError),
    ]
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        opaque(512).prop_map(|envelope| Outcome::Result { envelope }),
        ("[a-z0-9_.-]{1,64}", text(MAX_TEXT_BYTES / 4)).prop_map(|(reason_code, detail)| {
            Outcome::DeadLetter {
                reason_code,
                detail,
            }
        }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (role(), any::<u8>()).prop_map(|(role, protocol_version)| Message::Hello {
            role,
            protocol_version
        }),
        (role(), any::<u8>()).prop_map(|(role, protocol_version)| Message::HelloAck {
            role,
            protocol_version
        }),
        (any::<[u8; 16]>(), opaque(1024)).prop_map(|(request_id, envelope)| Message::Process {
            request_id,
            envelope
        }),
        (
            any::<[u8; 16]>(),
            outcome(),
            proptest::collection::vec(opaque(64), 0..8)
        )
            .prop_map(|(request_id, outcome, audit_events)| Message::Processed {
                request_id,
                outcome,
                audit_events
            }),
        (
            any::<u32>(),
            "[a-z0-9]{1,20}(\\.[a-z][a-z0-9-]{0,20}){0,3}",
            any::<u16>()
        )
            .prop_map(|(conn_id, host, port)| Message::EgressOpen {
                conn_id,
                host,
                port
            }),
        any::<u32>().prop_map(|conn_id| Message::EgressOpened { conn_id }),
        (any::<u32>(), opaque(1024))
            .prop_map(|(conn_id, data)| Message::EgressData { conn_id, data }),
        (any::<u32>(), close_reason())
            .prop_map(|(conn_id, reason)| Message::EgressClose { conn_id, reason }),
        Just(Message::KeysRequest),
        proptest::collection::vec(opaque(256), 0..8).prop_map(|entries| Message::Keys { entries }),
        any::<u64>().prop_map(|nonce| Message::Ping { nonce }),
        any::<u64>().prop_map(|nonce| Message::Pong { nonce }),
        (any::<u16>(), text(MAX_TEXT_BYTES / 4)).prop_map(|(code, message)| Message::Error {
            code: ErrorCode(code),
            message
        }),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    (any::<u64>(), message()).prop_map(|(stream_id, message)| Frame { stream_id, message })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn round_trip_is_exact(frame in frame()) {
        let bytes = encode_frame(&frame).unwrap();
        prop_assert_eq!(bytes.len() - HEADER_LEN, u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize);
        let decoded = decode_one(&bytes).unwrap();
        prop_assert_eq!(&decoded, &frame);
        prop_assert_eq!(encode_frame(&decoded).unwrap(), bytes);
    }

    #[test]
    fn every_truncation_needs_more(frame in frame()) {
        let bytes = encode_frame(&frame).unwrap();
        for cut in 0..bytes.len() {
            match decode_frame(&bytes[..cut], DEFAULT_MAX_BODY_BYTES) {
                Ok(Decoded::NeedMore { needed }) => prop_assert!(needed > cut && needed <= bytes.len()),
                other => prop_assert!(false, "prefix of {} bytes gave {:?}", cut, other),
            }
        }
    }

    #[test]
    fn stream_in_random_chunks_gives_same_frames(
        frames in proptest::collection::vec(frame(), 0..8),
        chunks in proptest::collection::vec(1usize..64, 1..32),
    ) {
        let mut stream = Vec::new();
        let encoder = Encoder::new();
        for f in &frames {
            encoder.encode(f, &mut stream).unwrap();
        }
        // Byte by byte.
        let mut decoder = Decoder::new();
        let mut out = Vec::new();
        for b in &stream {
            out.extend(decoder.decode(std::slice::from_ref(b)).unwrap());
        }
        prop_assert_eq!(&out, &frames);
        prop_assert_eq!(decoder.buffered(), 0);
        // Random chunk sizes (cycled).
        let mut decoder = Decoder::new();
        let mut out = Vec::new();
        let mut rest = &stream[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = chunks[i % chunks.len()].min(rest.len());
            out.extend(decoder.decode(&rest[..n]).unwrap());
            rest = &rest[n..];
            i += 1;
        }
        prop_assert_eq!(&out, &frames);
        // All at once.
        prop_assert_eq!(Decoder::new().decode(&stream).unwrap(), frames);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_accepted_reencode(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(Decoded::Frame { frame, consumed }) = decode_frame(&bytes, 1024) {
            prop_assert_eq!(encode_frame(&frame).unwrap(), bytes[..consumed].to_vec());
        }
    }
}

#[test]
fn debug_hides_canary() {
    let canary = b"CANARY-PHI-0xDEADBEEF".to_vec();
    let frames = [
        Message::Process {
            request_id: [0; 16],
            envelope: Opaque::new(canary.clone()),
        },
        Message::EgressData {
            conn_id: 1,
            data: Opaque::new(canary.clone()),
        },
        Message::Processed {
            request_id: [0; 16],
            outcome: Outcome::Result {
                envelope: Opaque::new(canary.clone()),
            },
            audit_events: vec![Opaque::new(canary.clone())],
        },
    ];
    let canary_bytes = format!("{:?}", canary);
    for message in frames {
        let debug = format!("{:?}", Frame::new(1, message));
        assert!(!debug.contains("CANARY"), "{debug}");
        assert!(!debug.contains(&canary_bytes[1..20]), "{debug}");
        assert!(debug.contains("21 bytes"), "{debug}");
    }
}

// ---- bounds ----

#[test]
fn oversized_length_rejected_from_the_length_field_alone() {
    let bytes = u32::MAX.to_be_bytes();
    assert_eq!(
        decode_frame(&bytes, DEFAULT_MAX_BODY_BYTES),
        Err(Error::FrameTooLarge {
            length: u64::from(u32::MAX),
            max: DEFAULT_MAX_BODY_BYTES
        })
    );
    // The buffering decoder errors after 4 bytes, having buffered only those 4.
    let mut decoder = Decoder::with_max_body_bytes(16);
    decoder.feed(&17u32.to_be_bytes());
    assert_eq!(
        decoder.next_frame(),
        Err(Error::FrameTooLarge {
            length: 17,
            max: 16
        })
    );
    assert!(decoder.is_poisoned());
    // Exactly the limit is fine.
    let ok = raw_frame(
        FrameType::EgressData,
        &[0, 0, 0, 1, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8],
    );
    assert!(Decoder::with_max_body_bytes(16).decode(&ok).is_ok());
}

#[test]
fn need_more_never_exceeds_limit() {
    let mut bytes = header(
        DEFAULT_MAX_BODY_BYTES,
        PROTOCOL_VERSION,
        FrameType::Process.code(),
        1,
    );
    bytes.extend_from_slice(&[0; 100]);
    assert_eq!(
        decode_frame(&bytes, DEFAULT_MAX_BODY_BYTES),
        Ok(Decoded::NeedMore {
            needed: HEADER_LEN + DEFAULT_MAX_BODY_BYTES as usize
        })
    );
}

#[test]
fn encoder_refuses_what_the_decoder_would_reject() {
    let encoder = Encoder::with_max_body_bytes(32);
    let mut out = vec![9, 9];
    let big = Frame::new(
        1,
        Message::EgressData {
            conn_id: 1,
            data: Opaque::new(vec![0; 29]),
        },
    );
    assert_eq!(
        encoder.encode(&big, &mut out),
        Err(Error::FrameTooLarge {
            length: 37,
            max: 32
        })
    );
    assert_eq!(out, vec![9, 9], "output untouched on error");
    let fits = Frame::new(
        1,
        Message::EgressData {
            conn_id: 1,
            data: Opaque::new(vec![0; 24]),
        },
    );
    encoder.encode(&fits, &mut out).unwrap();

    let long_detail = Message::Processed {
        request_id: [0; 16],
        outcome: Outcome::DeadLetter {
            reason_code: "x".into(),
            detail: "é".repeat(513),
        },
        audit_events: vec![],
    };
    assert!(matches!(
        encode_frame(&Frame::new(1, long_detail)),
        Err(Error::FieldTooLong {
            field: "detail",
            ..
        })
    ));
    let bad_code = Message::Processed {
        request_id: [0; 16],
        outcome: Outcome::DeadLetter {
            reason_code: "Bad Code".into(),
            detail: String::new(),
        },
        audit_events: vec![],
    };
    assert!(matches!(
        encode_frame(&Frame::new(1, bad_code)),
        Err(Error::InvalidValue {
            field: "reason_code",
            ..
        })
    ));
    let many = Message::Processed {
        request_id: [0; 16],
        outcome: Outcome::Result {
            envelope: Opaque::default(),
        },
        audit_events: vec![Opaque::default(); MAX_AUDIT_EVENTS + 1],
    };
    assert!(matches!(
        encode_frame(&Frame::new(1, many)),
        Err(Error::FieldTooLong {
            field: "audit_count",
            ..
        })
    ));
    let empty_host = Message::EgressOpen {
        conn_id: 1,
        host: String::new(),
        port: 443,
    };
    assert!(matches!(
        encode_frame(&Frame::new(1, empty_host)),
        Err(Error::InvalidValue { field: "host", .. })
    ));
    let long_host = Message::EgressOpen {
        conn_id: 1,
        host: "a".repeat(254),
        port: 443,
    };
    assert!(matches!(
        encode_frame(&Frame::new(1, long_host)),
        Err(Error::FieldTooLong { field: "host", .. })
    ));
}

// ---- each malformed case ----

#[test]
fn unknown_version() {
    let bytes = header(0, 2, FrameType::Ping.code(), 0);
    assert_eq!(
        decode_frame(&bytes[..5], DEFAULT_MAX_BODY_BYTES),
        Err(Error::UnsupportedVersion { version: 2 })
    );
    assert_eq!(
        decode_frame(&bytes, DEFAULT_MAX_BODY_BYTES),
        Err(Error::UnsupportedVersion { version: 2 })
    );
}

#[test]
fn unknown_frame_type() {
    let bytes = header(0, PROTOCOL_VERSION, 0x55, 0);
    assert_eq!(
        decode_frame(&bytes[..6], DEFAULT_MAX_BODY_BYTES),
        Err(Error::UnknownFrameType { frame_type: 0x55 })
    );
}

#[test]
fn truncated_bodies() {
    let cases: Vec<(FrameType, Vec<u8>, &str)> = vec![
        (FrameType::Ping, vec![0; 7], "nonce"),
        (FrameType::Hello, vec![1], "protocol_version"),
        (FrameType::Process, vec![0; 15], "request_id"),
        (
            FrameType::Process,
            [vec![0; 16], vec![0, 0, 0, 5, 1, 2]].concat(),
            "envelope",
        ),
        (
            FrameType::Processed,
            [vec![0; 16], vec![1, 0, 0, 0, 0]].concat(),
            "audit_count",
        ),
        (
            FrameType::Processed,
            [vec![0; 16], vec![1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]].concat(),
            "audit_event",
        ),
        (
            FrameType::EgressOpen,
            vec![0, 0, 0, 1, 3, b'a', b'b'],
            "host",
        ),
        (FrameType::Error, vec![0, 1, 0, 5, b'a'], "message"),
    ];
    for (frame, body, field) in cases {
        assert_eq!(
            decode_one(&raw_frame(frame, &body)),
            Err(Error::Truncated { frame, field }),
            "{frame} {field}"
        );
    }
}

#[test]
fn trailing_bytes() {
    let mut body = 5u64.to_be_bytes().to_vec();
    body.push(0);
    assert_eq!(
        decode_one(&raw_frame(FrameType::Pong, &body)),
        Err(Error::TrailingBytes {
            frame: FrameType::Pong,
            count: 1
        })
    );
    let body = [0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xee];
    assert_eq!(
        decode_one(&raw_frame(FrameType::EgressData, &body)),
        Err(Error::TrailingBytes {
            frame: FrameType::EgressData,
            count: 1
        })
    );
}

#[test]
fn invalid_utf8() {
    let body = [0, 1, 0, 2, 0xc3, 0x28];
    assert_eq!(
        decode_one(&raw_frame(FrameType::Error, &body)),
        Err(Error::InvalidUtf8 {
            frame: FrameType::Error,
            field: "message"
        })
    );
    let body = [0, 0, 0, 1, 1, 0xff, 1, 187];
    assert_eq!(
        decode_one(&raw_frame(FrameType::EgressOpen, &body)),
        Err(Error::InvalidUtf8 {
            frame: FrameType::EgressOpen,
            field: "host"
        })
    );
}

#[test]
fn invalid_values_and_limits() {
    let f = FrameType::Processed;
    let invalid = |frame, field| move |e: &Error| matches!(e, Error::InvalidValue { frame: fr, field: fi, .. } if *fr == frame && *fi == field);
    type Check = Box<dyn Fn(&Error) -> bool>;
    let cases: Vec<(FrameType, Vec<u8>, Check)> = vec![
        (
            FrameType::Hello,
            vec![3, 1],
            Box::new(invalid(FrameType::Hello, "role")),
        ),
        (
            FrameType::HelloAck,
            vec![0, 1],
            Box::new(invalid(FrameType::HelloAck, "role")),
        ),
        (
            f,
            [vec![0; 16], vec![3]].concat(),
            Box::new(invalid(f, "outcome")),
        ),
        (
            f,
            [vec![0; 16], vec![2, 2], b"A!".to_vec(), vec![0, 0, 0, 0]].concat(),
            Box::new(invalid(f, "reason_code")),
        ),
        (
            f,
            [vec![0; 16], vec![2, 0, 0, 0, 0, 0]].concat(),
            Box::new(invalid(f, "reason_code")),
        ),
        (
            FrameType::EgressClose,
            vec![0, 0, 0, 1, 6],
            Box::new(invalid(FrameType::EgressClose, "reason")),
        ),
        (
            FrameType::EgressOpen,
            vec![0, 0, 0, 1, 0, 1, 187],
            Box::new(invalid(FrameType::EgressOpen, "host")),
        ),
        (
            f,
            [
                vec![0; 16],
                vec![2, 1, b'x', 4, 1],
                vec![b'a'; 1025],
                vec![0, 0],
            ]
            .concat(),
            Box::new(|e: &Error| {
                matches!(
                    e,
                    Error::FieldTooLong {
                        field: "detail",
                        length: 1025,
                        ..
                    }
                )
            }),
        ),
        (
            f,
            [vec![0; 16], vec![1, 0, 0, 0, 0, 4, 1]].concat(),
            Box::new(|e: &Error| {
                matches!(
                    e,
                    Error::FieldTooLong {
                        field: "audit_count",
                        length: 1025,
                        ..
                    }
                )
            }),
        ),
        (
            FrameType::EgressOpen,
            [vec![0, 0, 0, 1, 254], vec![b'a'; 254], vec![1, 187]].concat(),
            Box::new(|e: &Error| {
                matches!(
                    e,
                    Error::FieldTooLong {
                        field: "host",
                        length: 254,
                        ..
                    }
                )
            }),
        ),
    ];
    for (frame, body, check) in cases {
        let err = decode_one(&raw_frame(frame, &body)).unwrap_err();
        assert!(check(&err), "{frame}: {err}");
    }
}

#[test]
fn decoder_is_poisoned_after_an_error() {
    let good = encode_frame(&Frame::new(1, Message::Ping { nonce: 1 })).unwrap();
    let mut decoder = Decoder::new();
    let mut input = good.clone();
    input.extend_from_slice(&header(0, 9, 0x30, 0));
    decoder.feed(&input);
    assert_eq!(
        decoder.next_frame(),
        Ok(Some(Frame::new(1, Message::Ping { nonce: 1 })))
    );
    assert_eq!(
        decoder.next_frame(),
        Err(Error::UnsupportedVersion { version: 9 })
    );
    assert_eq!(decoder.buffered(), 0, "poisoning drops the buffer");
    decoder.feed(&good);
    assert_eq!(decoder.next_frame(), Err(Error::Poisoned));
    assert_eq!(decoder.decode(&good), Err(Error::Poisoned));
}

#[test]
fn error_messages_are_sentences() {
    let errors = [
        Error::FrameTooLarge { length: 10, max: 5 },
        Error::UnsupportedVersion { version: 2 },
        Error::UnknownFrameType { frame_type: 0x55 },
        Error::Truncated {
            frame: FrameType::Ping,
            field: "nonce",
        },
        Error::TrailingBytes {
            frame: FrameType::Ping,
            count: 1,
        },
        Error::InvalidUtf8 {
            frame: FrameType::Error,
            field: "message",
        },
        Error::Poisoned,
        Error::EgressDenied {
            host: "example.com".into(),
            port: 443,
        },
    ];
    for e in errors {
        let s = e.to_string();
        assert!(
            s.ends_with('.') && s.chars().next().is_some_and(char::is_uppercase),
            "{s}"
        );
    }
}

#[test]
fn frame_type_codes_are_unique_and_round_trip() {
    for t in FrameType::ALL {
        assert_eq!(FrameType::from_code(t.code()), Some(*t));
    }
    let mut codes: Vec<u8> = FrameType::ALL.iter().map(|t| t.code()).collect();
    codes.dedup();
    assert_eq!(codes.len(), FrameType::ALL.len());
}
