"""Interop tests for the audit log formats, independent of the Rust code: an RFC 9162
Merkle proof verifier (sections 2.1.3.2 and 2.1.4.2) and a C2SP signed-note /
tlog-checkpoint verifier, written in Python from the specifications and checked
against published vectors:

* the 8-leaf RFC 6962 test tree of github.com/transparency-dev/merkle,
  proof/verify_test.go (leaves, roots, inclusionProofs, consistencyProofs; the
  inclusion vectors there use 1-based leaf numbers, here 0-based indices);
* golang.org/x/mod sumdb/note/note_test.go (PeterNeumann and EnochRoot keys, the
  Peter Neumann quote and its signatures);
* github.com/transparency-dev/formats log/note_test.go (a signed tree head of
  sum.golang.org and its verifier key).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

h = bytes.fromhex

# ---------------------------------------------------------------------------
# RFC 6962 / RFC 9162 Merkle trees
# ---------------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) of RFC 6962 section 2.1, on leaf data."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((n - 1).bit_length() - 1)  # largest power of two < n
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_hash: bytes, second_hash: bytes,
                       proof: list[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2, plus the trivial cases (first == second, first == 0)
    as transparency-dev handles them."""
    if first > second:
        return False
    if first == second:
        return not proof and first_hash == second_hash
    if first == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


LEAVES = [h(x) for x in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                         "606162636465666768696a6b6c6d6e6f"]]
ROOTS = [h(x) for x in [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]]
INCLUSION = [
    (0, 1, []),
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]


def flip(proof: list[bytes], i: int, mask: int) -> list[bytes]:
    out = list(proof)
    out[i] = bytes([out[i][0] ^ mask]) + out[i][1:]
    return out


def test_roots():
    assert mth([]) == h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    for n in range(1, 9):
        assert mth(LEAVES[:n]) == ROOTS[n - 1]


@pytest.mark.parametrize("index,size,proof", INCLUSION)
def test_inclusion_vectors(index, size, proof):
    proof = [h(p) for p in proof]
    leaf, root = leaf_hash(LEAVES[index]), ROOTS[size - 1]
    assert verify_inclusion(leaf, index, size, proof, root)
    assert not verify_inclusion(leaf_hash(b"WrongLeaf"), index, size, proof, root)
    assert not verify_inclusion(leaf, index, size, proof, mth([]))
    for bad_index in (index - 1, index + 1, index ^ 2):
        if bad_index >= 0:
            assert not verify_inclusion(leaf, bad_index, size, proof, root)
    for bad_size in (size * 2, size // 2):
        assert not verify_inclusion(leaf, index, bad_size, proof, root)
    assert not verify_inclusion(leaf, index, size, proof + [root], root)
    assert not verify_inclusion(leaf, index, size, [root] + proof, root)
    for i in range(len(proof)):
        assert not verify_inclusion(leaf, index, size, flip(proof, i, 8), root)
    if proof:
        assert not verify_inclusion(leaf, index, size, proof[:-1], root)


@pytest.mark.parametrize("old,new,proof", CONSISTENCY)
def test_consistency_vectors(old, new, proof):
    proof = [h(p) for p in proof]
    r1, r2 = ROOTS[old - 1], ROOTS[new - 1]
    assert verify_consistency(old, new, r1, r2, proof)
    if not proof:
        return
    wrong = leaf_hash(b"WrongRoot")
    probes = [
        (old - 1, new, r1, r2, proof), (old + 1, new, r1, r2, proof),
        (old ^ 2, new, r1, r2, proof), (old, new * 2, r1, r2, proof),
        (old, new // 2, r1, r2, proof), (old, new, wrong, r2, proof),
        (old, new, r1, wrong, proof), (old, new, r2, r1, proof), (old, new, r1, r2, []),
        (old, new, r1, r2, proof + [r1]), (old, new, r1, r2, [r1] + proof),
        (old, new, r1, r2, [proof[0]] + proof), (old, new, r1, r2, proof[:-1]),
    ] + [(old, new, r1, r2, flip(proof, i, 16)) for i in range(len(proof))]
    for o, n, a, b, p in probes:
        assert not verify_consistency(o, n, a, b, p), (o, n, p)


# ---------------------------------------------------------------------------
# C2SP signed notes (Ed25519) and tlog checkpoints
# ---------------------------------------------------------------------------
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = ("If you think cryptography is the answer to your problem,\n"
        "then you don't know what your problem is.\n")
PETER_SIG = ("\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2p"
             "ZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")
ENOCH_SIG = ("\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG"
             "01oOTGwnWLox33WWd1RvMc+QQ=\n")
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_NOTE = ("go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\n"
              "\u2014 sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95"
              "949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n")


def b64decode_strict(s: str) -> bytes:
    raw = base64.b64decode(s, validate=True)
    if base64.b64encode(raw).decode() != s:
        raise ValueError("non-canonical base64")
    return raw


def valid_name(name: str) -> bool:
    return name != "" and "+" not in name and not any(c.isspace() for c in name)


def key_id(name: str, public_key: bytes) -> int:
    return int.from_bytes(hashlib.sha256(name.encode() + b"\n\x01" + public_key).digest()[:4], "big")


class Verifier:
    def __init__(self, vkey: str):
        name, id_hex, key64 = vkey.split("+", 2)
        if not valid_name(name) or not re.fullmatch(r"[0-9a-fA-F]{8}", id_hex):
            raise ValueError("malformed verifier key")
        key = b64decode_strict(key64)
        if len(key) != 33 or key[0] != 1:
            raise ValueError("not an Ed25519 key")
        if key_id(name, key[1:]) != int(id_hex, 16):
            raise ValueError("key id mismatch")
        self.name, self.id, self.key = name, int(id_hex, 16), Ed25519PublicKey.from_public_bytes(key[1:])

    def verify(self, msg: bytes, sig: bytes) -> bool:
        try:
            self.key.verify(sig, msg)
            return True
        except InvalidSignature:
            return False


def open_note(note: str, verifiers: list[Verifier]) -> tuple[str, list[str]]:
    """Returns (text, names of the keys that verified); raises ValueError."""
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise ValueError("control character")
    split = note.rfind("\n\n")
    if split < 0:
        raise ValueError("no signature block")
    text, sigs = note[: split + 1], note[split + 2:]
    if not sigs.endswith("\n"):
        raise ValueError("no final newline")
    lines = sigs[:-1].split("\n")
    if len(lines) > 100:
        raise ValueError("too many signatures")
    verified: list[str] = []
    for line in lines:
        if not line.startswith("\u2014 "):
            raise ValueError("bad signature line")
        name, _, b64 = line[2:].partition(" ")
        try:
            raw = b64decode_strict(b64)
        except (ValueError, binascii.Error) as e:
            raise ValueError("bad base64") from e
        if not valid_name(name) or len(raw) < 5:
            raise ValueError("bad signature line")
        kid = int.from_bytes(raw[:4], "big")
        for v in verifiers:
            if v.name == name and v.id == kid:
                if name in verified:
                    break
                if not v.verify(text.encode(), raw[4:]):
                    raise ValueError("invalid signature")
                verified.append(name)
                break
    if not verified:
        raise ValueError("no trusted signature")
    return text, verified


def parse_checkpoint(text: str) -> tuple[str, int, bytes, list[str]]:
    if not text.endswith("\n"):
        raise ValueError("no final newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or not lines[0] or any(not line for line in lines[3:]):
        raise ValueError("bad lines")
    if not re.fullmatch(r"0|[1-9][0-9]*", lines[1]) or int(lines[1]) >= 1 << 64:
        raise ValueError("bad size")
    root = b64decode_strict(lines[2])
    if len(root) != 32:
        raise ValueError("bad root")
    return lines[0], int(lines[1]), root, lines[3:]


def test_go_keys():
    peter = Verifier(PETER_VKEY)
    assert (peter.name, peter.id) == ("PeterNeumann", 0xC74F20A3)
    assert Verifier(ENOCH_VKEY).id == 0xAF0CFE78
    # The private key derives the public key (seed -> Ed25519 key pair, RFC 8032).
    # The base64 key data may itself contain '+', so split only four times.
    private, key, name, kid, seed64 = PETER_SKEY.split("+", 4)
    assert (private, key, name, kid) == ("PRIVATE", "KEY", "PeterNeumann", "c74f20a3")
    seed = b64decode_strict(seed64)
    assert seed[0] == 1 and len(seed) == 33
    public = Ed25519PrivateKey.from_private_bytes(seed[1:]).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)
    assert "PeterNeumann+c74f20a3+" + base64.b64encode(b"\x01" + public).decode() == PETER_VKEY
    for bad in [PETER_VKEY.replace("c74f20a3", "c74f20a4"), PETER_VKEY[:-1],
                "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"]:
        with pytest.raises(ValueError):
            Verifier(bad)


def test_go_signature_is_reproduced():
    seed = b64decode_strict(PETER_SKEY.split("+", 4)[4])[1:]
    sig = Ed25519PrivateKey.from_private_bytes(seed).sign(TEXT.encode())
    line = "\u2014 PeterNeumann " + base64.b64encode((0xC74F20A3).to_bytes(4, "big") + sig).decode() + "\n"
    assert line == PETER_SIG


def test_open_go_notes():
    peter, enoch = Verifier(PETER_VKEY), Verifier(ENOCH_VKEY)
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(note, [peter]) == (TEXT, ["PeterNeumann"])
    assert open_note(note, [peter, enoch]) == (TEXT, ["PeterNeumann", "EnochRoot"])
    bad = [
        (note, []),
        (TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:], [peter]),
        (TEXT.replace("problem,", "problem!") + "\n" + PETER_SIG, [peter]),
        (TEXT + "\n" + PETER_SIG * 101, [peter]),
        (TEXT, [peter]),
        (TEXT + "\n", [peter]),
        (TEXT + "\n" + PETER_SIG[:-1], [peter]),
        ("\x01" + TEXT + "\n" + PETER_SIG, [peter]),
        (TEXT + "\n" + PETER_SIG + "Unexpected line.\n", [peter]),
    ]
    for n, vs in bad:
        with pytest.raises(ValueError):
            open_note(n, vs)
    assert open_note(TEXT + "\n" + PETER_SIG * 100, [peter]) == (TEXT, ["PeterNeumann"])


def test_sumdb_checkpoint():
    v = Verifier(SUMDB_VKEY)
    text, names = open_note(SUMDB_NOTE, [v])
    assert names == ["sum.golang.org"]
    origin, size, root, ext = parse_checkpoint(text)
    assert (origin, size, ext) == ("go.sum database tree", 6476701, [])
    assert root.hex() == "99bf102d022cd19d323f90acb6aea0ba3f3ba1759e0bd80433ca158a49a6f569"
    with pytest.raises(ValueError):
        open_note(SUMDB_NOTE.replace("6476701", "6476702"), [v])
    for bad in ["log\n042\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
                "\n42\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
                "log\n42\nYmFuYW5hcw==\n",
                "log\n42\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n\n"]:
        with pytest.raises(ValueError):
            parse_checkpoint(bad)


# ---------------------------------------------------------------------------
# Disclosure receipts (docs/audit.md, AuditEvent::receipt_digest)
# ---------------------------------------------------------------------------

import json
import pathlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_der_public_key

RECEIPT_VECTOR = json.loads(
    (pathlib.Path(__file__).resolve().parents[3] / "schemas/vectors/disclosure-receipt-v1.json").read_text("utf-8")
)


def _u32(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _symbol(name: str) -> bytes:
    return bytes([len(name)]) + name.encode("ascii")


def _opt(text: str | None) -> bytes:
    return b"\x00" if text is None else b"\x01" + _u32(text.encode("utf-8"))


def receipt_digest(r: dict, key_id: str, key_version: int, algorithm: str) -> bytes:
    """The receipt digest as the rustdoc of AuditEvent::receipt_digest lays it out."""
    out = b"zenvelope/v1/disclosure-receipt"
    out += _u32(r["event_id"].encode()) + r["occurred_at_ms"].to_bytes(8, "big", signed=True)
    for field in ("tenant", "subject", "actor"):
        out += _u32(r[field].encode("utf-8"))
    out += _symbol(r["outcome"])
    for field in ("reason_code", "message_id", "enclave_measurement", "request_sha256", "result_sha256"):
        out += _opt(r[field])
    out += _u32(r["provider"].encode("utf-8")) + _u32(r["model"].encode("utf-8")) + _symbol(r["purpose"])
    out += _u32(key_id.encode("utf-8")) + key_version.to_bytes(4, "big", signed=True) + _symbol(algorithm)
    return hashlib.sha256(out).digest()


def _verify_receipt(r: dict) -> bool:
    s = RECEIPT_VECTOR["signature"]
    digest = receipt_digest(r, s["key_id"], s["key_version"], s["algorithm"])
    key = load_der_public_key(h(RECEIPT_VECTOR["public_key_spki_der_hex"]))
    raw = h(s["value_hex"])
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        key.verify(der, digest, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


def test_the_receipt_digest_is_reproduced_independently():
    s = RECEIPT_VECTOR["signature"]
    digest = receipt_digest(RECEIPT_VECTOR["receipt"], s["key_id"], s["key_version"], s["algorithm"])
    assert digest.hex() == RECEIPT_VECTOR["digest_hex"]


def test_the_receipt_signature_verifies_and_an_edited_receipt_does_not():
    receipt = RECEIPT_VECTOR["receipt"]
    assert _verify_receipt(receipt)
    for field, value in [("subject", "sp1_someone_else"), ("purpose", "RESEARCH"),
                         ("reason_code", ""), ("occurred_at_ms", receipt["occurred_at_ms"] + 1)]:
        assert not _verify_receipt({**receipt, field: value}), field
