/**
 * The AWS Nitro Enclaves root certificate G1, in its own module so bundlers drop it when
 * only a dev root is pinned.
 *
 * @module
 */

import { fromBase64 } from "../bytes.js";

/**
 * The AWS Nitro Enclaves root G1 (`CN=aws.nitro-enclaves`, valid 2019-10-28 to
 * 2049-10-28), DER, as AWS distributes it in `AWS_NitroEnclaves_Root-G1.zip`; the same
 * bytes as the Rust SDK's `AWS_NITRO_ROOT_G1_DER`. SHA-256:
 * {@link AWS_NITRO_ROOT_G1_SHA256_HEX}.
 */
export const AWS_NITRO_ROOT_G1_DER: Uint8Array = /* @__PURE__ */ fromBase64(
  "MIICETCCAZagAwIBAgIRAPkxdWgbkK/hHUbMtOTn+FYwCgYIKoZIzj0EAwMwSTELMAkGA1UEBhMCVVMxDzANBgNVBAoMBkFtYXpvbjEMMAoGA1UECwwDQVdTMRswGQYDVQQDDBJhd3Mubml0cm8tZW5jbGF2ZXMwHhcNMTkxMDI4MTMyODA1WhcNNDkxMDI4MTQyODA1WjBJMQswCQYDVQQGEwJVUzEPMA0GA1UECgwGQW1hem9uMQwwCgYDVQQLDANBV1MxGzAZBgNVBAMMEmF3cy5uaXRyby1lbmNsYXZlczB2MBAGByqGSM49AgEGBSuBBAAiA2IABPwCVOumCMHzaHDimtqQvkY4MpJzbolL//Zy2YlES1BR5TSksfbb48C8WBoyt7F2Bw7eEtaaP+ohG2bnUs990d0JX28TcPQXCEPZ3BABIeTPYwEoCWZEh8l5YoQwTcU/9KNCMEAwDwYDVR0TAQH/BAUwAwEB/zAdBgNVHQ4EFgQUkCW1DdkFR+eWw5b6cp3PmanfS5YwDgYDVR0PAQH/BAQDAgGGMAoGCCqGSM49BAMDA2kAMGYCMQCjfy+Rocm9Xue4YnwWmNJVA44fA0P5W2OpYow9OYCVRaEevL8uO1XYru5xtMPWrfMCMQCi85sWBbJwKKXdS6BptQFuZbT73o/gBh1qUxl/nNr12UO8Yfwr6wPLb+6NIwLz3/Y=",
);

/** The SHA-256 fingerprint AWS publishes for the G1 root, lowercase hex. */
export const AWS_NITRO_ROOT_G1_SHA256_HEX = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";
