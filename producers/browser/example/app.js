// A journal page: derive the user's key, verify the enclave's key, seal the entry,
// send it to the backend, and open the answer, all in the browser.
import {
  KeyDirectory,
  awsNitroPolicy,
  dangerDevRootPolicy,
  deriveUserKey,
  fromBase64,
  fromHex,
  openAnswer,
  sealAnalysisRequest,
} from "./sdk/index.js";
import { iterations, tenant, trust } from "./config.js";

const $ = (id) => document.getElementById(id);
const say = (text, cls) => {
  const li = document.createElement("li");
  li.textContent = text;
  if (cls) li.className = cls;
  $("status").append(li);
};

async function json(url, init) {
  const res = await fetch(url, init);
  if (!res.ok) throw new Error(`${url} answered ${res.status}: ${await res.text()}`);
  return res.json();
}

function policy() {
  const pcrs = new Map(Object.entries(trust.pcrs).map(([i, hex]) => [Number(i), fromHex(hex)]));
  return trust.dangerDevRootBase64
    ? dangerDevRootPolicy(fromBase64(trust.dangerDevRootBase64), pcrs)
    : awsNitroPolicy(pcrs);
}

$("entry").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("send").disabled = true;
  $("answer").textContent = "";
  $("status").replaceChildren();
  try {
    const identity = $("identity").value;
    say("Signing in…");
    // The backend knows who is signed in and tells the page its pseudonym (it holds the
    // tenant's metadata key); the passphrase never leaves the page.
    const session = await json(`/api/session?identity=${encodeURIComponent(identity)}`);
    say("Deriving your key on this device (PBKDF2)…");
    const user = await deriveUserKey(tenant, identity, $("passphrase").value, { iterations });
    // The backend keeps the id of the user's key (never the key): a mistyped passphrase
    // would otherwise seal entries the user can never open again.
    if (session.kekId && session.kekId !== user.kekId) {
      throw new Error("That is not the passphrase you registered with; nothing was sent.");
    }
    if (!session.kekId) {
      await json("/api/register", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ kekId: user.kekId }),
      });
      say("First entry: your key's id is registered (the key itself never leaves this device).");
    }
    say("Verifying the enclave's attested keys…");
    const records = (await json("/api/keys")).records.map(fromBase64);
    const directory = await KeyDirectory.load(records, policy());
    const fleet = directory.fleetKey();
    say(`Enclave key ${fleet.keyId} v${fleet.keyVersion} verified (image ${fleet.measurement.slice(0, 16)}…).`);
    const sealed = await sealAnalysisRequest({
      tenant,
      subject: session.subject,
      user,
      directory,
      request: {
        instruction: "Summarise this journal entry in one supportive sentence.",
        input: { text: $("text").value },
        clientReference: `entry-${Date.now()}`,
      },
    });
    say(`Sealed on this device: message ${sealed.messageId}, ${sealed.bytes.length} bytes of envelope.`);
    const sent = await json("/api/requests", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ envelope: sealed.transport }),
    });
    say(`Sent; the backend signed and queued it (partition ${sent.partition}, offset ${sent.offset}). Waiting for the answer…`);
    const answer = await json(`/api/answers/${sealed.messageId}`);
    let opened;
    try {
      opened = await openAnswer(answer.envelope, { directory, responseKey: sealed.responseKey, subject: session.subject });
    } finally {
      sealed.responseKey.forget();
    }
    say(`Answer opened on this device (${opened.kind}, signed by ${opened.signedBy.keyId} v${opened.signedBy.keyVersion}).`);
    $("answer").textContent = opened.text;
    $("answer").dataset.kind = opened.kind;
  } catch (error) {
    say(error && error.code ? `${error.message} (${error.code})` : String(error), "error");
  } finally {
    $("send").disabled = false;
  }
});
