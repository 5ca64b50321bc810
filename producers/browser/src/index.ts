/**
 * `@zenvelope/browser`: seal and open zenvelope envelopes in the browser with WebCrypto,
 * byte-compatible with the Rust SDK (docs/envelope-spec.md). Zero runtime dependencies;
 * every export is a plain function or class, so bundlers drop what a page does not use.
 *
 * @module
 */

export { ZenvelopeError, type ErrorCode } from "./errors.js";
export { fromBase64, toBase64, fromHex, toHex } from "./bytes.js";
export {
  DEFAULT_LIMITS,
  KINDS,
  PURPOSES,
  decodeEnvelope,
  encodeEnvelope,
  isUuidV7,
  uuidFromString,
  uuidToString,
  type Envelope,
  type Header,
  type Kind,
  type Limits,
  type Purpose,
  type Recipient,
  type RecipientType,
  type Signature,
  type SignatureAlgorithm,
} from "./envelope.js";
export {
  UserKey,
  deriveUserKey,
  importFleetKey,
  importSigningKey,
  importVerifyingKey,
  normalizeIdentity,
  pseudonym,
  type DeriveOptions,
  type FleetKey,
  type SigningKey,
  type VerifyingKey,
} from "./keys.js";
export {
  ResponseKey,
  open,
  seal,
  verify,
  type HeaderFields,
  type OpenPolicy,
  type Opened,
  type OpenerKeys,
  type RecipientKey,
  type SealOptions,
  type Sealed,
} from "./seal.js";
export {
  countersign,
  openAnswer,
  sealAnalysisRequest,
  type Answer,
  type CountersignOptions,
  type FleetKeySource,
  type OpenAnswerOptions,
  type SealRequestOptions,
  type SealedRequest,
  type TrustedKey,
} from "./requests.js";
export {
  decodeAnalysisResult,
  encodeAnalysisRequest,
  type AnalysisInput,
  type AnalysisRequest,
  type AnalysisResult,
  type FinishReason,
} from "./analysis.js";
export { fromTransport, toTransport } from "./transport.js";
export {
  KeyDirectory,
  EntryRefused,
  awsNitroPolicy,
  dangerDevRootPolicy,
  decodeKeyDirectoryRecord,
  frame,
  unframe,
  verifyEntry,
  type KeyAlgorithm,
  type KeyDirectoryEntry,
  type KeyDirectoryPolicy,
  type KeyPurpose,
  type KeyStatus,
  type RefusedEntry,
  type RejectionReason,
  type VerifiedKey,
} from "./directory.js";
export { AWS_NITRO_ROOT_G1_DER } from "./attestation/aws-root.js";
export {
  MEDIA_TYPE_ANALYSIS_REQUEST,
  MEDIA_TYPE_ANALYSIS_RESULT,
  OFFLINE_SCHEMA_IDS,
} from "./labels.js";
