// Cross-language driver for the Rust tests (tests/tests/browser_sdk.rs): seals and opens
// with this package and prints JSON, so Rust can open what TypeScript sealed and the
// other way round. Usage: node dist/tools/interop.js <command> <input.json>
//
//   seal-vectors   seal with the golden vectors' keys (fresh randomness)
//   open-vectors   open envelopes with the golden vectors' keys
//   seal-request   seal an analysis request for a running pipeline's key directory
//   open-answer    open that pipeline's answer with the user's key
import { readFileSync } from "node:fs";

import { fromBase64, fromHex, toHex } from "../src/bytes.js";
import { ZenvelopeError } from "../src/errors.js";
import { deriveUserKey } from "../src/keys.js";
import { dangerDevRootPolicy, KeyDirectory } from "../src/directory.js";
import { countersign, openAnswer, sealAnalysisRequest } from "../src/requests.js";
import { open, seal } from "../src/seal.js";
import { envelopeVectors, vectorKeys, type Json } from "../test/support.js";

const utf8 = (s: string) => new TextEncoder().encode(s);

async function sealVectors(input: Json): Promise<Json> {
  const v = envelopeVectors();
  const keys = await vectorKeys(v);
  const base = { tenant: v.user.tenant, subject: v.pseudonym.expected, purpose: "INDIVIDUAL_REQUEST" as const, schemaId: 0 };
  const request = await seal(
    { ...base, kind: "REQUEST", contentType: "text/plain; charset=utf-8" },
    utf8(input.request_text),
    [keys.user, keys.fleet],
    { signer: keys.producer },
  );
  const record = await seal({ ...base, kind: "RECORD", contentType: "text/plain; charset=utf-8" }, utf8(input.record_text), [keys.user]);
  // A browser seals without a signature; its backend countersigns.
  const browser = await seal({ ...base, kind: "REQUEST", contentType: "text/plain; charset=utf-8" }, utf8(input.request_text), [keys.user, keys.fleet]);
  const fleet = { keyId: v.keys.fleet_key_id, keyVersion: v.keys.fleet_key_version, algorithm: "RSA_OAEP_SHA256", spki: fromHex(v.keys.fleet_public_spki) };
  const directory = { fleetKey: () => fleet, resultSigningKeys: () => [] };
  const countersigned = await countersign(browser.bytes, { signer: keys.producer, tenant: base.tenant, subject: base.subject, directory });
  return { request: toHex(request.bytes), record: toHex(record.bytes), countersigned: toHex(countersigned) };
}

async function openVectors(input: Json): Promise<Json> {
  const v = envelopeVectors();
  const keys = await vectorKeys(v);
  const out: Json[] = [];
  for (const e of input.envelopes) {
    const held = e.open_with === "user" ? { user: keys.user } : { fleet: [keys.fleetPrivate] };
    try {
      const opened = await open(fromHex(e.hex), { trusted: keys.trusted, requireSignature: e.require_signature }, held);
      out.push({ name: e.name, plaintext: new TextDecoder().decode(opened.plaintext), kind: opened.header.kind, signed_by: opened.signedBy });
    } catch (err) {
      out.push({ name: e.name, error: err instanceof ZenvelopeError ? err.code : String(err) });
    }
  }
  return out;
}

async function directoryOf(input: Json): Promise<KeyDirectory> {
  const pcrs = new Map<number, Uint8Array>(Object.entries(input.pcrs as Record<string, string>).map(([i, h]) => [Number(i), fromHex(h)]));
  return KeyDirectory.load(
    (input.records_b64 as string[]).map(fromBase64),
    dangerDevRootPolicy(fromBase64(input.dev_root_b64), pcrs),
  );
}

async function sealRequest(input: Json): Promise<Json> {
  const directory = await directoryOf(input);
  const user = await deriveUserKey(input.tenant, input.identity, input.passphrase, { iterations: input.iterations });
  const sealed = await sealAnalysisRequest({
    tenant: input.tenant,
    subject: input.subject,
    user,
    directory,
    request: { instruction: input.instruction, input: { text: input.text }, clientReference: input.client_reference },
  });
  const fleet = directory.fleetKey();
  return { transport: sealed.transport, message_id: sealed.messageId, fleet_key: `${fleet.keyId}/${fleet.keyVersion}` };
}

async function openAnswerCmd(input: Json): Promise<Json> {
  const directory = await directoryOf(input);
  const user = await deriveUserKey(input.tenant, input.identity, input.passphrase, { iterations: input.iterations });
  const a = await openAnswer(input.answer_b64, { directory, user, subject: input.subject });
  return {
    kind: a.kind,
    text: a.text,
    correlation_id: a.correlationId,
    provider: a.result?.provider ?? null,
    model: a.result?.model ?? null,
    client_reference: a.result?.clientReference ?? null,
    signed_by: a.signedBy,
  };
}

const commands: Record<string, (input: Json) => Promise<Json>> = {
  "seal-vectors": sealVectors,
  "open-vectors": openVectors,
  "seal-request": sealRequest,
  "open-answer": openAnswerCmd,
};

const [command, file] = process.argv.slice(2);
const run = command ? commands[command] : undefined;
if (!run || !file) {
  process.stderr.write(`usage: interop.js <${Object.keys(commands).join("|")}> <input.json>\n`);
  process.exit(2);
}
try {
  process.stdout.write(JSON.stringify(await run(JSON.parse(readFileSync(file, "utf8")))) + "\n");
} catch (err) {
  process.stderr.write(`${err instanceof ZenvelopeError ? `${err.code}: ` : ""}${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
