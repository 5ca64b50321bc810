/**
 * The plaintexts the pipeline exchanges: an `AnalysisRequest` (what the model sees) and
 * an `AnalysisResult` (its answer), as Avro datums of `schemas/avro/analysis-*.avsc`.
 *
 * @module
 */

import { AvroReader, AvroWriter } from "./avro.js";
import { malformed } from "./errors.js";

/** What to analyse: text, or bytes with a media type. */
export type AnalysisInput =
  | { text: string; mediaType?: string }
  | { data: Uint8Array; mediaType: string };

/** An analysis request (plaintext of a REQUEST envelope). */
export interface AnalysisRequest {
  /** What the model is asked to do with the input. */
  instruction: string;
  /** The data to analyse. */
  input: AnalysisInput;
  /** Provider hint (e.g. `openai`); the tenant's policy decides. */
  provider?: string;
  /** Model name hint. */
  model?: string;
  /** Sampling temperature. */
  temperature?: number;
  /** Upper bound on the answer's length in tokens. */
  maxOutputTokens?: number;
  /** Give up (and answer with an ERROR) after this many milliseconds. */
  maxLatencyMs?: number;
  /** Most model calls for this request, retries included. */
  maxAttempts?: number;
  /** The caller's own reference (its entry id, say), echoed sealed in the answer. */
  clientReference?: string;
}

/** Encodes an `AnalysisRequest` datum (schemas/avro/analysis-request.avsc). */
export function encodeAnalysisRequest(req: AnalysisRequest): Uint8Array {
  const w = new AvroWriter().string(req.instruction);
  if ("text" in req.input) {
    w.long(0).string(req.input.text).string(req.input.mediaType ?? "text/plain");
  } else {
    w.long(1).bytes(req.input.data).string(req.input.mediaType);
  }
  w.optional(req.provider, (w, v) => w.string(v))
    .optional(req.model, (w, v) => w.string(v))
    .optional(req.temperature, (w, v) => w.double(v))
    .optional(req.maxOutputTokens, (w, v) => w.int(v))
    .optional(req.maxLatencyMs, (w, v) => w.long(v))
    .optional(req.maxAttempts, (w, v) => w.int(v))
    .optional(req.clientReference, (w, v) => w.string(v));
  return w.finish();
}

/** Why the model stopped. */
export type FinishReason = "UNKNOWN" | "STOP" | "LENGTH" | "CONTENT_FILTER";
const FINISH_REASONS: readonly FinishReason[] = ["UNKNOWN", "STOP", "LENGTH", "CONTENT_FILTER"];

/** The model's answer (plaintext of a RESULT envelope). */
export interface AnalysisResult {
  /** The model's output text. */
  output: string;
  /** Provider that answered (`openai`, `anthropic`, or `offline` for the labelled non-model analyser). */
  provider: string;
  /** Model that answered. */
  model: string;
  /** Token counts, when the provider reported them. */
  usage: { inputTokens: number; outputTokens: number } | null;
  /** Why the model stopped. */
  finishReason: FinishReason;
  /** Time in the model call, milliseconds. */
  latencyMs: number;
  /** The request's client reference, echoed. */
  clientReference: string | null;
}

const MAX = 4 * 1024 * 1024 + 64 * 1024;

/** Decodes an `AnalysisResult` datum written with the schema this SDK knows. */
export function decodeAnalysisResult(datum: Uint8Array): AnalysisResult {
  const r = new AvroReader(datum);
  const output = r.string("output", MAX);
  const provider = r.string("provider", MAX);
  const model = r.string("model", MAX);
  const usage = r.optional("usage", (r) => ({ inputTokens: r.long(), outputTokens: r.long() }));
  const index = r.longBig();
  // The schema tells readers to map symbols they do not know to UNKNOWN.
  const finishReason = index >= 0n && index < BigInt(FINISH_REASONS.length) ? FINISH_REASONS[Number(index)]! : "UNKNOWN";
  const latencyMs = r.long();
  const clientReference = r.optional("client reference", (r) => r.string("client reference", MAX));
  if (r.remaining() !== 0) throw malformed("the analysis result has trailing bytes");
  return { output, provider, model, usage, finishReason, latencyMs, clientReference };
}
