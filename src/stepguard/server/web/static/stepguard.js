// stepguard.js: the browser SDK and built-in UI of stepguard. A dependency-free ES module.
//
//   import { configure, promptStepUpAuth, stepUpFetch } from "https://auth.example.com/static/stepguard.js";
//   configure({ baseUrl: "https://auth.example.com", environmentId: "env_…", sessionToken });
//   const res = await stepUpFetch("/wallet/export", { method: "POST" }, { scope: "wallet:export" });
//
// Every verify/prompt function resolves with the elevated access token (a string) and keeps it;
// stepUpFetch attaches it as X-Elevated-Access-Token and answers an RFC 9470 challenge (401,
// error="insufficient_user_authentication") with a prompt and one retry. Closing a prompt rejects
// with StepUpCancelled; a refused verification rejects with a VerificationError carrying `code`.

export const ELEVATED_TOKEN_HEADER = "X-Elevated-Access-Token";
const HANDOFF_TOKEN_HEADER = "X-Handoff-Token";
const LINK_SCOPE = "credential:link";
const SKEW_SECONDS = 5;
// The server may allow a resend at once (a token bucket); a short pause still saves the user
// from a second code racing the first one, so the button waits at least this long.
const MIN_RESEND_SECONDS = 30;

function resendAt(sent) {
  return Math.max(sent.resendAfter ?? 0, Date.now() / 1000 + MIN_RESEND_SECONDS);
}

// ---------------------------------------------------------------------------------- errors

/** Base of every error this module throws; `code` is the server's stable code. */
export class StepGuardError extends Error {
  constructor(message, { code = "error", status = 0, body = null } = {}) {
    super(message);
    this.name = "StepGuardError";
    this.code = code;
    this.status = status;
    this.body = body;
  }
}

/** The user closed the prompt (Cancel, Esc) or the hand-off was cancelled. */
export class StepUpCancelled extends StepGuardError {
  constructor(message = "The verification was cancelled.") {
    super(message, { code: "step_up_cancelled" });
    this.name = "StepUpCancelled";
  }
}

/** The server refused a verification (wrong code, expired, rate limited, …). */
export class VerificationError extends StepGuardError {
  constructor(message, options) {
    super(message, options);
    this.name = "VerificationError";
    this.attemptsRemaining = options?.body?.attempts_remaining ?? null;
    this.retryAfter = options?.body?.retry_after ?? null;
  }
}

const VERIFICATION_CODES = new Set([
  "invalid_code", "code_expired", "code_used", "challenge_not_found", "invalid_signature",
  "method_not_allowed", "mfa_required", "no_methods_available", "rate_limited",
  "verification_failed", "invalid_scopes",
]);

function errorFrom(status, body) {
  const code = body?.code ?? `http_${status}`;
  const message = body?.error ?? body?.detail ?? `Request failed (${status})`;
  const Cls = VERIFICATION_CODES.has(code) ? VerificationError : StepGuardError;
  return new Cls(message, { code, status, body });
}

/** A readable sentence for an error, for the built-in UI. */
export function describeError(err) {
  if (!(err instanceof StepGuardError)) {
    if (err?.name === "NotAllowedError") return "The passkey request was dismissed or timed out.";
    if (err?.name === "AbortError") return "The request was stopped.";
    return err?.message || "Something went wrong.";
  }
  switch (err.code) {
    case "invalid_code": {
      const left = err.attemptsRemaining;
      return left == null ? "That code is not right." :
        `That code is not right. ${left} attempt${left === 1 ? "" : "s"} left.`;
    }
    case "code_expired": return "That code has expired. Ask for a new one.";
    case "code_used": return "That code was already used. Ask for a new one.";
    case "rate_limited": {
      const wait = Math.ceil(err.retryAfter ?? 0);
      return wait ? `Too many attempts. Try again in ${formatWait(wait)}.` : "Too many attempts. Try again later.";
    }
    case "mfa_required": return "Your account uses two-factor authentication: choose a passkey or an authenticator app.";
    default: return err.message;
  }
}

function formatWait(seconds) {
  if (seconds < 90) return `${seconds} s`;
  return `${Math.ceil(seconds / 60)} min`;
}

// ------------------------------------------------------------------------------ transports

async function readJson(res) {
  const text = await res.text();
  if (!text) return null;
  try { return JSON.parse(text); } catch { return { error: text }; }
}

/** Talks to /sdk/{environment}/… with the user's session. */
export class DirectTransport {
  constructor({ baseUrl, environmentId, sessionToken = null, fetchImpl = null }) {
    this.baseUrl = (baseUrl ?? globalThis.location?.origin ?? "").replace(/\/$/, "");
    this.environmentId = environmentId;
    this.sessionToken = sessionToken;
    this.fetchImpl = fetchImpl ?? globalThis.fetch.bind(globalThis);
  }

  async call(method, path, body, headers = {}) {
    const h = { Accept: "application/json", ...headers };
    if (this.sessionToken) h.Authorization = `Bearer ${this.sessionToken}`;
    if (body !== undefined) h["Content-Type"] = "application/json";
    const res = await this.fetchImpl(`${this.baseUrl}/sdk/${this.environmentId}/${path}`, {
      method, headers: h, body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, headers: res.headers, body: await readJson(res) };
  }
}

/** Talks through a hand-off's proxy: the server attaches the session; tokens never reach us. */
export class HandoffTransport {
  constructor({ handoffId, browserToken, baseUrl = "" }) {
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.handoffId = handoffId;
    this.browserToken = browserToken;
    this.isHandoff = true;
  }

  async call(method, path, body) {
    const h = { Accept: "application/json", [HANDOFF_TOKEN_HEADER]: this.browserToken };
    if (body !== undefined) h["Content-Type"] = "application/json";
    const res = await fetch(`${this.baseUrl}/handoff/${encodeURIComponent(this.handoffId)}/sdk/${path}`, {
      method, headers: h, body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, headers: res.headers, body: await readJson(res) };
  }
}

// ---------------------------------------------------------------------- challenge parsing

/** Parse `WWW-Authenticate: Bearer error="…", scope="…", max_age="…"` (RFC 9470). */
export function parseChallenge(header) {
  if (!header) return null;
  const m = /^\s*Bearer\s+(.*)$/i.exec(header);
  if (!m) return null;
  const params = {};
  const re = /([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g;
  let p;
  while ((p = re.exec(m[1]))) params[p[1].toLowerCase()] = (p[2] ?? p[3]).replace(/\\(.)/g, "$1");
  return params;
}

function isStepUpChallenge(res) {
  if (res.status !== 401) return null;
  const ch = parseChallenge(res.headers?.get?.("WWW-Authenticate"));
  return ch && ch.error === "insufficient_user_authentication" ? ch : null;
}

// ------------------------------------------------------------------------------- encoding

const B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

function base58(bytes) {
  let zeros = 0;
  while (zeros < bytes.length && bytes[zeros] === 0) zeros++;
  const digits = [];
  for (let i = zeros; i < bytes.length; i++) {
    let carry = bytes[i];
    for (let j = 0; j < digits.length; j++) {
      carry += digits[j] << 8;
      digits[j] = carry % 58;
      carry = (carry / 58) | 0;
    }
    while (carry) { digits.push(carry % 58); carry = (carry / 58) | 0; }
  }
  return "1".repeat(zeros) + digits.reverse().map((d) => B58[d]).join("");
}

function utf8Hex(text) {
  return "0x" + Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0")).join("");
}

function b64urlToBytes(s) {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(s.length / 4) * 4, "=");
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function bytesToB64url(buf) {
  const bytes = buf instanceof ArrayBuffer ? new Uint8Array(buf) : new Uint8Array(buf.buffer ?? buf);
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// WebAuthn JSON <-> objects: the browser's own helpers where present (Chromium >= 129),
// a small fallback elsewhere.
function creationOptions(json) {
  if (globalThis.PublicKeyCredential?.parseCreationOptionsFromJSON) {
    return PublicKeyCredential.parseCreationOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: b64urlToBytes(json.challenge),
    user: { ...json.user, id: b64urlToBytes(json.user.id) },
    excludeCredentials: (json.excludeCredentials ?? []).map((c) => ({ ...c, id: b64urlToBytes(c.id) })),
  };
}

function requestOptions(json) {
  if (globalThis.PublicKeyCredential?.parseRequestOptionsFromJSON) {
    return PublicKeyCredential.parseRequestOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: b64urlToBytes(json.challenge),
    allowCredentials: (json.allowCredentials ?? []).map((c) => ({ ...c, id: b64urlToBytes(c.id) })),
  };
}

function credentialJson(cred) {
  if (typeof cred.toJSON === "function") return cred.toJSON();
  const r = cred.response;
  const response = { clientDataJSON: bytesToB64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = bytesToB64url(r.attestationObject);
    response.transports = r.getTransports?.() ?? [];
  } else {
    response.authenticatorData = bytesToB64url(r.authenticatorData);
    response.signature = bytesToB64url(r.signature);
    if (r.userHandle) response.userHandle = bytesToB64url(r.userHandle);
  }
  return {
    id: cred.id, rawId: bytesToB64url(cred.rawId), type: cred.type, response,
    authenticatorAttachment: cred.authenticatorAttachment ?? undefined,
    clientExtensionResults: cred.getClientExtensionResults?.() ?? {},
  };
}

/** Run navigator.credentials.create() on the server's creation options JSON. */
export async function createPasskeyCredential(optionsJson, { signal, timeoutMs } = {}) {
  const publicKey = creationOptions(timeoutMs ? { ...optionsJson, timeout: timeoutMs } : optionsJson);
  return credentialJson(await navigator.credentials.create({ publicKey, signal }));
}

/** Run navigator.credentials.get() on the server's request options JSON. */
export async function getPasskeyCredential(optionsJson, { signal, timeoutMs } = {}) {
  const publicKey = requestOptions(timeoutMs ? { ...optionsJson, timeout: timeoutMs } : optionsJson);
  return credentialJson(await navigator.credentials.get({ publicKey, signal }));
}

// -------------------------------------------------------------------------------- wallets

/** Wallets that announced themselves through the Solana wallet standard. */
const standardWallets = [];
let walletStandardStarted = false;

function startWalletStandard() {
  if (walletStandardStarted || typeof window === "undefined") return;
  walletStandardStarted = true;
  const api = { register: (...wallets) => { standardWallets.push(...wallets); return () => {}; } };
  window.addEventListener("wallet-standard:register-wallet", (e) => { try { e.detail(api); } catch { /* a broken wallet */ } });
  try {
    window.dispatchEvent(new CustomEvent("wallet-standard:app-ready", { detail: api }));
  } catch { /* no CustomEvent */ }
}

/** The first account of a wallet-standard wallet that can sign Solana messages (connects it). */
export async function connectSolanaWallet() {
  startWalletStandard();
  for (const wallet of standardWallets) {
    if (!wallet.features?.["solana:signMessage"]) continue;
    let accounts = wallet.accounts ?? [];
    if (!accounts.length && wallet.features["standard:connect"]) {
      accounts = (await wallet.features["standard:connect"].connect())?.accounts ?? wallet.accounts ?? [];
    }
    if (accounts.length) return { wallet, account: accounts[0], address: accounts[0].address };
  }
  throw new StepGuardError("No Solana wallet found in this browser (wallet standard).", { code: "no_wallet" });
}

/** Sign `message` (a string) with the user's browser wallet; the server's encoding of the answer. */
export async function signWithBrowserWallet({ chain, address, message, ethereum = null }) {
  if (chain === "ethereum") {
    const provider = ethereum ?? globalThis.ethereum;
    if (!provider?.request) throw new StepGuardError("No Ethereum wallet found in this browser (window.ethereum).", { code: "no_wallet" });
    const accounts = await provider.request({ method: "eth_requestAccounts" });
    const match = (accounts ?? []).find((a) => a.toLowerCase() === address.toLowerCase());
    if (!match) throw new StepGuardError(`Switch your wallet to ${address} and try again.`, { code: "wrong_account" });
    return await provider.request({ method: "personal_sign", params: [utf8Hex(message), match] });
  }
  startWalletStandard();
  for (const wallet of standardWallets) {
    const signMessage = wallet.features?.["solana:signMessage"];
    if (!signMessage) continue;
    let account = (wallet.accounts ?? []).find((a) => a.address === address);
    if (!account && wallet.features?.["standard:connect"]) {
      const connected = await wallet.features["standard:connect"].connect();
      account = (connected?.accounts ?? wallet.accounts ?? []).find((a) => a.address === address);
    }
    if (!account) continue;
    const [out] = await signMessage.signMessage({ account, message: new TextEncoder().encode(message) });
    return base58(new Uint8Array(out.signature));
  }
  throw new StepGuardError("No Solana wallet with this address found (wallet standard).", { code: "no_wallet" });
}

// ------------------------------------------------------------------------------- the client

function normScopes(scopes) {
  return [...new Set(scopes ?? [])].sort();
}

/**
 * The step-up client: check → verify → proceed, with the elevated tokens kept in memory.
 * Options: baseUrl, environmentId, sessionToken (or transport), webauthnTimeoutMs.
 */
export class StepGuardClient {
  constructor(options = {}) {
    this.options = options;
    this.transport = options.transport ?? new DirectTransport(options);
    this.tokens = [];
    this.otp = null;
    this.ui = new PromptUI(this);
  }

  /** Use another session token (after sign-in). Forgets the elevated tokens of the old one. */
  setSession(sessionToken) {
    if (this.transport instanceof DirectTransport) this.transport.sessionToken = sessionToken;
    this.resetState();
  }

  /** Forget the elevated tokens and the pending OTP. */
  resetState() {
    this.tokens = [];
    this.otp = null;
  }

  get isHandoff() {
    return Boolean(this.transport.isHandoff);
  }

  async request(method, path, body, { elevate = null, retried = false } = {}) {
    const headers = {};
    const held = elevate ? this.tokenFor([elevate]) : null;
    if (held) headers[ELEVATED_TOKEN_HEADER] = held.token;
    const res = await this.transport.call(method, path, body, headers);
    if (held?.singleUse) this.dropToken(held);
    if (res.status >= 200 && res.status < 300) return res.body;
    const challenge = isStepUpChallenge(res);
    if (challenge && elevate && !retried) {
      const scopes = challenge.scope ? challenge.scope.split(" ") : [elevate];
      await this.promptStepUpAuth({ requestedScopes: scopes });
      return this.request(method, path, body, { elevate, retried: true });
    }
    throw errorFrom(res.status, res.body);
  }

  // -- tokens --------------------------------------------------------------------------------
  /** Keep a minted token; answers it. Through a hand-off the program got it instead: null. */
  keep(answer, requestedScopes) {
    if (!answer?.elevated_access_token) return null;
    const scopes = new Set(answer.scopes ?? requestedScopes);
    this.tokens.push({ token: answer.elevated_access_token, scopes, expiresAt: answer.expires_at, singleUse: Boolean(answer.single_use) });
    return answer.elevated_access_token;
  }

  /** A held token covering every scope of `scopes` and not about to expire, or null. */
  tokenFor(scopes) {
    const now = Date.now() / 1000;
    this.tokens = this.tokens.filter((t) => !t.expiresAt || t.expiresAt - SKEW_SECONDS > now);
    return this.tokens.find((t) => scopes.every((s) => t.scopes.has(s))) ?? null;
  }

  dropToken(held) {
    this.tokens = this.tokens.filter((t) => t !== held);
  }

  /** The elevated token for `scopes` if one is held. */
  getElevatedToken(scopes) {
    return this.tokenFor(normScopes(Array.isArray(scopes) ? scopes : [scopes]))?.token ?? null;
  }

  // -- check ---------------------------------------------------------------------------------
  /** `{isRequired, credentials, defaultCredentialId}` for one scope. */
  async checkStepUpAuth(scope) {
    const a = await this.request("POST", "step-up/check", { scope });
    return { isRequired: a.is_required, credentials: a.credentials ?? [], defaultCredentialId: a.default_credential_id ?? null };
  }

  /** Whether `scope` needs a step-up now. Fails closed: any error answers true. */
  async isStepUpRequired(scope) {
    if (this.tokenFor([scope])) return false;
    try {
      return (await this.checkStepUpAuth(scope)).isRequired;
    } catch {
      return true;
    }
  }

  // -- verify methods ------------------------------------------------------------------------
  /** Send an email/SMS code (default: the first verified email). */
  async sendOtp({ credentialId = null } = {}) {
    const a = await this.request("POST", "otp/send", credentialId ? { credential_id: credentialId } : {});
    this.otp = { verificationId: a.verification_id, channel: a.channel, destination: a.destination, expiresAt: a.expires_at, resendAfter: a.resend_after };
    return this.otp;
  }

  async verifyOtp({ verificationToken, code, requestedScopes = [], verificationId = null } = {}) {
    const id = verificationId ?? this.otp?.verificationId;
    if (!id) throw new StepGuardError("Send a code first (sendOtp).", { code: "otp_not_initiated" });
    const answer = await this.request("POST", "otp/verify", { verification_id: id, code: String(verificationToken ?? code ?? "").trim(), requested_scopes: requestedScopes });
    this.otp = null;
    return this.keep(answer, requestedScopes);
  }

  async verifyTotpMfa({ code, deviceId = null, requestedScopes = [] } = {}) {
    const body = { code: String(code ?? "").trim(), requested_scopes: requestedScopes };
    if (deviceId) body.device_id = deviceId;
    return this.keep(await this.request("POST", "mfa/totp/verify", body), requestedScopes);
  }

  async verifyRecoveryCode({ code, requestedScopes = [] } = {}) {
    const answer = await this.request("POST", "mfa/recovery/verify", { code: String(code ?? "").trim(), requested_scopes: requestedScopes });
    return this.keep(answer, requestedScopes);
  }

  async verifyPasskeyMfa({ requestedScopes = [], signal } = {}) {
    const { challenge_id: challengeId, options } = await this.request("POST", "passkeys/authenticate/options", {});
    const credential = await getPasskeyCredential(options, { signal, timeoutMs: this.options.webauthnTimeoutMs });
    const answer = await this.request("POST", "passkeys/authenticate", { challenge_id: challengeId, credential, requested_scopes: requestedScopes });
    return this.keep(answer, requestedScopes);
  }

  /** A wallet challenge: `{challenge_id, message, chain, address, wallet_id}` (show `message`). */
  async walletChallenge({ walletId = null } = {}) {
    return this.request("POST", "wallets/challenge", walletId ? { wallet_id: walletId } : {});
  }

  async verifyWallet({ walletId = null, requestedScopes = [], challenge = null, ethereum = null } = {}) {
    const ch = challenge ?? await this.walletChallenge({ walletId });
    const signature = await signWithBrowserWallet({ chain: ch.chain, address: ch.address, message: ch.message, ethereum });
    const answer = await this.request("POST", "wallets/verify", { challenge_id: ch.challenge_id, signature, requested_scopes: requestedScopes });
    return this.keep(answer, requestedScopes);
  }

  // -- prompts (built-in UI) -----------------------------------------------------------------
  /** Step up for `requestedScopes`, routing to MFA or re-authentication like the server does. */
  promptStepUpAuth({ requestedScopes = [] } = {}) { return this.ui.stepUp("step_up", requestedScopes); }
  /** Step up with passkey, TOTP or a recovery code only. */
  promptMfa({ requestedScopes = [] } = {}) { return this.ui.stepUp("mfa", requestedScopes); }
  /** Step up with an email/SMS code or a wallet signature only. */
  promptReauthenticate({ requestedScopes = [] } = {}) { return this.ui.stepUp("reauthenticate", requestedScopes); }

  // -- enrolment -----------------------------------------------------------------------------
  async addTotpDevice({ alias = null } = {}) {
    return this.request("POST", "mfa/totp/devices", alias ? { alias } : {}, { elevate: LINK_SCOPE });
  }

  async verifyTotpDevice({ deviceId, code }) {
    return this.request("POST", `mfa/totp/devices/${encodeURIComponent(deviceId)}/verify`, { code: String(code).trim() });
  }

  async getRecoveryCodes({ generateNew = false } = {}) {
    return this.request("POST", "mfa/recovery-codes", { generate_new: generateNew }, { elevate: generateNew ? LINK_SCOPE : null });
  }

  async registerPasskeyCredential({ alias = null, signal } = {}) {
    const { challenge_id: challengeId, options } = await this.request("POST", "passkeys/register/options", alias ? { alias } : {}, { elevate: LINK_SCOPE });
    const credential = await createPasskeyCredential(options, { signal, timeoutMs: this.options.webauthnTimeoutMs });
    return this.request("POST", "passkeys/register", { challenge_id: challengeId, credential });
  }

  async linkWalletAccount({ chain = "ethereum", address = null, ethereum = null, onMessage = null } = {}) {
    let addr = address;
    if (!addr && chain === "ethereum") {
      const provider = ethereum ?? globalThis.ethereum;
      if (!provider?.request) throw new StepGuardError("No Ethereum wallet found in this browser.", { code: "no_wallet" });
      [addr] = await provider.request({ method: "eth_requestAccounts" });
    } else if (!addr) {
      addr = (await connectSolanaWallet()).address;
    }
    const ch = await this.request("POST", "wallets/link/challenge", { chain, address: addr }, { elevate: LINK_SCOPE });
    onMessage?.(ch.message, addr);
    const signature = await signWithBrowserWallet({ chain, address: addr, message: ch.message, ethereum });
    return this.request("POST", "wallets/link", { challenge_id: ch.challenge_id, signature });
  }

  async listCredentials() { return (await this.request("GET", "credentials")).credentials; }
  async listDevices() { return (await this.request("GET", "mfa/devices")).devices; }

  /** Built-in UI: TOTP enrolment (QR code, secret, first code). Resolves with the device. */
  enrollTotp(options) { return this.ui.enrollTotp(options); }
  /** Built-in UI: passkey registration. */
  registerPasskey(options) { return this.ui.registerPasskey(options); }
  /** Built-in UI: new recovery codes, shown once with copy/download and an acknowledgement. */
  showRecoveryCodes(options) { return this.ui.showRecoveryCodes(options); }
  /** Built-in UI: link a browser wallet (shows the exact message to sign). */
  linkWallet(options) { return this.ui.linkWallet(options); }

  // -- fetch ---------------------------------------------------------------------------------
  /**
   * fetch() for the app's own API: attaches the held elevated token for `scope` and, on a
   * step-up challenge, prompts and retries once. Bodies must be re-sendable (string, FormData).
   */
  async fetch(input, init = {}, { scope = null, prompt = true } = {}) {
    const send = (held) => {
      const headers = new Headers(init.headers ?? {});
      if (held) headers.set(ELEVATED_TOKEN_HEADER, held.token);
      return globalThis.fetch(input, { ...init, headers });
    };
    let held = scope ? this.tokenFor([scope]) : null;
    let res = await send(held);
    if (held?.singleUse) this.dropToken(held);
    const challenge = isStepUpChallenge(res);
    if (!challenge || !prompt) return res;
    const scopes = challenge.scope ? challenge.scope.split(" ") : (scope ? [scope] : []);
    if (!scopes.length) return res;
    await this.promptStepUpAuth({ requestedScopes: scopes });
    held = this.tokenFor(scopes);
    res = await send(held);
    if (held?.singleUse) this.dropToken(held);
    return res;
  }
}

// ------------------------------------------------------------------------------------ the UI

let cssAdded = false;
function addStylesheet() {
  if (cssAdded || typeof document === "undefined") return;
  cssAdded = true;
  if (document.querySelector("link[data-stepguard]")) return;
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = new URL("./stepguard.css", import.meta.url).href;
  link.dataset.stepguard = "";
  document.head.append(link);
}

/** Tiny DOM builder: el("p", {class: "x"}, "text", child). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c != null && c !== false) node.append(c);
  return node;
}

let uid = 0;
const nextId = (p) => `sg-${p}-${++uid}`;

const METHOD_LABELS = {
  passkey: "Passkey",
  totp: "Authenticator app",
  recovery_code: "Recovery code",
  email: "Email code",
  phone_number: "SMS code",
  blockchain: "Wallet signature",
};
const MFA_FORMATS = new Set(["passkey", "totp", "recovery_code"]);
const REAUTH_FORMATS = new Set(["email", "phone_number", "blockchain"]);

function scopeText(scopes) {
  return scopes.length ? scopes.join(", ") : "this action";
}

/** One modal dialog at a time; screens replace its content. */
class Dialog {
  constructor() {
    addStylesheet();
    this.titleId = nextId("title");
    this.onCancel = null;
    this.cancellable = true;
    this.node = el("dialog", { class: "sg-dialog", "aria-labelledby": this.titleId, "data-stepguard": "" });
    // Esc does what the screen's Cancel button does; a screen without one (new recovery codes
    // awaiting their acknowledgement, a finished enrolment) is left only through its own button.
    this.node.addEventListener("cancel", (e) => { e.preventDefault(); if (this.cancellable) this.cancel(); });
    document.body.append(this.node);
  }

  open() {
    if (!this.node.open) this.node.showModal();
  }

  /** Replace the content: a title, then `body` nodes, then the footer buttons. */
  screen(name, title, body, { cancelLabel = "Cancel" } = {}) {
    this.node.dataset.screen = name;
    this.cancellable = Boolean(cancelLabel);
    const heading = el("h2", { id: this.titleId, class: "sg-title" }, title);
    const close = cancelLabel ? el("button", { type: "button", class: "sg-button sg-secondary", "data-action": "cancel", onclick: () => this.cancel() }, cancelLabel) : null;
    this.status = el("p", { class: "sg-status", role: "status", "aria-live": "polite" });
    this.error = el("p", { class: "sg-error", role: "alert", hidden: true });
    this.node.replaceChildren(el("div", { class: "sg-card" }, heading, body, this.status, this.error, close ? el("div", { class: "sg-footer" }, close) : null));
    this.open();
    const first = this.node.querySelector("[autofocus]") ?? this.node.querySelector("input, select, button:not([data-action=cancel])");
    first?.focus();
  }

  showError(err) {
    this.error.textContent = typeof err === "string" ? err : describeError(err);
    this.error.hidden = false;
    this.node.dataset.error = err?.code ?? "error";
  }

  clearError() {
    this.error.hidden = true;
    this.error.textContent = "";
    delete this.node.dataset.error;
  }

  setStatus(text, busy = false) {
    this.status.replaceChildren(busy ? el("span", { class: "sg-spinner", "aria-hidden": "true" }) : "", text ?? "");
  }

  cancel() {
    const fn = this.onCancel;
    this.onCancel = null;
    this.close();
    fn?.();
  }

  close() {
    if (this.node.open) this.node.close();
    this.node.remove();
  }
}

/** A form whose submit runs `action` with the button disabled; errors stay on the screen. */
function busyForm(dialog, fields, submitLabel, action) {
  const submit = el("button", { type: "submit", class: "sg-button sg-primary" }, submitLabel);
  const form = el("form", { class: "sg-form", novalidate: true }, fields, el("div", { class: "sg-actions" }, submit));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (submit.disabled) return;
    submit.disabled = true;
    form.setAttribute("aria-busy", "true");
    dialog.clearError();
    try {
      await action(form);
    } catch (err) {
      dialog.showError(err);
      dialog.setStatus("");
    } finally {
      submit.disabled = false;
      form.removeAttribute("aria-busy");
    }
  });
  return form;
}

function codeField(label, { id = nextId("code"), numeric = true, autocomplete = "one-time-code", hint = null } = {}) {
  const hintId = hint ? nextId("hint") : null;
  const input = el("input", {
    id, name: "code", type: "text", required: true, autofocus: true, autocomplete,
    inputmode: numeric ? "numeric" : "text", spellcheck: "false", class: "sg-input", "aria-describedby": hintId,
    maxlength: numeric ? "10" : "64",
  });
  return { input, node: el("div", { class: "sg-field" }, el("label", { for: id }, label), input, hint ? el("p", { id: hintId, class: "sg-hint" }, hint) : null) };
}

/** An inline SVG as an image URL: an image is never scripted, unlike markup in the page. */
function svgDataUrl(svg) {
  const standalone = /\sxmlns=/.test(svg.slice(0, svg.indexOf(">"))) ? svg : svg.replace("<svg", '<svg xmlns="http://www.w3.org/2000/svg"');
  return `data:image/svg+xml;charset=utf-8,${encodeURIComponent(standalone)}`;
}

class PromptUI {
  constructor(client) {
    this.client = client;
    this.active = null;
  }

  // ------------------------------------------------------------------------- step-up prompt
  async options(mode, scopes) {
    const checks = await Promise.all(scopes.map((s) => this.client.checkStepUpAuth(s)));
    if (!checks.some((c) => c.isRequired)) return null;
    const required = checks.filter((c) => c.isRequired);
    // A credential usable for every required scope (the server re-checks at verify).
    let creds = required[0].credentials.filter((c) => required.every((r) => r.credentials.some((o) => o.id === c.id)));
    const allowed = mode === "mfa" ? MFA_FORMATS : mode === "reauthenticate" ? REAUTH_FORMATS : null;
    if (allowed) creds = creds.filter((c) => allowed.has(c.format));
    const def = required[0].defaultCredentialId;
    creds.sort((a, b) => (b.id === def) - (a.id === def));
    // One entry per method; TOTP devices are chosen on the TOTP screen.
    const choices = [];
    for (const c of creds) {
      if (c.format === "totp") {
        const existing = choices.find((x) => x.format === "totp");
        if (existing) { existing.devices.push(c); continue; }
        choices.push({ id: c.id, format: "totp", label: METHOD_LABELS.totp, devices: [c], credential: c });
      } else {
        const detail = c.format === "recovery_code" ? null : c.alias;
        choices.push({ id: c.id, format: c.format, label: METHOD_LABELS[c.format] ?? c.format, detail, credential: c, devices: [] });
      }
    }
    return { choices, defaultId: def };
  }

  stepUp(mode, requestedScopes) {
    const scopes = normScopes(requestedScopes);
    // A prompt opened from an enrolment dialog stacks on top of it (both are modal).
    const dialog = new Dialog();
    this.active = dialog;
    return new Promise((resolve, reject) => {
      dialog.onCancel = () => { this.active = null; reject(new StepUpCancelled()); };
      const done = (token) => {
        dialog.onCancel = null;
        dialog.close();
        this.active = null;
        resolve(token);
      };
      const fail = (err) => {
        dialog.onCancel = null;
        dialog.close();
        this.active = null;
        reject(err);
      };
      dialog.screen("loading", "Confirm it's you", el("p", { class: "sg-lead" }, "Checking how you can verify…"));
      dialog.setStatus("Loading…", true);
      this.options(mode, scopes).then((found) => {
        if (found === null) return done(null);
        if (!found.choices.length) {
          dialog.screen("unavailable", "No way to verify", el("p", { class: "sg-lead" },
            mode === "mfa" ? "Add a passkey or an authenticator app first." :
              mode === "reauthenticate" ? "Add an email address, a phone number or a wallet first." :
                "Add a verification method to your account first."), { cancelLabel: "Close" });
          return undefined;
        }
        const flow = { dialog, scopes, done, fail, found };
        if (found.choices.length === 1) return this.method(flow, found.choices[0]);
        return this.choose(flow);
      }).catch(fail);
    });
  }

  choose(flow) {
    const { dialog, found, scopes } = flow;
    const name = nextId("method");
    const options = found.choices.map((c, i) => {
      const id = nextId("opt");
      return el("div", { class: "sg-choice" },
        el("input", { type: "radio", name, id, value: c.id, checked: i === 0, "data-format": c.format }),
        el("label", { for: id }, el("span", { class: "sg-choice-label" }, c.label),
          c.detail ? el("span", { class: "sg-choice-detail" }, c.detail) : null,
          i === 0 && c.id === found.defaultId ? el("span", { class: "sg-badge" }, "Default") : null));
    });
    const form = busyForm(dialog, el("fieldset", { class: "sg-fieldset" }, el("legend", {}, "Choose a way to verify"), options), "Continue", async (f) => {
      const picked = f.querySelector("input[type=radio]:checked")?.value;
      const choice = found.choices.find((c) => c.id === picked) ?? found.choices[0];
      await this.method(flow, choice);
    });
    dialog.screen("choose", "Confirm it's you", [el("p", { class: "sg-lead" }, `To continue with ${scopeText(scopes)}, verify your identity.`), form]);
  }

  backLink(flow) {
    if (flow.found.choices.length < 2) return null;
    return el("button", { type: "button", class: "sg-link", "data-action": "other-method", onclick: () => this.choose(flow) }, "Use another method");
  }

  async method(flow, choice) {
    switch (choice.format) {
      case "email":
      case "phone_number": return this.otpScreen(flow, choice);
      case "totp": return this.totpScreen(flow, choice);
      case "recovery_code": return this.recoveryScreen(flow);
      case "passkey": return this.passkeyScreen(flow);
      case "blockchain": return this.walletScreen(flow, choice);
      default: throw new StepGuardError(`Unsupported method ${choice.format}`);
    }
  }

  async otpScreen(flow, choice) {
    const { dialog, scopes } = flow;
    dialog.screen("otp-sending", "Check your messages", el("p", { class: "sg-lead" }, "Sending a code…"));
    dialog.setStatus("Sending…", true);
    let sent;
    try {
      sent = await this.client.sendOtp({ credentialId: choice.id });
    } catch (err) {
      dialog.showError(err);
      dialog.setStatus("");
      return;
    }
    const field = codeField("Verification code", { hint: "Enter the 6-digit code." });
    const resend = el("button", { type: "button", class: "sg-link", "data-action": "resend", disabled: true });
    let timer = null;
    const countdown = (until) => {
      clearInterval(timer);
      const tick = () => {
        const left = Math.ceil(until - Date.now() / 1000);
        if (left > 0) {
          resend.disabled = true;
          resend.textContent = `Resend code in ${left} s`;
        } else {
          clearInterval(timer);
          resend.disabled = false;
          resend.textContent = "Resend code";
        }
      };
      tick();
      timer = setInterval(tick, 1000);
    };
    const destination = el("strong", { class: "sg-destination" }, sent.destination);
    resend.addEventListener("click", async () => {
      resend.disabled = true;
      dialog.clearError();
      try {
        const again = await this.client.sendOtp({ credentialId: choice.id });
        destination.textContent = again.destination;
        countdown(resendAt(again));
        dialog.setStatus("A new code is on its way.");
        field.input.focus();
      } catch (err) {
        dialog.showError(err);
        resend.disabled = false;
      }
    });
    const form = busyForm(dialog, field.node, "Verify", async () => {
      dialog.setStatus("Verifying…", true);
      const token = await this.client.verifyOtp({ code: field.input.value, requestedScopes: scopes });
      clearInterval(timer);
      flow.done(token);
    });
    const sentence = el("p", { class: "sg-lead" }, `We sent a code by ${sent.channel === "sms" ? "SMS" : "email"} to `, destination, ".");
    dialog.screen("otp", "Check your messages", [sentence, form, el("div", { class: "sg-row" }, resend, this.backLink(flow))]);
    dialog.onCancel = ((prev) => () => { clearInterval(timer); prev?.(); })(dialog.onCancel);
    countdown(resendAt(sent));
  }

  async totpScreen(flow, choice) {
    const { dialog, scopes } = flow;
    const field = codeField("Code from your authenticator app", { hint: "The 6-digit code the app shows now." });
    let select = null;
    if (choice.devices.length > 1) {
      const id = nextId("device");
      select = el("select", { id, class: "sg-input", name: "device" },
        choice.devices.map((d) => el("option", { value: d.id }, d.alias || "Authenticator")));
      select = el("div", { class: "sg-field" }, el("label", { for: id }, "Device"), select);
    }
    const form = busyForm(dialog, [select, field.node], "Verify", async (f) => {
      dialog.setStatus("Verifying…", true);
      const deviceId = f.querySelector("select")?.value ?? choice.devices[0]?.id ?? null;
      const token = await this.client.verifyTotpMfa({ code: field.input.value, deviceId, requestedScopes: scopes });
      flow.done(token);
    });
    dialog.screen("totp", "Enter your authenticator code", [form, el("div", { class: "sg-row" }, this.backLink(flow))]);
    field.input.focus();
  }

  async recoveryScreen(flow) {
    const { dialog, scopes } = flow;
    const field = codeField("Recovery code", { numeric: false, autocomplete: "off", hint: "Each recovery code works once." });
    const form = busyForm(dialog, field.node, "Verify", async () => {
      dialog.setStatus("Verifying…", true);
      const token = await this.client.verifyRecoveryCode({ code: field.input.value, requestedScopes: scopes });
      flow.done(token);
    });
    dialog.screen("recovery", "Use a recovery code", [form, el("div", { class: "sg-row" }, this.backLink(flow))]);
  }

  async passkeyScreen(flow) {
    const { dialog, scopes } = flow;
    let controller = null;
    const form = busyForm(dialog, el("p", { class: "sg-lead" }, "Use the passkey on this device or your security key."), "Use passkey", async () => {
      controller = new AbortController();
      dialog.setStatus("Waiting for your passkey…", true);
      const token = await this.client.verifyPasskeyMfa({ requestedScopes: scopes, signal: controller.signal });
      flow.done(token);
    });
    dialog.screen("passkey", "Verify with your passkey", [form, el("div", { class: "sg-row" }, this.backLink(flow))]);
    dialog.onCancel = ((prev) => () => { controller?.abort(); prev?.(); })(dialog.onCancel);
  }

  async walletScreen(flow, choice) {
    const { dialog, scopes } = flow;
    dialog.screen("wallet-loading", "Sign with your wallet", el("p", { class: "sg-lead" }, "Preparing the message…"));
    dialog.setStatus("Loading…", true);
    let ch;
    try {
      ch = await this.client.walletChallenge({ walletId: choice.id });
    } catch (err) {
      dialog.showError(err);
      dialog.setStatus("");
      return;
    }
    const messageId = nextId("msg");
    const body = [
      el("p", { class: "sg-lead" }, `Your ${ch.chain === "solana" ? "Solana" : "Ethereum"} wallet `,
        el("code", { class: "sg-address" }, ch.address), " will ask you to sign exactly this message:"),
      el("pre", { id: messageId, class: "sg-message", tabindex: "0", "aria-label": "Message to sign" }, ch.message),
    ];
    const form = busyForm(dialog, body, "Sign with wallet", async () => {
      dialog.setStatus("Waiting for your wallet…", true);
      const token = await this.client.verifyWallet({ requestedScopes: scopes, challenge: ch, ethereum: this.client.options.ethereum });
      flow.done(token);
    });
    dialog.screen("wallet", "Sign with your wallet", [form, el("div", { class: "sg-row" }, this.backLink(flow))]);
  }

  // ------------------------------------------------------------------------------ enrolment
  modal(run) {
    const dialog = new Dialog();
    this.active = dialog;
    return new Promise((resolve, reject) => {
      dialog.onCancel = () => { this.active = null; reject(new StepUpCancelled("Closed.")); };
      const done = (value) => { dialog.onCancel = null; dialog.close(); this.active = null; resolve(value); };
      run(dialog, done).catch((err) => {
        if (err instanceof StepUpCancelled) { dialog.onCancel = null; dialog.close(); this.active = null; reject(err); return; }
        dialog.showError(err);
        dialog.setStatus("");
      });
    });
  }

  enrollTotp({ alias = null } = {}) {
    return this.modal(async (dialog, done) => {
      dialog.screen("totp-enroll-loading", "Set up an authenticator app", el("p", { class: "sg-lead" }, "Creating a secret…"));
      dialog.setStatus("Loading…", true);
      const device = await this.client.addTotpDevice({ alias });
      const img = el("img", { class: "sg-qr", alt: "QR code for your authenticator app", width: "200", height: "200",
        src: svgDataUrl(device.qr_svg) });
      const secret = el("code", { class: "sg-secret", "data-totp-secret": device.secret }, device.secret.replace(/(.{4})/g, "$1 ").trim());
      const copy = el("button", { type: "button", class: "sg-link", onclick: async () => {
        try { await navigator.clipboard.writeText(device.secret); dialog.setStatus("Secret copied."); } catch { dialog.setStatus("Select the secret and copy it."); }
      } }, "Copy secret");
      const field = codeField("Code from the app", { hint: "Enter the code the app shows to finish." });
      const form = busyForm(dialog, field.node, "Verify and turn on", async () => {
        dialog.setStatus("Checking…", true);
        const verified = await this.client.verifyTotpDevice({ deviceId: device.id, code: field.input.value });
        dialog.screen("totp-enrolled", "Authenticator app added", el("p", { class: "sg-lead" }, "You'll be asked for its code when you do something sensitive."), { cancelLabel: null });
        const ok = el("button", { type: "button", class: "sg-button sg-primary", autofocus: true, onclick: () => done(verified) }, "Done");
        dialog.node.querySelector(".sg-card").append(el("div", { class: "sg-footer" }, ok));
        ok.focus();
      });
      dialog.screen("totp-enroll", "Set up an authenticator app", [
        el("ol", { class: "sg-steps" },
          el("li", {}, "Scan this QR code with your authenticator app."),
          el("li", {}, "Or type this secret: ", secret, " ", copy),
          el("li", {}, "Enter the 6-digit code it shows.")),
        el("div", { class: "sg-qr-wrap" }, img), form]);
    });
  }

  registerPasskey({ alias = null } = {}) {
    return this.modal(async (dialog, done) => {
      const form = busyForm(dialog, el("p", { class: "sg-lead" }, "Your device will ask you to create a passkey with your fingerprint, face or screen lock."), "Create passkey", async () => {
        dialog.setStatus("Waiting for your device…", true);
        const cred = await this.client.registerPasskeyCredential({ alias });
        dialog.screen("passkey-registered", "Passkey added", el("p", { class: "sg-lead" }, "You can now verify sensitive actions with this passkey."), { cancelLabel: null });
        const ok = el("button", { type: "button", class: "sg-button sg-primary", onclick: () => done(cred) }, "Done");
        dialog.node.querySelector(".sg-card").append(el("div", { class: "sg-footer" }, ok));
        ok.focus();
      });
      dialog.screen("passkey-register", "Add a passkey", form);
    });
  }

  showRecoveryCodes({ generateNew = true } = {}) {
    return this.modal(async (dialog, done) => {
      dialog.screen("recovery-loading", "Recovery codes", el("p", { class: "sg-lead" }, "Generating…"));
      dialog.setStatus("Loading…", true);
      const answer = await this.client.getRecoveryCodes({ generateNew });
      const codes = answer.codes ?? [];
      if (!codes.length) {
        dialog.screen("recovery-remaining", "Recovery codes", el("p", { class: "sg-lead" }, `You have ${answer.remaining} unused recovery codes.`), { cancelLabel: "Close" });
        return;
      }
      const text = `stepguard recovery codes\n\n${codes.join("\n")}\n\nEach code works once.\n`;
      const list = el("ol", { class: "sg-codes", "aria-label": "Recovery codes" }, codes.map((c) => el("li", {}, el("code", {}, c))));
      const copy = el("button", { type: "button", class: "sg-button sg-secondary", "data-action": "copy", onclick: async () => {
        try { await navigator.clipboard.writeText(text); dialog.setStatus("Codes copied."); } catch { dialog.setStatus("Select the codes and copy them."); }
      } }, "Copy");
      const download = el("button", { type: "button", class: "sg-button sg-secondary", "data-action": "download", onclick: () => {
        const a = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/plain" })), download: "recovery-codes.txt" });
        document.body.append(a); a.click(); a.remove();
        dialog.setStatus("Downloaded recovery-codes.txt.");
      } }, "Download");
      const ackId = nextId("ack");
      const ack = el("input", { type: "checkbox", id: ackId, required: true });
      const finish = el("button", { type: "button", class: "sg-button sg-primary", disabled: true, onclick: () => done({ codes: codes.length }) }, "Done");
      ack.addEventListener("change", () => { finish.disabled = !ack.checked; });
      dialog.screen("recovery-codes", "Save your recovery codes", [
        el("p", { class: "sg-lead" }, "Keep these somewhere safe. Each works once if you lose your other methods. They won't be shown again."),
        list,
        el("div", { class: "sg-row" }, copy, download),
        el("div", { class: "sg-check" }, ack, el("label", { for: ackId }, "I have saved these codes")),
        el("div", { class: "sg-actions" }, finish),
      ], { cancelLabel: null });
    });
  }

  linkWallet({ chain = "ethereum" } = {}) {
    return this.modal(async (dialog, done) => {
      const pre = el("pre", { class: "sg-message", tabindex: "0", "aria-label": "Message to sign" }, "");
      const form = busyForm(dialog, el("p", { class: "sg-lead" }, "Your wallet will ask you to sign a message proving you own it."), "Connect wallet", async () => {
        dialog.setStatus("Waiting for your wallet…", true);
        const linked = await this.client.linkWalletAccount({
          chain, ethereum: this.client.options.ethereum,
          onMessage: (message) => { pre.textContent = message; dialog.node.querySelector(".sg-form")?.after(pre); },
        });
        done(linked);
      });
      dialog.screen("wallet-link", "Link a wallet", form);
    });
  }
}

// ------------------------------------------------------------------ module-level functions

let defaultClient = null;

/** Set up the module's default client: {baseUrl, environmentId, sessionToken, webauthnTimeoutMs, ethereum}. */
export function configure(options) {
  defaultClient = new StepGuardClient(options);
  return defaultClient;
}

/** A separate client (several sessions, or a hand-off transport). */
export function createClient(options) {
  return new StepGuardClient(options);
}

function client() {
  if (!defaultClient) throw new StepGuardError("Call configure({ environmentId, sessionToken }) first.", { code: "not_configured" });
  return defaultClient;
}

export const setSession = (token) => client().setSession(token);
export const resetState = () => client().resetState();
export const checkStepUpAuth = (scope) => client().checkStepUpAuth(scope);
export const isStepUpRequired = (scope) => client().isStepUpRequired(scope);
export const promptStepUpAuth = (o) => client().promptStepUpAuth(o);
export const promptMfa = (o) => client().promptMfa(o);
export const promptReauthenticate = (o) => client().promptReauthenticate(o);
export const sendOtp = (o) => client().sendOtp(o);
export const verifyOtp = (o) => client().verifyOtp(o);
export const verifyTotpMfa = (o) => client().verifyTotpMfa(o);
export const verifyRecoveryCode = (o) => client().verifyRecoveryCode(o);
export const verifyPasskeyMfa = (o) => client().verifyPasskeyMfa(o);
export const verifyWallet = (o) => client().verifyWallet(o);
export const enrollTotp = (o) => client().enrollTotp(o);
export const registerPasskey = (o) => client().registerPasskey(o);
export const showRecoveryCodes = (o) => client().showRecoveryCodes(o);
export const linkWallet = (o) => client().linkWallet(o);
export const getElevatedToken = (scopes) => client().getElevatedToken(scopes);
/** fetch() with the elevated token attached and step-up challenges answered (see StepGuardClient.fetch). */
export const stepUpFetch = (input, init, options) => client().fetch(input, init, options);
export { stepUpFetch as fetch };
