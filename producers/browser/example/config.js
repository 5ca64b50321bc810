// What this page trusts, fixed when the app is built and deployed, never fetched from
// the backend (which is not trusted with the keys). Production: the AWS Nitro root and
// the PCR0 of the released enclave image (`nitro-cli build-enclave` prints it).
export const trust = {
  // Base64 DER of a DEV attestation root, or null for the AWS Nitro Enclaves root G1.
  dangerDevRootBase64: null,
  // Pinned PCRs, index → lowercase hex.
  pcrs: { 0: "replace-with-the-released-image-pcr0" },
};
// The zenvelope tenant of this app.
export const tenant = "clinic-a";
// PBKDF2 iterations users register with, pinned too: a backend that could lower it would
// make new wraps cheaper to attack.
export const iterations = 600000;
