"""The terminal prompter's screens without tmux: prompt_toolkit reads keys from a pipe and draws
into a buffer, the clock stands still, so what a countdown says is exact. The tmux tests drive the
same screens through the SDK against a real server; these pin the details the server's timing
does not reach (a resend that is not allowed yet, a hand-off that times out)."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator

import pytest
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output.vt100 import Vt100_Output
from rich.console import Console

from stepguard.client import (
    CONTINUE_IN_BROWSER,
    RESEND_CODE,
    BrowserHandoff,
    Credential,
    PromptKind,
    PromptNeeded,
    RecoveryCodes,
    StepUpCancelled,
)
from stepguard.client.prompters import TerminalPrompter
from stepguard.core.clock import FixedClock
from stepguard.testing import StepGuardTestServer

NOW = 1_800_000_000.0
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\x1b[=>]|\r")


class _Output(Vt100_Output):
    def get_rows_below_cursor_position(self) -> int:
        return 20  # a real terminal answers a cursor-position request; then toolbars are drawn


class Screen:
    """A pipe for keys and a buffer for what prompt_toolkit draws (escape codes stripped)."""

    def __init__(self) -> None:
        self.drawn = io.StringIO()
        self.output = _Output(self.drawn, lambda: Size(rows=24, columns=120), term="xterm")
        self.console_text = io.StringIO()
        self.console = Console(file=self.console_text, width=120, highlight=False)

    def text(self) -> str:
        return _ANSI.sub("", self.drawn.getvalue())


@pytest.fixture
def screen() -> Iterator[Screen]:
    yield Screen()


def ask(screen: Screen, request: PromptNeeded, keys: str, **kw: object) -> object:
    with create_pipe_input() as pipe:
        pipe.send_text(keys)
        prompter = TerminalPrompter(
            screen.console, clock=FixedClock(NOW), input=pipe, output=screen.output, **kw
        )  # type: ignore[arg-type]
        return prompter.prompt(request)


def otp(resend_in: float) -> PromptNeeded:
    return PromptNeeded(
        PromptKind.OTP_CODE,
        ("wallet:export",),
        destination="a***e@example.com",
        expires_at=NOW + 300,
        resend_after=NOW + resend_in,
    )


def test_the_resend_countdown_and_ctrl_r_before_it_ends_does_nothing(screen: Screen) -> None:
    answer = ask(screen, otp(42), "\x12123456\r")  # Ctrl-R, then a code
    assert answer == "123456"
    assert "new code in 42 s" in screen.text() and "code expires in 5:00" in screen.text()
    assert "Ctrl-R send a new code" not in screen.text()
    assert "Enter the code we sent to a***e@example.com" in screen.console_text.getvalue()


def test_ctrl_r_once_allowed_asks_for_a_new_code(screen: Screen) -> None:
    assert ask(screen, otp(0), "\x12") == RESEND_CODE
    assert "Ctrl-R send a new code" in screen.text()


def test_a_code_with_separators_is_cleaned_and_a_short_one_is_refused(screen: Screen) -> None:
    # "12" + Enter is refused on the spot (else it would be the answer); Ctrl-U clears it.
    assert ask(screen, otp(10), "12\r\x15123 456\r") == "123456"


def test_escape_closes_the_code_entry(screen: Screen) -> None:
    assert ask(screen, otp(10), "12\x1b") is None
    assert "Closed." in screen.console_text.getvalue()


CHOICES = (
    Credential(id="cred_mail", format="email", alias="a***e@example.com", default=False),
    Credential(id="cred_wallet", format="blockchain", alias="0x" + "ab" * 20, default=True),
)


def choose() -> PromptNeeded:
    return PromptNeeded(
        PromptKind.CHOOSE_METHOD, ("wallet:export",), options=CHOICES, default="cred_wallet"
    )


def test_the_method_choice_lists_the_default_first(screen: Screen) -> None:
    assert ask(screen, choose(), "\r") == "cred_wallet"
    text = screen.text()
    assert text.index("1. Wallet signature · 0xababab…ababab  (default)") < text.index(
        "2. Email code · a***e@example.com"
    )
    assert "Continue in the browser" not in text  # no hand-off given: not offered


def test_continue_in_the_browser_is_offered_last_with_a_handoff(screen: Screen) -> None:
    handoff = object()  # only its presence matters to the screen
    assert ask(screen, choose(), "3\r", handoff=handoff) == CONTINUE_IN_BROWSER
    assert "3. Continue in the browser" in screen.text()


def test_recovery_codes_are_shown_until_the_user_says_they_saved_them(screen: Screen) -> None:
    codes = RecoveryCodes(codes=tuple(f"code-{n:02d}-abcd-efgh" for n in range(10)), remaining=10)
    with create_pipe_input() as pipe:
        pipe.send_text("\r")
        prompter = TerminalPrompter(screen.console, input=pipe, output=screen.output)
        assert prompter.show_recovery_codes(codes) is True
    shown = screen.console_text.getvalue()
    assert all(code in shown for code in codes.codes)
    assert "they are not shown again" in shown
    assert "I have saved my recovery codes" in screen.text()
    with create_pipe_input() as pipe:
        pipe.send_text("\x1b")
        prompter = TerminalPrompter(screen.console, input=pipe, output=screen.output)
        assert prompter.show_recovery_codes(codes) is None  # not acknowledged


def test_a_link_nobody_opens_times_out_as_step_up_cancelled() -> None:
    """The hand-off's timeout: the server expires the link, the SDK raises StepUpCancelled and
    the terminal says the browser step timed out (the countdown showed how long was left)."""
    clock = FixedClock(time.time())
    console_text = io.StringIO()
    prompter = TerminalPrompter(Console(file=console_text, width=120), clock=clock)
    with StepGuardTestServer(clock=clock, dev_mode=True) as server:
        user = server.create_user()
        with server.client(user) as client:

            def open_then_wait_too_long(url: str) -> bool:
                clock.advance(31)  # nobody opened it within its 30 s
                return True

            client.prompter = BrowserHandoff(
                client, open_browser=open_then_wait_too_long, ui=prompter, timeout=30
            )
            with pytest.raises(StepUpCancelled, match="timed out"):
                client.step_up_auth.prompt_step_up_auth(["wallet:export"])
    shown = console_text.getvalue()
    assert "Your browser should open." in shown
    assert "The browser step timed out." in shown
