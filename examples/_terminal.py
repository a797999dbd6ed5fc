"""A minimal terminal prompter and client set-up shared by the examples.

(The SDK's own terminal and browser prompters come with the UI; this one is ten lines of input().)
"""

from __future__ import annotations

import os

import httpx

from stepguard import PromptKind, PromptNeeded

LABELS = {
    PromptKind.OTP_CODE: "Code we sent to {destination}",
    PromptKind.SIGN_IN_CODE: "Sign-in code we sent to {destination}",
    PromptKind.TOTP_CODE: "Code from your authenticator app",
    PromptKind.RECOVERY_CODE: "One of your recovery codes",
}


class TerminalPrompter:
    """Asks on the terminal; an empty answer cancels."""

    def prompt(self, request: PromptNeeded) -> str | None:
        if request.error:
            print(f"  {request.error}")
        if request.kind is PromptKind.CHOOSE_METHOD:
            for number, option in enumerate(request.options, 1):
                print(f"  {number}. {option.format} {option.alias or ''}")
            answer = input("Verify with (number): ").strip()
            if not answer.isdigit() or not 1 <= int(answer) <= len(request.options):
                return None
            return request.options[int(answer) - 1].id
        label = LABELS[request.kind].format(destination=request.destination or "you")
        return input(f"{label}: ").strip() or None


def settings() -> tuple[str, str, str | None]:
    """Server URL, environment id (asked of the server when not set) and session token."""
    url = os.environ.get("STEPGUARD_URL", "http://127.0.0.1:8000")
    environment = os.environ.get("STEPGUARD_ENVIRONMENT")
    if not environment:
        config = httpx.get(f"{url}/.well-known/stepguard-configuration", timeout=10).json()
        environment = str(config["environment_id"])
    return url, environment, os.environ.get("STEPGUARD_SESSION")
