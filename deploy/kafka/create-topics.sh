#!/usr/bin/env bash
# Creates the zenvelope topics listed in topics.conf (next to this script), with their
# partition counts and topic configs, and converges the configs of topics that already
# exist. Idempotent: run it on every bring-up.
#
#   BOOTSTRAP=kafka:9092 REPLICATION_FACTOR=1 deploy/kafka/create-topics.sh        # compose
#   BOOTSTRAP=b-1.example:9096 REPLICATION_FACTOR=3 \
#     COMMAND_CONFIG=/etc/zenvelope/kafka-admin.properties deploy/kafka/create-topics.sh  # MSK
#   DRY_RUN=1 BOOTSTRAP=x deploy/kafka/create-topics.sh   # print the commands only
#
# Environment:
#   BOOTSTRAP           broker list (required)
#   REPLICATION_FACTOR  1 for a single local broker, 3 on MSK (default 1)
#   COMMAND_CONFIG      client properties for TLS + SASL/SCRAM or IAM (MSK), optional
#   KAFKA_BIN           folder of kafka-topics.sh and kafka-configs.sh (default /opt/kafka/bin)
#   TOPICS_FILE         the topic list (default: topics.conf beside this script)
#   DRY_RUN             1: print what would run, touch nothing
#
# Partition counts are never changed on an existing topic: adding partitions moves keys
# to other partitions, which breaks per-subject ordering. A topic with fewer partitions than
# listed is reported, and the script exits 3 so an operator decides.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
: "${BOOTSTRAP:?set BOOTSTRAP to the broker list, e.g. kafka:9092}"
REPLICATION_FACTOR="${REPLICATION_FACTOR:-1}"
KAFKA_BIN="${KAFKA_BIN:-/opt/kafka/bin}"
TOPICS_FILE="${TOPICS_FILE:-$here/topics.conf}"
DRY_RUN="${DRY_RUN:-0}"

client_args=(--bootstrap-server "$BOOTSTRAP")
[[ -n ${COMMAND_CONFIG:-} ]] && client_args+=(--command-config "$COMMAND_CONFIG")

log() { printf '[create-topics] %s\n' "$*"; }
run() {
  if [[ $DRY_RUN == 1 ]]; then
    printf '[create-topics] would run:'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

declare -A partitions_of=()
names=()
while read -r name partitions configs _rest; do
  [[ -z ${name:-} || $name == \#* ]] && continue
  if [[ ! $partitions =~ ^[1-9][0-9]*$ || -z ${configs:-} ]]; then
    log "malformed line for $name in $TOPICS_FILE"
    exit 2
  fi
  partitions_of[$name]=$partitions
  names+=("$name")
  config_args=()
  IFS=',' read -r -a pairs <<<"$configs"
  for pair in "${pairs[@]}"; do config_args+=(--config "$pair"); done

  log "$name: $partitions partitions, replication factor $REPLICATION_FACTOR, $configs"
  run "$KAFKA_BIN/kafka-topics.sh" "${client_args[@]}" --create --if-not-exists \
    --topic "$name" --partitions "$partitions" --replication-factor "$REPLICATION_FACTOR" \
    "${config_args[@]}"
  # Converge the configs of a topic that existed before (no-op on a fresh one).
  run "$KAFKA_BIN/kafka-configs.sh" "${client_args[@]}" --alter --entity-type topics \
    --entity-name "$name" --add-config "$configs"
done <"$TOPICS_FILE"

[[ $DRY_RUN == 1 ]] && exit 0

status=0
for name in "${names[@]}"; do
  actual=$("$KAFKA_BIN/kafka-topics.sh" "${client_args[@]}" --describe --topic "$name" \
    | sed -n 's/.*PartitionCount:[[:space:]]*\([0-9]*\).*/\1/p' | head -n 1)
  if [[ -z $actual ]]; then
    log "cannot read the partition count of $name"
    status=3
  elif ((actual < partitions_of[$name])); then
    log "WARNING: $name has $actual partitions, topics.conf asks for ${partitions_of[$name]}; not changed (see the header of this script)"
    status=3
  fi
done
((status == 0)) && log "all ${#names[@]} topics present with their configs"
exit "$status"
