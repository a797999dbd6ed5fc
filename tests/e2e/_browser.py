"""Page helpers for the browser tests: dialog screens, the demo sign-in, TOTP codes, screenshots."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyotp
from _e2e_helpers import ADMIN_KEY
from playwright.async_api import expect

from _services import SmtpSink

DIALOG = "dialog.sg-dialog[open]"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@dataclass(slots=True)
class Live:
    """A running server: ``url`` (localhost, as WebAuthn needs), admin helpers, the mail sink."""

    url: str
    app: Any
    sink: SmtpSink
    http: httpx.Client
    environment_id: str = ""
    shots: Path = field(default_factory=lambda: SCREENSHOTS)

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.http.request(
            method, path, headers={"X-StepGuard-Admin-Key": ADMIN_KEY}, timeout=10, **kwargs
        )
        assert r.status_code < 300, r.text
        return r.json()

    def user(self, **fields: Any) -> tuple[str, str]:
        """A new user (``email=...`` makes it a verified email) and a session: (user id, token)."""
        env = self.environment_id
        user = self.admin("POST", f"/admin/environments/{env}/users", json=fields)["id"]
        session = self.admin("POST", f"/admin/environments/{env}/sessions", json={"user_id": user})
        return user, session["session_token"]

    def sdk(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        """A call to the SDK API as the program holding ``token`` would make it."""
        return self.http.request(
            method,
            f"/sdk/{self.environment_id}/{path}",
            headers={"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})},
            timeout=30,
            **kwargs,
        )


@dataclass(slots=True)
class BrowserPage:
    page: Any
    cdp: Any
    authenticator_id: str
    #: Requests the page tried to send beyond this machine (refused; the fixture fails on any).
    outside: list[str] = field(default_factory=list)

    async def credentials(self) -> list[dict[str, Any]]:
        """What the virtual authenticator holds (id, signCount, ...)."""
        answer = await self.cdp.send(
            "WebAuthn.getCredentials", {"authenticatorId": self.authenticator_id}
        )
        return list(answer["credentials"])


#: Every control of a prompt screen needs a name a screen reader can say: the dialog its title,
#: a field its <label> (or aria-label), a button its text. Answers the unnamed ones.
UNLABELLED = """(dialog) => {
  const named = (el) => {
    const by = el.getAttribute("aria-labelledby");
    if (by) return by.split(" ").some((id) => document.getElementById(id)?.textContent.trim());
    if (el.getAttribute("aria-label")?.trim()) return true;
    if (el.labels && [...el.labels].some((l) => l.textContent.trim())) return true;
    return el.matches("button") && el.textContent.trim() !== "";
  };
  const controls = [dialog, ...dialog.querySelectorAll("input, select, textarea, button, [tabindex]")];
  return controls.filter((el) => !el.hidden && !named(el)).map((el) => el.outerHTML.slice(0, 120));
}"""


async def screen(page: Any, name: str) -> Any:
    """The open prompt dialog once it shows screen ``name`` (explicit wait); every control on
    it is labelled (checked on each screen the suite visits)."""
    locator = page.locator(f'{DIALOG}[data-screen="{name}"]')
    await locator.wait_for(state="visible")
    unlabelled = await locator.evaluate(UNLABELLED)
    assert unlabelled == [], f"unlabelled controls on the {name!r} screen: {unlabelled}"
    return locator


async def shot(live: Live, page: Any, name: str, *, whole: bool = False) -> None:
    """A screenshot: the open prompt dialog alone when there is one (unless ``whole``), else
    the viewport.

    With ``pngquant`` on the PATH the PNG is palette-compressed (the committed ones stay small).
    """
    path = live.shots / f"{name}.png"
    dialogs = page.locator(DIALOG)
    if not whole and await dialogs.count():
        await dialogs.last.screenshot(path=str(path), animations="disabled")
    else:
        await page.screenshot(path=str(path), animations="disabled")
    quant = shutil.which("pngquant")
    if quant and live.shots == SCREENSHOTS:
        subprocess.run(  # noqa: S603 (a fixed tool on our own file)
            [
                quant,
                "--force",
                "--skip-if-larger",
                "--strip",
                "--quality=70-95",
                "--output",
                str(path),
                str(path),
            ],
            check=False,
            capture_output=True,
        )


async def open_demo(page: Any, live: Live, token: str) -> None:
    """The demo page, signed in with a pasted session token."""
    await page.goto(f"{live.url}/demo/")
    await page.locator("summary").click()
    await page.locator("#session-token").fill(token)
    await page.locator("#use-token").click()
    await page.locator("#account-panel").wait_for(state="visible")
    await expect(page.locator("#wallet-address")).to_have_text(re.compile(r"^0x[0-9a-fA-F]{40}$"))


async def totp_code(secret: str, steps: int = 0) -> str:
    """The code ``steps`` time steps from now, never within 4 s of a step change (so the
    server sees the same step)."""
    while 30 - time.time() % 30 < 4:
        await asyncio.sleep(0.25)
    return str(pyotp.TOTP(secret).at(time.time() + 30 * steps))


async def mail_code(live: Live, to: str, count: int = 1, timeout: float = 20.0) -> str:
    """The code in the ``count``-th email to ``to``, waiting for it (delivery runs after the
    server's answer, so it can lag on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while len(live.sink.to(to)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"no email #{count} to {to} within {timeout} s")
        await asyncio.sleep(0.025)
    return live.sink.last_code(to=to)
