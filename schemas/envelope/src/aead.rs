//! The payload blob: `0x01 | IV (12) | tag (16) | ciphertext`, AES-256-GCM.
//!
//! Backed by aws-lc-rs: at 16 KiB it runs at about OpenSSL's speed, while the `aes-gcm`
//! crate measured 0.34x here (docs/crypto-choices.md). `aes-gcm` stays as a test oracle.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::error::Error;
use crate::secret::Plaintext;

/// Blob format version byte.
pub const BLOB_VERSION: u8 = 0x01;
/// IV length in bytes.
pub const IV_LEN: usize = 12;
/// GCM tag length in bytes.
pub const TAG_LEN: usize = 16;
/// Bytes a blob adds to its plaintext.
pub const BLOB_OVERHEAD: usize = 1 + IV_LEN + TAG_LEN;

fn cipher(key: &[u8; 32]) -> LessSafeKey {
    // A 32-byte key is always valid for AES-256-GCM.
    match UnboundKey::new(&AES_256_GCM, key) {
        Ok(k) => LessSafeKey::new(k),
        Err(_) => unreachable!("32-byte AES-256 key rejected"),
    }
}

/// Seals `plaintext` into a blob with the given IV (which must be fresh and random).
pub fn seal_blob(key: &[u8; 32], iv: [u8; IV_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(BLOB_OVERHEAD + plaintext.len());
    out.push(BLOB_VERSION);
    out.extend_from_slice(&iv);
    out.extend_from_slice(&[0u8; TAG_LEN]);
    out.extend_from_slice(plaintext);
    let (head, body) = out.split_at_mut(BLOB_OVERHEAD);
    match cipher(key).seal_in_place_separate_tag(
        Nonce::assume_unique_for_key(iv),
        Aad::from(aad),
        body,
    ) {
        Ok(tag) => head[1 + IV_LEN..].copy_from_slice(tag.as_ref()),
        // aws-lc only fails for inputs beyond GCM's 64 GiB limit, far above our limits.
        Err(_) => unreachable!("AES-GCM seal failed for a bounded input"),
    }
    out
}

/// Opens a blob. Every failure is [`Error::DecryptFailed`].
pub fn open_blob(key: &[u8; 32], aad: &[u8], blob: &[u8]) -> Result<Plaintext, Error> {
    if blob.len() < BLOB_OVERHEAD || blob[0] != BLOB_VERSION {
        return Err(Error::DecryptFailed);
    }
    let mut iv = [0u8; IV_LEN];
    iv.copy_from_slice(&blob[1..1 + IV_LEN]);
    // aws-lc wants ciphertext || tag; the seed's layout puts the tag first. The buffer is
    // a Plaintext from the start, so it is wiped on every path, including failures.
    let mut out = Plaintext::new(Vec::with_capacity(blob.len() - 1 - IV_LEN));
    let buf = out.as_mut_vec();
    buf.extend_from_slice(&blob[BLOB_OVERHEAD..]);
    buf.extend_from_slice(&blob[1 + IV_LEN..BLOB_OVERHEAD]);
    let n = cipher(key)
        .open_in_place(Nonce::assume_unique_for_key(iv), Aad::from(aad), buf)
        .map_err(|_| Error::DecryptFailed)?
        .len();
    buf.truncate(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_layout_and_round_trip() {
        let key = [3u8; 32];
        let blob = seal_blob(&key, [5; 12], b"aad", b"hello");
        assert_eq!(blob.len(), BLOB_OVERHEAD + 5);
        assert_eq!(blob[0], 1);
        assert_eq!(&blob[1..13], &[5; 12]);
        assert_eq!(
            open_blob(&key, b"aad", &blob).expect("open").as_bytes(),
            b"hello"
        );
        assert_eq!(
            open_blob(&key, b"aaX", &blob).err(),
            Some(Error::DecryptFailed)
        );
        assert_eq!(
            open_blob(&key, b"aad", &blob[..20]).err(),
            Some(Error::DecryptFailed)
        );
        let mut v2 = blob.clone();
        v2[0] = 2;
        assert_eq!(
            open_blob(&key, b"aad", &v2).err(),
            Some(Error::DecryptFailed)
        );
    }
}
