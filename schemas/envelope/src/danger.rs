//! Dangerous operations: sealing with caller-chosen randomness.
//!
//! These exist so golden test vectors (`schemas/envelope/vectors/`) can be reproduced
//! byte for byte by this crate and by other implementations. Reusing a DEK/IV pair
//! breaks AES-GCM; never call these outside tests and vector generation.

use rand_core::{CryptoRng, RngCore};

use crate::error::Error;
use crate::keys::SigningKey;
use crate::model::{Envelope, MessageId, Recipient};
use crate::seal::{HeaderFields, Opened, ResponseFields, Sealer, seal_response_with};

/// The random values one seal draws, in the order it draws them.
pub struct FixedRandomness {
    /// The DEK.
    pub dek: [u8; 32],
    /// One IV per passphrase recipient, in recipient order (RSA-OAEP draws its seed
    /// inside aws-lc and cannot be fixed; vectors check those recipients by opening).
    pub wrap_ivs: Vec<[u8; 12]>,
    /// The payload IV.
    pub payload_iv: [u8; 12],
}

/// Yields a fixed byte sequence, then fails.
struct ReplayRng {
    bytes: Vec<u8>,
    pos: usize,
}

impl RngCore for ReplayRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        // Zero-fills past the end; this crate only ever calls try_fill_bytes.
        let _ = self.try_fill_bytes(dest).map_err(|_| dest.fill(0));
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        let end = self.pos + dest.len();
        let src = self
            .bytes
            .get(self.pos..end)
            .ok_or_else(|| rand_core::Error::new("fixed randomness exhausted"))?;
        dest.copy_from_slice(src);
        self.pos = end;
        Ok(())
    }
}

impl CryptoRng for ReplayRng {}

/// Seals like [`Sealer::seal`] with a fixed message id, time and randomness.
pub fn seal_with_fixed_randomness(
    sealer: &mut Sealer,
    fields: &HeaderFields,
    plaintext: &[u8],
    message_id: MessageId,
    created_at_ms: i64,
    randomness: &FixedRandomness,
) -> Result<Envelope, Error> {
    let mut bytes = randomness.dek.to_vec();
    randomness
        .wrap_ivs
        .iter()
        .for_each(|iv| bytes.extend_from_slice(iv));
    bytes.extend_from_slice(&randomness.payload_iv);
    let mut rng = ReplayRng { bytes, pos: 0 };
    let env = sealer.seal_with(fields, plaintext, message_id, created_at_ms, &mut rng)?;
    if rng.pos != rng.bytes.len() {
        return Err(Error::InvalidInput("fixed randomness was not fully used"));
    }
    Ok(env)
}

/// Seals like [`crate::seal_response`] with a fixed message id, time and payload IV.
#[allow(clippy::too_many_arguments)]
pub fn seal_response_with_fixed_randomness(
    request: &Opened,
    fields: &ResponseFields,
    plaintext: &[u8],
    keep: impl Fn(&Recipient) -> bool,
    signer: Option<&SigningKey>,
    message_id: MessageId,
    created_at_ms: i64,
    payload_iv: [u8; 12],
) -> Result<Envelope, Error> {
    let mut rng = ReplayRng {
        bytes: payload_iv.to_vec(),
        pos: 0,
    };
    seal_response_with(
        request,
        fields,
        plaintext,
        keep,
        signer,
        message_id,
        created_at_ms,
        &mut rng,
    )
}
