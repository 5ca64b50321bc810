# The audit store: a three-node ScyllaDB cluster, one node per availability zone, for
# zenvelope_audit::store::ScyllaStore (schema: infra/cql/audit.cql, replication factor 3).
#
# Why not Amazon Keyspaces: Keyspaces accepts only TLS connections (with SigV4 or
# service-specific credentials), and the audit sink's ScyllaDB client has no TLS option
# yet; the store's correctness also rests on lightweight transactions at LOCAL_SERIAL
# (a single writer per log) that were tested against ScyllaDB semantics only. Until the
# store grows TLS and a Keyspaces test, the audit log lives on ScyllaDB, in private
# subnets, reachable on 9042 from the audit sink's security group alone.
#
# Nodes use the ScyllaDB AMI, which reads its configuration from user data. Data sits on
# the instances' NVMe drives and is replicated three times across zones; back it up with
# ScyllaDB Manager to S3 (docs/operations.md, "Disaster recovery"). The Kafka topics
# zenvelope.audit and zenvelope.checkpoints (kept forever) are the second copy: the
# store can be rebuilt from them and checked with `zenvelope audit cross-check`.

locals {
  scylla_nodes = 3
}

resource "aws_network_interface" "scylla" {
  count           = local.scylla_nodes
  subnet_id       = var.private_subnet_ids[count.index]
  security_groups = [aws_security_group.scylla.id]
  description     = "${var.name}-scylla-${count.index}"
}

resource "aws_instance" "scylla" {
  count         = local.scylla_nodes
  ami           = var.scylla_ami_id
  instance_type = var.scylla_instance_type

  network_interface {
    network_interface_id = aws_network_interface.scylla[count.index].id
    device_index         = 0
  }

  metadata_options {
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    encrypted   = true
    volume_type = "gp3"
    volume_size = 50
  }

  # ScyllaDB AMI user data (JSON): cluster name, seeds (the stable ENI addresses), and
  # the EC2 snitch so each zone is a rack.
  user_data = jsonencode({
    scylla_yaml = {
      cluster_name    = "${var.name}-audit"
      endpoint_snitch = "Ec2Snitch"
      seed_provider = [{
        class_name = "org.apache.cassandra.locator.SimpleSeedProvider"
        parameters = [{ seeds = join(",", aws_network_interface.scylla[*].private_ip) }]
      }]
    }
    start_scylla_on_first_boot = true
  })

  tags = {
    Name = "${var.name}-scylla-${count.index}"
    Role = "audit-store"
  }

  lifecycle {
    # Replacing a node is a ScyllaDB operation (replace-node), not a Terraform one.
    ignore_changes = [ami, user_data]
  }
}
