"""The terminal prompter in a real terminal (tmux), against a real server, through the SDK's
default wiring: the program configures NO prompter, stdin is a TTY, so ``prompt_step_up_auth``
uses :class:`TerminalPrompter`. Assertions are on the rendered screen; every path ends with the
program's own verdict (a guarded export with the elevated token, or the error code)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from stepguard.client.prompters import render_qr

from ._tmux import App, Terminal


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal()
    try:
        yield term
    finally:
        term.close()


def run(terminal: Terminal, tmp_path: Path, scenario: str) -> App:
    return App(terminal, tmp_path, scenario)


def test_otp_masked_destination_wrong_code_resend_and_the_new_code(
    terminal: Terminal, tmp_path: Path
) -> None:
    app = run(terminal, tmp_path, "otp")
    heading = terminal.wait_for(r"Enter the code we sent to (\S+)")
    email = app.info["email"]
    assert heading.group(1) != email and "***" in heading.group(1)
    assert heading.group(1).endswith("@example.com")
    terminal.wait_for(r"Ctrl-R send a new code · code expires in \d:\d\d")
    terminal.snapshot("otp")
    [first] = app.codes()

    terminal.type("000000")
    terminal.wait_for("Code: 000000")
    terminal.key("Enter")
    terminal.wait_for(r"✗ The code is wrong\. 4 attempts left\.")
    terminal.snapshot("otp-wrong-code")
    # Wait for the prompt to be drawn again: a key sent before that is echoed, not handled.
    terminal.wait_for(r"4 attempts left\.\n+Code:")

    terminal.key("C-r")  # a new code; the old one is void
    terminal.wait_for("A new code is on its way")
    codes = app.codes()
    assert len(codes) == 2 and codes[0] == first
    terminal.type(first)
    terminal.wait_for(f"Code: {first}")
    terminal.key("Enter")
    terminal.wait_for(r"✗ .*attempts? left\.")  # refused: it was replaced
    terminal.type(codes[1])
    terminal.wait_for(f"Code: {codes[1]}")
    terminal.key("Enter")
    assert app.result().startswith("exported 0x")


def test_totp_device_choice_default_first_and_mfa_routing(
    terminal: Terminal, tmp_path: Path
) -> None:
    app = run(terminal, tmp_path, "totp")
    terminal.wait_for("Choose how to verify")
    screen = terminal.wait_for(r"3\. Recovery code").string
    options = [
        line.strip(" >")
        for line in screen.splitlines()
        if line.strip(" >")[:2] in ("1.", "2.", "3.")
    ]
    assert options == [
        "1. Authenticator app  (default)",
        "2. Authenticator app · Tablet",
        "3. Recovery code",
    ]
    assert "4. Continue in the browser" in screen  # after every method
    terminal.snapshot("choose")
    assert "Email code" not in screen  # an MFA user steps up with MFA only

    terminal.type("2")  # the Tablet device
    terminal.wait_for(r">  2\. Authenticator app · Tablet")
    terminal.key("Enter")
    terminal.wait_for("Enter the 6-digit code from your authenticator app")
    terminal.type(app.totp(0))  # the other device's code does not open this one
    terminal.key("Enter")
    terminal.wait_for(r"✗ The code is wrong\.")
    terminal.type(app.totp(1))
    terminal.wait_for(f"Code: {app.totp(1)}")
    terminal.key("Enter")
    assert app.result().startswith("exported 0x")


def test_recovery_code_is_validated_then_accepted(terminal: Terminal, tmp_path: Path) -> None:
    app = run(terminal, tmp_path, "totp")
    terminal.wait_for(r"3\. Recovery code")
    terminal.type("3")
    terminal.wait_for(r">  3\. Recovery code")
    terminal.key("Enter")
    terminal.wait_for("Enter one of your recovery codes")
    terminal.type("abc")
    terminal.key("Enter")
    terminal.wait_for("A recovery code has 24 letters and digits.")  # not even sent
    terminal.key("C-u")
    terminal.type(app.info["recovery_codes"][0])
    terminal.key("Enter")
    assert app.result().startswith("exported 0x")


def test_escape_at_the_method_choice_cancels(terminal: Terminal, tmp_path: Path) -> None:
    app = run(terminal, tmp_path, "totp")
    terminal.wait_for(r"3\. Recovery code")
    terminal.key("Escape")
    assert app.result() == "error=step_up_cancelled"


def test_ctrl_c_at_the_code_entry_cancels(terminal: Terminal, tmp_path: Path) -> None:
    app = run(terminal, tmp_path, "otp")
    terminal.wait_for("Enter the code we sent to")
    terminal.wait_for("Code:")
    terminal.type("12")
    terminal.wait_for("Code: 12")
    terminal.key("C-c")
    assert app.result() == "error=step_up_cancelled"


def test_wallet_confirmation_shows_the_exact_message_then_signs(
    terminal: Terminal, tmp_path: Path
) -> None:
    app = run(terminal, tmp_path, "wallet")
    terminal.wait_for(r"2\. Wallet signature · 0x")
    terminal.type("2")
    terminal.wait_for(r">  2\. Wallet signature")
    terminal.key("Enter")
    terminal.wait_for("Sign this exact message?")
    shown = terminal.screen()
    terminal.snapshot("wallet")
    terminal.type("2")
    terminal.wait_for(r">  2\. Yes, sign it")
    terminal.key("Enter")
    assert app.result().startswith("exported 0x")
    [signed] = json.loads(terminal.wait_for(r"^SIGNED (.*)$").group(1))
    panel = [line.strip("│ ") for line in shown.splitlines() if line.startswith("│")]
    assert panel == [line.strip() for line in signed.splitlines()]  # every line, in order
    assert "Nonce:" in signed


def test_wallet_confirmation_defaults_to_no_and_signs_nothing(
    terminal: Terminal, tmp_path: Path
) -> None:
    app = run(terminal, tmp_path, "wallet")
    terminal.wait_for(r"2\. Wallet signature · 0x")
    terminal.type("2")
    terminal.wait_for(r">  2\. Wallet signature")
    terminal.key("Enter")
    terminal.wait_for(r">  1\. No, cancel")
    terminal.key("Enter")
    assert app.result() == "error=step_up_cancelled"
    assert json.loads(terminal.wait_for(r"^SIGNED (.*)$").group(1)) == []


def test_totp_enrolment_shows_the_qr_code_in_the_terminal(
    terminal: Terminal, tmp_path: Path
) -> None:
    app = run(terminal, tmp_path, "enroll")
    terminal.wait_for("Needed for: credential:link")  # linking needs a step-up first
    terminal.wait_for("Code:")
    [code] = app.codes()
    terminal.type(code)
    terminal.key("Enter")
    uri = terminal.wait_for(r"^(otpauth://totp/\S+)$").group(1)
    screen = terminal.screen()
    expected = [line.rstrip() for line in render_qr(uri).splitlines()]
    start = screen.splitlines().index(expected[0])
    assert screen.splitlines()[start : start + len(expected)] == expected
    secret = uri.split("secret=")[1].split("&")[0]
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    assert f"or enter this secret: {grouped}" in screen
    terminal.snapshot("enroll-totp")
    import pyotp

    terminal.wait_for("Enter the code your authenticator app shows")
    terminal.type(pyotp.TOTP(secret).at(app.info["now"]))
    terminal.key("Enter")
    result = app.result()
    assert result.startswith("enrolled ") and result.endswith("verified=True")


def test_lockout_shows_the_wait_time(terminal: Terminal, tmp_path: Path) -> None:
    app = run(terminal, tmp_path, "lockout")
    results: list[str] = []
    for wrong in range(12):
        screen = terminal.wait_for(r"(Code:$|Try again in|DONE)").group(1)
        if screen != "Code:":
            break
        terminal.type(f"{wrong:06d}")
        terminal.key("Enter")
        terminal.wait_for(rf"Code: {wrong:06d}")
        terminal.wait_for(r"(✗|RESULT)", timeout=30)
    found = terminal.wait_for(
        r"Too many attempts: verification is locked for now\. Try again in (\d+) s\."
    )
    assert 1 <= int(found.group(1)) <= 60
    terminal.snapshot("locked")
    results = [line for line in terminal.screen().splitlines() if line.startswith("RESULT")]
    assert "RESULT error=rate_limited" in results
    assert not any(r.startswith("RESULT exported") for r in results)
    del app


def test_passkey_through_the_browser_handoff_with_a_spinner(
    terminal: Terminal, tmp_path: Path
) -> None:
    app = run(terminal, tmp_path, "passkey")
    terminal.wait_for("Continue in your browser")
    url = terminal.wait_for(r"^(http://\S+/handoff/\S+#\S+)$").group(1)
    assert url.startswith(app.info["url"])
    terminal.wait_for(r"Waiting for the browser….*left, Ctrl-C to cancel")
    terminal.snapshot("handoff-passkey")
    terminal.wait_for(r"Finish in the browser…")  # the page claimed the link
    terminal.wait_for("✓ Done in the browser.")
    assert app.result().startswith("exported 0x")


def test_ctrl_c_while_waiting_for_the_browser_cancels_the_handoff(
    terminal: Terminal, tmp_path: Path
) -> None:
    import httpx

    app = run(terminal, tmp_path, "passkey-wait")
    url = terminal.wait_for(r"^(http://\S+/handoff/\S+#\S+)$").group(1)
    terminal.wait_for(r"Waiting for the browser…")
    terminal.key("C-c")
    assert app.result() == "error=step_up_cancelled"
    terminal.wait_for("The browser step was cancelled.")
    handoff_id = url.split("#")[0].rsplit("/", 1)[-1]
    polled = httpx.get(
        f"{app.info['url']}/sdk/{app.info['environment_id']}/handoff/{handoff_id}",
        headers={"Authorization": f"Bearer {app.info['session']}"},
        timeout=10,
    )
    assert polled.json()["status"] == "cancelled"  # the link no longer works


def test_continue_in_the_browser_at_the_method_choice(terminal: Terminal, tmp_path: Path) -> None:
    """The whole step-up moves to the hosted page; the terminal waits, then the program goes on
    with the token the browser's verification minted."""
    import httpx

    app = run(terminal, tmp_path, "browser")
    screen = terminal.wait_for(r"3\. Continue in the browser").string
    assert re.search(r"1\. Email code · \S+  \(default\)\n\s+2\. Wallet signature", screen)
    terminal.type("3")
    terminal.wait_for(r">  3\. Continue in the browser")
    terminal.key("Enter")
    terminal.wait_for("Open this link in a browser:")
    url = terminal.wait_for(r"^(http://\S+/handoff/\S+#\S+)$").group(1)
    terminal.wait_for(r"Waiting for the browser….*left, Ctrl-C to cancel")
    before = app.codes()  # the wallet's linking sent one; the terminal sent none

    # The browser: what the hosted page does for the hand-off (claim, then the step-up through
    # the hand-off's proxy, the code read from the dev outbox).
    parts = urlsplit(url)
    handoff_id = parts.path.rsplit("/", 1)[-1]
    with httpx.Client(base_url=app.info["url"], timeout=10) as http:
        claimed = http.post(f"/handoff/{handoff_id}/claim", json={"secret": parts.fragment})
        assert claimed.json()["kind"] == "reauthenticate", claimed.text
        assert claimed.json()["requested_scopes"] == ["wallet:export"]
        browser = {"X-Handoff-Token": claimed.json()["browser_token"]}
        terminal.wait_for("Finish in the browser…")
        sent = http.post(f"/handoff/{handoff_id}/sdk/otp/send", json={}, headers=browser)
        [code] = app.codes()[len(before) :]
        verified = http.post(
            f"/handoff/{handoff_id}/sdk/otp/verify",
            json={"verification_id": sent.json()["verification_id"], "code": code},
            headers=browser,
        )
        assert verified.json()["handed_off"] is True, verified.text
    terminal.wait_for("✓ Done in the browser.")
    assert app.result().startswith("exported 0x")
