# Nitro Enclaves hosts: an EC2 launch template with enclaves enabled and an Auto Scaling
# group. ONE enclave per instance, and one enclave-host beside it:
#   - the enclave gets dedicated whole cores and memory carved out of the instance by the
#     Nitro allocator; a second enclave would compete for the same carve-out and share a
#     failure domain without adding isolation between tenants (every enclave of a release
#     runs the same image and holds the same fleet keys);
#   - the enclave serves one host connection at a time, and one host is one consumer in
#     the zenvelope-enclave-host group: scaling is by instances, up to the partition
#     count of zenvelope.admitted.
# The host is untrusted for confidentiality: it relays sealed bytes and TLS streams it
# cannot read. IMDSv2 only, hop limit 1 (containers on the host cannot reach the role's
# credentials through a second hop), encrypted root volume.

resource "aws_launch_template" "enclave_host" {
  name_prefix   = "${var.name}-enclave-host-"
  image_id      = data.aws_ssm_parameter.host_ami.value
  instance_type = var.host_instance_type

  enclave_options {
    enabled = true
  }

  iam_instance_profile {
    arn = aws_iam_instance_profile.enclave_host.arn
  }

  vpc_security_group_ids = [aws_security_group.hosts.id]

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = 30
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  user_data = base64encode(templatefile("${path.module}/templates/enclave-host-user-data.sh.tftpl", {
    region             = var.region
    release_bucket     = aws_s3_bucket.releases.id
    enclave_version    = var.enclave_release.version
    enclave_eif_sha256 = var.enclave_release.eif_sha256
    enclave_pcr0       = var.enclave_release.pcr0
    enclave_cpu_count  = var.enclave_cpu_count
    enclave_memory_mib = var.enclave_memory_mib
    service_image      = var.service_image
    egress_allowlist   = local.egress_allowlist
    bootstrap_scram    = var.enable_scram ? aws_msk_cluster.this.bootstrap_brokers_sasl_scram : ""
    scram_secret_arn   = var.enable_scram ? aws_secretsmanager_secret.scram["enclave-host"].arn : ""
  }))

  tag_specifications {
    resource_type = "instance"
    tags = {
      Name = "${var.name}-enclave-host"
      Role = "enclave-host"
    }
  }

  lifecycle {
    precondition {
      condition     = contains(var.enclave_pcr0_allowlist, var.enclave_release.pcr0)
      error_message = "enclave_release.pcr0 must be in enclave_pcr0_allowlist, or KMS will refuse the hosts' enclaves their keys."
    }
    precondition {
      condition     = var.enable_scram
      error_message = "The services authenticate to MSK with SASL/SCRAM until zenvelope-runtime signs MSK IAM tokens; keep enable_scram = true."
    }
  }
}

resource "aws_autoscaling_group" "enclave_hosts" {
  name_prefix         = "${var.name}-enclave-hosts-"
  min_size            = var.host_count.min
  desired_capacity    = var.host_count.desired
  max_size            = var.host_count.max
  vpc_zone_identifier = var.private_subnet_ids
  health_check_type   = "EC2"

  launch_template {
    id      = aws_launch_template.enclave_host.id
    version = aws_launch_template.enclave_host.latest_version
  }

  # A new release (new launch template version) replaces instances gradually; the
  # enclave-host group rebalances and nothing is lost (at-least-once, offsets stored
  # after the outputs are acknowledged).
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 66
    }
  }

  tag {
    key                 = "Name"
    value               = "${var.name}-enclave-host"
    propagate_at_launch = true
  }
}
