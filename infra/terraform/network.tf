# Security groups: who may talk to whom. Nothing is reachable from the internet; the hosts
# reach out only to MSK, KMS, ECR/S3/Secrets Manager and the allowlisted model APIs over
# HTTPS (the host's egress proxy enforces the exact names; these groups enforce ports).

resource "aws_security_group" "hosts" {
  name        = "${var.name}-nitro-hosts"
  description = "Nitro Enclaves parent instances (enclave-host)"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "hosts_https" {
  security_group_id = aws_security_group.hosts.id
  description       = "HTTPS: KMS, ECR, S3, Secrets Manager, allowlisted model APIs"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "hosts_msk" {
  security_group_id            = aws_security_group.hosts.id
  description                  = "MSK: SASL/SCRAM (9096) and IAM (9098) over TLS"
  ip_protocol                  = "tcp"
  from_port                    = 9096
  to_port                      = 9098
  referenced_security_group_id = aws_security_group.msk.id
}

resource "aws_security_group" "msk" {
  name        = "${var.name}-msk"
  description = "MSK brokers: TLS listeners for the zenvelope services only"
  vpc_id      = var.vpc_id
}

resource "aws_security_group" "services" {
  name        = "${var.name}-services"
  description = "admission and audit-sink tasks"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "services_all_https" {
  security_group_id = aws_security_group.services.id
  description       = "HTTPS: ECR, Secrets Manager, CloudWatch"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "services_msk" {
  security_group_id            = aws_security_group.services.id
  description                  = "MSK over TLS"
  ip_protocol                  = "tcp"
  from_port                    = 9096
  to_port                      = 9098
  referenced_security_group_id = aws_security_group.msk.id
}

resource "aws_vpc_security_group_egress_rule" "services_scylla" {
  security_group_id            = aws_security_group.services.id
  description                  = "CQL to the audit store"
  ip_protocol                  = "tcp"
  from_port                    = 9042
  to_port                      = 9042
  referenced_security_group_id = aws_security_group.scylla.id
}

resource "aws_vpc_security_group_ingress_rule" "msk_from_hosts" {
  security_group_id            = aws_security_group.msk.id
  description                  = "TLS listeners (SCRAM 9096, IAM 9098) from the Nitro hosts"
  ip_protocol                  = "tcp"
  from_port                    = 9096
  to_port                      = 9098
  referenced_security_group_id = aws_security_group.hosts.id
}

resource "aws_vpc_security_group_ingress_rule" "msk_from_services" {
  security_group_id            = aws_security_group.msk.id
  description                  = "TLS listeners from admission and audit-sink"
  ip_protocol                  = "tcp"
  from_port                    = 9096
  to_port                      = 9098
  referenced_security_group_id = aws_security_group.services.id
}

resource "aws_security_group" "scylla" {
  name        = "${var.name}-scylla"
  description = "ScyllaDB audit store: CQL from the audit sink only, gossip between nodes"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "scylla_cql" {
  security_group_id            = aws_security_group.scylla.id
  description                  = "CQL from audit-sink"
  ip_protocol                  = "tcp"
  from_port                    = 9042
  to_port                      = 9042
  referenced_security_group_id = aws_security_group.services.id
}

resource "aws_vpc_security_group_ingress_rule" "scylla_internode" {
  security_group_id            = aws_security_group.scylla.id
  description                  = "Inter-node (7000) and shard-aware CQL (19042) between nodes"
  ip_protocol                  = "tcp"
  from_port                    = 7000
  to_port                      = 19042
  referenced_security_group_id = aws_security_group.scylla.id
}

resource "aws_vpc_security_group_egress_rule" "scylla_internode" {
  security_group_id            = aws_security_group.scylla.id
  description                  = "Inter-node traffic"
  ip_protocol                  = "tcp"
  from_port                    = 7000
  to_port                      = 19042
  referenced_security_group_id = aws_security_group.scylla.id
}
