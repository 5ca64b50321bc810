# The fleet key: a KMS key that seals the enclave fleet's private keys (the RSA fleet
# decryption key and the result-signing key, PKCS#8, see docs/enclave-worker.md
# "Provisioning keys"). Whoever can make KMS decrypt those blobs can read every request,
# so the key policy is the security model written down:
#
#   - Decrypt is allowed only to the Nitro host role AND only when the request carries a
#     Nitro attestation document (Decrypt with `Recipient`) whose PCR0, the SHA-384
#     measurement of the enclave image, is one of the released images
#     (kms:RecipientAttestation:ImageSha384). KMS then returns the key encrypted to the
#     enclave's ephemeral public key from that document (CiphertextForRecipient): the host
#     that made the call, and anyone watching its traffic, get nothing they can open.
#   - Decrypt without an attestation document is denied to everyone, and ReEncryptFrom is
#     denied outright (it would move the blobs under a key without this policy).
#   - The provisioner can only Encrypt, and only with the zenvelope encryption context.
#   - Administrators manage the key but cannot use it; the account root keeps management
#     rights so the key can never become unmanageable, but not Decrypt.
#
# The policy is a separate template (policies/fleet-key-policy.json.tftpl) so that
# scripts/check-deploy can check it: every Allow of kms:Decrypt carries the attestation
# condition, and the Deny statements are present.

resource "aws_kms_key" "fleet" {
  description              = "${var.name} fleet keys: released only to attested enclave images"
  key_usage                = "ENCRYPT_DECRYPT"
  customer_master_key_spec = "SYMMETRIC_DEFAULT"
  # Yearly rotation of the backing key material; ciphertexts made before still decrypt.
  enable_key_rotation     = true
  deletion_window_in_days = 30

  policy = templatefile("${path.module}/policies/fleet-key-policy.json.tftpl", {
    account_root_arn         = "arn:${local.partition}:iam::${local.account_id}:root"
    key_admin_arns           = var.key_admin_arns
    key_provisioner_role_arn = aws_iam_role.key_provisioner.arn
    enclave_host_role_arn    = aws_iam_role.enclave_host.arn
    enclave_pcr0_allowlist   = var.enclave_pcr0_allowlist
  })
}

resource "aws_kms_alias" "fleet" {
  name          = "alias/${var.name}-fleet"
  target_key_id = aws_kms_key.fleet.key_id
}
