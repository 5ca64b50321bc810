# zenvelope on AWS: MSK (TLS + SASL/SCRAM and IAM), Nitro Enclaves hosts, the KMS key that
# releases the fleet keys only to an attested enclave image, least-privilege IAM roles,
# and a ScyllaDB cluster for the audit log. See infra/README.md and docs/operations.md.
#
# Terraform 1.11 for write-only attributes and ephemeral resources: the generated SCRAM
# passwords go to Secrets Manager without ever being stored in the Terraform state.

terraform {
  required_version = ">= 1.11.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.90, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.7"
    }
  }

  # Keep state remote and encrypted (it holds ARNs and topology, never key material):
  # backend "s3" { bucket = "...", key = "zenvelope/terraform.tfstate", region = "...", encrypt = true, use_lockfile = true }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project   = "zenvelope"
      ManagedBy = "terraform"
    }
  }
}
