"""Browser fixtures: Debian's chromium through Playwright (one browser per module), a real
server (uvicorn in a thread, demo mounted, mail to a real SMTP sink) per test, and a page with a
CDP virtual WebAuthn authenticator.

Every page works offline: the browser context refuses (and the test fails on) any request to a
host other than this machine, on top of chromium resolving no other host name at all.

Screenshots go to ``docs/screenshots/`` when ``STEPGUARD_SCREENSHOTS=1``; otherwise to a
temporary folder, so a normal test run leaves the working tree alone.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
from _browser import SCREENSHOTS, BrowserPage, Live
from _e2e_helpers import e2e_settings

from _services import SmtpSink, free_port, run_uvicorn_in_thread
from stepguard.demo import mount_demo
from stepguard.server.app import create_app

CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
# No network beyond localhost: every other host name resolves to nothing (components.md §1).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost",
]
#: Explicit waits: generous enough for a loaded CI machine, short enough to fail fast.
WAIT_MS = 10_000


def _chromium() -> str:
    for path in CHROMIUM_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("chromium")
    if found:
        return found
    message = "Debian's chromium is not installed (apt-get install chromium)"
    if os.environ.get("CI") == "true" or os.environ.get("STEPGUARD_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    """One headless chromium for the module."""
    executable = _chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        instance = await p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            await instance.close()


def _serve(tmp_path: Path, sink: SmtpSink, **settings: Any) -> Iterator[Live]:
    port = free_port()
    app = create_app(e2e_settings(tmp_path, public_url=f"http://localhost:{port}", **settings))
    mount_demo(app)
    shots = SCREENSHOTS if os.environ.get("STEPGUARD_SCREENSHOTS") == "1" else tmp_path / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    with (
        run_uvicorn_in_thread(app, port) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        live = Live(url=server.localhost_url, app=app, sink=sink, http=http, shots=shots)
        envs = live.admin("GET", "/admin/environments")["environments"]
        live.environment_id = next(e["id"] for e in envs if e["is_default"])
        yield live


@pytest.fixture
def live(tmp_path: Path, smtp_sink: SmtpSink) -> Iterator[Live]:
    """The server with the demo, mail to ``smtp_sink``, on ``http://localhost:PORT``."""
    yield from _serve(tmp_path, smtp_sink, smtp_url=smtp_sink.url, dev_mode=False)


@pytest.fixture
def dev_live(tmp_path: Path, smtp_sink: SmtpSink) -> Iterator[Live]:
    """The server as ``make run`` starts it: dev mode, codes in the dev outbox, no SMTP."""
    yield from _serve(tmp_path, smtp_sink, dev_mode=True)


@pytest_asyncio.fixture(loop_scope="module")
async def bpage(browser: Any) -> AsyncIterator[BrowserPage]:
    """A fresh context and page with a virtual platform authenticator (resident keys, UV)."""
    context = await browser.new_context(viewport={"width": 760, "height": 640})
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    cdp = await context.new_cdp_session(page)
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
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    bpage = BrowserPage(page, cdp, added["authenticatorId"])

    async def refuse(route: Any) -> None:
        bpage.outside.append(route.request.url)
        await route.abort("blockedbyclient")

    await context.route(lambda url: not _on_this_machine(url), refuse)
    try:
        yield bpage
    finally:
        await context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
    assert not bpage.outside, f"requests beyond this machine (a CDN?): {bpage.outside}"


def _on_this_machine(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "ws", "wss"):
        return True  # data:, blob: and the like never leave the browser
    return parts.hostname in ("localhost", "127.0.0.1", "::1")
