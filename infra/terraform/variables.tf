variable "region" {
  description = "AWS region of the whole deployment (MSK, KMS, the Nitro hosts)."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Name prefix of every resource."
  type        = string
  default     = "zenvelope"
}

variable "vpc_id" {
  description = "The VPC to deploy into. Subnets must be private (egress through a NAT gateway)."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets, one per availability zone (3): MSK brokers, Nitro hosts, ScyllaDB nodes."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) == 3
    error_message = "Use three private subnets in three availability zones (MSK brokers and ScyllaDB replicas are spread across them)."
  }
}

# ------------------------------------------------------------------ enclave release

variable "enclave_pcr0_allowlist" {
  description = <<-EOT
    PCR0 (the SHA-384 image measurement, 96 hex digits) of every enclave image release
    allowed to receive the fleet keys, as recorded by infra/enclave/build-enclave.sh in
    infra/enclave/measurements/<version>.json. The KMS key policy releases keys only to an
    enclave whose attestation document carries one of these (kms:RecipientAttestation:ImageSha384).
    During a rollout list the old and the new release; remove the old one afterwards.
  EOT
  type        = list(string)

  validation {
    condition = length(var.enclave_pcr0_allowlist) > 0 && alltrue([
      for pcr in var.enclave_pcr0_allowlist :
      can(regex("^[0-9a-f]{96}$", pcr)) && pcr != join("", [for i in range(96) : "0"])
    ])
    error_message = "Each PCR0 is 96 lowercase hex digits, and never all zeros (that is what an enclave in debug mode reports: it must never get the keys)."
  }
}

variable "enclave_release" {
  description = "The enclave release the hosts run: its version (S3 key prefix), the EIF's SHA-256 and its PCR0 (which must be in enclave_pcr0_allowlist)."
  type = object({
    version    = string
    eif_sha256 = string
    pcr0       = string
  })

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.enclave_release.eif_sha256)) && can(regex("^[0-9a-f]{96}$", var.enclave_release.pcr0))
    error_message = "eif_sha256 is 64 hex digits and pcr0 96 hex digits, lowercase."
  }
}

variable "service_image" {
  description = "The zenvelope runtime image (the repository's Dockerfile) by digest, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/zenvelope@sha256:...; enclave-host runs from it."
  type        = string

  validation {
    condition     = can(regex("@sha256:[0-9a-f]{64}$", var.service_image))
    error_message = "Pin the image by digest (@sha256:...), never by a mutable tag."
  }
}

variable "ecr_repository_arn" {
  description = "ARN of the ECR repository holding service_image (the hosts may pull from it and nothing else)."
  type        = string
}

variable "key_provisioner_trusted_arns" {
  description = "Principals (e.g. the release pipeline's role) that may assume the key provisioner role, which may only KMS-Encrypt new fleet keys. It can never decrypt."
  type        = list(string)
}

variable "key_admin_arns" {
  description = "Roles that administer the fleet KMS key (policy, rotation, deletion), through their IAM policies. They can neither encrypt nor decrypt with it."
  type        = list(string)
}

# -------------------------------------------------------------------- Nitro hosts

variable "host_instance_type" {
  description = "Nitro Enclaves-capable instance type. The enclave takes enclave_cpu_count vCPUs (whole cores) from it; the parent keeps the rest."
  type        = string
  default     = "m6i.2xlarge"
}

variable "host_ami_ssm_parameter" {
  description = "SSM parameter naming the host AMI (Amazon Linux 2023: Nitro CLI packages, Docker)."
  type        = string
  default     = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

variable "enclave_cpu_count" {
  description = "vCPUs given to the enclave (an even number on hyperthreaded types: whole cores)."
  type        = number
  default     = 4
}

variable "enclave_memory_mib" {
  description = "Memory given to the enclave, MiB. The EIF is loaded into it, so keep it several times the EIF size."
  type        = number
  default     = 8192
}

variable "host_count" {
  description = "Nitro hosts (each runs one enclave-host and one enclave). At most the partition count of zenvelope.admitted (12): more consumers than partitions sit idle."
  type = object({
    min     = number
    desired = number
    max     = number
  })
  default = { min = 2, desired = 3, max = 12 }

  validation {
    condition     = var.host_count.min >= 2 && var.host_count.min <= var.host_count.desired && var.host_count.desired <= var.host_count.max && var.host_count.max <= 12
    error_message = "Keep 2 <= min <= desired <= max <= 12 (the partitions of zenvelope.admitted; raise both together, see docs/operations.md)."
  }
}

variable "egress_allowlist" {
  description = "Model API hosts the enclave may reach through the host's egress proxy, besides the regional KMS endpoint (always added). host (port 443) or host:port; exact names, no wildcards. Mirrored in infra/enclave/vsock-proxy.yaml."
  type        = list(string)
  default     = ["api.openai.com", "api.anthropic.com"]

  validation {
    condition     = alltrue([for h in var.egress_allowlist : !strcontains(h, "*")])
    error_message = "No wildcards: a wildcard admits names anyone can create (an exfiltration path)."
  }
}

# --------------------------------------------------------------------------- MSK

variable "kafka_version" {
  description = "MSK Kafka version."
  type        = string
  default     = "3.9.x"
}

variable "msk_broker_instance_type" {
  description = "MSK broker instance type."
  type        = string
  default     = "kafka.m7g.large"
}

variable "msk_broker_ebs_gib" {
  description = "EBS storage per broker, GiB. zenvelope.audit and zenvelope.checkpoints are kept forever; size for it (or enable tiered storage)."
  type        = number
  default     = 1000
}

variable "enable_scram" {
  description = "SASL/SCRAM-SHA-512 users for the zenvelope services. librdkafka has no built-in AWS_MSK_IAM mechanism and zenvelope-runtime does not yet sign MSK IAM OAUTHBEARER tokens, so the services authenticate with SCRAM today; IAM is on for operators' tools and for later."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------- ScyllaDB

variable "scylla_ami_id" {
  description = "ScyllaDB AMI (ScyllaDB 2025.4 or later: lightweight transactions on tablet keyspaces; older releases need tablets disabled, see infra/cql/audit.cql)."
  type        = string
}

variable "scylla_instance_type" {
  description = "ScyllaDB node type (local NVMe)."
  type        = string
  default     = "i4i.xlarge"
}
