# Released enclave images (EIF files). An EIF is built once, measured, and the same bytes
# are deployed everywhere: rebuilding "the same" version gives another PCR0 unless the
# build is bit-for-bit reproducible, and KMS would refuse it the keys.
# Layout: s3://<bucket>/enclave/<version>/zenvelope-enclave.eif (+ measurements.json).

resource "aws_s3_bucket" "releases" {
  bucket_prefix = "${var.name}-releases-"
}

resource "aws_s3_bucket_versioning" "releases" {
  bucket = aws_s3_bucket.releases.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "releases" {
  bucket = aws_s3_bucket.releases.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms"
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "releases" {
  bucket                  = aws_s3_bucket.releases.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}
