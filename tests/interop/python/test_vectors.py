"""Interop tests: the Python implementation against the golden vectors (spec section 13),
in both directions, plus tests of our own for strict decoding, the decoding order of
section 4.2, normalisation, recipient selection (8.1, 8.2), responses (9.3), signatures
(10.1) and tampering. SPEC-FINDINGS.md says which of these the vectors do not cover."""
from __future__ import annotations

import json
import os
import unicodedata
import struct
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zenvelope_v1 as z  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
VECTORS = json.loads((ROOT / "schemas/envelope/vectors/envelope-v1.json").read_text("utf-8"))
KEYS = VECTORS["keys"]
USER = VECTORS["user"]
CASES = {c["name"]: c for c in VECTORS["cases"]}
REQUEST_CASE = VECTORS["cases"][0]  # "answers the first case" (section 13)

h = bytes.fromhex


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def user_key() -> z.UserKey:
    return z.UserKey.derive(USER["tenant"], USER["identity"], USER["passphrase"],
                            USER["iterations"])


@pytest.fixture(scope="session")
def fleet_key() -> z.RsaPrivateRecipientKey:
    return z.RsaPrivateRecipientKey(KEYS["fleet_key_id"], KEYS["fleet_key_version"],
                                    z.load_private_pkcs8_der(h(KEYS["fleet_private_pkcs8"])))


@pytest.fixture(scope="session")
def fleet_public() -> z.RsaPublicRecipientKey:
    return z.RsaPublicRecipientKey(KEYS["fleet_key_id"], KEYS["fleet_key_version"],
                                   z.load_public_spki_der(h(KEYS["fleet_public_spki"])))


@pytest.fixture(scope="session")
def producer_signer() -> z.SigningKey:
    return z.SigningKey(KEYS["producer_key_id"], KEYS["producer_key_version"],
                        z.load_private_pkcs8_der(h(KEYS["producer_private_pkcs8"])))


@pytest.fixture(scope="session")
def enclave_signer() -> z.SigningKey:
    return z.SigningKey(KEYS["enclave_signing_key_id"], KEYS["enclave_signing_key_version"],
                        z.load_private_pkcs8_der(h(KEYS["enclave_signing_private_pkcs8"])))


def _trusted_signers():
    """keys.trusted_signers (section 13): each entry names the `keys` field holding the SPKI."""
    ring = {}
    for t in KEYS["trusted_signers"]:
        spki = t["spki"]
        der = h(KEYS[spki]) if spki in KEYS else h(spki)  # a key name, or the hex itself
        ring[(t["key_id"], t["key_version"])] = z.load_public_spki_der(der)
    return ring


@pytest.fixture(scope="session")
def keyring():
    """Trusted verification keys: keys.trusted_signers from the vector file."""
    return _trusted_signers()


def test_trusted_signers_are_the_two_signing_keys():
    ring = _trusted_signers()
    assert set(ring) == {(KEYS["producer_key_id"], KEYS["producer_key_version"]),
                         (KEYS["enclave_signing_key_id"], KEYS["enclave_signing_key_version"])}
    assert (KEYS["fleet_key_id"], KEYS["fleet_key_version"]) not in ring


def policy(keyring, require_signature):
    return z.Policy(require_signature=require_signature, trusted_keys=keyring)


def mid(s: str) -> bytes:
    return uuid.UUID(s).bytes


# ---------------------------------------------------------------------------
# Section 13: user key and pseudonym
# ---------------------------------------------------------------------------
def test_normalized_identity():
    assert z.normalize_identity(USER["identity"]) == USER["normalized_identity"]


def test_user_salt_kek_kek_id(user_key):
    salt = z.kek_salt(USER["tenant"], USER["identity"])
    assert salt.hex() == USER["kek_salt"]
    kek = z.derive_kek(USER["passphrase"], salt, USER["iterations"])
    assert kek.hex() == USER["kek"]
    assert z.kek_id(kek) == USER["kek_id"]
    assert len(USER["kek_id"]) == 20
    assert user_key.kek.hex() == USER["kek"] and user_key.kek_id == USER["kek_id"]


def test_pseudonym():
    p = VECTORS["pseudonym"]
    got = z.pseudonym(h(p["metadata_key"]), p["tenant"], p["identity"])
    assert got == p["expected"]
    assert len(got) == 47
    # The cases use this pseudonym as subject.
    for c in VECTORS["cases"]:
        if "subject" in c["inputs"]:
            assert c["inputs"]["subject"] == p["expected"]


# ---------------------------------------------------------------------------
# Direction 1: open the expected envelopes
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CASES))
def test_open_expected_envelope(name, keyring, user_key, fleet_key):
    c = CASES[name]
    data = h(c["expected"]["envelope"])
    plaintext = h(c["inputs"]["plaintext"])
    signed = c["type"] == "response" or c["inputs"].get("signed_by") is not None
    # strict decoding: the accepted bytes re-encode identically
    env = z.decode_envelope(data)
    assert z.encode_envelope(env) == data
    assert (env.signature is not None) == signed

    openers = [("user", [user_key])]
    types = [r.type for r in env.recipients]
    if "RSA_OAEP_SHA256" in types:
        openers.append(("fleet", [fleet_key]))
    if c["type"] == "seal":
        assert len(openers) == len(c["inputs"]["recipients"])
    for who, keys in openers:
        opened = z.open_envelope(data, policy(keyring, signed), keys)
        assert opened.plaintext == plaintext, who
        if c["type"] == "seal":
            assert opened.dek.hex() == c["inputs"]["dek"]
        else:
            assert opened.dek.hex() == c["expected"]["response_dek"]
        # intermediates recomputed from the received envelope
        assert opened.envelope.header.key_commitment.hex() == c["expected"]["key_commitment"]
        assert z.payload_key(opened.dek, env.header.message_id).hex() == c["expected"]["payload_key"]
        assert z.build_aad(env.header, env.recipients).hex() == c["expected"]["aad"]

    # signature verifies with the vector public key
    if signed:
        pub = keyring[(env.signature.key_id, env.signature.key_version)]
        sig_input = z.signature_input_of(env)
        assert sig_input.hex() == c["expected"]["signature_input"]
        assert z.verify_with(pub, env.signature.algorithm, env.signature.value, sig_input)
    else:
        assert c["expected"]["signature_input"] is None
        with pytest.raises(z.EnvelopeError) as ei:
            z.open_envelope(data, policy(keyring, True), [user_key])
        assert ei.value.code == "unsigned"


def test_response_dek_from_opened_request(keyring, user_key, fleet_key):
    resp = CASES["result-for-the-request"]
    for keys in ([user_key], [fleet_key]):
        req = z.open_envelope(h(REQUEST_CASE["expected"]["envelope"]), policy(keyring, True),
                              keys)
        dek_resp = z.response_dek(req.dek, req.envelope.header.message_id)
        assert dek_resp.hex() == resp["expected"]["response_dek"]
    # the response's correlation_id is the request's message id
    env = z.decode_envelope(h(resp["expected"]["envelope"]))
    assert env.header.correlation_id == mid(REQUEST_CASE["inputs"]["message_id"])
    # a backend that kept DEK_req may skip steps 3-4
    opened = z.open_envelope(h(resp["expected"]["envelope"]), policy(keyring, True), [],
                             dek_req=h(REQUEST_CASE["inputs"]["dek"]))
    assert opened.plaintext == h(resp["inputs"]["plaintext"])


# ---------------------------------------------------------------------------
# Direction 2: seal the inputs with the given randomness
# ---------------------------------------------------------------------------
def _seal_case(c, user_key, fleet_public, producer_signer, enclave_signer, keyring, fleet_key):
    i = c["inputs"]
    if c["type"] == "seal":
        recips = []
        for who in i["recipients"]:
            recips.append({"user": user_key, "fleet": fleet_public}[who])
        signer = {None: None, "producer": producer_signer}[i["signed_by"]]
        return z.seal(tenant=i["tenant"], subject=i["subject"], kind=i["kind"],
                      purpose=i["purpose"], content_type=i["content_type"],
                      schema_id=i["schema_id"], plaintext=h(i["plaintext"]),
                      recipients=recips, signer=signer,
                      message_id=mid(i["message_id"]), created_at_ms=i["created_at_ms"],
                      dek=h(i["dek"]), wrap_ivs=[h(x) for x in i["wrap_ivs"]],
                      payload_iv=h(i["payload_iv"]))
    assert c["type"] == "response"
    # The enclave opens the request with its fleet key, then answers it.
    req = z.open_envelope(h(REQUEST_CASE["expected"]["envelope"]), policy(keyring, True),
                          [fleet_key])
    return z.seal_response(request=req, kind=i["kind"], content_type=i["content_type"],
                           schema_id=i["schema_id"], plaintext=h(i["plaintext"]),
                           fleet_key_ids=[KEYS["fleet_key_id"]],
                           signer=enclave_signer, message_id=mid(i["message_id"]),
                           created_at_ms=i["created_at_ms"], payload_iv=h(i["payload_iv"]))


@pytest.mark.parametrize("name", list(CASES))
def test_seal_matches_vector(name, user_key, fleet_public, producer_signer, enclave_signer,
                             keyring, fleet_key):
    c = CASES[name]
    ex = c["expected"]
    res = _seal_case(c, user_key, fleet_public, producer_signer, enclave_signer, keyring,
                     fleet_key)
    own = res.parsed
    vec = z.decode_envelope(h(ex["envelope"]))

    # intermediates that do not depend on RSA randomness
    if c["type"] == "response":
        assert res.dek.hex() == ex["response_dek"]
    assert res.key_commitment.hex() == ex["key_commitment"]
    assert res.payload_key.hex() == ex["payload_key"]
    assert res.aad.hex() == ex["aad"]
    assert [w.hex() for w in res.wrap_aads] == ex["wrap_aads"]
    assert len(ex["wrap_aads"]) == len(ex["passphrase_wrapped_keys"])
    assert [w.hex() for w in res.passphrase_wrapped_keys] == ex["passphrase_wrapped_keys"]
    assert own.payload.hex() == ex["payload"]

    # own RSA-OAEP wraps decrypt to the DEK that was wrapped
    wrapped_dek = h(REQUEST_CASE["inputs"]["dek"]) if c["type"] == "response" else res.dek
    for r in own.recipients:
        if r.type == "RSA_OAEP_SHA256":
            assert fleet_key.unwrap(own.header.tenant, r) == wrapped_dek
        if r.type == "PASSPHRASE":
            assert user_key.unwrap(own.header.tenant, r) == wrapped_dek

    # own signature verifies
    if own.signature is not None:
        pub = keyring[(own.signature.key_id, own.signature.key_version)]
        assert z.verify_with(pub, own.signature.algorithm, own.signature.value, res.signature_input)
        z.open_envelope(res.envelope, policy(keyring, True), [user_key])  # opens end to end

    # substitute the vector's RSA-OAEP wrapped keys and signature value
    assert len(own.recipients) == len(vec.recipients)
    recs = []
    for mine, theirs in zip(own.recipients, vec.recipients):
        if mine.type == "RSA_OAEP_SHA256":
            mine = replace(mine, wrapped_key=theirs.wrapped_key)
        recs.append(mine)
    sig = own.signature
    if sig is not None:
        assert vec.signature is not None
        sig = replace(sig, value=vec.signature.value)
    else:
        assert vec.signature is None
    substituted = replace(own, recipients=tuple(recs), signature=sig)
    data = z.encode_envelope(substituted)
    assert data.hex() == ex["envelope"]
    if sig is not None:
        assert z.signature_input_of(substituted).hex() == ex["signature_input"]
    else:
        assert ex["signature_input"] is None


def test_seal_default_randomness_roundtrip(user_key, fleet_public, fleet_key, producer_signer,
                                           keyring):
    res = z.seal(tenant="clinic-a", subject="sp1_x", kind="REQUEST", purpose="TREATMENT",
                 content_type="text/plain", schema_id=7, plaintext=b"hello",
                 recipients=[user_key, fleet_public], signer=producer_signer)
    assert res.parsed.header.created_at_ms == z.uuid_v7_timestamp_ms(res.parsed.header.message_id)
    for keys in ([user_key], [fleet_key]):
        assert z.open_envelope(res.envelope, policy(keyring, True), keys).plaintext == b"hello"


def test_open_with_credentials_only(keyring):
    """A device that does not know the iteration count takes it from params (section 8.1),
    derives once, caches the KEK, then selects by kek_id."""
    creds = z.UserCredentials(USER["tenant"], USER["identity"], USER["passphrase"])
    for c in VECTORS["cases"]:
        opened = z.open_envelope(h(c["expected"]["envelope"]), policy(keyring, False), [creds])
        assert opened.plaintext == h(c["inputs"]["plaintext"])
    assert creds.derivations == 1  # "It never runs PBKDF2 per envelope"
    # a device that knows its registered count never reads it from params
    known = z.UserCredentials(USER["tenant"], USER["identity"], USER["passphrase"],
                              iterations=USER["iterations"])
    z.open_envelope(h(REQUEST_CASE["expected"]["envelope"]), policy(keyring, False), [known])
    # wrong passphrase: its kek_id selects no record, so step 3 fails
    wrong = z.UserCredentials(USER["tenant"], USER["identity"], USER["passphrase"] + "!")
    with pytest.raises(z.EnvelopeError) as ei:
        z.open_envelope(h(REQUEST_CASE["expected"]["envelope"]), policy(keyring, False), [wrong])
    assert ei.value.code == "no_matching_recipient"


# ---------------------------------------------------------------------------
# Negative vectors
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("neg", VECTORS["negative"], ids=lambda n: n["name"])
def test_negative_vector(neg, keyring, user_key, fleet_key):
    keys = {"user": [user_key], "fleet": [fleet_key]}[neg["open_with"]]
    with pytest.raises(z.EnvelopeError) as ei:
        z.open_envelope(h(neg["envelope"]), policy(keyring, neg["require_signature"]), keys)
    assert ei.value.code == neg["expected_error"]


# ---------------------------------------------------------------------------
# Our own tests: Avro primitives and strict decoding (section 4)
# ---------------------------------------------------------------------------
def test_long_examples_from_spec():
    for n, enc in [(0, "00"), (-1, "01"), (1, "02"), (-2, "03"), (2, "04"), (-64, "7f"),
                   (64, "8001")]:
        assert z.encode_long(n).hex() == enc
        r = z._Reader(bytes.fromhex(enc), z.DEFAULT_LIMITS)
        assert r.long() == n and r.pos == len(enc) // 2
    for n in (z.LONG_MIN, z.LONG_MAX, z.INT_MIN, z.INT_MAX):
        r = z._Reader(z.encode_long(n), z.DEFAULT_LIMITS)
        assert r.long() == n


@pytest.mark.parametrize("raw", [
    "8000",                       # 0 in two bytes
    "8100",                       # non-shortest
    "ff8000",                     # non-shortest, three bytes
    "ffffffffffffffffff02",       # 10th byte > 1: overflows 64 bits
    "ffffffffffffffffff81" "00",  # longer than 10 bytes
    "80808080808080808080" "01",  # 11 bytes
    "80",                         # runs past end
])
def test_bad_varints_rejected(raw):
    r = z._Reader(bytes.fromhex(raw), z.DEFAULT_LIMITS)
    with pytest.raises(z.EnvelopeError) as ei:
        r.long()
    assert ei.value.code == "malformed"


def _record_bytes():
    return h(CASES["record-unsigned-user-only"]["expected"]["envelope"])


def _request_bytes():
    return h(REQUEST_CASE["expected"]["envelope"])


def _code(data, limits=z.DEFAULT_LIMITS):
    with pytest.raises(z.EnvelopeError) as ei:
        z.decode_envelope(data, limits)
    return ei.value.code


def test_non_shortest_version_varint_rejected():
    data = _record_bytes()
    assert data[0] == 0x02
    assert _code(b"\x82\x00" + data[1:]) == "malformed"


def test_trailing_bytes_rejected():
    for data in (_record_bytes(), _request_bytes()):
        assert _code(data + b"\x00") == "malformed"


def test_every_truncation_rejected():
    data = _request_bytes()
    for n in range(len(data)):
        assert _code(data[:n]) == "malformed", n


def test_int_out_of_range_rejected():
    env = z.decode_envelope(_record_bytes())
    # schema_id = 2^31 encoded as a long where an int is expected
    enc = z.encode_envelope(env)
    head = enc.split(env.header.key_commitment)[0]
    assert head.endswith(b"\x00")  # schema_id 0 just before key_commitment
    bad = head[:-1] + z.encode_long(1 << 31) + enc[len(head):]
    assert _code(bad) == "malformed"


def test_enum_and_union_index_out_of_range():
    env = z.decode_envelope(_record_bytes())
    hd = env.header
    base = z.encode_envelope(env)
    # kind index 4 (RECORD is 3): the kind byte follows the subject string
    pos = 1 + 16 + 1 + len(hd.tenant) + 1 + len(hd.subject)
    assert base[pos] == 0x06
    assert _code(base[:pos] + b"\x08" + base[pos + 1:]) == "malformed"
    # purpose index 6
    assert base[pos + 1] == 0x00
    assert _code(base[:pos + 1] + b"\x0c" + base[pos + 2:]) == "malformed"
    # correlation_id union index 2
    cpos = pos + 2 + 1 + len(hd.content_type) + len(z.encode_long(hd.created_at_ms))
    assert base[cpos] == 0x00
    assert _code(base[:cpos] + b"\x04" + base[cpos + 1:]) == "malformed"
    # signature union index 2 (last byte of an unsigned envelope)
    assert base[-1] == 0x00
    assert _code(base[:-1] + b"\x04") == "malformed"
    # recipient type index 3
    env2 = replace(env, recipients=(replace(env.recipients[0], type="AWS_KMS"),))
    enc2 = z.encode_envelope(env2)
    i = enc2.index(b"\x02\x04" + z.encode_long(len(env.recipients[0].key_id)))
    assert _code(enc2[:i + 1] + b"\x06" + enc2[i + 2:]) == "malformed"


def test_not_uuid_v7_rejected():
    env = z.decode_envelope(_record_bytes())
    for b6, b8 in ((0x40, 0x80), (0x7e, 0xc0), (0x7e, 0x00)):
        m = bytearray(env.header.message_id)
        m[6], m[8] = b6, b8
        bad = z.encode_envelope(replace(env, header=replace(env.header, message_id=bytes(m))))
        assert _code(bad) == "malformed"
    resp = z.decode_envelope(h(CASES["result-for-the-request"]["expected"]["envelope"]))
    c = bytearray(resp.header.correlation_id)
    c[6] = 0x40
    bad = z.encode_envelope(replace(resp, header=replace(resp.header, correlation_id=bytes(c))))
    assert _code(bad) == "malformed"


def test_result_without_correlation_rejected():
    resp = z.decode_envelope(h(CASES["result-for-the-request"]["expected"]["envelope"]))
    for kind in ("RESULT", "ERROR"):
        bad = z.encode_envelope(replace(resp, header=replace(resp.header, kind=kind,
                                                             correlation_id=None)))
        assert _code(bad) == "malformed"


def test_invalid_utf8_rejected():
    data = _record_bytes()
    i = data.index(b"clinic-a")
    assert _code(data[:i] + b"\xc3\x28" + data[i + 2:]) == "malformed"


def test_negative_length_rejected():
    data = _record_bytes()
    i = data.index(b"clinic-a")
    assert data[i - 1] == 0x10
    assert _code(data[:i - 1] + b"\x0f" + data[i:]) == "malformed"  # length -8


def test_unsupported_version():
    data = _record_bytes()
    for v in (0, 2, -1):
        assert _code(z.encode_int(v) + data[1:]) == "unsupported_version"


def _recipient_item(r):
    return (z._enc_enum(z.RECIPIENT_TYPE_SYMBOLS, r.type) + z._enc_string(r.key_id)
            + z.encode_int(r.key_version) + z._enc_bytes(r.params) + z._enc_bytes(r.wrapped_key))


def _with_recipients_array(env, arr: bytes) -> bytes:
    """The canonical encoding of `env` with its recipients array replaced by `arr`."""
    enc = z.encode_envelope(env)
    hdr_end = enc.index(env.header.key_commitment) + 32
    items = b"".join(_recipient_item(r) for r in env.recipients)
    canon = (z.encode_long(len(env.recipients)) + items + b"\x00") if env.recipients else b"\x00"
    assert enc[hdr_end:hdr_end + len(canon)] == canon
    return enc[:hdr_end] + arr + enc[hdr_end + len(canon):]


def test_canonical_array_layout_only():
    """Sections 4.1 and 4.2 rule 6: only `00` or one positive-count block then `00`."""
    env = z.decode_envelope(_request_bytes())
    r0, r1 = (_recipient_item(r) for r in env.recipients)
    L = z.encode_long
    canon = L(2) + r0 + r1 + b"\x00"
    assert z.decode_envelope(_with_recipients_array(env, canon)) == env
    bad = {
        "negative count with size": L(-2) + L(len(r0 + r1)) + r0 + r1 + b"\x00",
        "negative then positive": L(-1) + L(len(r0)) + r0 + L(1) + r1 + b"\x00",
        "two positive blocks": L(1) + r0 + L(1) + r1 + b"\x00",
        "positive then negative": L(1) + r0 + L(-1) + L(len(r1)) + r1 + b"\x00",
        "negative count, wrong size": L(-2) + L(3) + r0 + r1 + b"\x00",
        "negative count over limit": L(-17) + L(len(r0)) + r0 + b"\x00",
        "second block over limit": L(2) + r0 + r1 + L(16) + r0 + b"\x00",
    }
    for what, arr in bad.items():
        assert _code(_with_recipients_array(env, arr)) == "malformed", what
    # the vector's own non-canonical array
    neg = {n["name"]: n for n in VECTORS["negative"]}["negative-count-array-block"]
    assert _code(h(neg["envelope"])) == "malformed"


def test_empty_recipients_array_is_single_zero_byte():
    env = z.decode_envelope(_record_bytes())
    empty = replace(env, recipients=())
    data = z.encode_envelope(empty)
    assert z.decode_envelope(data) == empty
    # "-0" does not exist in zig-zag; a count of 0 written as a non-shortest varint is bad
    assert _code(_with_recipients_array(empty, b"\x80\x00")) == "malformed"


def test_recipient_count_limit():
    env = z.decode_envelope(_record_bytes())
    r = _recipient_item(env.recipients[0])
    ok = z.encode_long(16) + r * 16 + b"\x00"
    assert len(z.decode_envelope(_with_recipients_array(env, ok)).recipients) == 16
    # over the limit: oversized before any item is read, even though the input is short
    assert _code(_with_recipients_array(env, z.encode_long(17) + r + b"\x00")) == "oversized"
    data = _record_bytes()
    cut = data.index(env.header.key_commitment) + 32
    assert _code(data[:cut] + z.encode_long(1 << 40)) == "oversized"


def test_accepted_inputs_reencode_identically():
    """Section 4.2: "any accepted input re-encodes to exactly the same bytes" (finding F2).
    Deterministic mutation fuzzing of the vector envelopes and the negative vectors."""
    import random
    rng = random.Random(20251122)
    seeds = [h(c["expected"]["envelope"]) for c in VECTORS["cases"]]
    seeds += [h(n["envelope"]) for n in VECTORS["negative"]]
    accepted = 0
    for _ in range(6000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(4)
            i = rng.randrange(len(data))
            if op == 0:
                data[i] = rng.randrange(256)
            elif op == 1:
                data[i] ^= 1 << rng.randrange(8)
            elif op == 2:
                data.insert(i, rng.randrange(256))
            else:
                del data[i]
        try:
            env = z.decode_envelope(bytes(data))
        except z.EnvelopeError as e:
            assert e.code in ("malformed", "oversized", "unsupported_version")
            continue
        accepted += 1
        assert z.encode_envelope(env) == bytes(data)
    assert accepted > 100


def test_oversized_limits():
    env = z.decode_envelope(_record_bytes())
    long_subject = replace(env, header=replace(env.header, subject="s" * 257))
    assert _code(z.encode_envelope(long_subject)) == "oversized"
    ok_subject = replace(env, header=replace(env.header, subject="s" * 256))
    z.decode_envelope(z.encode_envelope(ok_subject))
    many = replace(env, recipients=env.recipients * 17)
    assert _code(z.encode_envelope(many)) == "oversized"
    z.decode_envelope(z.encode_envelope(replace(env, recipients=env.recipients * 16)))
    big_params = replace(env, recipients=(replace(env.recipients[0], params=b"\0" * 257),))
    assert _code(z.encode_envelope(big_params)) == "oversized"
    big_wrap = replace(env, recipients=(replace(env.recipients[0], wrapped_key=b"\0" * 1025),))
    assert _code(z.encode_envelope(big_wrap)) == "oversized"
    small = z.Limits(max_envelope=100)
    assert _code(_record_bytes(), small) == "oversized"
    # a declared length over the limit is oversized even if the input is short
    i = _record_bytes().index(b"clinic-a")
    assert _code(_record_bytes()[:i - 1] + z.encode_long(10_000)) == "oversized"


# ---------------------------------------------------------------------------
# Our own tests: tampering with each header field fails (section 12 "Binding")
# ---------------------------------------------------------------------------
OTHER_UUID7 = bytes.fromhex("019a9b2e5c407d2a8f310c6b2a9e4d18")

HEADER_TAMPERS = {
    "message_id": lambda hd: replace(hd, message_id=OTHER_UUID7),
    "tenant": lambda hd: replace(hd, tenant="clinic-b"),
    "subject": lambda hd: replace(hd, subject=hd.subject[:-1] + "N"),
    "kind": lambda hd: replace(hd, kind="RECORD" if hd.kind == "REQUEST" else "REQUEST"),
    "purpose": lambda hd: replace(hd, purpose="RESEARCH"),
    "content_type": lambda hd: replace(hd, content_type=hd.content_type + "x"),
    "created_at_ms": lambda hd: replace(hd, created_at_ms=hd.created_at_ms + 1),
    "correlation_id": lambda hd: replace(hd, correlation_id=OTHER_UUID7),
    "schema_id": lambda hd: replace(hd, schema_id=hd.schema_id + 1),
    "key_commitment": lambda hd: replace(hd, key_commitment=bytes(32)),
}


TAMPER_PARAMS = [(f, c, w) for f in HEADER_TAMPERS
                 for c in ("request-signed-user-and-fleet", "record-unsigned-user-only")
                 for w in ("user", "fleet") if w in CASES[c]["inputs"]["recipients"]]


@pytest.mark.parametrize("field,case,who", TAMPER_PARAMS)
def test_header_tamper_fails(field, case, who, keyring, user_key, fleet_key):
    c = CASES[case]
    env = z.decode_envelope(h(c["expected"]["envelope"]))
    keys = {"user": [user_key], "fleet": [fleet_key]}[who]
    bad = z.encode_envelope(replace(env, header=HEADER_TAMPERS[field](env.header)))
    signed = env.signature is not None
    with pytest.raises(z.EnvelopeError) as ei:
        z.open_envelope(bad, policy(keyring, False), keys)
    assert ei.value.code == ("bad_signature" if signed else "decrypt_failed")
    if signed:  # strip the signature: the AAD/commitment/wrap alone must catch it
        with pytest.raises(z.EnvelopeError) as ei:
            z.open_envelope(z.encode_envelope(replace(env, signature=None,
                                                      header=HEADER_TAMPERS[field](env.header))),
                            policy(keyring, False), keys)
        assert ei.value.code == "decrypt_failed"


def test_response_tamper_fails(keyring, user_key):
    c = CASES["result-for-the-request"]
    env = z.decode_envelope(h(c["expected"]["envelope"]))
    for field, f in HEADER_TAMPERS.items():
        hd = f(env.header)
        if field == "kind":
            hd = replace(env.header, kind="ERROR")
        bad = z.encode_envelope(replace(env, signature=None, header=hd))
        with pytest.raises(z.EnvelopeError) as ei:
            z.open_envelope(bad, policy(keyring, False), [user_key])
        assert ei.value.code == "decrypt_failed", field


def test_recipient_tamper(keyring, user_key, fleet_key):
    env = z.decode_envelope(_request_bytes())
    u, f = env.recipients
    cases = [
        # other recipient's key id/version is in the AAD
        ([user_key], (u, replace(f, key_version=2)), "decrypt_failed"),
        ([fleet_key], (replace(u, key_id="kek-0000000000000000"), f), "decrypt_failed"),
        # own record no longer addressed
        ([user_key], (replace(u, key_id="kek-0000000000000000"), f), "no_matching_recipient"),
        ([fleet_key], (u, replace(f, key_version=2)), "no_matching_recipient"),
        # params are in the wrap AAD
        ([user_key], (replace(u, params=u.params[:-1] + b"\0"), f), "decrypt_failed"),
        # wrapped keys
        ([user_key], (replace(u, wrapped_key=u.wrapped_key[:-1] + b"\0"), f), "decrypt_failed"),
        ([fleet_key], (u, replace(f, wrapped_key=f.wrapped_key[:-1] + b"\0")), "decrypt_failed"),
        # reordering changes the AAD
        ([user_key], (f, u), "decrypt_failed"),
        # AWS_KMS records are not addressed to us
        ([fleet_key], (u, replace(f, type="AWS_KMS")), "no_matching_recipient"),
    ]
    for keys, recs, code in cases:
        bad = z.encode_envelope(replace(env, signature=None, recipients=recs))
        with pytest.raises(z.EnvelopeError) as ei:
            z.open_envelope(bad, policy(keyring, False), keys)
        assert ei.value.code == code, (recs, code)
    # other recipient's wrapped key is NOT authenticated without a signature (section 12)
    ok = z.encode_envelope(replace(env, signature=None,
                                   recipients=(u, replace(f, wrapped_key=b"\0" * 256))))
    assert z.open_envelope(ok, policy(keyring, False), [user_key]).plaintext
    # ...but it is with one
    bad = z.encode_envelope(replace(env, recipients=(u, replace(f, wrapped_key=b"\0" * 256))))
    with pytest.raises(z.EnvelopeError) as ei:
        z.open_envelope(bad, policy(keyring, False), [user_key])
    assert ei.value.code == "bad_signature"


def test_pss_salt_length_is_exactly_32(keyring, producer_signer):
    """Section 3: salt length 32. Checked with an independent, strict PSS verifier, for
    both the vector signatures and our own."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    strict = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    envs = [z.decode_envelope(h(c["expected"]["envelope"])) for c in VECTORS["cases"]]
    own = z.pss_sign(producer_signer.private_key, b"msg")
    keyring[(producer_signer.key_id, producer_signer.key_version)].verify(
        own, b"msg", strict, hashes.SHA256())
    for env in envs:
        if env.signature is not None and env.signature.algorithm == "RSA_PSS_SHA256":
            pub = keyring[(env.signature.key_id, env.signature.key_version)]
            pub.verify(env.signature.value, z.signature_input_of(env), strict, hashes.SHA256())


def test_present_signature_checked_even_when_not_required(keyring, user_key):
    """Section 11 step 2: a present signature is always checked."""
    env = z.decode_envelope(_request_bytes())
    for sig, code in ((replace(env.signature, key_id="someone-else"), "untrusted_signer"),
                      (replace(env.signature, value=bytes(256)), "bad_signature"),
                      (replace(env.signature, value=env.signature.value[:-1]), "bad_signature")):
        with pytest.raises(z.EnvelopeError) as ei:
            z.open_envelope(z.encode_envelope(replace(env, signature=sig)),
                            policy(keyring, False), [user_key])
        assert ei.value.code == code


def test_signature_relabel_and_payload(keyring, user_key, fleet_key):
    env = z.decode_envelope(_request_bytes())
    relabel = replace(env, signature=replace(env.signature, key_id="fleet-signing"))
    with pytest.raises(z.EnvelopeError) as ei:
        z.open_envelope(z.encode_envelope(relabel), policy(keyring, True), [fleet_key])
    assert ei.value.code == "bad_signature"
    for blob in (b"", b"\x01" * 28, b"\x02" + env.payload[1:]):
        bad = z.encode_envelope(replace(env, signature=None, payload=blob))
        with pytest.raises(z.EnvelopeError) as ei:
            z.open_envelope(bad, policy(keyring, False), [user_key])
        assert ei.value.code == "decrypt_failed"


def test_commitment_checked_independently_of_aead(keyring, user_key):
    """Section 11 step 6. The vector 'commitment-changed' also changes the AAD, so an
    opener without the commitment check would still fail there. Here the payload is
    re-encrypted so that the AEAD alone would succeed; only the commitment catches it."""
    c = CASES["record-unsigned-user-only"]
    env = z.decode_envelope(h(c["expected"]["envelope"]))
    dek = h(c["inputs"]["dek"])
    pk = z.payload_key(dek, env.header.message_id)
    for kc, ok in ((env.header.key_commitment, True), (bytes(32), False)):
        hd = replace(env.header, key_commitment=kc)
        blob = z.seal_blob(pk, bytes(12), b"forged", z.build_aad(hd, env.recipients))
        data = z.encode_envelope(replace(env, header=hd, payload=blob))
        if ok:
            assert z.open_envelope(data, policy(keyring, False), [user_key]).plaintext == b"forged"
        else:
            with pytest.raises(z.EnvelopeError) as ei:
                z.open_envelope(data, policy(keyring, False), [user_key])
            assert ei.value.code == "decrypt_failed"


def test_response_moved_to_other_request_fails(keyring, user_key):
    """Moving a result to another request changes DEK_resp (section 12)."""
    env = z.decode_envelope(h(CASES["result-for-the-request"]["expected"]["envelope"]))
    other = mid(CASES["record-unsigned-user-only"]["inputs"]["message_id"])
    bad = z.encode_envelope(replace(env, signature=None,
                                    header=replace(env.header, correlation_id=other)))
    with pytest.raises(z.EnvelopeError) as ei:
        z.open_envelope(bad, policy(keyring, False), [user_key])
    assert ei.value.code == "decrypt_failed"


# ---------------------------------------------------------------------------
# Our own tests: derivations
# ---------------------------------------------------------------------------
def test_normalize_identity_rules():
    assert z.normalize_identity("\t\n\x0b\x0c\r Bob@X.org \r\n") == "bob@x.org"
    assert z.normalize_identity("ＡＬＩＣＥ@ｅｘａｍｐｌｅ.org") == "alice@example.org"  # NFKC
    assert z.normalize_identity("ǅ") == "dž"
    # default full lower-casing, not case folding: ß stays ß; final sigma applies
    assert z.normalize_identity("STRAßE") == "straße"
    assert z.normalize_identity("ΟΔΟΣ") == "οδος"
    assert z.normalize_identity("\u0130") == "i\u0307"
    # NFKC comes FIRST (revised 5.1): NBSP, U+3000 and U+2000..U+200A become U+0020 and
    # are then trimmed
    assert z.normalize_identity("\u00a0bob") == "bob"
    assert z.normalize_identity("\u3000Bob\u2003\u00a0") == "bob"
    assert z.normalize_identity("\u00a0 \uff21lice\t") == "alice"
    # inner whitespace is kept (NFKC maps NBSP to a space, which stays)
    assert z.normalize_identity("a\u00a0b") == "a b"
    # only the six ASCII characters are trimmed, not str.strip()'s wider set
    for ch in ("\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\u2028", "\u2029"):
        assert ch.isspace()  # str.strip() would remove it
        assert unicodedata.normalize("NFKC", ch) == ch
        assert z.normalize_identity(ch + "bob" + ch) == ch + "bob" + ch, repr(ch)
    # lower-casing comes after trimming and NFKC: "\u212a" (KELVIN SIGN) -> "K" -> "k"
    assert z.normalize_identity(" \u212aelvin ") == "kelvin"


def test_passphrase_nfkc():
    salt = bytes(32)
    decomposed = "U\u0308n"
    assert z.derive_kek(decomposed, salt, 100_000) == z.derive_kek("\u00dcn", salt, 100_000)
    assert z.derive_kek(" x", salt, 100_000) != z.derive_kek("x", salt, 100_000)


def test_iteration_bounds():
    with pytest.raises(ValueError):
        z.derive_kek("p", bytes(32), 99_999)
    with pytest.raises(ValueError):
        z.derive_kek("p", bytes(32), 10_000_001)


def test_sealer_input_validation(user_key):
    base = dict(tenant="clinic-a", subject="s", kind="REQUEST", purpose="TREATMENT",
                content_type="t", schema_id=0, plaintext=b"", recipients=[user_key])
    z.seal(**base)
    for bad in ({"tenant": ""}, {"tenant": "a b"}, {"tenant": "x" * 65}, {"content_type": ""},
                {"schema_id": -1}, {"recipients": []}, {"kind": "RESULT"}):
        with pytest.raises(z.SealError):
            z.seal(**{**base, **bad})


# ---------------------------------------------------------------------------
# Revised spec: decoding order (section 4.2 steps 1-3)
# ---------------------------------------------------------------------------
def test_decoding_order_whole_input_then_version():
    rec = _record_bytes()
    small = z.Limits(max_envelope=len(rec) - 1)
    # 1. whole input first: even a version-2 or truncated input is oversized
    assert _code(rec, small) == "oversized"
    assert _code(b"\x04" + rec[1:], small) == "oversized"
    assert _code(b"\x82\x00" + rec[1:], small) == "oversized"
    # 2. version != 1 -> unsupported_version, whatever follows
    for tail in (b"", rec[1:], rec[1:20], rec[1:] + b"\xff", b"\xff" * 30,
                 b"\x01" * 17 + b"\x81\x80\x80\x80\x80"):
        assert _code(b"\x04" + tail) == "unsupported_version"
    assert _code(z.encode_int(0)) == "unsupported_version"
    assert _code(z.encode_int(z.INT_MAX)) == "unsupported_version"
    assert _code(z.encode_int(z.INT_MIN)) == "unsupported_version"
    #    ...but a malformed version varint is malformed
    assert _code(b"") == "malformed"
    assert _code(b"\x84") == "malformed"          # runs past the end
    assert _code(b"\x84\x00" + rec[1:]) == "malformed"  # 2, not shortest
    assert _code(b"\x82\x00" + rec[1:]) == "malformed"  # 1, not shortest (vector)
    assert _code(b"\xff" * 10 + rec[1:]) == "malformed"  # overflows 64 bits
    # ASSUMPTION (finding N1): a version that is a valid varint but not a 32-bit int
    # breaks rule 2 and is malformed, not unsupported_version.
    assert _code(z.encode_long(1 << 32) + rec[1:]) == "malformed"


def test_decoding_order_per_length():
    env = z.decode_envelope(_record_bytes())
    enc = z.encode_envelope(env)
    t = 1 + 16  # offset of the tenant's length prefix
    L = z.encode_long
    tenant_rest = enc[t + len(z._enc_string(env.header.tenant)):]
    # negative -> malformed, even when huge in magnitude or the input is short
    assert _code(enc[:t] + L(-1) + tenant_rest) == "malformed"
    assert _code(enc[:t] + L(-(1 << 40))) == "malformed"
    # over the limit -> oversized, even if the input is also too short
    assert _code(enc[:t] + L(257)) == "oversized"
    assert _code(enc[:t] + L(z.LONG_MAX)) == "oversized"
    # within the limit but past the end -> malformed
    assert _code(enc[:t] + L(256) + b"x" * 10) == "malformed"
    # the limit is 256 bytes of UTF-8, not characters
    ok = replace(env, header=replace(env.header, subject="\u00e9" * 128))
    z.decode_envelope(z.encode_envelope(ok))
    bad = replace(env, header=replace(env.header, subject="\u00e9" * 128 + "x"))
    assert _code(z.encode_envelope(bad)) == "oversized"


def test_first_failure_decides():
    env = z.decode_envelope(_record_bytes())
    big_payload = replace(env, payload=b"\0" * (z.DEFAULT_LIMITS.max_payload + 1))
    # an earlier malformed field wins over a later oversized one...
    assert _code(z.encode_envelope(big_payload)) == "oversized"
    enc = z.encode_envelope(big_payload)
    i = enc.index(b"clinic-a")
    assert _code(enc[:i] + b"\xc3\x28" + enc[i + 2:]) == "malformed"   # invalid UTF-8
    j = enc.index(env.header.message_id)
    assert _code(enc[:j + 6] + b"\x40" + enc[j + 7:]) == "malformed"     # not a UUIDv7
    # ...and an earlier oversized field wins over a later malformed one
    long_subject = z.encode_envelope(replace(env, header=replace(env.header, subject="s" * 300)))
    assert _code(long_subject + b"\x00") == "oversized"                # + trailing byte
    k = long_subject.index(b"s" * 300) + 300
    assert long_subject[k] == 0x06  # kind RECORD
    assert _code(long_subject[:k] + b"\x7e" + long_subject[k + 1:]) == "oversized"


def test_result_without_correlation_checked_in_schema_order():
    """Rule 9 is detected when correlation_id is decoded (ASSUMPTION, finding N2), so it
    wins over a later oversized field. Either order gives `malformed` for any later
    malformed field."""
    resp = z.decode_envelope(h(CASES["result-for-the-request"]["expected"]["envelope"]))
    bad = replace(resp, header=replace(resp.header, correlation_id=None),
                  payload=b"\0" * (z.DEFAULT_LIMITS.max_payload + 1))
    assert _code(z.encode_envelope(bad)) == "malformed"


def test_signature_field_limits():
    env = z.decode_envelope(_request_bytes())
    long_kid = replace(env, signature=replace(env.signature, key_id="k" * 257))
    assert _code(z.encode_envelope(long_kid)) == "oversized"
    z.decode_envelope(z.encode_envelope(replace(env, signature=replace(env.signature,
                                                                       key_id="k" * 256))))
    big_value = replace(env, signature=replace(env.signature, value=b"\0" * 1025))
    assert _code(z.encode_envelope(big_value)) == "oversized"
    long_rkid = replace(env, recipients=(replace(env.recipients[0], key_id="k" * 257),))
    assert _code(z.encode_envelope(long_rkid)) == "oversized"


def test_openers_check_nothing_else_about_the_header(keyring, user_key):
    """Section 4.2 last paragraph and 9.1: tenant character set, created_at_ms vs the
    message id, a REQUEST with a correlation id, an empty content type and a negative
    schema id are sealer rules only; an opener accepts them."""
    c = CASES["record-unsigned-user-only"]
    env = z.decode_envelope(h(c["expected"]["envelope"]))
    hd = replace(env.header, tenant="not a tenant \u00e9", created_at_ms=-5, kind="REQUEST",
                 correlation_id=OTHER_UUID7, content_type="", schema_id=-1)
    data = _reseal(env, hd, env.recipients, h(c["inputs"]["dek"]), user_key, b"odd but valid")
    assert z.open_envelope(data, policy(keyring, False), [user_key]).plaintext == b"odd but valid"


def _reseal(env, header, recipients, dek, user_key, plaintext, dek_for_wraps=None):
    """Re-wrap PASSPHRASE records for `user_key` and re-encrypt, so that an opener would
    accept the result. RSA records are copied as they are."""
    wraps = dek_for_wraps or dek
    recs = []
    for r in recipients:
        if r.type == "PASSPHRASE" and r.key_id == user_key.kek_id:
            aad = z.build_wrap_aad(header.tenant, r.type, r.key_id, r.key_version, r.params)
            r = replace(r, wrapped_key=z.seal_blob(user_key.kek, bytes(12), wraps, aad))
        recs.append(r)
    header = replace(header, key_commitment=z.key_commitment(dek, header.message_id))
    blob = z.seal_blob(z.payload_key(dek, header.message_id), bytes(12), plaintext,
                       z.build_aad(header, recs))
    return z.encode_envelope(z.Envelope(header, tuple(recs), blob, None))


# ---------------------------------------------------------------------------
# Revised spec: normalisation (5.1) and unassigned code points
# ---------------------------------------------------------------------------
def test_vector_identity_exercises_nfkc_before_trim():
    ident = USER["identity"]
    assert ident.startswith("\u00a0") and "\uff21" in ident
    # the old order (trim, then NFKC) gives a different, wrong result
    old = unicodedata.normalize("NFKC", ident.strip(" \t\n\x0b\x0c\r")).lower()
    assert old != USER["normalized_identity"] == z.normalize_identity(ident)


def test_vector_passphrase_exercises_nfkc():
    pp = USER["passphrase"]
    assert unicodedata.normalize("NFKC", pp) != pp  # ligature, full-width digits
    salt = h(USER["kek_salt"])
    raw = z.hashlib.pbkdf2_hmac("sha256", pp.encode("utf-8"), salt, USER["iterations"], 32)
    assert raw.hex() != USER["kek"]


def test_lower_not_casefold():
    """5.1 step 3: str.lower, not str.casefold (the vectors do not catch this, F15)."""
    assert z.normalize_identity("Stra\u00dfe@X") == "stra\u00dfe@x"
    assert "Stra\u00dfe@X".casefold() == "strasse@x"
    assert z.kek_salt("t", "STRASSE") != z.kek_salt("t", "Stra\u00dfe")


def test_unassigned_code_points_rejected():
    for bad in ("\u0378bob", "bob\ufdd0", "\U0010fffe"):
        assert unicodedata.category(bad.strip("bob")) == "Cn"
        with pytest.raises(ValueError):
            z.UserKey.derive("t", bad, "pass", 100_000)
        with pytest.raises(ValueError):
            z.UserKey.derive("t", "bob", bad, 100_000)
        with pytest.raises(ValueError):
            z.UserCredentials("t", bad, "pass")
        with pytest.raises(ValueError):
            z.pseudonym(bytes(32), "t", bad)
    z.check_assigned("\ue000 private use is assigned")


# ---------------------------------------------------------------------------
# Revised spec: PASSPHRASE recipient selection (8.1)
# ---------------------------------------------------------------------------
def _record_case():
    c = CASES["record-unsigned-user-only"]
    return c, z.decode_envelope(h(c["expected"]["envelope"])), h(c["inputs"]["dek"])


def test_passphrase_selection_by_kek_id_and_version(keyring, user_key):
    c, env, dek = _record_case()
    u = env.recipients[0]
    # key_version != 0: not addressed to the user key
    data = _reseal(env, env.header, (replace(u, key_version=1),), dek, user_key, b"x")
    for keys in ([user_key], [z.UserCredentials(USER["tenant"], USER["identity"],
                                                USER["passphrase"])]):
        with pytest.raises(z.EnvelopeError) as ei:
            z.open_envelope(data, policy(keyring, False), keys)
        assert ei.value.code == "no_matching_recipient"


def test_iterations_out_of_range_record_is_skipped(keyring, user_key):
    c, env, dek = _record_case()
    u = env.recipients[0]
    for n in (1, 99_999, 10_000_001, 0xFFFFFFFF):
        forged = replace(u, params=z.u32be(n) + u.params[4:])
        data = _reseal(env, env.header, (forged,), dek, user_key, b"x")
        creds = z.UserCredentials(USER["tenant"], USER["identity"], USER["passphrase"])
        with pytest.raises(z.EnvelopeError) as ei:
            z.open_envelope(data, policy(keyring, False), [creds])
        assert ei.value.code == "no_matching_recipient"
        assert creds.derivations == 0  # skipped without running PBKDF2
        # a KEK holder selects by kek_id; _reseal re-wrapped with the new params, so it opens
        assert z.open_envelope(data, policy(keyring, False), [user_key]).plaintext == b"x"
    # params changed after wrapping: the wrap AAD catches it (8.1 "so changed params fail")
    changed = replace(u, params=z.u32be(200_000) + u.params[4:])
    data = z.encode_envelope(replace(env, recipients=(changed,)))
    with pytest.raises(z.EnvelopeError) as ei:
        z.open_envelope(data, policy(keyring, False), [user_key])
    assert ei.value.code == "decrypt_failed"


def test_foreign_salt_record_is_skipped_without_pbkdf2(keyring):
    c, env, dek = _record_case()
    other = z.UserCredentials(USER["tenant"], "someone.else@example.org", USER["passphrase"])
    with pytest.raises(z.EnvelopeError) as ei:
        z.open_envelope(h(c["expected"]["envelope"]), policy(keyring, False), [other])
    assert ei.value.code == "no_matching_recipient"
    assert other.derivations == 0
    other_tenant = z.UserCredentials("clinic-b", USER["identity"], USER["passphrase"])
    with pytest.raises(z.EnvelopeError):
        z.open_envelope(h(c["expected"]["envelope"]), policy(keyring, False), [other_tenant])
    assert other_tenant.derivations == 0


def test_forged_iteration_record_does_not_poison_the_cache(keyring, user_key):
    """A forged record with our salt and a wrong count comes first (finding N4)."""
    c, env, dek = _record_case()
    u = env.recipients[0]
    forged = z.Recipient("PASSPHRASE", "kek-0000000000000000", 0,
                         z.u32be(100_001) + u.params[4:], b"\x01" * 61)
    data = _reseal(env, env.header, (forged, u), dek, user_key, b"second record")
    creds = z.UserCredentials(USER["tenant"], USER["identity"], USER["passphrase"])
    assert z.open_envelope(data, policy(keyring, False), [creds]).plaintext == b"second record"
    assert creds.derivations == 2
    # the genuine KEK is cached: no further PBKDF2 for later envelopes
    z.open_envelope(h(c["expected"]["envelope"]), policy(keyring, False), [creds])
    z.open_envelope(data, policy(keyring, False), [creds])
    assert creds.derivations == 2
    # once confirmed, a forged record with yet another count costs nothing either
    only_forged = _reseal(env, env.header, (replace(forged, params=z.u32be(100_002)
                                                    + u.params[4:]),), dek, user_key, b"")
    with pytest.raises(z.EnvelopeError) as ei:
        z.open_envelope(only_forged, policy(keyring, False), [creds])
    assert ei.value.code == "no_matching_recipient"
    assert creds.derivations == 2
    # a fresh device that only ever sees the forged record derives once and opens nothing
    fresh = z.UserCredentials(USER["tenant"], USER["identity"], USER["passphrase"])
    with pytest.raises(z.EnvelopeError) as ei:
        z.open_envelope(only_forged, policy(keyring, False), [fresh])
    assert ei.value.code == "no_matching_recipient" and fresh.derivations == 1


# ---------------------------------------------------------------------------
# Revised spec: RSA_OAEP_SHA256 records (8.2)
# ---------------------------------------------------------------------------
def _request_case_unsigned():
    c = REQUEST_CASE
    return c, z.decode_envelope(h(c["expected"]["envelope"])), h(c["inputs"]["dek"])


def test_rsa_params_must_be_empty(keyring, fleet_key):
    c, env, dek = _request_case_unsigned()
    u, f = env.recipients
    # params are not in the AAD and the envelope is unsigned: only the 8.2 rule catches it
    for params in (b"\x00", b"x" * 36):
        data = z.encode_envelope(replace(env, signature=None,
                                         recipients=(u, replace(f, params=params))))
        with pytest.raises(z.EnvelopeError) as ei:
            z.open_envelope(data, policy(keyring, False), [fleet_key])
        assert ei.value.code == "decrypt_failed"
    # the RSA decryption itself would have succeeded
    assert z.rsa_oaep_unwrap(fleet_key.private_key, f.wrapped_key) == dek


def test_rsa_wrapped_key_length_must_equal_modulus(keyring, fleet_key):
    c, env, dek = _request_case_unsigned()
    u, f = env.recipients
    for wk in (b"\x00" + f.wrapped_key, f.wrapped_key[1:], f.wrapped_key + b"\x00", b""):
        assert z.rsa_oaep_unwrap(fleet_key.private_key, wk) is None
        data = z.encode_envelope(replace(env, signature=None,
                                         recipients=(u, replace(f, wrapped_key=wk))))
        with pytest.raises(z.EnvelopeError) as ei:
            z.open_envelope(data, policy(keyring, False), [fleet_key])
        assert ei.value.code == "decrypt_failed"


def test_rsa_short_wrapped_key_with_same_integer_is_rejected(keyring, fleet_key, fleet_public):
    """A wrap whose first byte is 0x00, with that byte dropped, is the same integer in 255
    bytes. Some RSA libraries decrypt it; 8.2 requires it to fail. (pyca already refuses
    it; the explicit length check in rsa_oaep_unwrap does not rely on that.)"""
    c, env, dek = _request_case_unsigned()
    u, f = env.recipients
    for _ in range(20000):
        wk = z.rsa_oaep_wrap(fleet_public.public_key, dek)
        if wk[0] == 0:
            break
    else:  # pragma: no cover (probability ~ e^-78)
        pytest.skip("no wrap with a leading zero byte")
    short = wk[1:]
    try:
        lib = fleet_key.private_key.decrypt(short, z._OAEP)
    except ValueError:
        lib = None  # this OpenSSL build rejects it by itself
    assert lib in (None, dek)
    assert z.rsa_oaep_unwrap(fleet_key.private_key, short) is None
    data = z.encode_envelope(replace(env, signature=None,
                                     recipients=(u, replace(f, wrapped_key=short))))
    with pytest.raises(z.EnvelopeError) as ei:
        z.open_envelope(data, policy(keyring, False), [fleet_key])
    assert ei.value.code == "decrypt_failed"


def test_first_selected_record_that_unwraps(keyring, fleet_key, user_key):
    """Section 11 step 4: a failing selected record is skipped, the next one is used."""
    c, env, dek = _request_case_unsigned()
    u, f = env.recipients
    recs = (replace(f, params=b"\x00"), u, f)
    data = _reseal(env, env.header, recs, dek, user_key, b"second fleet record")
    assert z.open_envelope(data, policy(keyring, False), [fleet_key]).plaintext == \
        b"second fleet record"


def test_rsa_modulus_sizes_enforced():
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError):
        z.RsaPrivateRecipientKey("k", 1, small)
    with pytest.raises(ValueError):
        z.RsaPublicRecipientKey("k", 1, small.public_key())
    with pytest.raises(ValueError):
        z.SigningKey("k", 1, small)


# ---------------------------------------------------------------------------
# Revised spec: response recipients (9.3 step 3)
# ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def partner_key():
    """Another party's RSA-OAEP key (not a fleet key)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_response_drops_every_fleet_key_version(keyring, user_key, fleet_key, fleet_public,
                                                producer_signer, enclave_signer, partner_key):
    fleet_v2 = replace(fleet_public, key_version=2)
    partner = z.RsaPublicRecipientKey("partner", 1, partner_key.public_key())
    req = z.seal(tenant="clinic-a", subject="sp1_x", kind="REQUEST", purpose="TREATMENT",
                 content_type="t", schema_id=1, plaintext=b"q",
                 recipients=[fleet_v2, user_key, fleet_public, partner],
                 signer=producer_signer)
    opened = z.open_envelope(req.envelope, policy(keyring, True), [fleet_key])
    resp = z.seal_response(request=opened, kind="RESULT", content_type="r", schema_id=2,
                           plaintext=b"answer", fleet_key_ids={"fleet"},
                           signer=enclave_signer)
    recs = resp.parsed.recipients
    assert [(r.type, r.key_id, r.key_version) for r in recs] == [
        ("PASSPHRASE", user_key.kek_id, 0), ("RSA_OAEP_SHA256", "partner", 1)]
    # copied unchanged
    assert recs[0] == req.parsed.recipients[1] and recs[1] == req.parsed.recipients[3]
    for keys in ([user_key], [z.RsaPrivateRecipientKey("partner", 1, partner_key)]):
        got = z.open_envelope(resp.envelope, policy(keyring, True), keys)
        assert got.plaintext == b"answer"
        assert got.unwrapped_key == req.dek
    # the fleet can no longer open its own answer through a recipient record
    with pytest.raises(z.EnvelopeError) as ei:
        z.open_envelope(resp.envelope, policy(keyring, True), [fleet_key])
    assert ei.value.code == "no_matching_recipient"


def test_response_with_no_recipients(keyring, fleet_key, fleet_public, producer_signer,
                                     enclave_signer, user_key):
    req = z.seal(tenant="clinic-a", subject="sp1_x", kind="REQUEST", purpose="TREATMENT",
                 content_type="t", schema_id=1, plaintext=b"q", recipients=[fleet_public],
                 signer=producer_signer)
    opened = z.open_envelope(req.envelope, policy(keyring, True), [fleet_key])
    resp = z.seal_response(request=opened, kind="ERROR", content_type="e", schema_id=0,
                           plaintext=b"nope", fleet_key_ids=["fleet"], signer=enclave_signer)
    assert resp.parsed.recipients == ()
    assert z.decode_envelope(resp.envelope).recipients == ()
    for keys in ([], [user_key], [fleet_key]):
        with pytest.raises(z.EnvelopeError) as ei:
            z.open_envelope(resp.envelope, policy(keyring, True), keys)
        assert ei.value.code == "no_matching_recipient"
    got = z.open_envelope(resp.envelope, policy(keyring, True), [], dek_req=req.dek)
    assert got.plaintext == b"nope"
    # a wrong DEK_req fails at the commitment
    with pytest.raises(z.EnvelopeError) as ei:
        z.open_envelope(resp.envelope, policy(keyring, True), [], dek_req=bytes(32))
    assert ei.value.code == "decrypt_failed"


def test_vector_response_recipients_follow_9_3():
    req = z.decode_envelope(_request_bytes())
    resp = z.decode_envelope(h(CASES["result-for-the-request"]["expected"]["envelope"]))
    assert list(resp.recipients) == z.response_recipients(req.recipients, [KEYS["fleet_key_id"]])


# ---------------------------------------------------------------------------
# Revised spec: signatures (10.1, 11 step 2)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("salt_len", [0, 20, 31, 33, 64, "max"])
def test_pss_other_salt_length_is_bad_signature(salt_len, keyring, user_key, producer_signer):
    env = z.decode_envelope(_request_bytes())
    sig_input = z.signature_input_of(env)
    sl = padding.PSS.MAX_LENGTH if salt_len == "max" else salt_len
    value = producer_signer.private_key.sign(
        sig_input, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=sl),
        hashes.SHA256())
    # an auto-detecting verifier would accept it
    keyring[(env.signature.key_id, env.signature.key_version)].verify(
        value, sig_input, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                      salt_length=padding.PSS.AUTO), hashes.SHA256())
    data = z.encode_envelope(replace(env, signature=replace(env.signature, value=value)))
    for required in (True, False):
        with pytest.raises(z.EnvelopeError) as ei:
            z.open_envelope(data, policy(keyring, required), [user_key])
        assert ei.value.code == "bad_signature"


def test_pss_salt_length_64_vector_is_otherwise_valid(keyring):
    neg = {n["name"]: n for n in VECTORS["negative"]}["pss-salt-length-64"]
    env = z.decode_envelope(h(neg["envelope"]))
    pub = keyring[(env.signature.key_id, env.signature.key_version)]
    pub.verify(env.signature.value, z.signature_input_of(env),
               padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=64), hashes.SHA256())
    assert not z.pss_verify(pub, env.signature.value, z.signature_input_of(env))


def test_result_signature_is_p1363_ecdsa_p256(keyring):
    """Section 10.1: the result case is signed with ECDSA P-256, `r || s` (not DER); pyca
    verifies it once re-encoded as DER, and not as given."""
    res = [c for c in VECTORS["cases"] if c["type"] == "response"][0]
    env = z.decode_envelope(h(res["expected"]["envelope"]))
    sig = env.signature
    assert sig.algorithm == "ECDSA_P256_SHA256" and len(sig.value) == 64
    pub = keyring[(sig.key_id, sig.key_version)]
    msg = z.signature_input_of(env)
    der = encode_dss_signature(int.from_bytes(sig.value[:32], "big"),
                               int.from_bytes(sig.value[32:], "big"))
    pub.verify(der, msg, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        pub.verify(sig.value, msg, ec.ECDSA(hashes.SHA256()))
    # A DER-encoded signature is not accepted by the format.
    assert not z.ecdsa_verify(pub, der, msg)


def test_signature_algorithm_relabelled_is_rejected(keyring, user_key):
    neg = {n["name"]: n for n in VECTORS["negative"]}["signature-algorithm-relabelled"]
    env = z.decode_envelope(h(neg["envelope"]))
    assert env.signature.algorithm == "RSA_PSS_SHA256"
    pub = keyring[(env.signature.key_id, env.signature.key_version)]
    assert z.signature_algorithm_of(pub) == "ECDSA_P256_SHA256"
    with pytest.raises(z.EnvelopeError) as ei:
        z.open_envelope(h(neg["envelope"]), policy(keyring, True), [user_key])
    assert ei.value.code == "bad_signature"


def test_untrusted_signer_even_when_not_required(keyring, user_key):
    neg = {n["name"]: n for n in VECTORS["negative"]}["untrusted-signer"]
    with pytest.raises(z.EnvelopeError) as ei:
        z.open_envelope(h(neg["envelope"]), policy(keyring, False), [user_key])
    assert ei.value.code == "untrusted_signer"


# ---------------------------------------------------------------------------
# Revised vectors: what the negative vectors really test (section 13)
# ---------------------------------------------------------------------------
def test_negative_vectors_cover_every_error_code():
    assert {n["expected_error"] for n in VECTORS["negative"]} == set(z.ERROR_CODES)


def test_commitment_mismatch_vector_is_aead_valid(user_key):
    """The vector isolates step 6: the payload opens under the AAD carrying the wrong
    commitment, so only the commitment check rejects it (finding F16)."""
    neg = {n["name"]: n for n in VECTORS["negative"]}["commitment-mismatch-aead-valid"]
    env = z.decode_envelope(h(neg["envelope"]))
    (r,) = [r for r in env.recipients if user_key.addresses(r)]
    dek = user_key.unwrap(env.header.tenant, r)
    assert dek is not None
    assert z.key_commitment(dek, env.header.message_id) != env.header.key_commitment
    z.open_blob(z.payload_key(dek, env.header.message_id), env.payload,
                z.build_aad(env.header, env.recipients))


def test_vector_created_at_matches_message_id():
    for c in VECTORS["cases"]:
        i = c["inputs"]
        assert z.uuid_v7_timestamp_ms(mid(i["message_id"])) == i["created_at_ms"]


def test_sealer_keeps_created_at_equal_to_uuid_timestamp(user_key):
    m = z.new_uuid_v7(1_700_000_000_000)
    base = dict(tenant="clinic-a", subject="s", kind="RECORD", purpose="TREATMENT",
                content_type="t", schema_id=0, plaintext=b"", recipients=[user_key],
                message_id=m)
    assert z.seal(**base, created_at_ms=1_700_000_000_000).parsed.header.created_at_ms == \
        1_700_000_000_000
    with pytest.raises(z.SealError):
        z.seal(**base, created_at_ms=1_700_000_000_001)
