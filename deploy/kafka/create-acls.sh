#!/usr/bin/env bash
# Kafka ACLs for the zenvelope services' SASL/SCRAM users on MSK: the same topic-by-topic
# least privilege as the IAM policies in infra/terraform/iam.tf (SCRAM clients are not
# governed by IAM; MSK runs with allow.everyone.if.no.acl.found=false, so a user can do
# exactly what is listed here). Idempotent.
#
#   BOOTSTRAP=b-1.example:9098 COMMAND_CONFIG=/etc/zenvelope/kafka-admin-iam.properties \
#     deploy/kafka/create-acls.sh
#   DRY_RUN=1 BOOTSTRAP=x deploy/kafka/create-acls.sh      # print the commands only
#
# Run it as the kafka-admin role over the IAM listener (port 9098). Environment as for
# create-topics.sh: BOOTSTRAP (required), COMMAND_CONFIG, KAFKA_BIN, DRY_RUN.
set -euo pipefail

: "${BOOTSTRAP:?set BOOTSTRAP to the broker list}"
KAFKA_BIN="${KAFKA_BIN:-/opt/kafka/bin}"
DRY_RUN="${DRY_RUN:-0}"
client_args=(--bootstrap-server "$BOOTSTRAP")
[[ -n ${COMMAND_CONFIG:-} ]] && client_args+=(--command-config "$COMMAND_CONFIG")

# principal  operation(s)       resource
acls=(
  "enclave-host  Read,Describe   topic:zenvelope.admitted"
  "enclave-host  Write,Describe  topic:zenvelope.results"
  "enclave-host  Write,Describe  topic:zenvelope.dlq"
  "enclave-host  Write,Describe  topic:zenvelope.audit"
  "enclave-host  Write,Describe  topic:zenvelope.keys"
  "enclave-host  Read            group:zenvelope-enclave-host"
  "enclave-host  IdempotentWrite cluster:kafka-cluster"

  "admission     Read,Describe   topic:zenvelope.requests"
  "admission     Read,Write,Describe topic:zenvelope.admission-by-tenant"
  "admission     Read,Write,Describe topic:zenvelope.usage"
  "admission     Write,Describe  topic:zenvelope.admitted"
  "admission     Write,Describe  topic:zenvelope.rejections"
  "admission     Write,Describe  topic:zenvelope.dlq"
  "admission     Read,Describe   topic:zenvelope.audit"
  "admission     Read,Describe   topic:zenvelope.results"
  "admission     Read            prefixed-group:zenvelope-admission"
  "admission     Read            group:zenvelope-range-reader"
  "admission     IdempotentWrite cluster:kafka-cluster"

  "audit-sink    Read,Describe   topic:zenvelope.audit"
  "audit-sink    Read,Write,Describe topic:zenvelope.checkpoints"
  "audit-sink    Write,Describe  topic:zenvelope.dlq"
  "audit-sink    Read            group:zenvelope-audit-sink"
  "audit-sink    IdempotentWrite cluster:kafka-cluster"
)

for line in "${acls[@]}"; do
  read -r user operations resource <<<"$line"
  kind=${resource%%:*} name=${resource#*:}
  target=()
  case $kind in
    topic) target=(--topic "$name") ;;
    group) target=(--group "$name") ;;
    prefixed-group) target=(--group "$name" --resource-pattern-type prefixed) ;;
    cluster) target=(--cluster) ;;
    *) echo "unknown resource kind $kind" >&2; exit 2 ;;
  esac
  op_args=()
  IFS=',' read -r -a ops <<<"$operations"
  for op in "${ops[@]}"; do op_args+=(--operation "$op"); done
  command=("$KAFKA_BIN/kafka-acls.sh" "${client_args[@]}" --add --allow-principal "User:$user"
    "${op_args[@]}" "${target[@]}")
  if [[ $DRY_RUN == 1 ]]; then
    printf '%q ' "${command[@]}"; printf '\n'
  else
    "${command[@]}"
  fi
done
