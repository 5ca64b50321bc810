//! `zenvelope inspect`: show what anyone holding the bytes (the broker, an operator) sees.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::json;
use zenvelope_envelope::{Envelope, Limits, decode};

/// The public view of an envelope, as JSON. Contains no plaintext and no key material.
pub(crate) fn public_view(env: &Envelope, wire_len: usize) -> serde_json::Value {
    let h = &env.header;
    json!({
        "version": h.version,
        "message_id": h.message_id.to_string(),
        "tenant": h.tenant,
        "subject": h.subject,
        "kind": h.kind.symbol(),
        "purpose": h.purpose.symbol(),
        "content_type": h.content_type,
        "created_at_ms": h.created_at_ms,
        "correlation_id": h.correlation_id.map(|c| c.to_string()),
        "schema_id": h.schema_id,
        "key_commitment": hex::encode(h.key_commitment),
        "recipients": env.recipients.iter().map(|r| json!({
            "type": r.recipient_type.symbol(),
            "key_id": r.key_id,
            "key_version": r.key_version,
            "wrapped_key_bytes": r.wrapped_key.len(),
        })).collect::<Vec<_>>(),
        "payload_bytes": env.payload.len(),
        "signature": env.signature.as_ref().map(|s| json!({
            "key_id": s.key_id, "key_version": s.key_version, "algorithm": s.algorithm.symbol(),
        })),
        "encoded_bytes": wire_len,
    })
}

pub(crate) fn run(path: Option<&Path>, is_hex: bool) -> anyhow::Result<()> {
    let mut raw = Vec::new();
    match path {
        Some(p) if p != Path::new("-") => {
            raw = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
        }
        _ => {
            std::io::stdin()
                .read_to_end(&mut raw)
                .context("cannot read standard input")?;
        }
    }
    let bytes = if is_hex {
        let text = String::from_utf8(raw).context("hex input is not text")?;
        hex::decode(text.trim()).context("input is not valid hex")?
    } else {
        raw
    };
    // Confluent framing: magic byte 0 and a 4-byte schema id before the Avro datum. An
    // envelope's own first byte is its version varint (0x02), so the two cannot be confused.
    let avro = match bytes.first() {
        Some(0) if bytes.len() >= 5 => &bytes[5..],
        Some(_) => &bytes[..],
        None => bail!("the input is empty"),
    };
    let env = decode(avro, &Limits::default()).context("not a zenvelope envelope")?;
    println!(
        "{}",
        serde_json::to_string_pretty(&public_view(&env, avro.len()))?
    );
    Ok(())
}
