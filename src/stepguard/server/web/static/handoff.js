// The hand-off page: a program (the Python SDK, a CLI) sent the user here to verify, enrol or run
// a passkey ceremony. The URL fragment holds a one-time secret; it is traded for a browser token
// and removed from the address bar at once.
import {
  HandoffTransport, StepGuardError, StepUpCancelled, createClient, createPasskeyCredential,
  describeError, getPasskeyCredential,
} from "./stepguard.js";

const panel = document.getElementById("handoff");
const title = document.getElementById("handoff-title");
const text = document.getElementById("handoff-text");
const actions = document.getElementById("handoff-actions");

const id = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] ?? "");
const secret = location.hash.slice(1);
if (secret) history.replaceState(null, "", location.pathname + location.search);
const storageKey = `stepguard.handoff.${id}`;
let browserToken = sessionStorage.getItem(storageKey);

function button(label, onclick, { primary = false, action = null } = {}) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = `sg-button ${primary ? "sg-primary" : "sg-secondary"}`;
  b.textContent = label;
  if (action) b.dataset.action = action;
  b.addEventListener("click", onclick);
  return b;
}

function show(state, heading, body, ...buttons) {
  panel.dataset.state = state;
  title.textContent = heading;
  text.textContent = body;
  actions.replaceChildren(...buttons);
  (buttons.find((b) => b.classList.contains("sg-primary")) ?? buttons[0])?.focus();
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (browserToken) headers["X-Handoff-Token"] = browserToken;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(`/handoff/${encodeURIComponent(id)}/${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new StepGuardError(data?.error ?? `HTTP ${res.status}`, { code: data?.code, status: res.status, body: data });
  return data;
}

async function cancel() {
  try { await api("POST", "cancel"); } catch { /* already closed */ }
  sessionStorage.removeItem(storageKey);
  show("cancelled", "Cancelled", "Nothing was verified. You can close this tab and return to the app.");
}

function finished(body) {
  sessionStorage.removeItem(storageKey);
  show("done", "All set", body);
}

function scopesText(scopes) {
  return scopes.length ? scopes.join(", ") : "a sensitive action";
}

async function stepUp(info) {
  const client = createClient({
    transport: new HandoffTransport({ handoffId: id, browserToken }),
    environmentId: info.environment_id,
  });
  show("working", "Verify it's you", `Your app is waiting for you to confirm: ${scopesText(info.requested_scopes)}.`);
  const prompt = { mfa: "promptMfa", reauthenticate: "promptReauthenticate" }[info.kind] ?? "promptStepUpAuth";
  try {
    await client[prompt]({ requestedScopes: info.requested_scopes });
  } catch (err) {
    if (err instanceof StepUpCancelled) return cancel();
    return show("error", "Verification failed", describeError(err),
      button("Try again", () => stepUp(info), { primary: true, action: "retry" }), button("Cancel", cancel, { action: "cancel" }));
  }
  try {
    await api("GET", "state");
    // Still open: the check found nothing to verify, so the program must not keep waiting.
    await api("POST", "cancel");
    show("done", "Nothing to verify", "This action doesn't need extra verification. Return to the app.");
  } catch (err) {
    if (err.code === "code_used") finished("You're verified. Return to the app: it has continued.");
    else show("error", "Something went wrong", describeError(err));
  }
}

function ceremony(info) {
  const creating = info.kind === "passkey.create";
  const run = async () => {
    show("working", creating ? "Create a passkey" : "Use your passkey", "Follow your browser's prompt…");
    try {
      const credential = creating ? await createPasskeyCredential(info.options) : await getPasskeyCredential(info.options);
      await api("POST", "complete", { credential });
      finished(creating ? "Your passkey was created. Return to the app." : "Done. Return to the app.");
    } catch (err) {
      show("error", "The passkey step didn't finish", describeError(err),
        button("Try again", run, { primary: true, action: "retry" }), button("Cancel", cancel, { action: "cancel" }));
    }
  };
  show("ready", creating ? "Create a passkey" : "Use your passkey",
    creating ? "Your app asks you to create a passkey with this browser or your security key." :
      "Your app asks you to confirm with your passkey.",
    button("Continue", run, { primary: true, action: "continue" }), button("Cancel", cancel, { action: "cancel" }));
}

function enroll(info) {
  const client = createClient({
    transport: new HandoffTransport({ handoffId: id, browserToken }),
    environmentId: info.environment_id,
  });
  const step = (fn) => async () => {
    try { await fn(); text.textContent = "Added. Add another, or finish."; } catch (err) { text.textContent = describeError(err); }
  };
  show("ready", "Secure your account", "Add the ways you'll confirm sensitive actions.",
    button("Authenticator app", step(() => client.enrollTotp()), { action: "totp" }),
    button("Passkey", step(() => client.registerPasskey()), { action: "passkey" }),
    button("Recovery codes", step(() => client.showRecoveryCodes({ generateNew: true })), { action: "recovery" }),
    button("Finish", async () => {
      try { await api("POST", "complete", { credential: {} }); finished("Your account is set up. Return to the app."); } catch (err) { show("error", "Something went wrong", describeError(err)); }
    }, { primary: true, action: "finish" }),
    button("Cancel", cancel, { action: "cancel" }));
}

async function start() {
  let info;
  try {
    if (secret) {
      info = await api("POST", "claim", { secret });
      browserToken = info.browser_token;
      sessionStorage.setItem(storageKey, browserToken);
    } else if (browserToken) {
      info = await api("GET", "state");
    } else {
      throw new StepGuardError("This link is incomplete or was already used. Start again from the app.");
    }
  } catch (err) {
    const used = err.code === "code_used";
    return show("error", used ? "This link was already used" : "This link can't be used",
      used ? "Each link works once. Start again from the app." : describeError(err));
  }
  if (["step_up", "mfa", "reauthenticate"].includes(info.kind)) return stepUp(info);
  if (info.kind === "enroll") return enroll(info);
  return ceremony(info);
}

start();
