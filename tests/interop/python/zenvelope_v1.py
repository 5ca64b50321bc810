"""Independent Python implementation of the zenvelope envelope format v1.

Written only from docs/envelope-spec.md, schemas/avro/envelope.avsc and the golden
vectors (schemas/envelope/vectors/envelope-v1.json). Section numbers in comments refer
to docs/envelope-spec.md.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct
import time
import unicodedata
import base64
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (decode_dss_signature,
                                                             encode_dss_signature)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF as _HKDF

# ---------------------------------------------------------------------------
# Section 3: constants
# ---------------------------------------------------------------------------
FORMAT_VERSION = 1
BLOB_VERSION = 0x01
IV_LEN = 12
TAG_LEN = 16
BLOB_OVERHEAD = 1 + IV_LEN + TAG_LEN  # 29
DEK_LEN = 32

LABEL_AAD = "zenvelope/v1/aad"
LABEL_SIGNATURE = "zenvelope/v1/signature"
LABEL_WRAP = "zenvelope/v1/wrap"
LABEL_KEK_SALT = "zenvelope/v1/kek-salt"
LABEL_SUBJECT = "zenvelope/v1/subject"
INFO_PAYLOAD_KEY = "zenvelope/v1/payload-key"
INFO_KEY_COMMITMENT = "zenvelope/v1/key-commitment"
INFO_RESPONSE = "zenvelope/v1/response"
INFO_KEK_ID = "zenvelope/v1/kek-id"

PBKDF2_DEFAULT_ITERATIONS = 600_000
PBKDF2_MIN_ITERATIONS = 100_000
PBKDF2_MAX_ITERATIONS = 10_000_000
RSA_MODULUS_BITS = (2048, 3072, 4096)
PSS_SALT_LEN = 32

# Section 4.1: enum symbols, in Avro index order (must match envelope.avsc).
KIND_SYMBOLS = ("REQUEST", "RESULT", "ERROR", "RECORD")
PURPOSE_SYMBOLS = ("TREATMENT", "PAYMENT", "OPERATIONS", "RESEARCH", "PUBLIC_HEALTH",
                   "INDIVIDUAL_REQUEST")
RECIPIENT_TYPE_SYMBOLS = ("PASSPHRASE", "RSA_OAEP_SHA256", "AWS_KMS")
SIGNATURE_ALGORITHM_SYMBOLS = ("RSA_PSS_SHA256", "ECDSA_P256_SHA256")
ECDSA_SIG_LEN = 64  # section 10.1: r || s, 32 bytes each

INT_MIN, INT_MAX = -(1 << 31), (1 << 31) - 1
LONG_MIN, LONG_MAX = -(1 << 63), (1 << 63) - 1


# ---------------------------------------------------------------------------
# Section 11.1: errors
# ---------------------------------------------------------------------------
ERROR_CODES = ("malformed", "oversized", "unsupported_version", "unsigned",
               "untrusted_signer", "bad_signature", "no_matching_recipient",
               "decrypt_failed")


class EnvelopeError(Exception):
    """An open/decode failure carrying one of the section 11.1 codes."""

    def __init__(self, code: str, detail: str = ""):
        assert code in ERROR_CODES, code
        self.code = code
        self.detail = detail
        super().__init__(code if not detail else f"{code}: {detail}")


class SealError(ValueError):
    """Invalid sealer input (section 9.1 constraints); not an opener error."""


def _malformed(detail: str) -> EnvelopeError:
    return EnvelopeError("malformed", detail)


# ---------------------------------------------------------------------------
# Section 11.2: limits
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    max_envelope: int = 4 * 1024 * 1024 + 64 * 1024
    max_payload: int = 4 * 1024 * 1024 + BLOB_OVERHEAD
    max_recipients: int = 16
    max_string: int = 256
    max_params: int = 256
    max_wrapped_key: int = 1024
    max_signature: int = 1024


DEFAULT_LIMITS = Limits()


# ---------------------------------------------------------------------------
# Data model (section 4.1)
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Header:
    version: int
    message_id: bytes
    tenant: str
    subject: str
    kind: str
    purpose: str
    content_type: str
    created_at_ms: int
    correlation_id: Optional[bytes]
    schema_id: int
    key_commitment: bytes


@dataclass(frozen=True)
class Recipient:
    type: str
    key_id: str
    key_version: int
    params: bytes
    wrapped_key: bytes


@dataclass(frozen=True)
class Signature:
    key_id: str
    key_version: int
    algorithm: str
    value: bytes


@dataclass(frozen=True)
class Envelope:
    header: Header
    recipients: Tuple[Recipient, ...]
    payload: bytes
    signature: Optional[Signature]


# ---------------------------------------------------------------------------
# Avro binary encoding (section 4.1)
# ---------------------------------------------------------------------------
def _zigzag(n: int) -> int:
    return ((n << 1) ^ (n >> 63)) & 0xFFFFFFFFFFFFFFFF


def _unzigzag(u: int) -> int:
    return (u >> 1) ^ -(u & 1)


def encode_long(n: int) -> bytes:
    if not LONG_MIN <= n <= LONG_MAX:
        raise ValueError("long out of range")
    u = _zigzag(n)
    out = bytearray()
    while True:
        b = u & 0x7F
        u >>= 7
        if u:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_int(n: int) -> bytes:
    if not INT_MIN <= n <= INT_MAX:
        raise ValueError("int out of range")
    return encode_long(n)


def _enc_bytes(b: bytes) -> bytes:
    return encode_long(len(b)) + b


def _enc_string(s: str) -> bytes:
    return _enc_bytes(s.encode("utf-8"))


def _enc_enum(symbols: Sequence[str], sym: str) -> bytes:
    return encode_int(symbols.index(sym))


def encode_envelope(env: Envelope) -> bytes:
    h = env.header
    if len(h.message_id) != 16 or len(h.key_commitment) != 32:
        raise ValueError("bad fixed length")
    out = bytearray()
    out += encode_int(h.version)
    out += h.message_id
    out += _enc_string(h.tenant)
    out += _enc_string(h.subject)
    out += _enc_enum(KIND_SYMBOLS, h.kind)
    out += _enc_enum(PURPOSE_SYMBOLS, h.purpose)
    out += _enc_string(h.content_type)
    out += encode_long(h.created_at_ms)
    if h.correlation_id is None:
        out += encode_long(0)
    else:
        if len(h.correlation_id) != 16:
            raise ValueError("bad correlation_id length")
        out += encode_long(1) + h.correlation_id
    out += encode_int(h.schema_id)
    out += h.key_commitment
    # Canonical layout (4.1): a single block with a positive count, or just 0 if empty.
    if env.recipients:
        out += encode_long(len(env.recipients))
        for r in env.recipients:
            out += _enc_enum(RECIPIENT_TYPE_SYMBOLS, r.type)
            out += _enc_string(r.key_id)
            out += encode_int(r.key_version)
            out += _enc_bytes(r.params)
            out += _enc_bytes(r.wrapped_key)
    out += encode_long(0)
    out += _enc_bytes(env.payload)
    if env.signature is None:
        out += encode_long(0)
    else:
        s = env.signature
        out += encode_long(1)
        out += _enc_string(s.key_id)
        out += encode_int(s.key_version)
        out += _enc_enum(SIGNATURE_ALGORITHM_SYMBOLS, s.algorithm)
        out += _enc_bytes(s.value)
    return bytes(out)


def is_uuid_v7(b: bytes) -> bool:
    """Section 4.2 rule 7: byte 6 high nibble 7, byte 8 two high bits 10."""
    return len(b) == 16 and (b[6] >> 4) == 7 and (b[8] >> 6) == 0b10


class _Reader:
    def __init__(self, data: bytes, limits: Limits):
        self.data = data
        self.pos = 0
        self.limits = limits

    # Rule 1: <= 10 bytes, no 64-bit overflow, shortest form.
    def _varint(self) -> int:
        result = 0
        shift = 0
        for i in range(10):
            if self.pos >= len(self.data):
                raise _malformed("varint runs past end of input")
            b = self.data[self.pos]
            self.pos += 1
            if i == 9 and b > 0x01:
                # 10th byte can only carry bit 63; more (or a continuation) overflows.
                raise _malformed("varint overflows 64 bits or is longer than 10 bytes")
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                if i > 0 and b == 0x00:
                    raise _malformed("varint not in shortest form")
                return result
            shift += 7
        raise _malformed("varint longer than 10 bytes")  # pragma: no cover (caught above)

    def long(self) -> int:
        return _unzigzag(self._varint())

    def int(self) -> int:
        v = self.long()
        if not INT_MIN <= v <= INT_MAX:  # rule 2
            raise _malformed("int does not fit in 32 bits")
        return v

    def _length(self, limit: Optional[int], what: str) -> int:
        # Section 4.2 step 3: negative -> malformed, then over the limit -> oversized
        # (before allocating, even if the input is also too short), then past the end of
        # the input -> malformed.
        n = self.long()
        if n < 0:  # rule 3
            raise _malformed(f"negative length for {what}")
        if limit is not None and n > limit:
            raise EnvelopeError("oversized", f"{what} length {n} > {limit}")
        if n > len(self.data) - self.pos:  # rule 3
            raise _malformed(f"{what} runs past end of input")
        return n

    def raw(self, n: int, what: str) -> bytes:
        if n > len(self.data) - self.pos:
            raise _malformed(f"{what} runs past end of input")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def bytes_(self, limit: Optional[int], what: str) -> bytes:
        n = self._length(limit, what)
        return self.raw(n, what)

    def string(self, limit: Optional[int], what: str) -> str:
        b = self.bytes_(limit, what)
        try:
            return b.decode("utf-8", errors="strict")  # rule 4
        except UnicodeDecodeError:
            raise _malformed(f"{what} is not valid UTF-8") from None

    def enum(self, symbols: Sequence[str], what: str) -> str:
        i = self.int()
        if not 0 <= i < len(symbols):  # rule 5
            raise _malformed(f"{what} enum index {i} out of range")
        return symbols[i]

    def union_index(self, n: int, what: str) -> int:
        i = self.long()
        if not 0 <= i < n:  # rule 5
            raise _malformed(f"{what} union index {i} out of range")
        return i

    def uuid7(self, what: str) -> bytes:
        b = self.raw(16, what)
        if not is_uuid_v7(b):  # rule 7
            raise _malformed(f"{what} is not a UUIDv7")
        return b


def decode_envelope(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Envelope:
    """Strict decoding per section 4.2, in the order the section prescribes:

    1. whole input over the envelope limit -> oversized;
    2. version (a bad varint is malformed); version != 1 -> unsupported_version, whatever
       follows;
    3. the other fields in schema order; for each length prefix: negative -> malformed,
       over its limit -> oversized (even if the input is also too short), past the end of
       the input -> malformed.
    The first failure decides the error.
    """
    if len(data) > limits.max_envelope:
        raise EnvelopeError("oversized", "whole envelope")
    r = _Reader(bytes(data), limits)
    L = limits
    # ASSUMPTION (SPEC-FINDINGS N1): `version` is an Avro int, so a valid varint whose value
    # does not fit in 32 bits is `malformed` (rule 2), not `unsupported_version`.
    version = r.int()
    if version != FORMAT_VERSION:
        raise EnvelopeError("unsupported_version", str(version))
    message_id = r.uuid7("message_id")
    tenant = r.string(L.max_string, "tenant")
    subject = r.string(L.max_string, "subject")
    kind = r.enum(KIND_SYMBOLS, "kind")
    purpose = r.enum(PURPOSE_SYMBOLS, "purpose")
    content_type = r.string(L.max_string, "content_type")
    created_at_ms = r.long()
    correlation_id = None
    if r.union_index(2, "correlation_id") == 1:
        correlation_id = r.uuid7("correlation_id")
    # Rule 9. ASSUMPTION (SPEC-FINDINGS N2): checked as soon as both fields are known, i.e.
    # in schema order, so it wins over a later oversized/malformed field.
    if kind in ("RESULT", "ERROR") and correlation_id is None:
        raise _malformed(f"{kind} without correlation_id")
    schema_id = r.int()
    key_commitment = r.raw(32, "key_commitment")

    # Rule 6: only the canonical array layout (4.1): `00`, or one block with a positive
    # count n, the n items, then `00`.
    recipients: List[Recipient] = []
    count = r.long()
    if count < 0:
        raise _malformed("array block with a negative count (non-canonical layout)")
    if count > L.max_recipients:  # checked before reading (allocating) any item
        raise EnvelopeError("oversized", f"{count} recipients > {L.max_recipients}")
    if count > 0:
        for _ in range(count):
            rtype = r.enum(RECIPIENT_TYPE_SYMBOLS, "recipient type")
            key_id = r.string(L.max_string, "recipient key_id")
            key_version = r.int()
            params = r.bytes_(L.max_params, "recipient params")
            wrapped_key = r.bytes_(L.max_wrapped_key, "recipient wrapped_key")
            recipients.append(Recipient(rtype, key_id, key_version, params, wrapped_key))
        if r.long() != 0:
            raise _malformed("array has more than one block (non-canonical layout)")

    payload = r.bytes_(L.max_payload, "payload")
    signature = None
    if r.union_index(2, "signature") == 1:
        key_id = r.string(L.max_string, "signature key_id")
        key_version = r.int()
        algorithm = r.enum(SIGNATURE_ALGORITHM_SYMBOLS, "signature algorithm")
        value = r.bytes_(L.max_signature, "signature value")
        signature = Signature(key_id, key_version, algorithm, value)
    if r.pos != len(r.data):  # rule 8
        raise _malformed("trailing bytes after signature")
    header = Header(version, message_id, tenant, subject, kind, purpose, content_type,
                    created_at_ms, correlation_id, schema_id, key_commitment)
    return Envelope(header, tuple(recipients), payload, signature)


# ---------------------------------------------------------------------------
# Section 2: canonical encodings
# ---------------------------------------------------------------------------
def u32be(n: int) -> bytes:
    return struct.pack(">I", n)


def i32be(n: int) -> bytes:
    return struct.pack(">i", n)


def i64be(n: int) -> bytes:
    return struct.pack(">q", n)


def lp(x: Union[bytes, str]) -> bytes:
    if isinstance(x, str):
        x = x.encode("utf-8")
    return u32be(len(x)) + bytes(x)


def hkdf(ikm: bytes, salt: bytes, info: Union[str, bytes], length: int) -> bytes:
    if isinstance(info, str):
        info = info.encode("ascii")
    # An empty salt is passed as b"" which HMAC treats like HashLen zero bytes.
    return _HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


# ---------------------------------------------------------------------------
# Section 5: key derivations
# ---------------------------------------------------------------------------
# Section 5.1 step 2: exactly these six characters (not str.strip()'s wider set, which
# also removes U+001C..U+001F, U+0085, U+2028, U+2029, ...).
_TRIM = " \t\n\x0b\x0c\r"


def normalize_identity(s: str) -> str:
    """Section 5.1, in this order: NFKC, trim the six ASCII whitespace characters,
    default full lower-casing (str.lower, not str.casefold)."""
    return unicodedata.normalize("NFKC", s).strip(_TRIM).lower()


def check_assigned(s: str, what: str = "string") -> None:
    """Section 5.1: SDKs SHOULD reject identities and passphrases containing unassigned
    code points (unassigned in this runtime's Unicode version, unicodedata.unidata_version).

    ASSUMPTION (SPEC-FINDINGS F12): "unassigned" = General_Category Cn, which also covers
    the 66 noncharacters; lone surrogates (Cs, not encodable as UTF-8) are rejected too.
    Private-use characters (Co) are assigned and accepted.
    """
    for ch in s:
        if unicodedata.category(ch) in ("Cn", "Cs"):
            raise ValueError(f"{what} contains unassigned code point U+{ord(ch):04X} "
                             f"(Unicode {unicodedata.unidata_version})")


def kek_salt(tenant: str, identity: str) -> bytes:
    return hashlib.sha256(lp(LABEL_KEK_SALT) + lp(tenant)
                          + lp(normalize_identity(identity))).digest()


def check_iterations(iterations: int) -> None:
    if not PBKDF2_MIN_ITERATIONS <= iterations <= PBKDF2_MAX_ITERATIONS:
        raise ValueError(f"PBKDF2 iterations {iterations} outside accepted range")


def derive_kek(passphrase: str, salt: bytes, iterations: int) -> bytes:
    check_iterations(iterations)
    pw = unicodedata.normalize("NFKC", passphrase).encode("utf-8")
    return hashlib.pbkdf2_hmac("sha256", pw, salt, iterations, dklen=32)


def kek_id(kek: bytes) -> str:
    return "kek-" + hkdf(kek, b"", INFO_KEK_ID, 8).hex()


def pseudonym(metadata_key: bytes, tenant: str, identity: str) -> str:
    check_assigned(identity, "identity")
    mac = hmac.new(metadata_key, lp(LABEL_SUBJECT) + lp(tenant)
                   + lp(normalize_identity(identity)), hashlib.sha256).digest()
    return "sp1_" + base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def payload_key(dek: bytes, mid: bytes) -> bytes:
    return hkdf(dek, mid, INFO_PAYLOAD_KEY, 32)


def key_commitment(dek: bytes, mid: bytes) -> bytes:
    return hkdf(dek, mid, INFO_KEY_COMMITMENT, 32)


def response_dek(dek_req: bytes, req_mid: bytes) -> bytes:
    return hkdf(dek_req, req_mid, INFO_RESPONSE, 32)


# ---------------------------------------------------------------------------
# Section 6: blob
# ---------------------------------------------------------------------------
def seal_blob(key: bytes, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
    if len(iv) != IV_LEN:
        raise ValueError("IV must be 12 bytes")
    ct_tag = AESGCM(key).encrypt(iv, plaintext, aad)
    ct, tag = ct_tag[:-TAG_LEN], ct_tag[-TAG_LEN:]
    return bytes([BLOB_VERSION]) + iv + tag + ct


def open_blob(key: bytes, blob: bytes, aad: bytes) -> bytes:
    """Raises EnvelopeError('decrypt_failed') on any failure."""
    if len(blob) < BLOB_OVERHEAD or blob[0] != BLOB_VERSION:
        raise EnvelopeError("decrypt_failed")
    iv = blob[1:1 + IV_LEN]
    tag = blob[1 + IV_LEN:BLOB_OVERHEAD]
    ct = blob[BLOB_OVERHEAD:]
    try:
        return AESGCM(key).decrypt(iv, ct + tag, aad)
    except InvalidTag:
        raise EnvelopeError("decrypt_failed") from None


# ---------------------------------------------------------------------------
# Section 7: AAD; section 8.1 wrap AAD; section 10.1 signature input
# ---------------------------------------------------------------------------
def build_aad(h: Header, recipients: Sequence[Recipient]) -> bytes:
    out = bytearray()
    out += lp(LABEL_AAD)
    out += i32be(h.version)
    out += h.message_id
    out += lp(h.tenant) + lp(h.subject)
    out += lp(h.kind) + lp(h.purpose)
    out += lp(h.content_type)
    out += i64be(h.created_at_ms)
    out += b"\x00" if h.correlation_id is None else b"\x01" + h.correlation_id
    out += i32be(h.schema_id)
    out += h.key_commitment
    out += u32be(len(recipients))
    for r in recipients:
        out += lp(r.type) + lp(r.key_id) + i32be(r.key_version)
    return bytes(out)


def build_wrap_aad(tenant: str, rtype: str, key_id: str, key_version: int,
                   params: bytes) -> bytes:
    return (lp(LABEL_WRAP) + lp(tenant) + lp(rtype) + lp(key_id) + i32be(key_version)
            + lp(params))


def build_signature_input(sig_key_id: str, sig_key_version: int, algorithm: str,
                          aad: bytes, recipients: Sequence[Recipient],
                          payload: bytes) -> bytes:
    out = bytearray()
    out += lp(LABEL_SIGNATURE)
    out += lp(algorithm)
    out += lp(sig_key_id) + i32be(sig_key_version)
    out += lp(aad)
    out += u32be(len(recipients))
    for r in recipients:
        out += lp(r.params) + lp(r.wrapped_key)
    out += lp(payload)
    return bytes(out)


def signature_input_of(env: Envelope) -> bytes:
    assert env.signature is not None
    s = env.signature
    return build_signature_input(s.key_id, s.key_version, s.algorithm,
                                 build_aad(env.header, env.recipients), env.recipients,
                                 env.payload)


# ---------------------------------------------------------------------------
# RSA (sections 3, 8.2, 10.1)
# ---------------------------------------------------------------------------
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_LEN)


def load_private_pkcs8_der(der: bytes):
    """An RSA key, or (signing keys only, section 10.1) an EC key on P-256."""
    k = serialization.load_der_private_key(der, password=None)
    assert isinstance(k, rsa.RSAPrivateKey) or (
        isinstance(k, ec.EllipticCurvePrivateKey) and isinstance(k.curve, ec.SECP256R1))
    return k


def load_public_spki_der(der: bytes):
    k = serialization.load_der_public_key(der)
    assert isinstance(k, rsa.RSAPublicKey) or (
        isinstance(k, ec.EllipticCurvePublicKey) and isinstance(k.curve, ec.SECP256R1))
    return k


def signature_algorithm_of(key) -> str:
    """Section 10.1: the algorithm follows from the key's type."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "RSA_PSS_SHA256"
    return "ECDSA_P256_SHA256"


def _check_modulus(bits: int) -> None:
    if bits not in RSA_MODULUS_BITS:
        raise ValueError(f"RSA modulus of {bits} bits not allowed")


def rsa_oaep_wrap(pub: rsa.RSAPublicKey, dek: bytes) -> bytes:
    _check_modulus(pub.key_size)
    return pub.encrypt(dek, _OAEP)


def rsa_oaep_unwrap(priv: rsa.RSAPrivateKey, wrapped: bytes) -> Optional[bytes]:
    # Section 8.2: a wrapped_key whose length differs from the modulus length fails.
    if len(wrapped) != (priv.key_size + 7) // 8:
        return None
    try:
        dek = priv.decrypt(wrapped, _OAEP)
    except ValueError:
        return None
    return dek if len(dek) == DEK_LEN else None


def pss_sign(priv: rsa.RSAPrivateKey, msg: bytes) -> bytes:
    _check_modulus(priv.key_size)
    return priv.sign(msg, _PSS, hashes.SHA256())


def pss_verify(pub: rsa.RSAPublicKey, sig: bytes, msg: bytes) -> bool:
    """Section 10.1: salt length exactly 32, never auto-detected. pyca/OpenSSL, given an
    explicit salt length, rejects a signature whose recovered salt has another length."""
    if len(sig) != (pub.key_size + 7) // 8:
        return False
    try:
        pub.verify(sig, msg, _PSS, hashes.SHA256())
        return True
    except InvalidSignature:
        return False


def ecdsa_sign(priv: ec.EllipticCurvePrivateKey, msg: bytes) -> bytes:
    """Section 10.1: P1363 `r || s`, not the DER that pyca produces."""
    r, s_ = decode_dss_signature(priv.sign(msg, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s_.to_bytes(32, "big")


def ecdsa_verify(pub: ec.EllipticCurvePublicKey, sig: bytes, msg: bytes) -> bool:
    if len(sig) != ECDSA_SIG_LEN:
        return False
    r = int.from_bytes(sig[:32], "big")
    s_ = int.from_bytes(sig[32:], "big")
    try:
        pub.verify(encode_dss_signature(r, s_), msg, ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError):
        return False


def sign_with(priv, msg: bytes) -> bytes:
    if isinstance(priv, rsa.RSAPrivateKey):
        return pss_sign(priv, msg)
    return ecdsa_sign(priv, msg)


def verify_with(pub, algorithm: str, sig: bytes, msg: bytes) -> bool:
    """Section 10.1: the symbol must match the trusted key's type."""
    if algorithm != signature_algorithm_of(pub):
        return False
    if algorithm == "RSA_PSS_SHA256":
        return pss_verify(pub, sig, msg)
    return ecdsa_verify(pub, sig, msg)


# ---------------------------------------------------------------------------
# Keys held by openers and recipients configured for sealers
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class UserKey:
    """A user's KEK (section 5.2), used both to seal (PASSPHRASE recipient) and open.

    This is the section 8.1 opener that knows its registered iteration count: it derives
    the KEK once per login and selects records by (PASSPHRASE, kek_id, 0).
    """
    kek: bytes
    kek_id: str
    iterations: int
    salt: bytes

    @classmethod
    def derive(cls, tenant: str, identity: str, passphrase: str,
               iterations: int = PBKDF2_DEFAULT_ITERATIONS) -> "UserKey":
        check_assigned(identity, "identity")
        check_assigned(passphrase, "passphrase")
        salt = kek_salt(tenant, identity)
        kek = derive_kek(passphrase, salt, iterations)
        return cls(kek, kek_id(kek), iterations, salt)

    @property
    def params(self) -> bytes:
        return u32be(self.iterations) + self.salt

    def addresses(self, r: Recipient) -> bool:
        return r.type == "PASSPHRASE" and r.key_id == self.kek_id and r.key_version == 0

    def select(self, recipients: Sequence[Recipient]) -> List[Tuple["UserKey", Recipient]]:
        return [(self, r) for r in recipients if self.addresses(r)]

    def unwrap(self, tenant: str, r: Recipient) -> Optional[bytes]:
        return _passphrase_unwrap(self.kek, tenant, r)


def _params_iterations_and_salt(r: Recipient) -> Optional[Tuple[int, bytes]]:
    if r.type != "PASSPHRASE" or len(r.params) != 36:
        return None
    return struct.unpack(">I", r.params[:4])[0], r.params[4:]


@dataclass(eq=False)
class UserCredentials:
    """A device that holds tenant, identity and passphrase but not the KEK (section 8.1).

    If `iterations` is known (registered), the KEK is derived once with it. Otherwise the
    count is taken from the `params` of a PASSPHRASE record whose salt equals the
    deterministic salt of (tenant, identity) and whose count is in the accepted range
    (other records are skipped without running PBKDF2). Records are then selected exactly
    like `UserKey`: (PASSPHRASE, kek_id, key_version 0). A wrong passphrase therefore
    gives a kek_id that selects nothing: `no_matching_recipient`.

    ASSUMPTIONS (SPEC-FINDINGS F9/N4), where 8.1 says only "derives once and caches":
    - with several salt-matching records, they are tried in envelope order;
    - a derived KEK is "confirmed" (cached as the user's KEK) only when its kek_id equals
      the key_id of the record the count came from. A forged record (our salt, a wrong
      count) thus cannot poison the cache. After confirmation the device behaves like one
      that knows its count and never runs PBKDF2 again;
    - unconfirmed derivations are cached per count, so one count is never derived twice.
    """
    tenant: str
    identity: str
    passphrase: str
    iterations: Optional[int] = None
    _by_count: Dict[int, UserKey] = field(default_factory=dict, repr=False)
    _confirmed: Optional[UserKey] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_assigned(self.identity, "identity")
        check_assigned(self.passphrase, "passphrase")

    @property
    def derivations(self) -> int:
        """How many PBKDF2 runs this device has done (to test "derives once")."""
        return len(self._by_count)

    def _derive(self, iterations: int) -> UserKey:
        uk = self._by_count.get(iterations)
        if uk is None:
            uk = UserKey.derive(self.tenant, self.identity, self.passphrase, iterations)
            self._by_count[iterations] = uk
        return uk

    def select(self, recipients: Sequence[Recipient]) -> List[Tuple[UserKey, Recipient]]:
        if self.iterations is not None:
            return self._derive(self.iterations).select(recipients)
        if self._confirmed is not None:
            return self._confirmed.select(recipients)
        salt = kek_salt(self.tenant, self.identity)
        for r in recipients:
            ps = _params_iterations_and_salt(r)
            if ps is None or not hmac.compare_digest(ps[1], salt):
                continue
            iterations = ps[0]
            if not PBKDF2_MIN_ITERATIONS <= iterations <= PBKDF2_MAX_ITERATIONS:
                continue  # out of the accepted range: the record is skipped
            uk = self._derive(iterations)
            if uk.kek_id == r.key_id:
                self._confirmed = uk
                return uk.select(recipients)
        return []


def _passphrase_unwrap(kek: bytes, tenant: str, r: Recipient) -> Optional[bytes]:
    aad = build_wrap_aad(tenant, r.type, r.key_id, r.key_version, r.params)
    try:
        dek = open_blob(kek, r.wrapped_key, aad)
    except EnvelopeError:
        return None
    return dek if len(dek) == DEK_LEN else None


@dataclass(frozen=True)
class RsaPrivateRecipientKey:
    """An enclave fleet RSA-OAEP private key (section 8.2)."""
    key_id: str
    key_version: int
    private_key: rsa.RSAPrivateKey

    def __post_init__(self) -> None:
        _check_modulus(self.private_key.key_size)

    def addresses(self, r: Recipient) -> bool:
        return (r.type == "RSA_OAEP_SHA256" and r.key_id == self.key_id
                and r.key_version == self.key_version)

    def select(self, recipients: Sequence[Recipient]):
        return [(self, r) for r in recipients if self.addresses(r)]

    def unwrap(self, tenant: str, r: Recipient) -> Optional[bytes]:
        # Section 8.2: params MUST be empty; otherwise the record fails (decrypt_failed).
        if r.params != b"":
            return None
        return rsa_oaep_unwrap(self.private_key, r.wrapped_key)


@dataclass(frozen=True)
class RsaPublicRecipientKey:
    key_id: str
    key_version: int
    public_key: rsa.RSAPublicKey

    def __post_init__(self) -> None:
        _check_modulus(self.public_key.key_size)


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    key_version: int
    private_key: object  # rsa.RSAPrivateKey, or ec.EllipticCurvePrivateKey on P-256

    @property
    def algorithm(self) -> str:
        return signature_algorithm_of(self.private_key)

    def __post_init__(self) -> None:
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            _check_modulus(self.private_key.key_size)


OpenerKey = Union[UserKey, UserCredentials, RsaPrivateRecipientKey]
# Every opener key has select(recipients) -> [(key, record)] (section 11 step 3) and the
# selected key has unwrap(tenant, record) -> DEK or None (section 11 step 4).
SealerRecipient = Union[UserKey, RsaPublicRecipientKey, Recipient]
# A ready-made `Recipient` is copied unchanged (DEK sessions 9.2, responses 9.3).


# ---------------------------------------------------------------------------
# Section 9: sealing
# ---------------------------------------------------------------------------
def new_uuid_v7(ms: Optional[int] = None, rand: Callable[[int], bytes] = os.urandom) -> bytes:
    if ms is None:
        ms = time.time_ns() // 1_000_000
    b = bytearray(ms.to_bytes(6, "big") + rand(10))
    b[6] = 0x70 | (b[6] & 0x0F)
    b[8] = 0x80 | (b[8] & 0x3F)
    return bytes(b)


def uuid_v7_timestamp_ms(b: bytes) -> int:
    return int.from_bytes(b[:6], "big")


def _check_tenant(tenant: str) -> None:
    if not 1 <= len(tenant) <= 64 or any(not 0x21 <= ord(c) <= 0x7E for c in tenant):
        raise SealError("tenant must be 1 to 64 visible ASCII characters")


@dataclass
class SealResult:
    """The envelope and every intermediate value (for the vector tests)."""
    envelope: bytes
    parsed: Envelope
    dek: bytes
    payload_key: bytes
    key_commitment: bytes
    aad: bytes
    wrap_aads: List[bytes]
    passphrase_wrapped_keys: List[bytes]
    signature_input: Optional[bytes]


def seal(*, tenant: str, subject: str, kind: str, purpose: str, content_type: str,
         schema_id: int, plaintext: bytes, recipients: Sequence[SealerRecipient],
         signer: Optional[SigningKey] = None,
         correlation_id: Optional[bytes] = None,
         # injectable randomness (defaults: CSPRNG)
         message_id: Optional[bytes] = None, created_at_ms: Optional[int] = None,
         dek: Optional[bytes] = None, wrap_ivs: Optional[Sequence[bytes]] = None,
         payload_iv: Optional[bytes] = None,
         rand: Callable[[int], bytes] = os.urandom,
         limits: Limits = DEFAULT_LIMITS,
         _allow_response: bool = False) -> SealResult:
    """Section 9.1 (and 9.3 steps 4+ via seal_response)."""
    _check_tenant(tenant)
    if kind not in KIND_SYMBOLS or purpose not in PURPOSE_SYMBOLS:
        raise SealError("unknown kind or purpose")
    if kind in ("RESULT", "ERROR"):
        if not _allow_response or correlation_id is None:
            raise SealError("use seal_response for RESULT/ERROR")
    elif correlation_id is not None:
        raise SealError("REQUEST/RECORD envelopes have no correlation_id")
    if not content_type:
        raise SealError("content type must be non-empty")
    if not 0 <= schema_id <= INT_MAX:
        raise SealError("schema id must be >= 0")
    if not recipients and not _allow_response:
        # 9.1 has no explicit rule, but an envelope nobody can open is useless; a response
        # (9.3 step 3) MAY end up with no recipients.
        raise SealError("at least one recipient")
    if len(recipients) > limits.max_recipients:
        raise SealError("too many recipients")
    if len(plaintext) + BLOB_OVERHEAD > limits.max_payload:
        raise SealError("plaintext exceeds the payload limit")
    for s, what in ((tenant, "tenant"), (subject, "subject"), (content_type, "content type")):
        if len(s.encode("utf-8")) > limits.max_string:
            raise SealError(f"{what} too long")

    # Step 1
    if message_id is None:
        message_id = new_uuid_v7(created_at_ms, rand)
    if not is_uuid_v7(message_id):
        raise SealError("message_id must be a UUIDv7")
    if created_at_ms is None:
        created_at_ms = uuid_v7_timestamp_ms(message_id)
    if created_at_ms != uuid_v7_timestamp_ms(message_id):
        raise SealError("created_at_ms MUST equal the message id's UUIDv7 timestamp (9.1)")
    # Step 2
    if dek is None:
        dek = rand(DEK_LEN)
    if len(dek) != DEK_LEN:
        raise SealError("DEK must be 32 bytes")
    # New wraps always carry this envelope's DEK. Responses (9.3) only copy the
    # request's records (which wrap DEK_req), so they never create new wraps here.
    if _allow_response and not all(isinstance(x, Recipient) for x in recipients):
        raise SealError("responses only copy the request's recipient records")
    wrap_dek = dek

    # Step 3: recipients
    wrap_ivs = list(wrap_ivs) if wrap_ivs is not None else None
    recs: List[Recipient] = []
    wrap_aads: List[bytes] = []
    pp_wrapped: List[bytes] = []
    for spec in recipients:
        if isinstance(spec, Recipient):
            recs.append(spec)
            if spec.type == "PASSPHRASE":
                wrap_aads.append(build_wrap_aad(tenant, spec.type, spec.key_id,
                                                spec.key_version, spec.params))
                pp_wrapped.append(spec.wrapped_key)
        elif isinstance(spec, UserKey):
            params = spec.params
            waad = build_wrap_aad(tenant, "PASSPHRASE", spec.kek_id, 0, params)
            iv = wrap_ivs.pop(0) if wrap_ivs else rand(IV_LEN)
            wk = seal_blob(spec.kek, iv, wrap_dek, waad)
            recs.append(Recipient("PASSPHRASE", spec.kek_id, 0, params, wk))
            wrap_aads.append(waad)
            pp_wrapped.append(wk)
        elif isinstance(spec, RsaPublicRecipientKey):
            recs.append(Recipient("RSA_OAEP_SHA256", spec.key_id, spec.key_version, b"",
                                  rsa_oaep_wrap(spec.public_key, wrap_dek)))
        else:
            raise SealError(f"unsupported recipient {spec!r}")

    # Step 4
    kc = key_commitment(dek, message_id)
    header = Header(FORMAT_VERSION, message_id, tenant, subject, kind, purpose,
                    content_type, created_at_ms, correlation_id, schema_id, kc)
    # Step 5
    aad = build_aad(header, recs)
    pk = payload_key(dek, message_id)
    if payload_iv is None:
        payload_iv = rand(IV_LEN)
    blob = seal_blob(pk, payload_iv, plaintext, aad)
    # Step 6
    sig = None
    sig_input = None
    if signer is not None:
        sig_input = build_signature_input(signer.key_id, signer.key_version,
                                          signer.algorithm, aad, recs, blob)
        sig = Signature(signer.key_id, signer.key_version, signer.algorithm,
                        sign_with(signer.private_key, sig_input))
    env = Envelope(header, tuple(recs), blob, sig)
    # Step 7
    data = encode_envelope(env)
    if len(data) > limits.max_envelope:
        raise SealError("envelope exceeds the limit")
    return SealResult(data, env, dek, pk, kc, aad, wrap_aads, pp_wrapped, sig_input)


def response_recipients(request_recipients: Sequence[Recipient],
                        fleet_key_ids: Iterable[str]) -> List[Recipient]:
    """Section 9.3 step 3: the request's records, in order, copied unchanged, except every
    RSA_OAEP_SHA256 record whose key_id names a fleet key (any key_version). May be empty."""
    fleet = set(fleet_key_ids)
    return [r for r in request_recipients
            if not (r.type == "RSA_OAEP_SHA256" and r.key_id in fleet)]


def seal_response(*, request: "Opened", kind: str, content_type: str, schema_id: int,
                  plaintext: bytes, fleet_key_ids: Iterable[str],
                  signer: Optional[SigningKey],
                  message_id: Optional[bytes] = None, created_at_ms: Optional[int] = None,
                  payload_iv: Optional[bytes] = None,
                  rand: Callable[[int], bytes] = os.urandom,
                  limits: Limits = DEFAULT_LIMITS) -> SealResult:
    """Section 9.3: answer a request that was opened (DEK_req, req_mid).

    `fleet_key_ids`: the key ids of the enclave fleet's encryption keys (all versions).
    """
    if kind not in ("RESULT", "ERROR"):
        raise SealError("response kind must be RESULT or ERROR")
    req = request.envelope
    if req.header.kind != "REQUEST":
        raise SealError("only requests are answered")
    if isinstance(fleet_key_ids, str):
        raise TypeError("fleet_key_ids is a collection of key ids")
    recs = response_recipients(req.recipients, fleet_key_ids)
    dek_resp = response_dek(request.unwrapped_key, req.header.message_id)
    return seal(tenant=req.header.tenant, subject=req.header.subject, kind=kind,
                purpose=req.header.purpose, content_type=content_type, schema_id=schema_id,
                plaintext=plaintext, recipients=recs, signer=signer,
                correlation_id=req.header.message_id, message_id=message_id,
                created_at_ms=created_at_ms, dek=dek_resp, payload_iv=payload_iv,
                rand=rand, limits=limits, _allow_response=True)


# ---------------------------------------------------------------------------
# Section 11: opening
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Policy:
    require_signature: bool = True
    trusted_keys: Dict[Tuple[str, int], rsa.RSAPublicKey] = field(default_factory=dict)
    limits: Limits = DEFAULT_LIMITS


@dataclass(frozen=True)
class Opened:
    envelope: Envelope
    plaintext: bytes
    dek: bytes            # the DEK of this envelope (DEK_resp for RESULT/ERROR)
    unwrapped_key: bytes  # what the recipient wrap held (DEK_req for RESULT/ERROR)


def verify_signature(env: Envelope, policy: Policy) -> None:
    """Section 11 step 2."""
    if env.signature is None:
        if policy.require_signature:
            raise EnvelopeError("unsigned")
        return
    s = env.signature
    pub = policy.trusted_keys.get((s.key_id, s.key_version))
    if pub is None:
        raise EnvelopeError("untrusted_signer")
    if not verify_with(pub, s.algorithm, s.value, signature_input_of(env)):
        raise EnvelopeError("bad_signature")


def open_envelope(data: bytes, policy: Policy, keys: Sequence[OpenerKey] = (),
                  dek_req: Optional[bytes] = None) -> Opened:
    """Section 11, steps 1-7 in order.

    `dek_req`: an opener that kept DEK_req MAY skip steps 3-4 for RESULT/ERROR (this is
    also the only way to open a response with no recipients, 9.3 step 3).
    """
    # Step 1
    env = decode_envelope(data, policy.limits)
    h = env.header
    # Step 2
    verify_signature(env, policy)
    is_response = h.kind in ("RESULT", "ERROR")
    if dek_req is not None and is_response:
        unwrapped = dek_req
    else:
        # Step 3: by type, key id and key version (8.1 for PASSPHRASE selection)
        selected = [pair for k in keys for pair in k.select(env.recipients)]
        # keep envelope order: "the first selected recipient that unwraps" (step 4)
        order = {id(r): i for i, r in enumerate(env.recipients)}
        selected.sort(key=lambda kr: order[id(kr[1])])
        if not selected:
            raise EnvelopeError("no_matching_recipient")
        # Step 4
        unwrapped = None
        for k, r in selected:
            unwrapped = k.unwrap(h.tenant, r)
            if unwrapped is not None:
                break
        if unwrapped is None:
            raise EnvelopeError("decrypt_failed")
    # Step 5
    dek = response_dek(unwrapped, h.correlation_id) if is_response else unwrapped
    # Step 6: constant-time commitment check before any decryption
    if not hmac.compare_digest(key_commitment(dek, h.message_id), h.key_commitment):
        raise EnvelopeError("decrypt_failed")
    # Step 7
    aad = build_aad(h, env.recipients)
    plaintext = open_blob(payload_key(dek, h.message_id), env.payload, aad)
    return Opened(env, plaintext, dek, unwrapped)
