"""A terminal program for the terminal-prompter tests (run in tmux or pexpect, never imported).

    python _terminal_app.py SCENARIO INFO_JSON

It starts a real stepguard server in process (the test kit: uvicorn in a thread, SQLite, dev
outbox on), creates a user for SCENARIO, writes what the test needs to INFO_JSON (URL,
environment, session, TOTP secrets, the server's clock), then runs one SDK call with NO prompter
configured: on a terminal the SDK uses its TerminalPrompter by default, which is what is tested.
The last line is ``RESULT ...``: ``exported <address>`` after a guarded export with the elevated
token, ``enrolled <device id>``, or ``error=<code>``.

Scenarios: ``otp`` (email only: re-authentication), ``totp`` (email + two TOTP devices + recovery
codes: MFA routing), ``wallet`` (email + an Ethereum wallet), ``enroll`` (TOTP enrolment with the
QR code), ``lockout`` (three rounds of ``prompt_step_up_auth``), ``passkey`` (a passkey through
the browser hand-off, the "browser" completing it over HTTP), ``passkey-wait`` (nobody opens
the link) and ``browser`` (email + a wallet, the link is only printed: the test, as the browser,
finishes the step-up the user chose to continue there).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import webbrowser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pyotp

from stepguard.client import SCOPE_EXTENSION, ClientError, WalletSigner
from stepguard.client.prompters import TerminalPrompter, enroll_totp
from stepguard.core.clock import FixedClock
from stepguard.testing import StepGuardTestServer

SCOPE = "wallet:export"


class RecordingSigner:
    """The user's wallet, remembering what it was asked to sign."""

    def __init__(self, inner: WalletSigner) -> None:
        self.inner = inner
        self.address = inner.address
        self.chain = inner.chain
        self.signed: list[str] = []

    def sign_message(self, message: bytes) -> bytes:
        self.signed.append(message.decode())
        return bytes(self.inner.sign_message(message))  # type: ignore[arg-type]


def _browser_completes_the_handoff(server: StepGuardTestServer, user: Any) -> None:
    """``webbrowser.open`` replaced by what the hosted page does for ``passkey.get`` (claim with
    the fragment, run the ceremony, complete), a moment later, as a person would."""

    def open_url(url: str, *args: Any, **kwargs: Any) -> bool:
        def complete() -> None:
            time.sleep(1.5)
            parts = urlsplit(url)
            handoff_id = parts.path.rsplit("/", 1)[-1]
            with httpx.Client(base_url=server.url, timeout=10) as http:
                claim = http.post(f"/handoff/{handoff_id}/claim", json={"secret": parts.fragment})
                described = claim.json()
                time.sleep(1.0)
                credential = user.authenticator.get(described["options"])
                http.post(
                    f"/handoff/{handoff_id}/complete",
                    json={"credential": dict(credential)},
                    headers={"X-Handoff-Token": described["browser_token"]},
                )

        threading.Thread(target=complete, daemon=True).start()
        return True

    webbrowser.open = open_url


def main(scenario: str, info_path: Path) -> None:
    # The in-process server's log (dev-outbox lines) would land on the terminal under test;
    # the tests read codes over HTTP instead.
    logging.getLogger("stepguard").setLevel(logging.ERROR)
    # The server's clock starts at the wall clock (so countdowns read naturally) and stays put.
    clock = FixedClock(time.time())
    with StepGuardTestServer(clock=clock, dev_mode=True, demo=True) as server:
        user = server.create_user()
        info: dict[str, Any] = {
            "url": server.url,
            "environment_id": server.environment_id,
            "session": user.session_token,
            "email": user.email,
            "totp": [],
        }
        signer: RecordingSigner | None = None
        if scenario == "totp":
            user.add_totp()
            info["totp"].append({"alias": None, "secret": user.totp_secret})
            with server.client(user) as setup:
                setup.mfa.set_default_device(user.totp_device_id or "")
                tablet = setup.mfa.add_totp_device("Tablet")
                setup.mfa.verify_totp_device(tablet.id, pyotp.TOTP(tablet.secret).at(clock.now()))
            info["totp"].append({"alias": "Tablet", "secret": tablet.secret})
            info["recovery_codes"] = user.add_recovery_codes()
            clock.advance(60)  # past every step used while enrolling
        elif scenario in ("passkey", "passkey-wait"):
            user.add_passkey()  # held by the kit's software authenticator
            if scenario == "passkey":
                _browser_completes_the_handoff(server, user)
            else:
                webbrowser.open = lambda url, *a, **k: True  # nobody ever opens it
        elif scenario == "wallet":
            user.link_wallet("ethereum")
            signer = RecordingSigner(user.signers[0])
        elif scenario == "browser":
            user.link_wallet("ethereum")  # two methods, so the method choice shows
            webbrowser.open = lambda url, *a, **k: False  # no browser here: the link is printed
        info["now"] = clock.now()
        info_path.write_text(json.dumps(info))

        client = server.client(
            user, prompter=None, authenticator=None, api_base_url=f"{server.url}/demo"
        )
        if signer is not None:
            client.wallets.add_signer(signer)
        with client:
            rounds = 3 if scenario == "lockout" else 1
            for _ in range(rounds):
                try:
                    if scenario == "enroll":
                        client.prompter = TerminalPrompter()
                        device = enroll_totp(client, client.prompter, alias="Laptop")
                        print(f"RESULT enrolled {device.id} verified={device.verified}")
                        continue
                    client.step_up_auth.prompt_step_up_auth([SCOPE])
                    exported = client.http.post(
                        "/api/wallet/export", extensions={SCOPE_EXTENSION: SCOPE}
                    )
                    exported.raise_for_status()
                    print(f"RESULT exported {exported.json()['address']}")
                except ClientError as exc:
                    print(f"RESULT error={exc.code}")
            if signer is not None:
                print("SIGNED " + json.dumps(signer.signed))
        print("DONE", flush=True)
        time.sleep(120)  # the server stays up for the test's own checks; the test kills tmux


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
