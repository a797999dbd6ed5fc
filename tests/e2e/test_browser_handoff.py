"""The browser hand-off in a real chromium, driven from the program's side over HTTP, as the
Python SDK does: a passkey registration ceremony handed to the browser, a step-up completed on the
hosted page whose token only the program receives, cancelling, and a link that works once."""

from __future__ import annotations

from typing import Any

import pytest
from _browser import BrowserPage, Live, mail_code, screen, shot, totp_code
from playwright.async_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


def start(live: Live, token: str, **body: Any) -> dict[str, Any]:
    r = live.sdk("POST", "handoff", token, json=body)
    assert r.status_code == 201, r.text
    answer: dict[str, Any] = r.json()
    assert answer["url"].startswith(f"{live.url}/handoff/")
    return answer


def poll(live: Live, token: str, handoff_id: str, wait: float = 0) -> dict[str, Any]:
    r = live.sdk("GET", f"handoff/{handoff_id}?wait={wait}", token)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_passkey_ceremony_and_step_up_through_the_handoff(
    live: Live, bpage: BrowserPage
) -> None:
    page = bpage.page
    _, token = live.user(external_id="handoff-user")

    # Registration: the program holds the ceremony; the browser only runs create().
    r = live.sdk("POST", "passkeys/register/options", token, json={})
    assert r.status_code == 200, r.text
    ceremony = r.json()
    handoff = start(live, token, kind="passkey.create", options=ceremony["options"])
    await page.goto(handoff["url"])
    panel = page.locator("#handoff")
    await expect(panel).to_have_attribute("data-state", "ready")
    assert "#" not in page.url, "the secret leaves the address bar"
    await shot(live, page, "handoff-passkey")
    await page.get_by_role("button", name="Continue").click()
    await expect(panel).to_have_attribute("data-state", "done")
    answer = poll(live, token, handoff["handoff_id"])
    assert answer["status"] == "completed"
    credential = answer["result"]["credential"]
    r = live.sdk(
        "POST",
        "passkeys/register",
        token,
        json={"challenge_id": ceremony["challenge_id"], "credential": credential},
    )
    assert r.status_code == 200 and r.json()["verified"] is True, r.text
    assert len(await bpage.credentials()) == 1

    # An assertion for the program's own verify call (the SDK's Authenticator.get path).
    r = live.sdk("POST", "passkeys/authenticate/options", token, json={})
    ceremony = r.json()
    handoff = start(live, token, kind="passkey.get", options=ceremony["options"])
    await page.goto(handoff["url"])
    await page.get_by_role("button", name="Continue").click()
    await expect(panel).to_have_attribute("data-state", "done")
    credential = poll(live, token, handoff["handoff_id"], wait=5)["result"]["credential"]
    r = live.sdk(
        "POST",
        "passkeys/authenticate",
        token,
        json={
            "challenge_id": ceremony["challenge_id"],
            "credential": credential,
            "requested_scopes": ["user:update"],
        },
    )
    assert r.status_code == 200 and r.json()["scopes"] == ["user:update"], r.text

    # Step-up: the whole prompt runs on the hosted page; the token goes to the program only.
    handoff = start(live, token, kind="step_up", requested_scopes=["wallet:export"])
    assert poll(live, token, handoff["handoff_id"])["status"] == "pending"
    await page.goto(handoff["url"])
    dialog = await screen(page, "passkey")
    await shot(live, page, "handoff-step-up")
    assert poll(live, token, handoff["handoff_id"])["status"] == "claimed"
    await dialog.get_by_role("button", name="Use passkey").click()
    await expect(panel).to_have_attribute("data-state", "done")
    await shot(live, page, "handoff-done")
    assert "eyJ" not in await page.content()
    answer = poll(live, token, handoff["handoff_id"], wait=5)
    elevated = answer["result"]["elevated_access_token"]
    assert answer["result"]["scopes"] == ["wallet:export"]
    exported = live.http.post(
        "/demo/api/wallet/export",
        headers={"Authorization": f"Bearer {token}", "X-Elevated-Access-Token": elevated},
    )
    assert exported.status_code == 200, exported.text
    again = live.sdk("GET", f"handoff/{handoff['handoff_id']}", token)
    assert again.json()["code"] == "code_used"


async def test_cancel_on_the_handoff_page_reaches_the_program_and_the_link_works_once(
    live: Live, bpage: BrowserPage
) -> None:
    page = bpage.page
    email = "handoff-cancel@example.com"
    _, token = live.user(email=email)
    handoff = start(live, token, kind="reauthenticate", requested_scopes=["user:update"])
    await page.goto(handoff["url"])
    dialog = await screen(page, "otp")
    await expect(dialog.locator(".sg-destination")).not_to_have_text(email)
    await dialog.get_by_role("button", name="Cancel").click()
    panel = page.locator("#handoff")
    await expect(panel).to_have_attribute("data-state", "cancelled")
    await shot(live, page, "handoff-cancelled")
    assert poll(live, token, handoff["handoff_id"], wait=5)["status"] == "cancelled"

    second = await page.context.new_page()
    await second.goto(handoff["url"])
    await expect(second.locator("#handoff")).to_have_attribute("data-state", "error")
    await expect(second.locator("#handoff-title")).to_have_text("This link was already used")
    await second.close()


async def test_enrolment_handoff_steps_up_inside_and_keeps_the_link_token_on_the_server(
    live: Live, bpage: BrowserPage
) -> None:
    page = bpage.page
    email = "handoff-enrol@example.com"
    _, token = live.user(email=email)
    handoff = start(live, token, kind="enroll")
    await page.goto(handoff["url"])
    panel = page.locator("#handoff")
    await expect(panel).to_have_attribute("data-state", "ready")
    await shot(live, page, "handoff-enroll")
    await page.get_by_role("button", name="Authenticator app").click()

    # The user has a verified email: adding a factor needs credential:link first.
    dialog = await screen(page, "otp")
    field = dialog.get_by_label("Verification code")
    await field.fill(await mail_code(live, email))
    await field.press("Enter")
    dialog = await screen(page, "totp-enroll")
    secret = await dialog.locator("[data-totp-secret]").get_attribute("data-totp-secret")
    assert secret
    field = dialog.get_by_label("Code from the app")
    await field.fill(await totp_code(secret))
    await field.press("Enter")
    dialog = await screen(page, "totp-enrolled")
    await dialog.get_by_role("button", name="Done").click()
    assert "eyJ" not in await page.content(), "the link token never reaches the page"
    await page.get_by_role("button", name="Finish").click()
    await expect(panel).to_have_attribute("data-state", "done")

    answer = poll(live, token, handoff["handoff_id"], wait=5)
    assert answer["status"] == "completed" and answer["result"] == {"enrolled": True}
    devices = live.sdk("GET", "mfa/devices", token).json()["devices"]
    assert [(d["type"], d["verified"]) for d in devices] == [("totp", True)]
