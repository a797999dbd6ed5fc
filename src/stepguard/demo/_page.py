"""The demo's single HTML page: plain HTML and a little JavaScript, nothing from a CDN.

It signs in with a session token, shows the wallet, and calls the three protected actions with an
elevated token pasted in (from the SDK or ``stepguard demo``); a refused call shows the guard's
RFC 9470 challenge and problem body. The full step-up UI arrives with the hosted prompt pages.
"""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>stepguard demo wallet</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
  fieldset { border: 1px solid #ccc; border-radius: 6px; margin: 1rem 0; }
  input, textarea { width: 100%; box-sizing: border-box; font: inherit; padding: .3rem; }
  button { font: inherit; margin: .3rem .3rem 0 0; }
  pre { background: #f4f4f4; padding: .6rem; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
  .muted { color: #666; }
</style>
</head>
<body>
<h1>stepguard demo wallet</h1>
<p class="muted">Sensitive actions need an elevated access token for their scope:
<code>wallet:export</code> (single-use), <code>wallet:sign</code> (single-use),
<code>user:update</code> (reusable until it expires).</p>

<fieldset>
  <legend>1. Sign in</legend>
  <label for="session">Session token (<code>stepguard admin create-session --user USER_ID</code>)</label>
  <input id="session" autocomplete="off" placeholder="sgs_...">
  <button id="signin">Sign in</button> <button id="signout">Sign out</button>
  <pre id="who">Not signed in.</pre>
</fieldset>

<fieldset>
  <legend>2. Elevated access token</legend>
  <label for="elevated">From the SDK (<code>step_up.verify_*(requested_scopes=[...])</code>)
  or <code>stepguard demo</code></label>
  <textarea id="elevated" rows="3" autocomplete="off" placeholder="eyJ..."></textarea>
</fieldset>

<fieldset>
  <legend>3. Wallet</legend>
  <button id="export">Export private key</button>
  <label for="message">Message to sign</label>
  <input id="message" value="Hello from stepguard">
  <button id="sign">Sign message</button>
  <label for="name">Display name</label>
  <input id="name" value="Alice">
  <button id="profile">Update profile</button>
  <pre id="out"></pre>
</fieldset>

<script>
const $ = (id) => document.getElementById(id);
$("session").value = sessionStorage.getItem("stepguard-demo-session") || "";

async function call(method, path, body) {
  const headers = {"Authorization": "Bearer " + $("session").value.trim()};
  const elevated = $("elevated").value.trim();
  if (elevated) headers["X-Elevated-Access-Token"] = elevated;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  const text = await res.text();
  let shown = res.status + " " + res.statusText + "\\n";
  const challenge = res.headers.get("WWW-Authenticate");
  if (challenge) shown += "WWW-Authenticate: " + challenge + "\\n";
  try { shown += JSON.stringify(JSON.parse(text), null, 2); } catch (e) { shown += text; }
  return {ok: res.ok, shown};
}

$("signin").onclick = async () => {
  sessionStorage.setItem("stepguard-demo-session", $("session").value.trim());
  const me = await call("GET", "/demo/api/me");
  const wallet = me.ok ? await call("GET", "/demo/api/wallet") : null;
  $("who").textContent = me.shown + (wallet ? "\\n\\n" + wallet.shown : "");
};
$("signout").onclick = () => {
  sessionStorage.removeItem("stepguard-demo-session");
  $("session").value = ""; $("elevated").value = ""; $("who").textContent = "Not signed in.";
};
$("export").onclick = async () => { $("out").textContent = (await call("POST", "/demo/api/wallet/export")).shown; };
$("sign").onclick = async () => {
  $("out").textContent = (await call("POST", "/demo/api/wallet/sign", {message: $("message").value})).shown;
};
$("profile").onclick = async () => {
  $("out").textContent = (await call("POST", "/demo/api/profile", {display_name: $("name").value})).shown;
};
</script>
</body>
</html>
"""
