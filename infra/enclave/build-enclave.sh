#!/usr/bin/env bash
# Builds a release of the enclave image, measures it, and records the measurements that
# everything downstream pins.
#
#   infra/enclave/build-enclave.sh --config release/enclave-app.toml --version 2026.11.1 \
#       [--region eu-west-1] [--signing-cert cert.pem --signing-key key.pem] [--out DIR]
#   infra/enclave/build-enclave.sh --config FILE --region eu-west-1 --check-config-only
#
# Steps:
#   1. Refuse a configuration that is not fit for an enclave: any DANGER setting
#      (danger_dev attestation, KMS without Recipient, plain-HTTP models, unsigned
#      requests), TCP addresses instead of vsock, placeholder ciphertexts, a KMS endpoint
#      outside --region.
#   2. docker build infra/enclave/Dockerfile.enclave-app with that configuration baked in.
#   3. nitro-cli build-enclave --docker-uri ... --output-file OUT/zenvelope-enclave.eif
#      (optionally signed: PCR8 then pins the signing certificate).
#   4. Record PCR0/1/2 (and PCR8) with the EIF's SHA-256 in
#      infra/enclave/measurements/<version>.json. Commit that file: it is the release's
#      measurement of record. Then pin PCR0 in three places (printed at the end):
#        - Terraform: enclave_pcr0_allowlist and enclave_release (the KMS key policy's
#          kms:RecipientAttestation:ImageSha384 condition and the hosts' pre-flight check);
#        - producers: [key_directory] pcrs = { 0 = "..." } with root = "aws_nitro" in the
#          SDK's client configuration (the key directory refuses keys from other images);
#        - browser SDK deployments: the same PCR0 in their key directory policy.
#   5. Upload OUT/zenvelope-enclave.eif to s3://<release bucket>/enclave/<version>/.
#
# Needs: docker with BuildKit, nitro-cli (aws-nitro-enclaves-cli), python3 >= 3.11.
# Never pass --debug-mode anywhere: a debug enclave reports all-zero PCRs.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
config="" version="" region="eu-west-1" signing_cert="" signing_key=""
out="$repo/target/enclave" check_only=0

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while (($#)); do
  case $1 in
    --config) config=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --region) region=$2; shift 2 ;;
    --signing-cert) signing_cert=$2; shift 2 ;;
    --signing-key) signing_key=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --check-config-only) check_only=1; shift ;;
    -h | --help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done
[[ -n $config ]] || usage
[[ -f $config ]] || { echo "no such configuration: $config" >&2; exit 2; }

log() { printf '[build-enclave] %s\n' "$*"; }

# --- 1. the configuration gate -----------------------------------------------------
python3 - "$config" "$region" <<'PY'
import sys, tomllib

path, region = sys.argv[1], sys.argv[2]
with open(path, "rb") as f:
    c = tomllib.load(f)
problems = []
def get(*keys, default=None):
    node = c
    for k in keys:
        if not isinstance(node, dict) or k not in node:
            return default
        node = node[k]
    return node

if get("attestation", "mode") != "nsm":
    problems.append('attestation.mode must be "nsm" (danger_dev documents prove nothing)')
if get("kms", "danger_without_recipient", default=False):
    problems.append("kms.danger_without_recipient must be false (the key would leave KMS unattested)")
if get("provider", "danger_allow_plain_http", default=False):
    problems.append("provider.danger_allow_plain_http must be false (the host could read prompts)")
if get("app", "danger_accept_unsigned", default=False):
    problems.append("app.danger_accept_unsigned must be false (zero trust: only pinned producer keys)")
for field in ("listen", "host_egress"):
    if not str(get(field, default="")).startswith("vsock://"):
        problems.append(f"{field} must be a vsock:// address inside an enclave")
endpoint = f"https://kms.{region}.amazonaws.com"
if get("kms", "endpoint_url") != endpoint:
    problems.append(f"kms.endpoint_url must be {endpoint} (the name enclave-init maps to the forwarder)")
if get("kms", "forward", "host") != f"kms.{region}.amazonaws.com" or get("kms", "forward", "port") != 443:
    problems.append(f"kms.forward must go to kms.{region}.amazonaws.com port 443")
if get("kms", "region") != region:
    problems.append(f"kms.region must be {region}")
keys = list(get("keys", "fleet", default=[])) + [get("keys", "result_signing", default={})]
if not get("keys", "fleet"):
    problems.append("keys.fleet is empty")
for key in keys:
    blob = str((key or {}).get("ciphertext_base64", ""))
    if not blob or "replace-with" in blob or blob.startswith("DEV-PROVISION"):
        problems.append(f"keys: {key.get('key_id', '?')} has a placeholder ciphertext")
if not get("app", "trusted_signers"):
    problems.append("app.trusted_signers is empty: the enclave would open nothing")
if problems:
    print(f"[build-enclave] {path} is not an enclave release configuration:", file=sys.stderr)
    for p in problems:
        print(f"  - {p}", file=sys.stderr)
    sys.exit(1)
print(f"[build-enclave] {path}: fit for a release (no DANGER setting, vsock, KMS in {region})")
PY
((check_only)) && exit 0

[[ -n $version ]] || { echo "--version is required" >&2; exit 2; }
[[ $version =~ ^[0-9A-Za-z._-]+$ ]] || { echo "--version: letters, digits, . _ - only" >&2; exit 2; }
if [[ -n $signing_cert || -n $signing_key ]] && [[ -z $signing_cert || -z $signing_key ]]; then
  echo "--signing-cert and --signing-key go together" >&2; exit 2
fi
command -v nitro-cli >/dev/null || { echo "nitro-cli is not installed (aws-nitro-enclaves-cli)" >&2; exit 2; }

# --- 2. the image ------------------------------------------------------------------
tag="zenvelope-enclave-app:$version"
context_dir="$(mktemp -d)"
trap 'rm -rf "$context_dir"' EXIT
cp "$config" "$context_dir/enclave-app.toml"
log "building $tag"
DOCKER_BUILDKIT=1 docker build -f "$repo/infra/enclave/Dockerfile.enclave-app" \
  --build-context "release-config=$context_dir" \
  --build-arg "KMS_REGION=$region" \
  -t "$tag" "$repo"

# --- 3. the EIF ----------------------------------------------------------------------
mkdir -p "$out"
eif="$out/zenvelope-enclave.eif"
sign_args=()
[[ -n $signing_cert ]] && sign_args=(--signing-certificate "$signing_cert" --private-key "$signing_key")
log "nitro-cli build-enclave -> $eif"
nitro-cli build-enclave --docker-uri "$tag" --output-file "$eif" "${sign_args[@]}" \
  | tee "$out/build-enclave.json"

# --- 4. the record -------------------------------------------------------------------
record="$repo/infra/enclave/measurements/$version.json"
python3 - "$out/build-enclave.json" "$eif" "$version" "$region" "$tag" "$record" <<'PY'
import datetime, hashlib, json, sys

build_json, eif, version, region, tag, record = sys.argv[1:]
measurements = json.load(open(build_json))["Measurements"]
pcrs = {k[3:]: v.lower() for k, v in measurements.items() if k.startswith("PCR")}
assert len(pcrs["0"]) == 96 and set(pcrs["0"]) != {"0"}, "PCR0 missing or all zeros (debug mode?)"
digest = hashlib.sha256()
with open(eif, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        digest.update(chunk)
doc = {
    "version": version,
    "eif": "zenvelope-enclave.eif",
    "eif_sha256": digest.hexdigest(),
    "docker_image": tag,
    "kms_region": region,
    "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "hash_algorithm": "SHA384",
    "pcrs": pcrs,
    # What pins it, and where:
    "kms_key_policy": {"kms:RecipientAttestation:ImageSha384": pcrs["0"]},
    "sdk_key_directory": {"root": "aws_nitro", "pcrs": {"0": pcrs["0"]}},
}
with open(record, "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
print(json.dumps(doc, indent=2))
PY

pcr0=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pcrs"]["0"])' "$record")
sha=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["eif_sha256"])' "$record")
cat <<EOF

[build-enclave] recorded $record (commit it).

Pin this release:
  Terraform (infra/terraform/terraform.tfvars), then terraform apply:
    enclave_pcr0_allowlist = ["$pcr0", <the release still running, until it is gone>]
    enclave_release        = { version = "$version", eif_sha256 = "$sha", pcr0 = "$pcr0" }
  Producer SDK client configuration:
    [key_directory]
    root = "aws_nitro"
    pcrs = { 0 = "$pcr0" }
  Upload:
    aws s3 cp $eif s3://<release bucket>/enclave/$version/zenvelope-enclave.eif
    aws s3 cp $record s3://<release bucket>/enclave/$version/measurements.json
EOF
