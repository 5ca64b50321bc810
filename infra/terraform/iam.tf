# IAM roles, least privilege. The security model in one line per role:
#   enclave-host   untrusted for confidentiality. It may read and write its Kafka topics,
#                  pull its image and the released EIF, and read its SCRAM secret. It has
#                  NO KMS permission in IAM: the fleet key policy (kms.tf) lets it call
#                  Decrypt only with an attestation document of a released enclave image,
#                  and what KMS returns is encrypted to the enclave, not to the host.
#   admission      reads requests, its repartition topic, usage (its quota state), results and audit (tokens);
#                  writes its repartition topic, admitted, rejections, usage and the DLQ.
#   audit-sink     reads zenvelope.audit, writes checkpoints.
#   key-provisioner  may KMS-Encrypt new fleet keys (with the zenvelope context); never decrypt.
#   kafka-admin    creates and configures the zenvelope topics (IAM listener).
# The Kafka permissions below apply to IAM-authenticated clients; SCRAM clients (the
# services today, see variables.tf enable_scram) are held to the same topics by Kafka ACLs.

locals {
  msk_cluster_arn = aws_msk_cluster.this.arn
  # arn:aws:kafka:REGION:ACCOUNT:cluster/NAME/UUID -> .../topic/NAME/UUID/<topic>
  msk_topic_prefix = replace(aws_msk_cluster.this.arn, ":cluster/", ":topic/")
  msk_group_prefix = replace(aws_msk_cluster.this.arn, ":cluster/", ":group/")
  msk_txn_prefix   = replace(aws_msk_cluster.this.arn, ":cluster/", ":transactional-id/")
}

# ------------------------------------------------------------------- trust policies

data "aws_iam_policy_document" "trust_ec2" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "trust_ecs_tasks" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

data "aws_iam_policy_document" "trust_provisioner" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = var.key_provisioner_trusted_arns
    }
  }
}

# ------------------------------------------------------------------ enclave-host

resource "aws_iam_role" "enclave_host" {
  name               = "${var.name}-enclave-host"
  assume_role_policy = data.aws_iam_policy_document.trust_ec2.json
}

resource "aws_iam_instance_profile" "enclave_host" {
  name = "${var.name}-enclave-host"
  role = aws_iam_role.enclave_host.name
}

data "aws_iam_policy_document" "enclave_host" {
  statement {
    sid       = "KafkaConnect"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster", "kafka-cluster:WriteDataIdempotently"]
    resources = [local.msk_cluster_arn]
  }
  statement {
    sid       = "KafkaConsumeAdmitted"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]
    resources = ["${local.msk_topic_prefix}/${local.topic.admitted}"]
  }
  statement {
    sid       = "KafkaProduceOutcomes"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"]
    resources = [for t in ["results", "dlq", "audit", "keys"] : "${local.msk_topic_prefix}/${local.topic[t]}"]
  }
  statement {
    sid       = "KafkaConsumerGroup"
    actions   = ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"]
    resources = ["${local.msk_group_prefix}/zenvelope-enclave-host"]
  }
  statement {
    sid       = "KafkaTransactions"
    actions   = ["kafka-cluster:AlterTransactionalId", "kafka-cluster:DescribeTransactionalId"]
    resources = ["${local.msk_txn_prefix}/zenvelope-enclave-host-*"]
  }
  statement {
    sid       = "ReleasedEnclaveImage"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.releases.arn}/enclave/*"]
  }
  statement {
    sid       = "PullServiceImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = [var.ecr_repository_arn]
  }
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }
  dynamic "statement" {
    for_each = var.enable_scram ? [1] : []
    content {
      sid       = "OwnScramSecret"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [aws_secretsmanager_secret.scram["enclave-host"].arn]
    }
  }
  dynamic "statement" {
    for_each = var.enable_scram ? [1] : []
    content {
      # The SCRAM secrets' key (never the fleet key), only through Secrets Manager.
      sid       = "ScramSecretKeyViaSecretsManager"
      actions   = ["kms:Decrypt"]
      resources = [aws_kms_key.msk_scram[0].arn]
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${var.region}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "enclave_host" {
  name   = "enclave-host"
  role   = aws_iam_role.enclave_host.id
  policy = data.aws_iam_policy_document.enclave_host.json
}

# Shell access through SSM Session Manager instead of SSH keys. It gives root on the
# parent instance, which is outside the trust boundary: the enclave cannot be entered
# (non-debug mode has no console) and its keys never leave it.
resource "aws_iam_role_policy_attachment" "enclave_host_ssm" {
  role       = aws_iam_role.enclave_host.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

# -------------------------------------------------------------------- admission

resource "aws_iam_role" "admission" {
  name               = "${var.name}-admission"
  assume_role_policy = data.aws_iam_policy_document.trust_ecs_tasks.json
}

data "aws_iam_policy_document" "admission" {
  statement {
    sid       = "KafkaConnect"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster", "kafka-cluster:WriteDataIdempotently"]
    resources = [local.msk_cluster_arn]
  }
  statement {
    sid       = "KafkaConsume"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]
    resources = [for t in ["requests", "by_tenant", "usage", "results", "audit"] : "${local.msk_topic_prefix}/${local.topic[t]}"]
  }
  statement {
    sid       = "KafkaProduce"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"]
    resources = [for t in ["by_tenant", "admitted", "rejections", "usage", "dlq"] : "${local.msk_topic_prefix}/${local.topic[t]}"]
  }
  statement {
    sid     = "KafkaConsumerGroups"
    actions = ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"]
    # zenvelope-range-reader: the group id of the runtime's range reader, which restores
    # the usage counters (it joins no group and commits nothing, but names one).
    resources = ["${local.msk_group_prefix}/zenvelope-admission*", "${local.msk_group_prefix}/zenvelope-range-reader"]
  }
  dynamic "statement" {
    for_each = var.enable_scram ? [1] : []
    content {
      sid       = "OwnScramSecret"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [aws_secretsmanager_secret.scram["admission"].arn]
    }
  }
}

resource "aws_iam_role_policy" "admission" {
  name   = "admission"
  role   = aws_iam_role.admission.id
  policy = data.aws_iam_policy_document.admission.json
}

# ------------------------------------------------------------------- audit-sink

resource "aws_iam_role" "audit_sink" {
  name               = "${var.name}-audit-sink"
  assume_role_policy = data.aws_iam_policy_document.trust_ecs_tasks.json
}

data "aws_iam_policy_document" "audit_sink" {
  statement {
    sid       = "KafkaConnect"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster", "kafka-cluster:WriteDataIdempotently"]
    resources = [local.msk_cluster_arn]
  }
  statement {
    sid       = "KafkaConsumeAudit"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]
    resources = [for t in ["audit", "checkpoints"] : "${local.msk_topic_prefix}/${local.topic[t]}"]
  }
  statement {
    sid       = "KafkaProduceCheckpoints"
    actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"]
    resources = [for t in ["checkpoints", "dlq"] : "${local.msk_topic_prefix}/${local.topic[t]}"]
  }
  statement {
    sid       = "KafkaConsumerGroup"
    actions   = ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"]
    resources = ["${local.msk_group_prefix}/zenvelope-audit-sink"]
  }
  dynamic "statement" {
    for_each = var.enable_scram ? [1] : []
    content {
      sid       = "OwnScramSecret"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [aws_secretsmanager_secret.scram["audit-sink"].arn]
    }
  }
}

resource "aws_iam_role_policy" "audit_sink" {
  name   = "audit-sink"
  role   = aws_iam_role.audit_sink.id
  policy = data.aws_iam_policy_document.audit_sink.json
}

# -------------------------------------------------------------- key provisioner

resource "aws_iam_role" "key_provisioner" {
  name                 = "${var.name}-key-provisioner"
  assume_role_policy   = data.aws_iam_policy_document.trust_provisioner.json
  max_session_duration = 3600
}

# The key policy (kms.tf) already limits this role to Encrypt with the zenvelope
# context; the IAM side says the same, so neither alone is the only guard.
data "aws_iam_policy_document" "key_provisioner" {
  statement {
    sid       = "SealFleetKeys"
    actions   = ["kms:Encrypt", "kms:DescribeKey"]
    resources = [aws_kms_key.fleet.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:zenvelope:purpose"
      values   = ["fleet-key", "result-signing-key"]
    }
  }
}

resource "aws_iam_role_policy" "key_provisioner" {
  name   = "key-provisioner"
  role   = aws_iam_role.key_provisioner.id
  policy = data.aws_iam_policy_document.key_provisioner.json
}

# ------------------------------------------------------------------ kafka-admin

resource "aws_iam_role" "kafka_admin" {
  name               = "${var.name}-kafka-admin"
  assume_role_policy = data.aws_iam_policy_document.trust_provisioner.json
}

data "aws_iam_policy_document" "kafka_admin" {
  statement {
    sid       = "KafkaConnect"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster", "kafka-cluster:DescribeClusterDynamicConfiguration"]
    resources = [local.msk_cluster_arn]
  }
  statement {
    sid = "ZenvelopeTopics"
    actions = [
      "kafka-cluster:CreateTopic",
      "kafka-cluster:DescribeTopic",
      "kafka-cluster:AlterTopic",
      "kafka-cluster:DescribeTopicDynamicConfiguration",
      "kafka-cluster:AlterTopicDynamicConfiguration",
    ]
    resources = ["${local.msk_topic_prefix}/zenvelope.*"]
  }
}

resource "aws_iam_role_policy" "kafka_admin" {
  name   = "kafka-admin"
  role   = aws_iam_role.kafka_admin.id
  policy = data.aws_iam_policy_document.kafka_admin.json
}
