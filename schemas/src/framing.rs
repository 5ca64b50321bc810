//! Confluent wire framing: magic byte `0`, the schema id as a 4-byte big-endian integer,
//! then the Avro datum. This is what the Confluent serializers, `schema_registry_converter`
//! and every zenvelope producer put in a Kafka record value.

use crate::catalog::SchemaId;
use crate::error::Error;

/// The Confluent wire-format magic byte.
pub const MAGIC_BYTE: u8 = 0;

/// Length of the Confluent header: magic byte and 4-byte schema id.
pub const HEADER_LEN: usize = 5;

/// Frames an Avro datum: `0 | id (4 bytes, big-endian) | datum`.
pub fn frame(id: SchemaId, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&id.get().to_be_bytes());
    out.extend_from_slice(datum);
    out
}

/// Splits a framed message into its schema id and Avro datum.
///
/// Rejects empty and short input ([`Error::Truncated`]) and any first byte other than
/// [`MAGIC_BYTE`] ([`Error::WrongMagicByte`]). Whether the id is known is for the caller's
/// catalog or registry to decide.
pub fn unframe(bytes: &[u8]) -> Result<(SchemaId, &[u8]), Error> {
    match bytes {
        [] => Err(Error::Truncated { len: 0 }),
        [magic, ..] if *magic != MAGIC_BYTE => Err(Error::WrongMagicByte(*magic)),
        [_, a, b, c, d, datum @ ..] => {
            Ok((SchemaId::new(u32::from_be_bytes([*a, *b, *c, *d])), datum))
        }
        short => Err(Error::Truncated { len: short.len() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_big_endian_after_the_magic_byte() {
        let framed = frame(SchemaId::new(0x0102_0304), b"xyz");
        assert_eq!(framed, [0, 1, 2, 3, 4, b'x', b'y', b'z']);
        let (id, datum) = unframe(&framed).expect("unframe");
        assert_eq!(id, SchemaId::new(0x0102_0304));
        assert_eq!(datum, b"xyz");
    }

    #[test]
    fn an_empty_datum_is_allowed() {
        let framed = frame(SchemaId::new(7), b"");
        assert_eq!(framed.len(), HEADER_LEN);
        assert_eq!(
            unframe(&framed).expect("unframe"),
            (SchemaId::new(7), &[][..])
        );
    }

    #[test]
    fn rejects_wrong_magic_and_truncated_input() {
        assert!(matches!(unframe(&[]), Err(Error::Truncated { len: 0 })));
        assert!(matches!(
            unframe(&[0, 0, 0, 1]),
            Err(Error::Truncated { len: 4 })
        ));
        assert!(matches!(
            unframe(&[1, 0, 0, 0, 1, 2]),
            Err(Error::WrongMagicByte(1))
        ));
        // A magic byte check comes first, so a one-byte non-zero input is "wrong magic".
        assert!(matches!(unframe(&[0x7b]), Err(Error::WrongMagicByte(0x7b))));
        let e = unframe(&[0, 0]).expect_err("short");
        assert_eq!(
            e.to_string(),
            "the message is 2 bytes long, shorter than the 5-byte Confluent header"
        );
    }
}
