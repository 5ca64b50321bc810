data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

data "aws_ssm_parameter" "host_ami" {
  name = var.host_ami_ssm_parameter
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  # The regional KMS endpoint is always on the enclave's egress allowlist: the enclave
  # calls Decrypt with its attestation document at boot. Everything else is a model API.
  kms_endpoint     = "kms.${var.region}.amazonaws.com"
  egress_allowlist = concat([local.kms_endpoint], var.egress_allowlist)

  # The zenvelope services and their Kafka principals (SCRAM user names).
  services = ["enclave-host", "admission", "audit-sink"]

  # zenvelope topics (deploy/kafka/topics.conf is the full list with partitions and
  # retention; the services' access below is per topic).
  topic = {
    requests    = "zenvelope.requests"
    by_tenant   = "zenvelope.admission-by-tenant"
    admitted    = "zenvelope.admitted"
    rejections  = "zenvelope.rejections"
    results     = "zenvelope.results"
    dlq         = "zenvelope.dlq"
    audit       = "zenvelope.audit"
    checkpoints = "zenvelope.checkpoints"
    keys        = "zenvelope.keys"
    vault       = "zenvelope.vault"
    usage       = "zenvelope.usage"
  }
}
