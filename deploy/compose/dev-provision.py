#!/usr/bin/env python3
"""DANGER, DEV ONLY: make the throwaway keys the docker compose stack runs on.

Run by the `dev-provision` one-shot service of docker-compose.yml (image target
`dev-provision` of the Dockerfile) before any zenvelope service starts. Everything it
writes goes to the `dev-state` volume (ZENVELOPE_DEV_STATE, /var/lib/zenvelope/dev), is
named `danger-dev-*` when it is secret, and is readable by the services' user only.

What it does, idempotently:
1. The backend's producer signing key and the tenant's metadata key, with
   `zenvelope keys generate` (kept across restarts: a new metadata key would change every
   subject pseudonym).
2. The audit checkpoint signing key, with `audit-sink --new-key` (kept).
3. The fleet key (RSA-3072) and the result-signing key (ECDSA P-256), each sealed with
   KMS Encrypt under a key of the KMS emulator (moto), with the encryption context the
   enclave asks for ({"zenvelope:purpose", "zenvelope:key-id", "zenvelope:key-version"}).
   Only the ciphertexts are kept; the private keys never touch the disk. moto keeps its
   keys in memory, so when the emulator restarted (its key is gone) new keys are made.
4. enclave-app.toml from the template in deploy/compose, with those ciphertexts and the
   producer key the enclave trusts filled in.
5. client.toml for `docker compose run --rm cli ...` (the producer SDK's configuration):
   broker, the producer key files, and the key directory policy pinning the dev
   attestation root and the dev PCR0.

On AWS none of this exists: keys are sealed under the KMS key of
infra/terraform/kms.tf by a provisioning role, and KMS releases them only to an enclave
whose attestation document carries the released image's PCR0.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pathlib
import subprocess
import sys

STATE = pathlib.Path(os.environ.get("ZENVELOPE_DEV_STATE", "/var/lib/zenvelope/dev"))
TEMPLATE = pathlib.Path(
    os.environ.get("ZENVELOPE_APP_TEMPLATE", "/etc/zenvelope/enclave-app.toml")
)
KMS_ENDPOINT = os.environ.get("ZENVELOPE_DEV_KMS_ENDPOINT", "http://kms:4566")
KMS_REGION = os.environ.get("ZENVELOPE_DEV_KMS_REGION", "us-east-1")
BOOTSTRAP = os.environ.get("ZENVELOPE_DEV_BOOTSTRAP", "kafka:9092")
TENANT = os.environ.get("ZENVELOPE_DEV_TENANT", "demo-clinic")
AUDIT_ORIGIN = os.environ.get("ZENVELOPE_DEV_AUDIT_ORIGIN", "zenvelope.dev/audit")
ZENVELOPE = os.environ.get("ZENVELOPE_BIN", "zenvelope")
AUDIT_SINK = os.environ.get("AUDIT_SINK_BIN", "audit-sink")

PRODUCER_KEY_ID = "journal-backend"
PRODUCER_KEY_VERSION = 1
FLEET_KEY_ID = "fleet"
RESULT_KEY_ID = "fleet-results"
KEY_VERSION = 1

# Must match enclave-worker/src/kms/client.rs.
CONTEXT_PURPOSE = "zenvelope:purpose"
CONTEXT_KEY_ID = "zenvelope:key-id"
CONTEXT_KEY_VERSION = "zenvelope:key-version"
PURPOSE_FLEET_KEY = "fleet-key"
PURPOSE_SIGNING_KEY = "result-signing-key"

# The label enclave-app's danger_dev attestor derives its PCRs from
# (DEV_MEASUREMENT_LABEL in enclave-worker/src/app/launch.rs; dev_measurements in
# enclave-worker/attestation/src/danger.rs): PCRi = SHA-384("zenvelope/dev-pcr/" || label || i).
DEV_MEASUREMENT_LABEL = b"enclave-app"

# Placeholders in deploy/compose/enclave-app.toml.
PLACEHOLDER_FLEET = "DEV-PROVISION:fleet-key-ciphertext"
PLACEHOLDER_RESULT = "DEV-PROVISION:result-signing-key-ciphertext"
PLACEHOLDER_SPKI = "DEV-PROVISION:producer-spki-hex"


def log(message: str) -> None:
    print(f"[dev-provision] {message}", flush=True)


def dev_pcr(index: int) -> str:
    """The PCR the danger_dev attestor reports at `index` (0..=2), lowercase hex."""
    digest = hashlib.sha384()
    digest.update(b"zenvelope/dev-pcr/")
    digest.update(DEV_MEASUREMENT_LABEL)
    digest.update(bytes([index]))
    return digest.hexdigest()


def write(path: pathlib.Path, data: bytes | str, secret: bool) -> None:
    """Writes atomically; secret files are owner-only."""
    tmp = path.with_name(path.name + ".tmp")
    mode = 0o600 if secret else 0o644
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data.encode() if isinstance(data, str) else data)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def producer_keys() -> tuple[pathlib.Path, pathlib.Path]:
    private = STATE / f"danger-dev-{PRODUCER_KEY_ID}-v{PRODUCER_KEY_VERSION}.pk8"
    public = STATE / f"{PRODUCER_KEY_ID}-v{PRODUCER_KEY_VERSION}-public.der"
    if private.exists() and public.exists():
        log(f"producer key {PRODUCER_KEY_ID} v{PRODUCER_KEY_VERSION}: kept")
    else:
        subprocess.run(
            [ZENVELOPE, "keys", "generate", "--out", str(STATE),
             "--key-id", PRODUCER_KEY_ID, "--version", str(PRODUCER_KEY_VERSION), "--force"],
            check=True,
        )
        log(f"producer key {PRODUCER_KEY_ID} v{PRODUCER_KEY_VERSION} and metadata key: generated")
    return private, public


def audit_key() -> None:
    key = STATE / "danger-dev-audit.key"
    if key.exists():
        log("audit checkpoint key: kept")
        return
    subprocess.run(
        [AUDIT_SINK, "--new-key", AUDIT_ORIGIN, "--key-file", str(key),
         "--vkey-file", str(STATE / "audit.vkey")],
        check=True,
    )
    log(f"audit checkpoint key for {AUDIT_ORIGIN}: generated (verifier key in audit.vkey)")


def kms_client():
    import boto3  # Debian's python3-boto3 in the dev-provision image.

    # moto accepts any credentials; these name themselves so nobody mistakes them.
    return boto3.client(
        "kms",
        endpoint_url=KMS_ENDPOINT,
        region_name=KMS_REGION,
        aws_access_key_id="DANGER-dev-moto",
        aws_secret_access_key="DANGER-dev-moto",
    )


def context(purpose: str, key_id: str, version: int) -> dict[str, str]:
    return {CONTEXT_PURPOSE: purpose, CONTEXT_KEY_ID: key_id, CONTEXT_KEY_VERSION: str(version)}


def sealed_keys() -> dict[str, str]:
    """The KMS ciphertexts of the fleet and result-signing keys, made when needed."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    kms = kms_client()
    record = STATE / "sealed-keys.json"
    if record.exists():
        sealed = json.loads(record.read_text())
        try:
            kms.describe_key(KeyId=sealed["kms_key_id"])
            log(f"sealed fleet keys under KMS key {sealed['kms_key_id']}: kept")
            return sealed
        except kms.exceptions.NotFoundException:
            log("the KMS emulator lost its key (restarted): sealing new fleet keys")

    key_id = kms.create_key(Description="DANGER dev zenvelope fleet key (moto)")["KeyMetadata"]["KeyId"]
    pkcs8 = dict(
        encoding=serialization.Encoding.DER,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    fleet = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    result = ec.generate_private_key(ec.SECP256R1())

    def seal(private_der: bytes, purpose: str, name: str) -> str:
        blob = kms.encrypt(
            KeyId=key_id,
            Plaintext=private_der,
            EncryptionContext=context(purpose, name, KEY_VERSION),
        )["CiphertextBlob"]
        return base64.b64encode(blob).decode()

    sealed = {
        "kms_key_id": key_id,
        "fleet": seal(fleet.private_bytes(**pkcs8), PURPOSE_FLEET_KEY, FLEET_KEY_ID),
        "result_signing": seal(result.private_bytes(**pkcs8), PURPOSE_SIGNING_KEY, RESULT_KEY_ID),
    }
    # The result key's public half, for `zenvelope replay --result-key` and
    # `zenvelope audit disclosures --result-key`.
    write(
        STATE / f"{RESULT_KEY_ID}-v{KEY_VERSION}-public.der",
        result.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        secret=False,
    )
    # Ciphertexts only: useless without the KMS key, but still dev material.
    write(record, json.dumps(sealed, indent=2) + "\n", secret=True)
    log(f"fleet key {FLEET_KEY_ID} v{KEY_VERSION} and result key {RESULT_KEY_ID} v{KEY_VERSION}: sealed under KMS key {key_id}")
    return sealed


def render_app_config(sealed: dict[str, str], producer_public: pathlib.Path) -> None:
    text = TEMPLATE.read_text()
    for placeholder in (PLACEHOLDER_FLEET, PLACEHOLDER_RESULT, PLACEHOLDER_SPKI):
        if text.count(placeholder) != 1:
            sys.exit(f"[dev-provision] {TEMPLATE} must hold {placeholder} exactly once")
    text = (
        text.replace(PLACEHOLDER_FLEET, sealed["fleet"])
        .replace(PLACEHOLDER_RESULT, sealed["result_signing"])
        .replace(PLACEHOLDER_SPKI, producer_public.read_bytes().hex())
    )
    header = "# Written by dev-provision from deploy/compose/enclave-app.toml: DANGER, DEV ONLY.\n"
    write(STATE / "enclave-app.toml", header + text, secret=True)
    log("enclave-app.toml: written")


def write_client_config(producer_private: pathlib.Path) -> None:
    text = f"""# Written by dev-provision: DANGER, DEV ONLY. The key files next to this one are
# throwaway dev keys; the attestation root is the dev CA enclave-app writes at start-up,
# which proves nothing about an enclave. Production pins root = "aws_nitro" and the PCR0
# recorded by infra/enclave/build-enclave.sh.
tenant = "{TENANT}"

[kafka]
bootstrap_servers = "{BOOTSTRAP}"

[keys]
signing_key_file = "{producer_private.name}"
signing_key_id = "{PRODUCER_KEY_ID}"
signing_key_version = {PRODUCER_KEY_VERSION}
metadata_key_file = "danger-dev-metadata.key"

[key_directory]
root = "danger_dev"
danger_dev_root_file = "danger-dev-attestation-root.der"
pcrs = {{ 0 = "{dev_pcr(0)}" }}
"""
    write(STATE / "client.toml", text, secret=False)
    log("client.toml: written (dev PCR0 pinned)")


def main() -> int:
    os.umask(0o077)
    STATE.mkdir(parents=True, exist_ok=True)
    log(f"state in {STATE}; KMS emulator at {KMS_ENDPOINT}")
    producer_private, producer_public = producer_keys()
    audit_key()
    sealed = sealed_keys()
    render_app_config(sealed, producer_public)
    write_client_config(producer_private)
    log("done: DEV keys only; never use this volume outside a local stack")
    return 0


if __name__ == "__main__":
    sys.exit(main())
