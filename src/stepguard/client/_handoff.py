"""The browser hand-off, program side: a Python program lets the user finish a step-up or a
WebAuthn ceremony on the server's hosted page, then collects the result (docs/api.md).

    POST /sdk/{env}/handoff            -> {handoff_id, url, expires_at}
    open the url (webbrowser) or print it
    GET  /sdk/{env}/handoff/{id}?wait  -> pending | claimed | completed (+ result, once)
                                          | cancelled | expired
    DELETE /sdk/{env}/handoff/{id}     when the program gives up (Ctrl-C, an error)

The hand-off is a sans-IO flow like the rest of the SDK (:func:`handoff_flow`), run by the client's
own driver, so :class:`BrowserHandoff` works with :class:`~stepguard.Client` (plain calls) and
:class:`~stepguard.AsyncClient` (coroutines) alike. It is:

* an :class:`~stepguard.client.Authenticator`: ``create``/``get`` run ``navigator.credentials``
  in the browser (``passkey.create``/``passkey.get`` kinds) and answer the credential JSON;
* a prompter fallback: as a client's ``prompter`` it hands the whole step-up to the browser
  (``step_up``/``mfa``/``reauthenticate`` kinds; the server keeps the elevated token away from the
  browser and delivers it here), for programs without a terminal, or with wallets in the browser.
"""

from __future__ import annotations

import sys
import webbrowser
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from stepguard.client import _flows as flows
from stepguard.client._client import AsyncClient, Client
from stepguard.client._drivers import AsyncDriver, SyncDriver
from stepguard.client._errors import StepUpCancelled
from stepguard.client._models import Call, Flow, PromptNeeded

__all__ = ["BrowserHandoff", "HandoffUI", "PrintHandoffUI", "handoff_flow"]

#: Seconds the server holds each long poll (it allows up to 30).
POLL_WAIT = 25.0
#: Seconds of each poll while the link is not opened yet.
PENDING_WAIT = 2.0
DEFAULT_TIMEOUT = 300.0
MIN_TTL, MAX_TTL = 30, 600
_OPEN = ("pending", "claimed")
_KINDS = {"step_up", "mfa", "reauthenticate"}


class HandoffUI(Protocol):
    """What the user sees while the browser has the prompt (the terminal prompter draws a
    spinner; :class:`PrintHandoffUI` prints lines)."""

    def handoff_opened(self, url: str, opened: bool, expires_at: float | None) -> None: ...

    def handoff_status(self, status: str) -> None: ...

    def handoff_closed(self, outcome: str) -> None: ...


class PrintHandoffUI:
    """Plain lines on ``stream`` (default: stderr), for programs without a rich terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def _say(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)

    def handoff_opened(self, url: str, opened: bool, expires_at: float | None) -> None:
        self._say("Continue in your browser" + (" (opening it now):" if opened else ":"))
        self._say(f"  {url}")

    def handoff_status(self, status: str) -> None:
        if status == "claimed":
            self._say("The page is open: finish there.")

    def handoff_closed(self, outcome: str) -> None:
        self._say(f"Browser step {outcome}.")


@dataclass(slots=True)
class _Pending:
    """The open hand-off's id, kept outside the flow so a runner can cancel it after Ctrl-C."""

    handoff_id: str | None = None


def _poll_request(core: flows.ClientCore, handoff_id: str, wait: float) -> Any:
    request = core.request("GET", f"/handoff/{handoff_id}?wait={wait:g}")
    # The long poll holds the connection for ``wait`` seconds: the read timeout must outlast it.
    request.extensions["timeout"] = {
        "connect": 10.0,
        "read": wait + 15.0,
        "write": 10.0,
        "pool": 10.0,
    }
    return request


def handoff_flow(
    core: flows.ClientCore,
    kind: str,
    *,
    requested_scopes: Iterable[str] = (),
    options: Mapping[str, Any] | None = None,
    ttl_seconds: float = DEFAULT_TIMEOUT,
    opener: Callable[[str], object] | None = None,
    ui: HandoffUI | None = None,
    poll_wait: float = POLL_WAIT,
    pending: _Pending | None = None,
) -> Flow[dict[str, Any]]:
    """Create a hand-off, open (``opener``) and show (``ui``) its URL, and long-poll until the
    browser is done: the ``result`` object. ``cancelled`` and ``expired`` raise
    :class:`~stepguard.StepUpCancelled`; any error cancels the hand-off on the server first."""
    body: dict[str, Any] = {
        "kind": kind,
        "requested_scopes": list(requested_scopes),
        "ttl_seconds": int(min(MAX_TTL, max(MIN_TTL, ttl_seconds))),
    }
    if options is not None:
        body["options"] = dict(options)
    created = yield from flows.call(core, "POST", "/handoff", json=body)
    handoff_id, url = str(created["handoff_id"]), str(created["url"])
    if pending is not None:
        pending.handoff_id = handoff_id
    opened = bool((yield Call(opener, (url,)))) if opener is not None else False
    expires = created.get("expires_at")
    if ui is not None:
        yield Call(
            ui.handoff_opened, (url, opened, expires if isinstance(expires, int | float) else None)
        )
    outcome = "failed"
    try:
        shown = "pending"
        while True:
            # Short polls until the page opens (so the UI can say "finish in the browser"; a
            # long poll only ends on completion), then long polls.
            wait = poll_wait if shown == "claimed" else min(poll_wait, PENDING_WAIT)
            answer = flows._ok((yield _poll_request(core, handoff_id, wait)))
            status = str(answer.get("status"))
            if status == "completed":
                outcome = "completed"
                result = answer.get("result")
                return dict(result) if isinstance(result, Mapping) else {}
            if status not in _OPEN:
                outcome = status
                if status == "expired":
                    raise StepUpCancelled("The browser step timed out.")
                raise StepUpCancelled("The browser step was cancelled.")
            if status != shown and ui is not None:
                yield Call(ui.handoff_status, (status,))
            shown = status
    except GeneratorExit:  # closed by the runner after Ctrl-C; it cancels on the server
        outcome = "cancelled"
        raise
    except Exception:
        if outcome == "failed":  # give up on the server too: the link stops working
            yield from cancel_flow(core, handoff_id)
        raise
    finally:
        if pending is not None:
            pending.handoff_id = None
        if ui is not None:
            # ``finally`` of a generator may not yield when it is closed: report without a Call.
            ui.handoff_closed(outcome)


def cancel_flow(core: flows.ClientCore, handoff_id: str) -> Flow[bool]:
    """Cancel the hand-off (best effort: an error answer is ignored); True if it was open."""
    try:
        response = yield core.request("DELETE", f"/handoff/{handoff_id}")
    except Exception:  # the server is gone: the hand-off expires on its own
        return False
    if not response.is_success:
        return False
    try:
        return bool(response.json().get("cancelled"))
    except ValueError:
        return False


class BrowserHandoff:
    """Finish prompts in the browser, from a Python program (see the module docstring).

    ``client`` is the :class:`~stepguard.Client` or :class:`~stepguard.AsyncClient` whose session
    the hand-off belongs to. ``open_browser``: True opens the link with :mod:`webbrowser`, False
    only shows it, a callable opens it itself. ``ui`` shows the link and the wait (default:
    :class:`PrintHandoffUI`). ``timeout`` (30..600 s) is how long the link lives; after it, the
    call raises :class:`~stepguard.StepUpCancelled`, as it does when the user cancels in the
    browser. Ctrl-C cancels the hand-off on the server and raises ``StepUpCancelled`` (a
    cancelled asyncio task cancels it too, and stays cancelled).

    As an authenticator, ``create``/``get`` answer plainly for a ``Client`` and with a coroutine
    for an ``AsyncClient``. As a prompter (``client.prompter = BrowserHandoff(client)``), the
    client's prompts and step-up challenges are answered in the browser.
    """

    def __init__(
        self,
        client: Client | AsyncClient,
        *,
        open_browser: bool | Callable[[str], object] = True,
        ui: HandoffUI | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        poll_wait: float = POLL_WAIT,
    ) -> None:
        self._core: flows.ClientCore = client._core
        self._driver: SyncDriver | AsyncDriver = client._driver
        self._configure(open_browser, ui, timeout, poll_wait)

    @classmethod
    def attach(
        cls,
        core: flows.ClientCore,
        driver: SyncDriver | AsyncDriver,
        *,
        open_browser: bool | Callable[[str], object] = True,
        ui: HandoffUI | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> BrowserHandoff:
        """A hand-off on a client's core and driver (what the client uses by default)."""
        self = cls.__new__(cls)
        self._core, self._driver = core, driver
        self._configure(open_browser, ui, timeout, POLL_WAIT)
        return self

    def _configure(
        self,
        open_browser: bool | Callable[[str], object],
        ui: HandoffUI | None,
        timeout: float,
        poll_wait: float,
    ) -> None:
        if callable(open_browser):
            self._opener: Callable[[str], object] | None = open_browser
        else:
            self._opener = webbrowser.open if open_browser else None
        self.ui: HandoffUI = ui or PrintHandoffUI()
        self.timeout = timeout
        self.poll_wait = poll_wait

    # -- running a flow with the client's driver --------------------------------------------------
    def _flow(self, kind: str, **kw: Any) -> Callable[[_Pending], Flow[dict[str, Any]]]:
        def make(pending: _Pending) -> Flow[dict[str, Any]]:
            return handoff_flow(
                self._core,
                kind,
                ttl_seconds=self.timeout,
                opener=self._opener,
                ui=self.ui,
                poll_wait=self.poll_wait,
                pending=pending,
                **kw,
            )

        return make

    def _run(self, make: Callable[[_Pending], Flow[dict[str, Any]]]) -> Any:
        pending = _Pending()
        driver = self._driver
        if isinstance(driver, AsyncDriver):
            return self._run_async(driver, make, pending)
        flow = make(pending)
        try:
            return driver.run(flow)
        except BaseException as exc:  # Ctrl-C: the flow never saw it, so cancel from here
            handoff_id = pending.handoff_id
            flow.close()
            if handoff_id is not None:
                driver.run(cancel_flow(self._core, handoff_id))
            if isinstance(exc, KeyboardInterrupt):  # Ctrl-C closes this prompt, like Esc
                raise StepUpCancelled("The browser step was cancelled.") from None
            raise

    async def _run_async(
        self,
        driver: AsyncDriver,
        make: Callable[[_Pending], Flow[dict[str, Any]]],
        pending: _Pending,
    ) -> dict[str, Any]:
        flow = make(pending)
        try:
            return await driver.run(flow)
        except BaseException:  # task cancelled or Ctrl-C
            handoff_id = pending.handoff_id
            flow.close()
            if handoff_id is not None:
                await driver.run(cancel_flow(self._core, handoff_id))
            raise

    # -- Authenticator ----------------------------------------------------------------------------
    def create(self, options: dict[str, Any]) -> Mapping[str, Any] | Awaitable[Mapping[str, Any]]:
        """``navigator.credentials.create(options)`` in the browser: the credential JSON."""
        return self._credential(self._run(self._flow("passkey.create", options=options)))

    def get(self, options: dict[str, Any]) -> Mapping[str, Any] | Awaitable[Mapping[str, Any]]:
        """``navigator.credentials.get(options)`` in the browser: the assertion JSON."""
        return self._credential(self._run(self._flow("passkey.get", options=options)))

    def _credential(self, result: Any) -> Mapping[str, Any] | Awaitable[Mapping[str, Any]]:
        if isinstance(self._driver, AsyncDriver):

            async def unwrap() -> Mapping[str, Any]:
                return _credential_of(await result)

            return unwrap()
        return _credential_of(result)

    # -- whole prompts in the browser ---------------------------------------------------------------
    def step_up_flow(
        self, core: flows.ClientCore, kind: str, requested_scopes: Iterable[str]
    ) -> Flow[str]:
        """The SDK's hook for a prompter that runs the whole step-up itself: the hand-off of
        ``kind`` (``step_up``, ``mfa`` or ``reauthenticate``); the elevated token is stored.

        The hand-off runs as one call (like a passkey ceremony), so that Ctrl-C or a cancelled
        task cancels it on the server."""
        if kind not in _KINDS:
            raise ValueError(f"unknown step-up hand-off kind {kind!r}")
        make = self._flow(kind, requested_scopes=list(requested_scopes))
        result = yield Call(self._run, (make,))
        return flows._mint(core, result)

    def prompt(self, request: PromptNeeded) -> None:
        """A plain prompt cannot be answered in the browser: the SDK asks :meth:`step_up_flow`
        instead; anything else closes the prompt."""
        return None

    def enroll(self) -> Mapping[str, Any] | Awaitable[Mapping[str, Any]]:
        """Enrol factors (TOTP with its QR code, passkeys, recovery codes) on the hosted page."""
        return self._run(self._flow("enroll"))  # type: ignore[no-any-return]


def _credential_of(result: Mapping[str, Any]) -> Mapping[str, Any]:
    credential = result.get("credential")
    if not isinstance(credential, Mapping):
        raise StepUpCancelled("The browser did not return a credential.")
    return credential
