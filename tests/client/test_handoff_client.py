"""The browser hand-off from the SDK's side: :class:`BrowserHandoff` as the passkey authenticator
and as the prompter fallback of a plain (sync) Python program, and cancelling from an asyncio one.

The browser is Debian's chromium through Playwright with a CDP virtual authenticator, on the
server's real hosted page (marked ``browser``). One test completes the hand-off through the
page's HTTP endpoints with the software authenticator instead, so the SDK side is also covered
where chromium is missing.
"""

from __future__ import annotations

import asyncio
import io
import os
import queue
import re
import shutil
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio

from _services import free_port, run_uvicorn_in_thread
from stepguard.client import (
    SCOPE_EXTENSION,
    AsyncClient,
    BrowserHandoff,
    Client,
    ScriptedPrompter,
    StepUpCancelled,
)
from stepguard.client._handoff import PrintHandoffUI
from stepguard.demo import mount_demo
from stepguard.server.app import create_app
from stepguard.server.settings import Settings
from stepguard.testing import SoftwareAuthenticator

ADMIN_KEY = "sgadm_handoff_0123456789abcdef0123456789abcdef"
SCOPE = "wallet:export"
WAIT_MS = 15_000
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost",
]


@dataclass(eq=False)
class Server:
    url: str  # http://localhost:PORT: WebAuthn needs a host name, not an IP address
    environment_id: str
    http: httpx.Client

    def admin(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, path, headers={"X-StepGuard-Admin-Key": ADMIN_KEY}, **kw)
        assert r.status_code < 300, r.text
        return r.json()

    def user(self) -> tuple[str, str]:
        """A user with a verified email and a session: (email, session token)."""
        email = f"handoff-{free_port()}@example.com"
        env = self.environment_id
        user = self.admin("POST", f"/admin/environments/{env}/users", json={"email": email})
        session = self.admin(
            "POST", f"/admin/environments/{env}/sessions", json={"user_id": user["id"]}
        )
        return email, str(session["session_token"])

    def last_code(self, to: str) -> str:
        messages = self.http.get(f"/sdk/{self.environment_id}/dev/outbox").json()["messages"]
        return str([m for m in messages if m["to"] == to][-1]["code"])

    def poll(self, token: str, handoff_id: str) -> httpx.Response:
        return self.http.get(
            f"/sdk/{self.environment_id}/handoff/{handoff_id}",
            headers={"Authorization": f"Bearer {token}"},
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'sg.db'}",
        data_dir=str(tmp_path / "data"),
        admin_key=ADMIN_KEY,
        public_url=f"http://localhost:{port}",
        dev_mode=True,
    )
    app = create_app(settings)
    mount_demo(app)
    with (
        run_uvicorn_in_thread(app, port),
        httpx.Client(base_url=f"http://localhost:{port}", timeout=30) as http,
    ):
        live = Server(f"http://localhost:{port}", "", http)
        envs = live.admin("GET", "/admin/environments")["environments"]
        live.environment_id = next(e["id"] for e in envs if e["is_default"])
        yield live


@dataclass(eq=False)
class RecordingUI:
    """A HandoffUI that remembers what it was told (and lets the test see the URL)."""

    events: list[tuple[str, Any]] = field(default_factory=list)

    def handoff_opened(self, url: str, opened: bool, expires_at: float | None) -> None:
        self.events.append(("opened", opened))

    def handoff_status(self, status: str) -> None:
        self.events.append(("status", status))

    def handoff_closed(self, outcome: str) -> None:
        self.events.append(("closed", outcome))


def sync_client(
    server: Server, token: str, email: str, urls: queue.Queue[str]
) -> tuple[Client, RecordingUI]:
    """A sync client whose passkeys go through the hand-off; the opened URLs land in ``urls``."""
    client = Client(
        server.url,
        server.environment_id,
        session_token=token,
        api_base_url=f"{server.url}/demo",
        # linking a passkey needs credential:link: the email code, read from the dev outbox
        prompter=ScriptedPrompter([lambda _: server.last_code(email)]),
        timeout=30,
    )
    ui = RecordingUI()
    client.authenticator = BrowserHandoff(
        client, open_browser=lambda url: urls.put(url) or True, ui=ui
    )
    return client, ui


class Background:
    """Runs a blocking SDK call in a thread (the program), while the test drives the browser."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:  # re-raised in the test by join()
            self.error = exc

    async def join(self, timeout: float = 30) -> Any:
        await asyncio.to_thread(self.thread.join, timeout)
        assert not self.thread.is_alive(), "the SDK call did not finish"
        if self.error is not None:
            raise self.error
        return self.result


async def next_url(urls: queue.Queue[str]) -> str:
    return await asyncio.to_thread(urls.get, True, 30)


# -- no browser: the hand-off completed through the page's HTTP endpoints ------------------------
def complete_like_the_page(server: Server, url: str, authenticator: SoftwareAuthenticator) -> None:
    """What the hosted page does for ``passkey.*``: claim with the fragment, run the ceremony,
    complete."""
    parts = urlsplit(url)
    handoff_id = parts.path.rsplit("/", 1)[-1]
    claim = server.http.post(f"/handoff/{handoff_id}/claim", json={"secret": parts.fragment})
    assert claim.status_code == 200, claim.text
    described = claim.json()
    ceremony = authenticator.create if described["kind"] == "passkey.create" else authenticator.get
    credential = ceremony(described["options"])
    done = server.http.post(
        f"/handoff/{handoff_id}/complete",
        json={"credential": dict(credential)},
        headers={"X-Handoff-Token": described["browser_token"]},
    )
    assert done.status_code == 200, done.text


def test_sync_program_registers_and_steps_up_with_a_passkey_through_the_handoff_endpoints(
    server: Server,
) -> None:
    email, token = server.user()
    host = urlsplit(server.url).hostname or "localhost"
    software = SoftwareAuthenticator(host, server.url)
    printed = io.StringIO()
    client = Client(
        server.url,
        server.environment_id,
        session_token=token,
        api_base_url=f"{server.url}/demo",
        prompter=ScriptedPrompter([lambda _: server.last_code(email)]),
    )
    opened: list[str] = []

    def open_browser(url: str) -> bool:
        opened.append(url)
        complete_like_the_page(server, url, software)
        return True

    client.authenticator = BrowserHandoff(
        client, open_browser=open_browser, ui=PrintHandoffUI(printed), poll_wait=5
    )
    with client:
        device = client.mfa.register_passkey()
        assert device.type == "passkey" and device.verified
        client.step_up_auth.verify_passkey_mfa(requested_scopes=[SCOPE])
        exported = client.http.post("/api/wallet/export", extensions={SCOPE_EXTENSION: SCOPE})
        assert exported.status_code == 200, exported.text
    assert len(opened) == 2 and all(u.startswith(f"{server.url}/handoff/") for u in opened)
    assert opened[0] in printed.getvalue()  # the link is printed too (a browser elsewhere)
    # Each hand-off's result went to the program once; the link is spent.
    handoff_id = urlsplit(opened[1]).path.rsplit("/", 1)[-1]
    assert server.poll(token, handoff_id).json()["code"] == "code_used"


def test_cancelled_on_the_server_raises_step_up_cancelled(server: Server) -> None:
    email, token = server.user()
    client = Client(server.url, server.environment_id, session_token=token)

    def cancel_in_the_browser(url: str) -> bool:
        parts = urlsplit(url)
        handoff_id = parts.path.rsplit("/", 1)[-1]
        claim = server.http.post(f"/handoff/{handoff_id}/claim", json={"secret": parts.fragment})
        server.http.post(
            f"/handoff/{handoff_id}/cancel",
            headers={"X-Handoff-Token": claim.json()["browser_token"]},
        )
        return True

    ui = RecordingUI()
    client.prompter = BrowserHandoff(client, open_browser=cancel_in_the_browser, ui=ui, poll_wait=5)
    with client, pytest.raises(StepUpCancelled):
        client.step_up_auth.prompt_step_up_auth([SCOPE])
    assert ui.events[0] == ("opened", True) and ui.events[-1] == ("closed", "cancelled")
    assert client.tokens.peek(SCOPE) is None


# -- chromium ----------------------------------------------------------------------------------
def _chromium() -> str:
    for path in ("/usr/lib/chromium/chromium", "/usr/bin/chromium"):
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI") == "true" or os.environ.get("STEPGUARD_REQUIRE_SERVICES") == "1":
        pytest.fail("Debian's chromium is not installed")
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)")


@pytest_asyncio.fixture
async def page() -> AsyncIterator[Any]:
    """A chromium page with a virtual platform authenticator (resident keys, UV)."""
    executable = _chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context()
            context.set_default_timeout(WAIT_MS)
            tab = await context.new_page()
            cdp = await context.new_cdp_session(tab)
            await cdp.send("WebAuthn.enable")
            added = await cdp.send(
                "WebAuthn.addVirtualAuthenticator",
                {
                    "options": {
                        "protocol": "ctap2",
                        "transport": "internal",
                        "hasResidentKey": True,
                        "hasUserVerification": True,
                        "isUserVerified": True,
                        "automaticPresenceSimulation": True,
                    }
                },
            )
            tab.virtual = (cdp, added["authenticatorId"])
            yield tab
        finally:
            await browser.close()


async def held_credentials(tab: Any) -> list[dict[str, Any]]:
    cdp, authenticator_id = tab.virtual
    answer = await cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})
    return list(answer["credentials"])


@pytest.mark.browser
async def test_plain_python_program_uses_passkeys_in_chromium_then_the_browser_prompter(
    server: Server, page: Any
) -> None:
    from playwright.async_api import expect

    email, token = server.user()
    urls: queue.Queue[str] = queue.Queue()
    client, ui = sync_client(server, token, email, urls)
    panel = page.locator("#handoff")

    # 1. Register a passkey: the program holds the ceremony, the browser runs create().
    program = Background(client.mfa.register_passkey)
    await page.goto(await next_url(urls))
    await expect(panel).to_have_attribute("data-state", "ready")
    for _ in range(200):  # the program sees the page open (short polls while pending)
        if ("status", "claimed") in ui.events:
            break
        await asyncio.sleep(0.05)
    await page.get_by_role("button", name="Continue").click()
    await expect(panel).to_have_attribute("data-state", "done")
    device = await program.join()
    assert device.type == "passkey" and device.verified
    assert len(await held_credentials(page)) == 1
    assert ui.events[0] == ("opened", True) and ("status", "claimed") in ui.events
    assert ui.events[-1] == ("closed", "completed")

    # 2. Step up with it (the authenticator role), then export.
    program = Background(lambda: client.step_up_auth.verify_passkey_mfa(requested_scopes=[SCOPE]))
    await page.goto(await next_url(urls))
    await page.get_by_role("button", name="Continue").click()
    await expect(panel).to_have_attribute("data-state", "done")
    await program.join()
    exported = await asyncio.to_thread(
        client.http.post, "/api/wallet/export", extensions={SCOPE_EXTENSION: SCOPE}
    )
    assert exported.status_code == 200, exported.text

    # 3. The token was single-use: a second export is challenged, and with the hand-off as the
    #    prompter the whole step-up runs on the hosted page; only the program gets the token.
    client.prompter = client.authenticator
    program = Background(
        lambda: client.http.post("/api/wallet/export", extensions={SCOPE_EXTENSION: SCOPE})
    )
    await page.goto(await next_url(urls))
    dialog = page.locator('dialog.sg-dialog[open][data-screen="passkey"]')
    await dialog.get_by_role("button", name="Use passkey").click()
    await expect(panel).to_have_attribute("data-state", "done")
    second = await program.join()
    assert second.status_code == 200, second.text
    assert "eyJ" not in await page.content()
    client.close()


@pytest.mark.browser
async def test_cancel_in_chromium_raises_step_up_cancelled_in_the_program(
    server: Server, page: Any
) -> None:
    from playwright.async_api import expect

    email, token = server.user()
    urls: queue.Queue[str] = queue.Queue()
    client, ui = sync_client(server, token, email, urls)
    client.prompter = client.authenticator
    program = Background(lambda: client.step_up_auth.prompt_reauthenticate([SCOPE]))
    await page.goto(await next_url(urls))
    dialog = page.locator('dialog.sg-dialog[open][data-screen="otp"]')
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(page.locator("#handoff")).to_have_attribute("data-state", "cancelled")
    with pytest.raises(StepUpCancelled):
        await program.join()
    assert ui.events[-1] == ("closed", "cancelled")
    client.close()


@pytest.mark.browser
async def test_cancelling_the_async_program_stops_the_link(server: Server, page: Any) -> None:
    from playwright.async_api import expect

    _, token = server.user()
    urls: list[str] = []
    async with AsyncClient(server.url, server.environment_id, session_token=token) as client:
        ui = RecordingUI()
        client.prompter = BrowserHandoff(client, open_browser=urls.append, ui=ui, poll_wait=5)
        task = asyncio.create_task(client.step_up_auth.prompt_step_up_auth([SCOPE]))
        while not urls:
            await asyncio.sleep(0.02)
        task.cancel()  # the program gives up (Ctrl-C in an asyncio program)
        with pytest.raises(asyncio.CancelledError):
            await task
    handoff_id = urlsplit(urls[0]).path.rsplit("/", 1)[-1]
    assert server.poll(token, handoff_id).json()["status"] == "cancelled"
    assert ui.events[-1] == ("closed", "cancelled")
    await page.goto(urls[0])  # the link no longer opens a prompt
    await expect(page.locator("#handoff")).to_have_attribute("data-state", "error")


EIP1193 = (
    "window.ethereum = { async request({ method, params }) {"
    " if (method === 'eth_requestAccounts' || method === 'eth_accounts') return ['%s'];"
    " if (method === 'personal_sign') return await window.__stepguardSign(params[0]);"
    " throw new Error('unsupported ' + method); } };"
)


@pytest.mark.browser
async def test_a_python_program_steps_up_with_a_browser_wallet_on_the_handoff_page(
    server: Server, page: Any
) -> None:
    """The wallet lives in the browser (EIP-1193), the program in a terminal-less process: the
    hand-off page signs, the program gets the token and makes the guarded call."""
    from eth_account import Account
    from eth_account.messages import encode_defunct
    from playwright.async_api import expect

    account = Account.create()
    signed: list[str] = []

    def personal_sign(hex_message: str) -> str:
        message = bytes.fromhex(hex_message.removeprefix("0x"))
        signed.append(message.decode())
        return "0x" + bytes(account.sign_message(encode_defunct(primitive=message)).signature).hex()

    await page.expose_function("__stepguardSign", personal_sign)
    await page.add_init_script(EIP1193 % account.address)
    email, token = server.user()
    urls: queue.Queue[str] = queue.Queue()
    client, ui = sync_client(server, token, email, urls)
    # Linking needs credential:link: the email code (the scripted prompter), then the key signs.
    await asyncio.to_thread(client.wallets.link, account)
    client.prompter = client.authenticator  # whole prompts in the browser

    program = Background(
        lambda: client.http.post("/api/wallet/export", extensions={SCOPE_EXTENSION: SCOPE})
    )
    await page.goto(await next_url(urls))
    dialog = page.locator('dialog.sg-dialog[open][data-screen="choose"]')
    await dialog.get_by_role("radio", name=re.compile("Wallet signature")).check()
    await dialog.get_by_role("button", name="Continue").click()
    dialog = page.locator('dialog.sg-dialog[open][data-screen="wallet"]')
    shown = await dialog.get_by_label("Message to sign").text_content()
    await dialog.get_by_role("button", name="Sign with wallet").click()
    await expect(page.locator("#handoff")).to_have_attribute("data-state", "done")
    exported = await program.join()
    assert exported.status_code == 200, exported.text
    assert exported.json()["address"] != account.address  # the demo wallet, not the signer's
    assert signed[-1] == shown and account.address in shown
    assert ui.events[-1] == ("closed", "completed")
    client.close()
