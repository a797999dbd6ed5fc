"""The demo page and the built-in web UI in a real chromium, against the real server: passkey
registration and step-up, email codes from a real SMTP server, TOTP enrolment from the page's
secret, recovery codes, a wallet step-up through an EIP-1193 provider backed by a real key, and
cancelling. Each test leaves screenshots of the screens it went through."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pyotp
import pytest
from _browser import BrowserPage, Live, mail_code, open_demo, screen, shot, totp_code
from eth_account import Account
from eth_account.messages import encode_defunct
from playwright.async_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


async def test_passkey_registration_step_up_and_single_use_export(
    live: Live, bpage: BrowserPage
) -> None:
    page = bpage.page
    _, token = live.user(external_id="passkey-user")
    await open_demo(page, live, token)
    address = await page.locator("#wallet-address").text_content()
    await shot(live, page, "demo-signed-in")

    await page.locator("#enroll-passkey").click()
    dialog = await screen(page, "passkey-register")
    await shot(live, page, "enroll-passkey")
    await dialog.get_by_role("button", name="Create passkey").click()
    dialog = await screen(page, "passkey-registered")
    await dialog.get_by_role("button", name="Done").click()
    await expect(page.locator('#credentials li[data-format="passkey"]')).to_have_count(1)
    [registered] = await bpage.credentials()

    result = page.locator("#export-result")
    await page.locator("#export").click()
    dialog = await screen(page, "passkey")
    await expect(page.locator("#export")).to_be_disabled()
    await expect(page.locator("#export")).to_have_text("Verifying…")
    await shot(live, page, "step-up-passkey")
    await dialog.get_by_role("button", name="Use passkey").click()
    await expect(result).to_have_attribute("data-kind", "ok")
    await expect(page.locator("#export")).to_be_enabled()
    text = await result.text_content()
    assert text is not None
    key = re.search(r"Private key: (0x[0-9a-f]{64})", text)
    assert key is not None, text
    assert Account.from_key(key.group(1)).address == address
    await result.scroll_into_view_if_needed()
    await shot(live, page, "demo-exported")

    # wallet:export is single-use: the second export asks again, and the passkey signs again.
    await page.locator("#export").click()
    dialog = await screen(page, "passkey")
    await expect(result).to_be_hidden()
    await dialog.get_by_role("button", name="Use passkey").click()
    await expect(result).to_have_attribute("data-kind", "ok")
    [after] = await bpage.credentials()
    assert after["credentialId"] == registered["credentialId"]
    assert after["signCount"] > registered["signCount"]


async def test_email_sign_in_and_otp_step_up_with_codes_from_smtp(
    live: Live, bpage: BrowserPage
) -> None:
    page = bpage.page
    email = "otp-user@example.com"
    live.user(email=email)
    await page.goto(f"{live.url}/demo/")
    await page.get_by_label("Email address").fill(email)
    await page.get_by_role("button", name="Email me a code").click()
    code = await mail_code(live, email, 1)
    await page.get_by_label("Code from the email").fill(code)
    await page.get_by_label("Code from the email").press("Enter")
    await page.locator("#account-panel").wait_for(state="visible")

    await page.locator("#export").click()
    dialog = await screen(page, "otp")
    destination = await dialog.locator(".sg-destination").text_content()
    assert destination and email not in destination and destination.endswith("@example.com")
    resend = dialog.locator('[data-action="resend"]')
    await expect(resend).to_be_disabled()
    await expect(resend).to_contain_text(re.compile(r"Resend code in \d+ s"))
    code = await mail_code(live, email, 2)
    field = dialog.get_by_label("Verification code")
    await expect(field).to_be_focused()
    await shot(live, page, "step-up-otp")  # as it opens: masked address, resend countdown
    wrong = "000000" if code != "000000" else "111111"
    await field.fill(wrong)
    await field.press("Enter")
    await expect(dialog.locator(".sg-error")).to_contain_text("not right")
    await shot(live, page, "step-up-otp-wrong-code")
    await field.fill(code)
    await field.press("Enter")
    await expect(page.locator("#export-result")).to_have_attribute("data-kind", "ok")
    await expect(page.locator(DIALOG_OPEN)).to_have_count(0)


DIALOG_OPEN = "dialog.sg-dialog[open]"


async def test_totp_enrolment_from_the_page_then_recovery_codes(
    live: Live, bpage: BrowserPage
) -> None:
    page = bpage.page
    _, token = live.user(external_id="totp-user")
    await open_demo(page, live, token)

    await page.locator("#enroll-totp").click()
    dialog = await screen(page, "totp-enroll")
    secret = await dialog.locator("[data-totp-secret]").get_attribute("data-totp-secret")
    assert secret and re.fullmatch(r"[A-Z2-7]{16,}", secret)
    qr = dialog.get_by_role("img", name="QR code for your authenticator app")
    assert await qr.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    await shot(live, page, "enroll-totp")
    field = dialog.get_by_label("Code from the app")
    await field.fill(await totp_code(secret, -1))
    await field.press("Enter")
    dialog = await screen(page, "totp-enrolled")
    await dialog.get_by_role("button", name="Done").click()
    await expect(page.locator('#credentials li[data-format="totp"]')).to_have_count(1)

    await page.locator("#export").click()
    dialog = await screen(page, "totp")
    field = dialog.get_by_label("Code from your authenticator app")
    await field.fill(await totp_code(secret, 0))
    await shot(live, page, "step-up-totp")
    await field.press("Enter")
    await expect(page.locator("#export-result")).to_have_attribute("data-kind", "ok")

    # New recovery codes need credential:link now: a TOTP prompt stacks on the enrolment.
    await page.locator("#enroll-recovery").click()
    dialog = await screen(page, "totp")
    field = dialog.get_by_label("Code from your authenticator app")
    await field.fill(await totp_code(secret, 1))
    await field.press("Enter")
    dialog = await screen(page, "recovery-codes")
    codes = [c.strip() for c in await dialog.locator(".sg-codes li").all_text_contents()]
    assert len(codes) == 10 and len(set(codes)) == 10
    done = dialog.get_by_role("button", name="Done")
    await expect(done).to_be_disabled()
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    await dialog.get_by_role("button", name="Copy").click()
    await expect(dialog.locator(".sg-status")).to_have_text("Codes copied.")
    copied = await page.evaluate("navigator.clipboard.readText()")
    assert all(code in copied for code in codes)
    async with page.expect_download() as download_info:
        await dialog.get_by_role("button", name="Download").click()
    download = await download_info.value
    assert download.suggested_filename == "recovery-codes.txt"
    saved = Path(await download.path()).read_text()
    assert all(code in saved for code in codes)
    await shot(live, page, "enroll-recovery-codes")
    # Shown once: Esc cannot throw them away unacknowledged (only Done closes this screen).
    await page.keyboard.press("Escape")
    await page.wait_for_timeout(200)
    await expect(dialog).to_be_visible()
    await expect(dialog.locator(".sg-codes li")).to_have_count(10)
    await dialog.get_by_label("I have saved these codes").check()
    await done.click()
    await expect(page.locator("#enroll-status")).to_have_text("Recovery codes saved.")

    # Method choice: TOTP (the default) first, then the recovery code.
    await page.locator("#export").click()
    dialog = await screen(page, "choose")
    labels = await dialog.locator(".sg-choice-label").all_text_contents()
    assert labels == ["Authenticator app", "Recovery code"]
    await shot(live, page, "step-up-choose")
    # Keyboard only: the default is focused; an arrow picks the next method, Enter goes on.
    await expect(dialog.get_by_role("radio", name=re.compile("Authenticator app"))).to_be_focused()
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("Enter")
    dialog = await screen(page, "recovery")
    await expect(dialog.get_by_label("Recovery code")).to_be_focused()
    await page.keyboard.type(codes[0])
    await shot(live, page, "step-up-recovery-code")
    await page.keyboard.press("Enter")
    await expect(page.locator("#export-result")).to_have_attribute("data-kind", "ok")
    assert "Authenticator app" not in (await page.locator("#export-result").text_content() or "")


async def test_wallet_step_up_with_an_injected_eip1193_provider(
    live: Live, bpage: BrowserPage
) -> None:
    page = bpage.page
    account = Account.create()
    signed: list[str] = []

    def personal_sign(hex_message: str) -> str:
        message = bytes.fromhex(hex_message.removeprefix("0x"))
        signed.append(message.decode())
        signature = account.sign_message(encode_defunct(primitive=message)).signature
        return "0x" + bytes(signature).hex()

    await page.expose_function("__stepguardTestSign", personal_sign)
    await page.add_init_script(
        "window.ethereum = { async request({ method, params }) {"
        f" if (method === 'eth_requestAccounts' || method === 'eth_accounts') return ['{account.address}'];"
        " if (method === 'personal_sign') return await window.__stepguardTestSign(params[0]);"
        " throw new Error('unsupported ' + method); } };"
    )
    _, token = live.user(external_id="wallet-user")
    await open_demo(page, live, token)
    await page.locator("#link-wallet").click()
    dialog = await screen(page, "wallet-link")
    await dialog.get_by_role("button", name="Connect wallet").click()
    await expect(page.locator("#enroll-status")).to_have_text("Wallet linked.")
    await expect(page.locator('#credentials li[data-format="blockchain"]')).to_have_count(1)
    assert len(signed) == 1 and account.address in signed[0]

    await page.locator("#export").click()
    dialog = await screen(page, "wallet")
    shown = await dialog.get_by_label("Message to sign").text_content()
    assert shown and account.address in shown and live.url.removeprefix("http://") in shown
    await expect(dialog.locator(".sg-address")).to_have_text(account.address)
    await shot(live, page, "step-up-wallet")
    await dialog.get_by_role("button", name="Sign with wallet").click()
    await expect(page.locator("#export-result")).to_have_attribute("data-kind", "ok")
    assert signed[-1] == shown, "the wallet signed exactly the message the prompt showed"


SOLANA_WALLET = """
(() => {
  const account = { address: %(address)r, publicKey: new Uint8Array(%(public_key)s),
    chains: ["solana:mainnet"], features: ["solana:signMessage"] };
  const wallet = {
    version: "1.0.0", name: "Test wallet", icon: "data:image/svg+xml,%%3Csvg/%%3E",
    chains: ["solana:mainnet"], accounts: [],
    features: {
      "standard:connect": { version: "1.0.0",
        connect: async () => { wallet.accounts = [account]; return { accounts: [account] }; } },
      "solana:signMessage": { version: "1.0.0",
        signMessage: async (...inputs) => Promise.all(inputs.map(async ({ message }) => ({
          signedMessage: message,
          signature: new Uint8Array(await window.__stepguardTestSolSign(Array.from(message))),
        }))) },
    },
  };
  const register = ({ register }) => register(wallet);
  window.addEventListener("wallet-standard:app-ready", (e) => register(e.detail));
  window.dispatchEvent(new CustomEvent("wallet-standard:register-wallet", { detail: register }));
})();
"""


async def test_solana_wallet_standard_link_and_step_up(live: Live, bpage: BrowserPage) -> None:
    import base58
    import nacl.signing

    page = bpage.page
    key = nacl.signing.SigningKey.generate()
    address = base58.b58encode(bytes(key.verify_key)).decode()
    signed: list[bytes] = []

    def sign(message: list[int]) -> list[int]:
        signed.append(bytes(message))
        return list(key.sign(bytes(message)).signature)

    await page.expose_function("__stepguardTestSolSign", sign)
    await page.add_init_script(
        SOLANA_WALLET % {"address": address, "public_key": list(bytes(key.verify_key))}
    )
    _, token = live.user(external_id="solana-user")
    await open_demo(page, live, token)
    linking = asyncio.create_task(
        page.evaluate(
            "async () => (await import('/static/stepguard.js')).linkWallet({ chain: 'solana' })"
        )
    )
    dialog = await screen(page, "wallet-link")
    await dialog.get_by_role("button", name="Connect wallet").click()
    linked = await linking
    assert linked["address"] == address and linked["chain"] == "solana", linked

    await page.locator("#export").click()
    dialog = await screen(page, "wallet")
    shown = await dialog.get_by_label("Message to sign").text_content()
    assert shown and address in shown and "Solana account" in shown
    await dialog.get_by_role("button", name="Sign with wallet").click()
    await expect(page.locator("#export-result")).to_have_attribute("data-kind", "ok")
    assert signed[-1] == shown.encode()


async def test_cancel_closes_the_prompt_with_a_cancellation_error(
    live: Live, bpage: BrowserPage
) -> None:
    page = bpage.page
    email = "cancel-user@example.com"
    _, token = live.user(email=email)
    await open_demo(page, live, token)
    result = page.locator("#export-result")

    await page.locator("#export").click()
    await screen(page, "otp")
    await page.keyboard.press("Escape")
    await expect(page.locator(DIALOG_OPEN)).to_have_count(0)
    await expect(result).to_have_text("Cancelled: exporting needs verification.")
    await expect(page.locator("#export")).to_be_enabled()

    await page.locator("#export").click()
    dialog = await screen(page, "otp")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(page.locator(DIALOG_OPEN)).to_have_count(0)
    await expect(result).to_have_attribute("data-kind", "error")
    await expect(result).to_have_text("Cancelled: exporting needs verification.")
    # The module's own error class, as an app would see it.
    name = await page.evaluate(
        """async () => {
            const sg = await import('/static/stepguard.js');
            const p = sg.promptStepUpAuth({ requestedScopes: ['wallet:export'] });
            await new Promise((r) => setTimeout(r, 50));
            const dialog = await new Promise((resolve) => {
                const look = () => {
                    const d = document.querySelector('dialog.sg-dialog[open][data-screen=otp]');
                    d ? resolve(d) : setTimeout(look, 25);
                };
                look();
            });
            dialog.querySelector('[data-action=cancel]').click();
            try { await p; return 'resolved'; } catch (e) {
                return `${e.name}:${e.code}:${e instanceof sg.StepUpCancelled}`;
            }
        }"""
    )
    assert name == "StepUpCancelled:step_up_cancelled:true"


async def test_the_module_works_without_a_network_beyond_the_server(
    live: Live, bpage: BrowserPage
) -> None:
    """No CDN: every request the demo page makes goes to the stepguard server."""
    page = bpage.page
    hosts: set[str] = set()
    page.on("request", lambda request: hosts.add(request.url.split("/")[2]))
    _, token = live.user(external_id="offline-user")
    await open_demo(page, live, token)
    exported: Any = await page.evaluate(
        "async () => Object.keys(await import('/static/stepguard.js')).sort()"
    )
    for name in (
        "promptStepUpAuth",
        "promptMfa",
        "promptReauthenticate",
        "isStepUpRequired",
        "verifyOtp",
        "sendOtp",
        "verifyTotpMfa",
        "verifyRecoveryCode",
        "verifyPasskeyMfa",
        "verifyWallet",
        "stepUpFetch",
        "fetch",
    ):
        assert name in exported
    assert hosts == {live.url.removeprefix("http://")}
    required = await page.evaluate(
        "async () => (await import('/static/stepguard.js')).isStepUpRequired('wallet:export')"
    )
    assert required is True

    # The fixture's net is real: a request beyond this machine is refused and recorded (every
    # browser test fails on one), so each screen the suite opens is proven to work offline.
    refused = await page.evaluate(
        "() => fetch('https://cdn.example.com/lib.js').then(() => 'loaded', (e) => e.name)"
    )
    assert refused == "TypeError"
    assert bpage.outside == ["https://cdn.example.com/lib.js"]
    bpage.outside.clear()


async def add_totp_device(
    live: Live, token: str, alias: str, link_with: str | None
) -> dict[str, str]:
    """Enrol a TOTP device over the SDK API (a ``credential:link`` token from the device whose
    secret is ``link_with`` when the user already has one); answers ``{id, secret}``."""
    headers = {}
    if link_with:
        r = live.sdk(
            "POST",
            "mfa/totp/verify",
            token,
            json={"code": await totp_code(link_with), "requested_scopes": ["credential:link"]},
        )
        assert r.status_code == 200, r.text
        headers = {"X-Elevated-Access-Token": r.json()["elevated_access_token"]}
    r = live.sdk("POST", "mfa/totp/devices", token, json={"alias": alias}, headers=headers)
    assert r.status_code == 201, r.text
    device = r.json()
    r = live.sdk(
        "POST",
        f"mfa/totp/devices/{device['id']}/verify",
        token,
        json={"code": await totp_code(device["secret"], -1)},
    )
    assert r.status_code == 200, r.text
    return {"id": device["id"], "secret": device["secret"]}


async def test_totp_prompt_offers_a_device_choice(live: Live, bpage: BrowserPage) -> None:
    page = bpage.page
    _, token = live.user(external_id="two-devices")
    first = await add_totp_device(live, token, "Work phone", None)
    second = await add_totp_device(live, token, "Backup tablet", first["secret"])
    secrets = {first["id"]: first["secret"], second["id"]: second["secret"]}

    await open_demo(page, live, token)
    await page.locator("#export").click()
    dialog = await screen(page, "totp")
    device = dialog.get_by_label("Device")
    options = await device.locator("option").all_text_contents()
    assert sorted(options) == ["Backup tablet", "Work phone"]
    await shot(live, page, "step-up-totp-devices")
    await device.select_option(label="Backup tablet")
    backup = await device.input_value()
    field = dialog.get_by_label("Code from your authenticator app")
    await field.fill(await totp_code(secrets[backup]))
    await field.press("Enter")
    await expect(page.locator("#export-result")).to_have_attribute("data-kind", "ok")


async def test_a_locked_authenticator_shows_the_wait(live: Live, bpage: BrowserPage) -> None:
    page = bpage.page
    _, token = live.user(external_id="lockout")
    device = await add_totp_device(live, token, "Phone", None)
    await open_demo(page, live, token)
    await page.locator("#export").click()
    dialog = await screen(page, "totp")
    field = dialog.get_by_label("Code from your authenticator app")
    valid = {pyotp.TOTP(device["secret"]).at(time.time() + 30 * k) for k in (-1, 0, 1, 2)}
    wrong = next(c for c in (f"{n:06d}" for n in range(100_000, 999_999, 7919)) if c not in valid)
    error = dialog.locator(".sg-error")
    for _ in range(10):
        await field.fill(wrong)
        await field.press("Enter")
        await expect(dialog.locator("form[aria-busy]")).to_have_count(0)
        await expect(error).to_be_visible()
        if "Too many attempts" in (await error.text_content() or ""):
            break
    await expect(error).to_have_text(re.compile(r"Too many attempts\. Try again in \d+ s\."))
    await shot(live, page, "step-up-locked")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(page.locator("#export-result")).to_contain_text("Cancelled")
