//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 keys, and C2SP
//! transparency log checkpoints (<https://c2sp.org/tlog-checkpoint>).
//!
//! The formats are those of Go's `golang.org/x/mod/sumdb/note`, so keys and notes
//! interoperate with Go tooling:
//!
//! * a verifier key is `<name>+<8 hex key id>+<base64(0x01 || 32-byte public key)>`;
//! * a private key is `PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x01 || 32-byte seed)>`;
//! * the key id is the first four bytes, big-endian, of
//!   `SHA-256(name || 0x0A || 0x01 || public key)`;
//! * a signed note is the text (ending in a newline), an empty line, then one or more
//!   lines `— <name> <base64(4-byte key id || 64-byte Ed25519 signature)>` (the dash is
//!   the em dash U+2014). The signature covers the text, final newline included.
//!
//! Key names must be non-empty and contain neither Unicode white space nor `+`.
//!
//! A checkpoint is a signed note whose text is `<origin>\n<size>\n<base64 root>\n`
//! followed by optional extension lines; see [`Checkpoint`].

use std::fmt;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::merkle::Hash;

/// The signature type byte of Ed25519 keys (C2SP signed-note, "Signature types").
const ALG_ED25519: u8 = 0x01;
/// Length of an Ed25519 public key and of an Ed25519 seed.
const KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
const SIGNATURE_LEN: usize = 64;
/// The prefix of every signature line: em dash, space.
const SIG_PREFIX: &str = "\u{2014} ";
/// The prefix of a private key.
const PRIVATE_KEY_PREFIX: &str = "PRIVATE+KEY+";

/// The maximum number of signature lines [`open_note`] accepts. The spec requires
/// accepting at least 16; Go's implementation stops at 100, and so does this one.
pub const MAX_SIGNATURES: usize = 100;

/// Why a key, note or checkpoint was rejected. Messages never contain private key
/// material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// A key name is empty or contains white space or a plus sign.
    #[error(
        "The key name {name:?} is invalid: it must be non-empty and contain neither white space nor '+'."
    )]
    InvalidKeyName {
        /// The rejected name.
        name: String,
    },
    /// A verifier (public) key string is not of the form `<name>+<hex id>+<base64 key>`.
    #[error("The verifier key is malformed: {reason}.")]
    MalformedVerifierKey {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A private key string is not of the form `PRIVATE+KEY+<name>+<hex id>+<base64 key>`.
    #[error("The private key is malformed: {reason}.")]
    MalformedPrivateKey {
        /// What is wrong with it (never any part of the key itself).
        reason: &'static str,
    },
    /// A key uses a signature type other than Ed25519.
    #[error("The key has signature type 0x{algorithm:02x}, but only Ed25519 (0x01) is supported.")]
    UnsupportedAlgorithm {
        /// The signature type byte found.
        algorithm: u8,
    },
    /// The key id written in a key string does not match the id computed from the key.
    #[error(
        "The key id {declared:08x} given for key {name:?} does not match the id {computed:08x} computed from its public key."
    )]
    KeyIdMismatch {
        /// The key name.
        name: String,
        /// The key id written in the key string.
        declared: u32,
        /// The key id computed from the name and public key.
        computed: u32,
    },
    /// The Ed25519 key material was rejected by the cryptographic library.
    #[error("The Ed25519 key material was rejected by the cryptographic library.")]
    InvalidKey,
    /// The system random number generator failed.
    #[error("The system random number generator failed, so no key could be generated.")]
    RandomnessUnavailable,
    /// The text given to [`sign_note`] cannot be the text of a signed note.
    #[error("The note text cannot be signed: {reason}.")]
    InvalidNoteText {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A signed note does not follow the signed-note format.
    #[error("The signed note is malformed: {reason}.")]
    MalformedNote {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A signed note has more signature lines than [`MAX_SIGNATURES`].
    #[error("The signed note has more than {limit} signature lines.")]
    TooManySignatures {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// A signature line from a trusted key does not verify.
    #[error("The signature by the trusted key {name}+{key_id:08x} does not verify.")]
    InvalidSignature {
        /// The key name.
        name: String,
        /// The key id.
        key_id: u32,
    },
    /// Two different trusted keys have the same name and key id.
    #[error(
        "Two different trusted keys share the name {name:?} and key id {key_id:08x}, so the signature cannot be attributed."
    )]
    AmbiguousVerifier {
        /// The shared key name.
        name: String,
        /// The shared key id.
        key_id: u32,
    },
    /// No signature from a trusted key was found in the note.
    #[error("The signed note has no signature from any trusted key.")]
    NoTrustedSignature,
    /// A checkpoint body does not follow the tlog-checkpoint format.
    #[error("The checkpoint is malformed: {reason}.")]
    MalformedCheckpoint {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A checkpoint's origin is not the expected one.
    #[error("The checkpoint is for the log {found:?}, but the log {expected:?} was expected.")]
    OriginMismatch {
        /// The expected origin.
        expected: String,
        /// The origin found in the checkpoint.
        found: String,
    },
}

/// Reports whether `name` is a valid key name: non-empty, without Unicode white space
/// and without `+`.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// Checks a key name, see [`is_valid_key_name`].
fn check_key_name(name: &str) -> Result<(), NoteError> {
    if is_valid_key_name(name) {
        Ok(())
    } else {
        Err(NoteError::InvalidKeyName {
            name: name.to_owned(),
        })
    }
}

/// Computes the key id of an Ed25519 key: the first four bytes, big-endian, of
/// `SHA-256(name || 0x0A || 0x01 || public key)`.
pub fn key_id(name: &str, public_key: &[u8; KEY_LEN]) -> u32 {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[ALG_ED25519]);
    ctx.update(public_key);
    let sum = ctx.finish();
    let mut id = [0u8; 4];
    id.copy_from_slice(&sum.as_ref()[..4]);
    u32::from_be_bytes(id)
}

/// Parses an 8-digit hexadecimal key id.
fn parse_key_id(hex: &str) -> Option<u32> {
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// An Ed25519 note signing key with its name and key id.
///
/// The seed is wiped from memory on drop. The type deliberately implements neither
/// `Debug` nor `Display`; use [`Signer::to_private_key_text`] to export it.
pub struct Signer {
    /// The key name.
    name: String,
    /// The key id.
    key_id: u32,
    /// The Ed25519 seed (private key).
    seed: Zeroizing<[u8; KEY_LEN]>,
    /// The expanded key pair, for signing.
    key_pair: Ed25519KeyPair,
}

impl Signer {
    /// Generates a new random Ed25519 key named `name`.
    ///
    /// # Errors
    ///
    /// [`NoteError::InvalidKeyName`] for an invalid name and
    /// [`NoteError::RandomnessUnavailable`] if the system RNG fails.
    pub fn generate(name: &str) -> Result<Signer, NoteError> {
        check_key_name(name)?;
        let mut seed = Zeroizing::new([0u8; KEY_LEN]);
        aws_lc_rs::rand::fill(seed.as_mut()).map_err(|_| NoteError::RandomnessUnavailable)?;
        Self::from_seed(name, seed)
    }

    /// Builds a signer from a 32-byte Ed25519 seed (an RFC 8032 private key).
    ///
    /// # Errors
    ///
    /// [`NoteError::InvalidKeyName`] for an invalid name.
    pub fn from_ed25519_seed(name: &str, seed: &[u8; KEY_LEN]) -> Result<Signer, NoteError> {
        Self::from_seed(name, Zeroizing::new(*seed))
    }

    /// Builds a signer from an owned, zeroizing seed.
    fn from_seed(name: &str, seed: Zeroizing<[u8; KEY_LEN]>) -> Result<Signer, NoteError> {
        check_key_name(name)?;
        let key_pair = Ed25519KeyPair::from_seed_unchecked(seed.as_ref())
            .map_err(|_| NoteError::InvalidKey)?;
        let mut public_key = [0u8; KEY_LEN];
        public_key.copy_from_slice(key_pair.public_key().as_ref());
        Ok(Signer {
            name: name.to_owned(),
            key_id: key_id(name, &public_key),
            seed,
            key_pair,
        })
    }

    /// Parses a private key in Go's format,
    /// `PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x01 || 32-byte seed)>`, and checks
    /// that the key id matches the public key derived from the seed.
    ///
    /// # Errors
    ///
    /// [`NoteError::MalformedPrivateKey`], [`NoteError::InvalidKeyName`],
    /// [`NoteError::UnsupportedAlgorithm`] or [`NoteError::KeyIdMismatch`].
    pub fn from_private_key_text(text: &str) -> Result<Signer, NoteError> {
        let malformed = |reason| NoteError::MalformedPrivateKey { reason };
        let rest = text
            .strip_prefix(PRIVATE_KEY_PREFIX)
            .ok_or(malformed("it does not start with PRIVATE+KEY+"))?;
        let (name, rest) = rest
            .split_once('+')
            .ok_or(malformed("it has no key id field"))?;
        let (id_hex, key_b64) = rest
            .split_once('+')
            .ok_or(malformed("it has no key data field"))?;
        check_key_name(name)?;
        let declared =
            parse_key_id(id_hex).ok_or(malformed("the key id is not 8 hexadecimal digits"))?;
        let key = Zeroizing::new(
            STANDARD
                .decode(key_b64)
                .map_err(|_| malformed("the key data is not valid base64"))?,
        );
        let (&algorithm, seed_bytes) = key
            .split_first()
            .ok_or(malformed("the key data is empty"))?;
        if algorithm != ALG_ED25519 {
            return Err(NoteError::UnsupportedAlgorithm { algorithm });
        }
        let mut seed = Zeroizing::new([0u8; KEY_LEN]);
        if seed_bytes.len() != KEY_LEN {
            return Err(malformed("the Ed25519 seed is not 32 bytes long"));
        }
        seed.copy_from_slice(seed_bytes);
        let signer = Self::from_seed(name, seed)?;
        if signer.key_id != declared {
            return Err(NoteError::KeyIdMismatch {
                name: name.to_owned(),
                declared,
                computed: signer.key_id,
            });
        }
        Ok(signer)
    }

    /// Exports the key in Go's private key format (see
    /// [`Signer::from_private_key_text`]). The result is wiped from memory on drop.
    pub fn to_private_key_text(&self) -> Zeroizing<String> {
        let mut raw = Zeroizing::new([0u8; 1 + KEY_LEN]);
        raw[0] = ALG_ED25519;
        raw[1..].copy_from_slice(self.seed.as_ref());
        // Reserve everything up front so that no reallocation leaves copies behind.
        let capacity = PRIVATE_KEY_PREFIX.len() + self.name.len() + 1 + 8 + 1 + 44;
        let mut out = Zeroizing::new(String::with_capacity(capacity));
        out.push_str(PRIVATE_KEY_PREFIX);
        out.push_str(&self.name);
        out.push('+');
        out.push_str(&format!("{:08x}", self.key_id));
        out.push('+');
        STANDARD.encode_string(raw.as_ref(), &mut out);
        out
    }

    /// Returns the key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Returns the verifier for this key.
    pub fn verifier(&self) -> Verifier {
        let mut public_key = [0u8; KEY_LEN];
        public_key.copy_from_slice(self.key_pair.public_key().as_ref());
        Verifier {
            name: self.name.clone(),
            key_id: self.key_id,
            public_key,
        }
    }

    /// Signs `msg` with Ed25519 (RFC 8032; deterministic).
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(self.key_pair.sign(msg).as_ref());
        out
    }
}

/// An Ed25519 note verifier key with its name and key id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Verifier {
    /// The key name.
    name: String,
    /// The key id, always consistent with `name` and `public_key`.
    key_id: u32,
    /// The Ed25519 public key.
    public_key: [u8; KEY_LEN],
}

impl Verifier {
    /// Builds a verifier from a key name and a 32-byte Ed25519 public key.
    ///
    /// # Errors
    ///
    /// [`NoteError::InvalidKeyName`] for an invalid name.
    pub fn from_public_key(name: &str, public_key: [u8; KEY_LEN]) -> Result<Verifier, NoteError> {
        check_key_name(name)?;
        Ok(Verifier {
            name: name.to_owned(),
            key_id: key_id(name, &public_key),
            public_key,
        })
    }

    /// Parses a verifier key `<name>+<8 hex key id>+<base64(0x01 || 32-byte key)>` and
    /// checks that the key id matches the key.
    ///
    /// # Errors
    ///
    /// [`NoteError::MalformedVerifierKey`], [`NoteError::InvalidKeyName`],
    /// [`NoteError::UnsupportedAlgorithm`] or [`NoteError::KeyIdMismatch`].
    pub fn from_vkey(vkey: &str) -> Result<Verifier, NoteError> {
        let malformed = |reason| NoteError::MalformedVerifierKey { reason };
        let (name, rest) = vkey
            .split_once('+')
            .ok_or(malformed("it has no key id field"))?;
        let (id_hex, key_b64) = rest
            .split_once('+')
            .ok_or(malformed("it has no key data field"))?;
        check_key_name(name)?;
        let declared =
            parse_key_id(id_hex).ok_or(malformed("the key id is not 8 hexadecimal digits"))?;
        let key = STANDARD
            .decode(key_b64)
            .map_err(|_| malformed("the key data is not valid base64"))?;
        let (&algorithm, key_bytes) = key
            .split_first()
            .ok_or(malformed("the key data is empty"))?;
        if algorithm != ALG_ED25519 {
            return Err(NoteError::UnsupportedAlgorithm { algorithm });
        }
        let public_key: [u8; KEY_LEN] = key_bytes
            .try_into()
            .map_err(|_| malformed("the Ed25519 public key is not 32 bytes long"))?;
        let verifier = Self::from_public_key(name, public_key)?;
        if verifier.key_id != declared {
            return Err(NoteError::KeyIdMismatch {
                name: name.to_owned(),
                declared,
                computed: verifier.key_id,
            });
        }
        Ok(verifier)
    }

    /// Formats the verifier key as `<name>+<8 hex key id>+<base64(0x01 || key)>`.
    pub fn to_vkey(&self) -> String {
        let mut raw = [0u8; 1 + KEY_LEN];
        raw[0] = ALG_ED25519;
        raw[1..].copy_from_slice(&self.public_key);
        format!("{}+{:08x}+{}", self.name, self.key_id, STANDARD.encode(raw))
    }

    /// Returns the key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Returns the Ed25519 public key.
    pub fn public_key(&self) -> &[u8; KEY_LEN] {
        &self.public_key
    }

    /// Reports whether `signature` is a valid Ed25519 signature of `msg` by this key.
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> bool {
        signature.len() == SIGNATURE_LEN
            && UnparsedPublicKey::new(&ED25519, &self.public_key)
                .verify(msg, signature)
                .is_ok()
    }
}

impl fmt::Display for Verifier {
    /// Displays the verifier key string, as [`Verifier::to_vkey`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vkey())
    }
}

/// One signature line of a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key id (the first four bytes of the decoded signature field).
    pub key_id: u32,
    /// The signature proper (the decoded signature field after the key id).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// Formats the signature line, `— <name> <base64(key id || signature)>\n`.
    pub fn to_line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}\n", self.name, STANDARD.encode(raw))
    }
}

/// A signed note whose signatures were checked by [`open_note`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedNote {
    /// The note text, final newline included.
    pub text: String,
    /// The trusted verifiers whose signatures verified, in signature-line order,
    /// without duplicates.
    pub verified_by: Vec<Verifier>,
    /// The signature lines from keys that are not trusted (not checked), in order,
    /// without exact duplicates. They can be carried along, e.g. witness cosignatures.
    pub unverified: Vec<NoteSignature>,
}

/// Checks that `text` is a signable note text: non-empty, ending in a newline, and
/// without ASCII control characters other than newline. Empty lines are allowed: the
/// text is separated from the signatures by the *last* empty line of a note.
fn check_text(text: &str) -> Result<(), NoteError> {
    let invalid = |reason| NoteError::InvalidNoteText { reason };
    if !text.ends_with('\n') {
        return Err(invalid("it must be non-empty and end with a newline"));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(invalid(
            "it contains a control character other than newline",
        ));
    }
    Ok(())
}

/// Signs `text` with `signer`, returning the signed note:
/// `text + "\n" + "— <name> <base64(key id || signature)>\n"`.
///
/// # Errors
///
/// [`NoteError::InvalidNoteText`] if `text` is empty, does not end with a newline or
/// contains an ASCII control character other than newline.
pub fn sign_note(text: &str, signer: &Signer) -> Result<String, NoteError> {
    check_text(text)?;
    let line = NoteSignature {
        name: signer.name.clone(),
        key_id: signer.key_id,
        signature: signer.sign(text.as_bytes()).to_vec(),
    }
    .to_line();
    let mut note = String::with_capacity(text.len() + 1 + line.len());
    note.push_str(text);
    note.push('\n');
    note.push_str(&line);
    Ok(note)
}

/// Parses a signature line without its trailing newline.
fn parse_signature_line(line: &str) -> Result<NoteSignature, NoteError> {
    let malformed = |reason| NoteError::MalformedNote { reason };
    let rest = line.strip_prefix(SIG_PREFIX).ok_or(malformed(
        "a signature line does not start with an em dash and a space",
    ))?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or(malformed("a signature line has no signature field"))?;
    if !is_valid_key_name(name) {
        return Err(malformed("a signature line has an invalid key name"));
    }
    let raw = STANDARD
        .decode(b64)
        .map_err(|_| malformed("a signature is not valid base64"))?;
    if raw.len() < 5 {
        return Err(malformed(
            "a signature is too short to hold a key id and a signature",
        ));
    }
    let (id, signature) = raw.split_at(4);
    let mut id_bytes = [0u8; 4];
    id_bytes.copy_from_slice(id);
    Ok(NoteSignature {
        name: name.to_owned(),
        key_id: u32::from_be_bytes(id_bytes),
        signature: signature.to_vec(),
    })
}

/// Parses a signed note and verifies its signatures against the trusted `verifiers`.
///
/// Following the C2SP signed-note spec: signature lines from keys not among
/// `verifiers` (matched on name *and* key id) are ignored and returned in
/// [`OpenedNote::unverified`]; a signature from a trusted key that fails to verify
/// rejects the whole note; at least one trusted signature must verify. Repeated
/// signature lines of the same trusted key are checked once. At most
/// [`MAX_SIGNATURES`] signature lines are accepted.
///
/// # Errors
///
/// [`NoteError::MalformedNote`], [`NoteError::TooManySignatures`],
/// [`NoteError::AmbiguousVerifier`], [`NoteError::InvalidSignature`] or
/// [`NoteError::NoTrustedSignature`].
pub fn open_note(note: &str, verifiers: &[Verifier]) -> Result<OpenedNote, NoteError> {
    let malformed = |reason| NoteError::MalformedNote { reason };
    if note.chars().any(|c| c < ' ' && c != '\n') {
        return Err(malformed(
            "it contains a control character other than newline",
        ));
    }
    let split = note
        .rfind("\n\n")
        .ok_or(malformed("it has no empty line before the signatures"))?;
    let (text, sigs) = (&note[..=split], &note[split + 2..]);
    let sig_lines = sigs.strip_suffix('\n').ok_or(malformed(
        "it does not end with a signature line and a newline",
    ))?;

    let mut opened = OpenedNote {
        text: text.to_owned(),
        verified_by: Vec::new(),
        unverified: Vec::new(),
    };
    for (count, line) in sig_lines.split('\n').enumerate() {
        if count >= MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                limit: MAX_SIGNATURES,
            });
        }
        let sig = parse_signature_line(line)?;
        let mut matching = verifiers
            .iter()
            .filter(|v| v.name == sig.name && v.key_id == sig.key_id);
        let Some(verifier) = matching.next() else {
            if !opened.unverified.contains(&sig) {
                opened.unverified.push(sig);
            }
            continue;
        };
        if matching.any(|other| other != verifier) {
            return Err(NoteError::AmbiguousVerifier {
                name: sig.name,
                key_id: sig.key_id,
            });
        }
        if opened.verified_by.contains(verifier) {
            continue;
        }
        if !verifier.verify(text.as_bytes(), &sig.signature) {
            return Err(NoteError::InvalidSignature {
                name: sig.name,
                key_id: sig.key_id,
            });
        }
        opened.verified_by.push(verifier.clone());
    }
    if opened.verified_by.is_empty() {
        return Err(NoteError::NoTrustedSignature);
    }
    Ok(opened)
}

/// A transparency log checkpoint (C2SP tlog-checkpoint): the signed tree head of a log.
///
/// Its note text is `<origin>\n<size>\n<base64 root>\n` followed by the extension
/// lines, each ending in a newline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin: a unique, non-empty identifier of the log, conventionally a
    /// schema-less URL such as `example.com/log42`.
    pub origin: String,
    /// The number of leaves in the tree.
    pub size: u64,
    /// The RFC 6962 Merkle tree hash of the first `size` leaves.
    pub root: Hash,
    /// Opaque, non-empty extension lines (without newlines). Their use is discouraged
    /// by the spec, since monitors cannot audit them.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// Formats the note text of the checkpoint. It does not validate the fields; see
    /// [`Checkpoint::validate`].
    pub fn to_body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for extension in &self.extensions {
            body.push_str(extension);
            body.push('\n');
        }
        body
    }

    /// Checks that [`Checkpoint::to_body`] yields a text that [`Checkpoint::parse_body`]
    /// parses back to `self`: a non-empty origin and non-empty extension lines, none
    /// containing control characters (newlines included).
    ///
    /// # Errors
    ///
    /// [`NoteError::MalformedCheckpoint`] naming the faulty field.
    pub fn validate(&self) -> Result<(), NoteError> {
        let malformed = |reason| NoteError::MalformedCheckpoint { reason };
        let has_control = |s: &str| s.chars().any(|c| c < ' ');
        if self.origin.is_empty() {
            return Err(malformed("the origin is empty"));
        }
        if has_control(&self.origin) {
            return Err(malformed("the origin contains a control character"));
        }
        for extension in &self.extensions {
            if extension.is_empty() {
                return Err(malformed("an extension line is empty"));
            }
            if has_control(extension) {
                return Err(malformed("an extension line contains a control character"));
            }
        }
        Ok(())
    }

    /// Parses a checkpoint note text strictly: at least three lines, each ending in a
    /// newline; a non-empty origin; a decimal size without sign or leading zeros; the
    /// canonical padded base64 of a 32-byte root; non-empty extension lines; no control
    /// characters other than the newlines.
    ///
    /// # Errors
    ///
    /// [`NoteError::MalformedCheckpoint`] naming the faulty line.
    pub fn parse_body(text: &str) -> Result<Checkpoint, NoteError> {
        let malformed = |reason| NoteError::MalformedCheckpoint { reason };
        if text.chars().any(|c| c < ' ' && c != '\n') {
            return Err(malformed(
                "it contains a control character other than newline",
            ));
        }
        let body = text
            .strip_suffix('\n')
            .ok_or(malformed("it does not end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(malformed("the origin line is empty"));
        }
        let size_line = lines
            .next()
            .ok_or(malformed("the tree size line is missing"))?;
        let size = parse_decimal(size_line).ok_or(malformed(
            "the tree size is not a decimal number without leading zeros that fits in 64 bits",
        ))?;
        let root_line = lines
            .next()
            .ok_or(malformed("the root hash line is missing"))?;
        let root_bytes = STANDARD
            .decode(root_line)
            .map_err(|_| malformed("the root hash is not canonical base64"))?;
        let root: Hash = root_bytes
            .as_slice()
            .try_into()
            .map_err(|_| malformed("the root hash is not 32 bytes long"))?;
        let mut extensions = Vec::new();
        for line in lines {
            if line.is_empty() {
                return Err(malformed("an extension line is empty"));
            }
            extensions.push(line.to_owned());
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// Signs the checkpoint, returning the signed note.
    ///
    /// The spec says the key name SHOULD equal the origin; this is not enforced here
    /// (a log may sign under a differently named key), but [`Checkpoint::open`] expects
    /// it.
    ///
    /// # Errors
    ///
    /// [`NoteError::MalformedCheckpoint`] if [`Checkpoint::validate`] fails.
    pub fn sign(&self, signer: &Signer) -> Result<String, NoteError> {
        self.validate()?;
        sign_note(&self.to_body(), signer)
    }

    /// Opens a signed checkpoint whose origin is the verifier's key name.
    ///
    /// The tlog-checkpoint spec says the log's key name SHOULD match the origin; this
    /// crate's logs always name their key after their origin, so this requires
    /// `origin == verifier.name()`. That check is what binds the checkpoint to the log
    /// the caller trusts: a valid signature alone does not say which log the tree head
    /// belongs to. For logs whose key name differs from their origin, use
    /// [`Checkpoint::open_with_origin`].
    ///
    /// # Errors
    ///
    /// Any error of [`open_note`] (with `verifier` as the only trusted key) or
    /// [`Checkpoint::parse_body`], and [`NoteError::OriginMismatch`].
    pub fn open(note: &str, verifier: &Verifier) -> Result<Checkpoint, NoteError> {
        Self::open_with_origin(note, verifier, verifier.name())
    }

    /// Opens a signed checkpoint that must be signed by `verifier` and carry the origin
    /// `expected_origin`.
    ///
    /// # Errors
    ///
    /// Any error of [`open_note`] (with `verifier` as the only trusted key) or
    /// [`Checkpoint::parse_body`], and [`NoteError::OriginMismatch`].
    pub fn open_with_origin(
        note: &str,
        verifier: &Verifier,
        expected_origin: &str,
    ) -> Result<Checkpoint, NoteError> {
        let opened = open_note(note, std::slice::from_ref(verifier))?;
        let checkpoint = Self::parse_body(&opened.text)?;
        if checkpoint.origin != expected_origin {
            return Err(NoteError::OriginMismatch {
                expected: expected_origin.to_owned(),
                found: checkpoint.origin,
            });
        }
        Ok(checkpoint)
    }
}

/// Parses a decimal `u64` written with ASCII digits only and no leading zeros
/// (except `0` itself).
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_parsing_is_strict() {
        assert_eq!(parse_decimal("0"), Some(0));
        assert_eq!(parse_decimal("20852163"), Some(20_852_163));
        assert_eq!(parse_decimal("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "00",
            "01",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1e3",
            "18446744073709551616",
            "０",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn key_names() {
        assert!(is_valid_key_name("example.com/log42"));
        for bad in ["", "a b", "a+b", "a\u{a0}b", "a\tb", "a\u{2003}b"] {
            assert!(!is_valid_key_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn key_ids() {
        assert_eq!(parse_key_id("c74f20a3"), Some(0xc74f_20a3));
        assert_eq!(parse_key_id("C74F20A3"), Some(0xc74f_20a3));
        for bad in ["", "c74f20a", "c74f20a34", "+74f20a3", "c74f20ag"] {
            assert_eq!(parse_key_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn private_key_errors_never_show_key_material() {
        let text = "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
        let Err(err) = Signer::from_private_key_text(text) else {
            panic!("a wrong key id must be rejected");
        };
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("AYEKFALV"), "{shown}");
        assert!(matches!(err, NoteError::KeyIdMismatch { .. }));
    }
}
