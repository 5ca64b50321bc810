"""Negative self-tests of scripts/check-deploy: it must fail on what it exists to catch.

    python3 -m pytest infra/tests -q

Each test feeds the checker one broken input (a KMS key policy that releases the fleet
key without attestation, a Dockerfile that runs as root, a compose file or topic list
that lost a guarantee) and asserts that it exits non-zero naming the problem. One test
runs it on the repository as it is and expects success. Needs infra/requirements-check.txt.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT / "scripts" / "check-deploy"
POLICY = ROOT / "infra/terraform/policies/fleet-key-policy.json.tftpl"
PCR0 = "ab" * 48


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECKER), *args], capture_output=True, text=True, timeout=120)


def policy(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


RELEASE = {
    "Sid": "Release",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::123456789012:role/zenvelope-enclave-host"},
    "Action": "kms:Decrypt",
    "Resource": "*",
    "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": [PCR0]}},
}
DENY_UNATTESTED = {
    "Sid": "Deny",
    "Effect": "Deny",
    "Principal": {"AWS": "*"},
    "Action": "kms:Decrypt",
    "Resource": "*",
    "Condition": {"Null": {"kms:RecipientAttestation:ImageSha384": "true"}},
}


def check_policy(tmp_path: Path, document: dict) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(document))
    return run("--only", "kms-policy", "--kms-policy", str(path))


def test_the_repository_passes() -> None:
    result = run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checks hold" in result.stdout


def test_a_good_policy_passes(tmp_path: Path) -> None:
    result = check_policy(tmp_path, policy(RELEASE, DENY_UNATTESTED))
    assert result.returncode == 0, result.stdout


def test_decrypt_without_the_attestation_condition_fails(tmp_path: Path) -> None:
    unconditioned = {k: v for k, v in RELEASE.items() if k != "Condition"}
    result = check_policy(tmp_path, policy(unconditioned, DENY_UNATTESTED))
    assert result.returncode == 1
    assert "allows kms:Decrypt only with kms:RecipientAttestation" in result.stdout
    assert "some statement releases the key to an attested enclave image" in result.stdout


def test_a_second_statement_granting_decrypt_to_the_instance_role_fails(tmp_path: Path) -> None:
    # The attested statement is there, but a second one hands the same role Decrypt
    # through a wildcard action with no condition: the attested one protects nothing.
    backdoor = {
        "Sid": "Backdoor",
        "Effect": "Allow",
        "Principal": {"AWS": RELEASE["Principal"]["AWS"]},
        "Action": "kms:*",
        "Resource": "*",
    }
    result = check_policy(tmp_path, policy(RELEASE, backdoor, DENY_UNATTESTED))
    assert result.returncode == 1
    assert "Backdoor: allows kms:Decrypt only with" in result.stdout


def test_notaction_that_keeps_decrypt_fails(tmp_path: Path) -> None:
    root = {
        "Sid": "Root",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
        "NotAction": ["kms:Encrypt"],
        "Resource": "*",
    }
    result = check_policy(tmp_path, policy(RELEASE, root, DENY_UNATTESTED))
    assert result.returncode == 1
    assert "Root: allows kms:Decrypt only with" in result.stdout


def test_wildcard_or_zero_measurements_and_wildcard_principals_fail(tmp_path: Path) -> None:
    like = json.loads(json.dumps(RELEASE))
    like["Condition"] = {"StringLike": {"kms:RecipientAttestation:ImageSha384": "*"}}
    assert check_policy(tmp_path, policy(like, DENY_UNATTESTED)).returncode == 1
    zeros = json.loads(json.dumps(RELEASE))
    zeros["Condition"]["StringEqualsIgnoreCase"]["kms:RecipientAttestation:ImageSha384"] = ["0" * 96]
    assert check_policy(tmp_path, policy(zeros, DENY_UNATTESTED)).returncode == 1
    anyone = json.loads(json.dumps(RELEASE))
    anyone["Principal"] = {"AWS": "*"}
    result = check_policy(tmp_path, policy(anyone, DENY_UNATTESTED))
    assert result.returncode == 1
    assert "not to * or an account root" in result.stdout


def test_missing_deny_fails(tmp_path: Path) -> None:
    result = check_policy(tmp_path, policy(RELEASE))
    assert result.returncode == 1
    assert "denied to everyone" in result.stdout


def test_the_terraform_template_without_its_condition_fails(tmp_path: Path) -> None:
    text = POLICY.read_text()
    broken = re.sub(r'"Condition": \{\s*"StringEqualsIgnoreCase".*?\n      \}\n', "", text, flags=re.S)
    assert broken != text
    path = tmp_path / "fleet-key-policy.json.tftpl"
    path.write_text(broken)
    result = run("--only", "kms-policy", "--kms-policy", str(path))
    assert result.returncode == 1, result.stdout


def dockerfile(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    return run("--only", "dockerfile", "--dockerfile", str(path))


def test_dockerfile_without_user_fails(tmp_path: Path) -> None:
    text = (ROOT / "Dockerfile").read_text()
    no_user = "\n".join(line for line in text.splitlines() if not line.startswith("USER"))
    result = dockerfile(tmp_path, no_user)
    assert result.returncode == 1
    assert "the final stage runs as a non-root USER (none: root)" in result.stdout


def test_dockerfile_ending_as_root_or_single_stage_fails(tmp_path: Path) -> None:
    text = (ROOT / "Dockerfile").read_text()
    result = dockerfile(tmp_path, text + "\nUSER root\n")
    assert result.returncode == 1 and "non-root USER (root)" in result.stdout
    result = dockerfile(tmp_path, "FROM rust:1.92-bookworm\nRUN cargo build\nUSER 1000\n")
    assert result.returncode == 1 and "multi-stage (1 stages)" in result.stdout


def test_compose_service_without_healthcheck_or_compaction_fails(tmp_path: Path) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    del compose["services"]["enclave-app"]["healthcheck"]
    compose["services"]["enclave-app"]["networks"] = {"default": {}, "enclave-link": {"ipv4_address": "10.77.77.3"}}
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(compose))
    result = run("--only", "compose", "--compose", str(path))
    assert result.returncode == 1
    assert "enclave-app: has a health check" in result.stdout
    assert "enclave-app is attached to enclave-link only" in result.stdout


def test_topic_list_that_loses_compaction_or_a_topic_fails(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    for relative in ("docker-compose.yml", "schemas/src/names.rs", "deploy", "infra/cql"):
        source, target = ROOT / relative, root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    conf = root / "deploy/kafka/topics.conf"
    text = conf.read_text()
    text = re.sub(r"(?m)^(zenvelope\.keys\s+\d+\s+)cleanup\.policy=compact", r"\1cleanup.policy=delete,retention.ms=1", text)
    text = re.sub(r"(?m)^zenvelope\.rejections .*\n", "", text)
    conf.write_text(text)
    result = run("--root", str(root), "--only", "compose")
    assert result.returncode == 1
    assert "zenvelope.keys is compacted" in result.stdout
    assert "missing ['zenvelope.rejections']" in result.stdout
