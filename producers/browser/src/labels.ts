/**
 * The format's labels and constants (docs/envelope-spec.md section 3), defined once.
 *
 * @module
 */

/** Additional-data label. */
export const LABEL_AAD = "zenvelope/v1/aad";
/** Signature-input label. */
export const LABEL_SIGNATURE = "zenvelope/v1/signature";
/** Passphrase-wrap additional-data label. */
export const LABEL_WRAP = "zenvelope/v1/wrap";
/** KEK salt label. */
export const LABEL_KEK_SALT = "zenvelope/v1/kek-salt";
/** Subject pseudonym label. */
export const LABEL_SUBJECT = "zenvelope/v1/subject";
/** HKDF info of the per-message payload key. */
export const INFO_PAYLOAD_KEY = "zenvelope/v1/payload-key";
/** HKDF info of the key commitment. */
export const INFO_KEY_COMMITMENT = "zenvelope/v1/key-commitment";
/** HKDF info of the response DEK. */
export const INFO_RESPONSE = "zenvelope/v1/response";
/** HKDF info of the KEK id. */
export const INFO_KEK_ID = "zenvelope/v1/kek-id";

/** Default PBKDF2 iterations (OWASP 2023). */
export const DEFAULT_PBKDF2_ITERATIONS = 600_000;
/** Fewest PBKDF2 iterations accepted (the seed's legacy format). */
export const MIN_PBKDF2_ITERATIONS = 100_000;
/** Most PBKDF2 iterations accepted. */
export const MAX_PBKDF2_ITERATIONS = 10_000_000;

/** Media type of a request's plaintext: an Avro `AnalysisRequest` datum. */
export const MEDIA_TYPE_ANALYSIS_REQUEST = "application/vnd.zenvelope.analysis-request+avro";
/** Media type of a result's plaintext: an Avro `AnalysisResult` datum. */
export const MEDIA_TYPE_ANALYSIS_RESULT = "application/vnd.zenvelope.analysis-result+avro";
/** Media type of an ERROR answer's plaintext. */
export const MEDIA_TYPE_TEXT_UTF8 = "text/plain; charset=utf-8";

/** Schema ids of the offline catalog (no schema registry configured). */
export const OFFLINE_SCHEMA_IDS = Object.freeze({
  envelope: 1,
  analysisRequest: 2,
  analysisResult: 3,
  keyDirectoryEntry: 6,
});
