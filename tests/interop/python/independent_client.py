#!/usr/bin/env python3
"""An independent zenvelope client: seals requests with the spec's Python implementation
(zenvelope_v1.py, written from docs/envelope-spec.md alone), produces them with
confluent-kafka (librdkafka, not this repository's Rust client), reads the results topic,
verifies and opens each answer with the user's key, and decodes the AnalysisResult datum
with fastavro against schemas/avro/analysis-result.avsc.

Usage:
    independent_client.py --keys KEYS.json --bootstrap HOST:PORT [--requests N] [--timeout S]
    independent_client.py --keys KEYS.json --bootstrap HOST:PORT --read-sdk-requests N

The second form produces nothing: it consumes the first N requests on the request topic
(as the Rust producer SDK sealed them), verifies each producer signature, opens each with
the user's key, decodes the AnalysisRequest datum with fastavro against
schemas/avro/analysis-request.avsc and prints {"read": {message_id: {...}}, "rejected": [...]}.

KEYS.json (hex for binary values): tenant, identity, passphrase, iterations, subject,
producer_key_id, producer_key_version, producer_private_pkcs8, fleet_key_id,
fleet_key_version, fleet_public_spki, result_key_id, result_key_version,
result_public_spki.

Each request's text is "Independent client request REQ-<n>"; prints one JSON object:
{"sent": N, "answered": {message_id: {"kind", "output", "provider", "model"}}, ...}.
Exit status 0 when every request got a verified answer, 1 otherwise, 2 on bad usage.
"""
from __future__ import annotations

import argparse
import io
import json
import struct
import sys
import time
import uuid
from pathlib import Path

import fastavro
from confluent_kafka import Consumer, KafkaError, Producer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zenvelope_v1 as z  # noqa: E402

REQUESTS_TOPIC = "zenvelope.requests"
RESULTS_TOPIC = "zenvelope.results"
ENVELOPE_SCHEMA_ID = 1  # spec 4.3: the offline catalog's id for the envelope schema
TEXT = "text/plain; charset=utf-8"
AVSC = Path(__file__).resolve().parents[3] / "schemas" / "avro" / "analysis-result.avsc"
REQUEST_AVSC = AVSC.with_name("analysis-request.avsc")
ANALYSIS_REQUEST = "application/vnd.zenvelope.analysis-request+avro"


def frame(avro: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", ENVELOPE_SCHEMA_ID) + avro


def unframe(value: bytes) -> tuple[int, bytes]:
    if len(value) < 5 or value[0] != 0:
        raise ValueError("not a Confluent-framed value")
    return struct.unpack(">I", value[1:5])[0], value[5:]


def opened_records(args, topic: str, policy, user, rejected: list[str], done):
    """Reads `topic` from the beginning with a group of its own and yields (record, opened)
    for each record that verifies under `policy` and opens with `user`'s key; why the others
    did not goes to `rejected`. Stops when done() is true or after args.timeout seconds."""
    consumer = Consumer({"bootstrap.servers": args.bootstrap,
                         "group.id": f"independent-client-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "fetch.wait.max.ms": 50})
    consumer.subscribe([topic])
    deadline = time.monotonic() + args.timeout
    try:
        while not done() and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    rejected.append(f"consumer error: {msg.error()}")
                continue
            try:
                _, datum = unframe(msg.value())
                opened = z.open_envelope(datum, policy, [user])
            except (ValueError, z.EnvelopeError) as e:
                rejected.append(f"{type(e).__name__}: {e}")
                continue
            yield msg, opened
    finally:
        consumer.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", required=True, type=Path)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--read-sdk-requests", type=int, default=0)
    args = ap.parse_args()
    if args.read_sdk_requests:
        return read_sdk_requests(args)
    k = json.loads(args.keys.read_text())
    h = bytes.fromhex

    user = z.UserKey.derive(k["tenant"], k["identity"], k["passphrase"], k["iterations"])
    fleet = z.RsaPublicRecipientKey(k["fleet_key_id"], k["fleet_key_version"],
                                    z.load_public_spki_der(h(k["fleet_public_spki"])))
    signer = z.SigningKey(k["producer_key_id"], k["producer_key_version"],
                          z.load_private_pkcs8_der(h(k["producer_private_pkcs8"])))
    results_policy = z.Policy(require_signature=True, trusted_keys={
        (k["result_key_id"], k["result_key_version"]):
            z.load_public_spki_der(h(k["result_public_spki"])),
    })
    schema = fastavro.parse_schema(json.loads(AVSC.read_text()))

    producer = Producer({"bootstrap.servers": args.bootstrap, "enable.idempotence": True,
                         "acks": "all"})
    sent: dict[str, int] = {}
    for n in range(args.requests):
        sealed = z.seal(tenant=k["tenant"], subject=k["subject"], kind="REQUEST",
                        purpose="INDIVIDUAL_REQUEST", content_type=TEXT, schema_id=0,
                        plaintext=f"Independent client request REQ-{n}".encode(),
                        recipients=[user, fleet], signer=signer)
        mid = str(uuid.UUID(bytes=sealed.parsed.header.message_id))
        producer.produce(REQUESTS_TOPIC, key=k["subject"].encode(), value=frame(sealed.envelope))
        sent[mid] = n
    if producer.flush(30) != 0:
        print(json.dumps({"error": "requests not acknowledged"}))
        return 1

    answered: dict[str, dict] = {}
    rejected: list[str] = []
    for _, opened in opened_records(args, RESULTS_TOPIC, results_policy, user, rejected,
                                    lambda: len(answered) >= len(sent)):
        header = opened.envelope.header
        cid = str(uuid.UUID(bytes=header.correlation_id)) if header.correlation_id else None
        if cid not in sent:
            continue  # an answer to someone else's request
        if header.content_type == "application/vnd.zenvelope.analysis-result+avro":
            result = fastavro.schemaless_reader(io.BytesIO(opened.plaintext), schema)
            answered[cid] = {"kind": header.kind, "output": result["output"],
                             "provider": result["provider"], "model": result["model"]}
        else:
            answered[cid] = {"kind": header.kind,
                             "output": opened.plaintext.decode("utf-8", "replace")}
    print(json.dumps({"sent": len(sent), "requests": {m: n for m, n in sent.items()},
                      "answered": answered, "rejected": rejected}))
    return 0 if len(answered) == len(sent) else 1


def read_sdk_requests(args) -> int:
    """Verifies, opens and decodes requests the Rust SDK produced."""
    k = json.loads(args.keys.read_text())
    h = bytes.fromhex
    user = z.UserKey.derive(k["tenant"], k["identity"], k["passphrase"], k["iterations"])
    producer_public = z.load_private_pkcs8_der(h(k["producer_private_pkcs8"])).public_key()
    policy = z.Policy(require_signature=True, trusted_keys={
        (k["producer_key_id"], k["producer_key_version"]): producer_public,
    })
    schema = fastavro.parse_schema(json.loads(REQUEST_AVSC.read_text()))
    read: dict[str, dict] = {}
    rejected: list[str] = []
    for msg, opened in opened_records(args, REQUESTS_TOPIC, policy, user, rejected,
                                      lambda: len(read) + len(rejected) >= args.read_sdk_requests):
        header = opened.envelope.header
        if header.content_type != ANALYSIS_REQUEST or header.kind != "REQUEST":
            rejected.append(f"unexpected {header.kind} {header.content_type}")
            continue
        request = fastavro.schemaless_reader(io.BytesIO(opened.plaintext), schema)
        read[str(uuid.UUID(bytes=header.message_id))] = {
            "subject": header.subject, "purpose": header.purpose,
            "key": (msg.key() or b"").decode("utf-8", "replace"),
            "instruction": request["instruction"], "text": request["input"]["text"],
            "client_reference": request["client_reference"],
        }
    print(json.dumps({"read": read, "rejected": rejected}))
    return 0 if len(read) == args.read_sdk_requests and not rejected else 1


if __name__ == "__main__":
    sys.exit(main())
