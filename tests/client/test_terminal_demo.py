"""``stepguard demo`` in a real terminal (tmux): the in-process server, check -> verify -> proceed,
with an email code (read from the screen's dev hint) and with a TOTP app enrolled on the way (the
secret read from the screen, the QR code drawn above it)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import pyotp
import pytest

from ._tmux import Terminal


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal(width=100, height=60)
    try:
        yield term
    finally:
        term.close()


def start_demo(terminal: Terminal, tmp_path: object) -> None:
    terminal.start(f"cd {tmp_path} && {sys.executable} -m stepguard.cli demo; echo EXIT=$?")
    terminal.wait_for("Before we start:")
    terminal.wait_for(r">  1\. Verify with an email code")


def hinted_code(terminal: Terminal, nth: int = 1) -> str:
    found = terminal.wait_for(r"(?s)" + r".*?your code is (\d{6})" * nth)
    return found.group(nth)


def test_demo_email_code_then_the_guarded_export(terminal: Terminal, tmp_path: object) -> None:
    start_demo(terminal, tmp_path)
    terminal.key("Enter")
    terminal.wait_for(r"Step-up required for wallet:export: yes")
    terminal.wait_for(r"• Email code · d\*\*\*o@example\.com  \(default\)")
    code = hinted_code(terminal)
    terminal.wait_for("Code:$")
    terminal.type(code)
    terminal.wait_for(f"Code: {code}")
    terminal.key("Enter")
    terminal.wait_for(
        r"✓ /demo/api/wallet/export answered 200: \{'address':\s+'0x[0-9a-fA-F]{40}'\}"
    )
    terminal.wait_for("The token was single-use: the next call needs a new step-up.")
    terminal.wait_for("EXIT=0")
    assert "private_key" not in terminal.screen()


def test_demo_enrols_an_authenticator_app_then_steps_up_with_it(
    terminal: Terminal, tmp_path: object
) -> None:
    start_demo(terminal, tmp_path)
    terminal.type("2")
    terminal.wait_for(r">  2\. Add an authenticator app first")
    terminal.key("Enter")
    terminal.wait_for("Needed for: credential:link")  # adding a factor needs a step-up
    code = hinted_code(terminal)
    terminal.wait_for("Code:$")
    terminal.type(code)
    terminal.key("Enter")
    terminal.wait_for("Scan this QR code:")
    secret = terminal.wait_for(r"otpauth://totp/\S+secret=([A-Z2-7]+)").group(1)
    terminal.wait_for("Enter the code your authenticator app shows")
    totp = pyotp.TOTP(secret)
    while 30 - time.time() % 30 < 3:  # not on a step boundary: the server sees the same step
        time.sleep(0.2)
    terminal.type(totp.now())
    terminal.key("Enter")
    terminal.wait_for(r"✓ Authenticator app added")
    # MFA routing: the check now offers the app, and the step-up asks for its code.
    terminal.wait_for(r"• Authenticator app · stepguard demo")
    terminal.wait_for("Enter the 6-digit code from your authenticator app")
    terminal.type(totp.at(time.time() + 30))  # the next step: this one was spent enrolling
    terminal.key("Enter")
    terminal.wait_for(r"✓ /demo/api/wallet/export answered 200")
    terminal.wait_for("EXIT=0")
