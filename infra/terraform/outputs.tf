output "msk_bootstrap_brokers_sasl_scram" {
  description = "Bootstrap servers for the zenvelope services (TLS + SASL/SCRAM-SHA-512, port 9096)."
  value       = aws_msk_cluster.this.bootstrap_brokers_sasl_scram
}

output "msk_bootstrap_brokers_sasl_iam" {
  description = "Bootstrap servers for IAM clients (operators' tools, kafka-admin role; port 9098)."
  value       = aws_msk_cluster.this.bootstrap_brokers_sasl_iam
}

output "fleet_key_arn" {
  description = "The KMS key sealing the fleet keys; seal new keys under it with the key-provisioner role."
  value       = aws_kms_key.fleet.arn
}

output "released_enclave_pcr0s" {
  description = "PCR0s the fleet key is released to (kms:RecipientAttestation:ImageSha384)."
  value       = var.enclave_pcr0_allowlist
}

output "release_bucket" {
  description = "Where released EIFs go: s3://<bucket>/enclave/<version>/zenvelope-enclave.eif."
  value       = aws_s3_bucket.releases.id
}

output "roles" {
  description = "Role ARNs: enclave-host (instance profile), admission and audit-sink (ECS task roles), key-provisioner, kafka-admin."
  value = {
    enclave_host    = aws_iam_role.enclave_host.arn
    admission       = aws_iam_role.admission.arn
    audit_sink      = aws_iam_role.audit_sink.arn
    key_provisioner = aws_iam_role.key_provisioner.arn
    kafka_admin     = aws_iam_role.kafka_admin.arn
  }
}

output "scram_secret_arns" {
  description = "Secrets Manager ARNs of the services' SCRAM credentials (one per service)."
  value       = { for k, s in aws_secretsmanager_secret.scram : k => s.arn }
}

output "service_security_group_id" {
  description = "Attach to the admission and audit-sink tasks."
  value       = aws_security_group.services.id
}

output "scylla_nodes" {
  description = "Contact points for the audit sink's [store] nodes (port 9042)."
  value       = [for ip in aws_network_interface.scylla[*].private_ip : "${ip}:9042"]
}

output "launch_template_id" {
  description = "The Nitro hosts' launch template (enclave_options.enabled = true)."
  value       = aws_launch_template.enclave_host.id
}
