"""The terminal prompter: rich for what is shown, prompt_toolkit for what is typed.

One screen per :class:`~stepguard.client.PromptNeeded`: a method choice (default first; with a
``handoff``, "Continue in the browser" last, which hands the whole step-up to the hosted page), a code entry
(masked destination, a live expiry and resend countdown in the bottom bar, Ctrl-R for a new code), a
wallet confirmation that shows the exact message to be signed, and the hand-off spinner a
:class:`~stepguard.client.BrowserHandoff` drives while a passkey is used in the browser. Esc and
Ctrl-C answer ``None`` (the SDK raises :class:`~stepguard.StepUpCancelled`).

Each prompt runs with prompt_toolkit's ``prompt()`` when called from plain code (the sync
:class:`~stepguard.Client`) and returns the ``prompt_async()`` coroutine when an event loop is
running (the :class:`~stepguard.AsyncClient` awaits it), so one prompter serves both clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from prompt_toolkit.application.current import create_app_session
from prompt_toolkit.formatted_text import HTML
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.output import Output
from prompt_toolkit.shortcuts import PromptSession
from prompt_toolkit.shortcuts.choice_input import ChoiceInput
from prompt_toolkit.validation import ValidationError, Validator
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.status import Status
from rich.text import Text

from stepguard.client._errors import (
    ClientError,
    CodeExpired,
    InvalidCode,
    RateLimited,
    StepUpCancelled,
)
from stepguard.client._models import (
    CONTINUE_IN_BROWSER,
    RESEND_CODE,
    Credential,
    PromptKind,
    PromptNeeded,
    RecoveryCodes,
    TotpDevice,
)
from stepguard.core.clock import Clock, SystemClock

if TYPE_CHECKING:
    from stepguard.client._handoff import BrowserHandoff

__all__ = ["TerminalPrompter", "describe_credential", "format_wait", "render_qr"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
Answer = str | None

_LABELS = {
    "passkey": "Passkey (in your browser)",
    "totp": "Authenticator app",
    "recovery_code": "Recovery code",
    "recovery": "Recovery code",
    "email": "Email code",
    "phone_number": "Text message (SMS) code",
    "blockchain": "Wallet signature",
}
_CODE_TITLES = {
    PromptKind.OTP_CODE: "Enter the code we sent to {destination}",
    PromptKind.SIGN_IN_CODE: "Enter the sign-in code we sent to {destination}",
    PromptKind.TOTP_CODE: "Enter the 6-digit code from your authenticator app",
    PromptKind.RECOVERY_CODE: "Enter one of your recovery codes",
}
_DIGITS = re.compile(r"^\d{6,8}$")
_SEPARATORS = re.compile(r"[\s-]")


class _Closed(Exception):
    """Esc pressed: the prompt closes without an answer."""


class _Asker(Protocol[T_co]):  # PromptSession and ChoiceInput share this shape
    def prompt(self) -> T_co: ...

    async def prompt_async(self) -> T_co: ...


def describe_credential(credential: Credential) -> str:
    """A one-line label for a method choice: ``Authenticator app · Phone``."""
    label = _LABELS.get(credential.format, credential.format.replace("_", " ").capitalize())
    alias = credential.alias
    if credential.format == "blockchain" and alias and len(alias) > 20:
        alias = f"{alias[:8]}…{alias[-6:]}"  # addresses are long; the ends identify them
    return f"{label} · {alias}" if alias else label


def format_wait(seconds: float) -> str:
    """``42 s``, ``4:05`` or ``1 h 02 min``: how long someone has to wait."""
    whole = max(0, int(seconds + 0.999))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60}:{whole % 60:02d}"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def render_qr(data: str) -> str:
    """``data`` as a QR code in text (two modules per character cell, quiet zone of 2)."""
    import segno

    buffer = io.StringIO()
    segno.make(data, error="m").terminal(out=buffer, compact=True, border=2)
    return buffer.getvalue()


def _normalise(kind: PromptKind, text: str) -> str:
    return _SEPARATORS.sub("", text) if kind is not PromptKind.RECOVERY_CODE else text.strip()


class _CodeValidator(Validator):
    def __init__(self, kind: PromptKind) -> None:
        self.kind = kind

    def validate(self, document: Any) -> None:
        text = str(document.text)
        end = len(text)  # keep the cursor at the end, so Ctrl-U clears what was typed
        code = _normalise(self.kind, text)
        if self.kind is PromptKind.RECOVERY_CODE:
            if len(_SEPARATORS.sub("", code)) < 8:
                raise ValidationError(end, "A recovery code has 24 letters and digits.")
        elif not _DIGITS.match(code):
            raise ValidationError(end, "The code is 6 digits.")


class _Countdown:
    """A rich renderable that re-reads the clock each time the spinner redraws."""

    def __init__(self, clock: Clock, text: str, deadline: float | None) -> None:
        self.clock = clock
        self.text = text
        self.deadline = deadline

    def __rich__(self) -> Text:
        line = Text(self.text)
        if self.deadline is not None:
            left = format_wait(self.deadline - self.clock.now())
            line.append(f"  ({left} left, Ctrl-C to cancel)", style="dim")
        return line


class TerminalPrompter:
    """A :class:`~stepguard.client.Prompter` for terminal programs.

    ``console`` is where screens are drawn (default: stdout); ``input``/``output`` are
    prompt_toolkit's (default: the terminal; tests give a pipe). ``clock`` drives the countdowns
    (the server's ``resend_after``/``expires_at`` are Unix times). It also implements the
    optional hooks the SDK and :class:`~stepguard.client.BrowserHandoff` look for:
    :meth:`confirm_signature`, :meth:`report_error` and the ``handoff_*`` methods.

    ``handoff``: a :class:`~stepguard.client.BrowserHandoff` of the same client (best drawn by
    this prompter: ``prompter.handoff = BrowserHandoff(client, ui=prompter)``). With one, the
    method choice also offers "Continue in the browser", for methods the terminal cannot do
    (a browser wallet) or a user who prefers the page. The SDK's default terminal prompter has one.
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        clock: Clock | None = None,
        input: Input | None = None,
        output: Output | None = None,
        handoff: BrowserHandoff | None = None,
    ) -> None:
        self.console = console or Console(highlight=False)
        self.handoff = handoff
        self.clock: Clock = clock or SystemClock()
        self._input = input
        self._output = output
        self._status: Status | None = None
        self._countdown: _Countdown | None = None
        self._resent = False

    # -- the Prompter protocol ------------------------------------------------------------------
    def prompt(self, request: PromptNeeded) -> Answer | Awaitable[Answer]:
        """Show the screen for ``request``; the answer, or ``None`` when the user closed it."""
        if request.kind is PromptKind.CHOOSE_METHOD:
            return self._choose(request)
        return self._code(request)

    # -- screens --------------------------------------------------------------------------------
    def _choose(self, request: PromptNeeded) -> Answer | Awaitable[Answer]:
        options = sorted(request.options, key=lambda c: c.id != request.default)  # default first
        self._heading("Verify it's you", request.scopes)
        if request.error:
            self._error(request.error)
        choices = [
            (c.id, describe_credential(c) + ("  (default)" if c.id == request.default else ""))
            for c in options
        ]
        if self.handoff is not None:
            choices.append((CONTINUE_IN_BROWSER, "Continue in the browser"))
        asker: ChoiceInput[str] = ChoiceInput(
            message="Choose how to verify:",
            options=choices,
            default=options[0].id if options else None,
            bottom_toolbar=HTML(" <b>↑↓</b> or number, <b>Enter</b> choose, <b>Esc</b> cancel "),
            key_bindings=self._keys(),
        )
        return self._ask(asker, lambda chosen: chosen)

    def _code(self, request: PromptNeeded) -> Answer | Awaitable[Answer]:
        kind = request.kind
        title = _CODE_TITLES.get(kind, "Enter the code")
        self._heading(title.format(destination=request.destination or "you"), request.scopes)
        if self._resent:
            self._resent = False
            if not request.error:
                self.console.print(
                    "[green]✓[/] A new code is on its way; the old one no longer works."
                )
        if request.error:
            left = request.attempts_remaining
            more = f" {left} attempt{'s' if left != 1 else ''} left." if left is not None else ""
            self._error(f"{request.error}{more}")
        keys = self._keys()
        if request.resend_after is not None:

            @keys.add("c-r")
            def _resend(event: KeyPressEvent) -> None:
                assert request.resend_after is not None
                if self.clock.now() >= request.resend_after:
                    self._resent = True
                    event.app.exit(result=RESEND_CODE)

        def toolbar() -> HTML:
            parts = ["<b>Enter</b> verify", "<b>Esc</b> cancel"]
            now = self.clock.now()
            if request.resend_after is not None:
                if now >= request.resend_after:
                    parts.append("<b>Ctrl-R</b> send a new code")
                else:
                    parts.append(f"new code in {format_wait(request.resend_after - now)}")
            if request.expires_at is not None:
                if now < request.expires_at:
                    parts.append(f"code expires in {format_wait(request.expires_at - now)}")
                else:
                    parts.append("code expired: send a new one")
            return HTML(" " + " · ".join(parts) + " ")

        label = "Recovery code: " if kind is PromptKind.RECOVERY_CODE else "Code: "
        asker: PromptSession[str] = PromptSession(
            label,
            key_bindings=keys,
            bottom_toolbar=toolbar,
            refresh_interval=0.5,
            validator=_CodeValidator(kind),
            validate_while_typing=False,
            # A PromptSession takes the app session's streams when built, not when asked.
            input=self._input,
            output=self._output,
        )
        return self._ask(
            asker,
            lambda typed: typed if typed == RESEND_CODE else _normalise(kind, typed),
        )

    # -- optional hooks ---------------------------------------------------------------------------
    def confirm_signature(
        self, chain: str, address: str, message: str
    ) -> bool | None | Awaitable[bool | None]:
        """Show the exact message the wallet is about to sign; sign only on an explicit yes."""
        self._heading("Sign with your wallet", ())
        self.console.print(f"Wallet: [bold]{escape(address)}[/] ({escape(chain)})")
        # Text, not markup: the message is shown byte for byte, whatever it contains.
        self.console.print(Panel(Text(message), title="Message to sign", expand=False))
        asker: ChoiceInput[str] = ChoiceInput(
            message="Sign this exact message?",
            options=[("no", "No, cancel"), ("yes", "Yes, sign it")],
            default="no",
            key_bindings=self._keys(),
        )
        return self._ask(asker, lambda answer: answer == "yes")

    def report_error(self, error: ClientError) -> None:
        """Explain why a prompt ended in an error: the wait time of a lockout, an expired code."""
        if isinstance(error, RateLimited):
            wait = f" Try again in {format_wait(error.retry_after)}." if error.retry_after else ""
            self._error(f"Too many attempts: verification is locked for now.{wait}")
        elif isinstance(error, InvalidCode):
            self._error(f"{error.detail} Start again to get a new code.")
        elif isinstance(error, CodeExpired):
            self._error("The code expired: start again to get a new one.")
        elif isinstance(error, StepUpCancelled):
            self.console.print(f"[yellow]Cancelled:[/] {escape(error.detail)}")
        else:
            self._error(error.detail)

    # -- browser hand-off UI (see BrowserHandoff) --------------------------------------------------
    def handoff_opened(self, url: str, opened: bool, expires_at: float | None) -> None:
        """Print the link (always: the browser may be on another machine); start the spinner."""
        self._heading("Continue in your browser", ())
        if opened:
            self.console.print("Your browser should open. If it does not, open this link:")
        else:
            self.console.print("Open this link in a browser:")
        self.console.print(Text(url, style="bold underline"), soft_wrap=True)
        self._countdown = _Countdown(self.clock, "Waiting for the browser…", expires_at)
        self._status = Status(self._countdown, console=self.console, spinner="dots")
        self._status.start()

    def handoff_status(self, status: str) -> None:
        """The page was opened (``claimed``) or not yet (``pending``)."""
        if self._countdown is not None:
            self._countdown.text = (
                "Finish in the browser…" if status == "claimed" else "Waiting for the browser…"
            )

    def handoff_closed(self, outcome: str) -> None:
        """Stop the spinner; say how it ended (``completed``, ``cancelled``, ``expired``)."""
        if self._status is not None:
            self._status.stop()
            self._status = None
        self._countdown = None
        if outcome == "completed":
            self.console.print("[green]✓[/] Done in the browser.")
        elif outcome == "expired":
            self._error("The browser step timed out.")
        else:
            self.console.print("[yellow]The browser step was cancelled.[/]")

    # -- enrolment screens --------------------------------------------------------------------------
    def show_totp_device(self, device: TotpDevice) -> None:
        """The new device's QR code and secret, for an authenticator app (shown once)."""
        self._heading("Add stepguard to your authenticator app", ())
        self.console.print("Scan this QR code:")
        self.console.out(render_qr(device.uri), highlight=False)
        grouped = " ".join(device.secret[i : i + 4] for i in range(0, len(device.secret), 4))
        self.console.print(f"or enter this secret: [bold]{grouped}[/]")
        self.console.print(Text(device.uri, style="dim"), soft_wrap=True)

    def show_recovery_codes(self, codes: RecoveryCodes) -> bool | None | Awaitable[bool | None]:
        """The new recovery codes, shown once; True when the user confirms they saved them."""
        self._heading("Your recovery codes", ())
        self.console.print("Each code works once. Save them now: they are not shown again.")
        self.console.print(Panel(Text("\n".join(codes.codes)), expand=False))
        asker: ChoiceInput[str] = ChoiceInput(
            message="Have you saved them?",
            options=[("yes", "I have saved my recovery codes")],
            key_bindings=self._keys(),
        )
        return self._ask(asker, lambda answer: answer == "yes")

    def ask_choice(
        self, message: str, options: Sequence[tuple[str, str]], default: str | None = None
    ) -> Answer | Awaitable[Answer]:
        """A one-off choice among ``(value, label)`` options; ``None`` when closed."""
        asker: ChoiceInput[str] = ChoiceInput(
            message=message,
            options=list(options),
            default=default if default is not None else options[0][0],
            key_bindings=self._keys(),
        )
        return self._ask(asker, lambda chosen: chosen)

    def ask_code(self, title: str) -> Answer | Awaitable[Answer]:
        """A one-off 6-digit code entry (e.g. the first code of a new TOTP device)."""
        request = PromptNeeded(PromptKind.TOTP_CODE)
        self._heading(title, ())
        asker: PromptSession[str] = PromptSession(
            "Code: ",
            key_bindings=self._keys(),
            validator=_CodeValidator(request.kind),
            validate_while_typing=False,
            bottom_toolbar=HTML(" <b>Enter</b> verify · <b>Esc</b> cancel "),
            input=self._input,
            output=self._output,
        )
        return self._ask(asker, lambda typed: _normalise(request.kind, typed))

    # -- plumbing -----------------------------------------------------------------------------------
    def _heading(self, title: str, scopes: Sequence[str]) -> None:
        self.console.print()
        self.console.rule(f"[bold]{escape(title)}[/]", align="left")
        if scopes:
            self.console.print(f"Needed for: [bold]{escape(', '.join(scopes))}[/]")

    def _error(self, message: str) -> None:
        self.console.print(f"[bold red]✗[/] [red]{escape(message)}[/]")

    def _keys(self) -> KeyBindings:
        keys = KeyBindings()

        @keys.add("escape", eager=True)
        def _cancel(event: KeyPressEvent) -> None:
            event.app.exit(exception=_Closed())

        return keys

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        if self._input is None and self._output is None:
            yield
            return
        with create_app_session(input=self._input, output=self._output):
            yield

    def _ask(
        self, asker: _Asker[str], convert: Callable[[str], T]
    ) -> T | None | Awaitable[T | None]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            with self._session():
                try:
                    return convert(asker.prompt())
                except (KeyboardInterrupt, EOFError, _Closed):
                    self._closed()
                    return None
        return self._ask_async(asker, convert)

    async def _ask_async(self, asker: _Asker[str], convert: Callable[[str], T]) -> T | None:
        with self._session():
            try:
                return convert(await asker.prompt_async())
            except (KeyboardInterrupt, EOFError, _Closed):
                self._closed()
                return None

    def _closed(self) -> None:
        self.console.print("[yellow]Closed.[/]")

    def __repr__(self) -> str:
        return "TerminalPrompter()"
