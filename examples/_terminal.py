"""The prompter and client set-up shared by the examples.

On a terminal the examples use the SDK's own :class:`stepguard.client.prompters.TerminalPrompter`
(method choice, codes with a resend countdown, wallet confirmation, Esc to cancel). When stdin is
piped (the examples' tests type the code on stdin), plain ``input()`` lines answer instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable
from typing import Any

import httpx

from stepguard import PromptKind, PromptNeeded
from stepguard.client.prompters import TerminalPrompter as RichTerminalPrompter

LABELS = {
    PromptKind.OTP_CODE: "Code we sent to {destination}",
    PromptKind.SIGN_IN_CODE: "Sign-in code we sent to {destination}",
    PromptKind.TOTP_CODE: "Code from your authenticator app",
    PromptKind.RECOVERY_CODE: "One of your recovery codes",
}


class LinePrompter:
    """Asks with input() lines; an empty answer cancels."""

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


class TerminalPrompter:
    """The SDK's terminal prompter on a terminal, :class:`LinePrompter` when stdin is piped."""

    def __init__(self) -> None:
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
        self._inner: Any = RichTerminalPrompter() if interactive else LinePrompter()

    def prompt(self, request: PromptNeeded) -> str | None | Awaitable[str | None]:
        answer: str | None | Awaitable[str | None] = self._inner.prompt(request)
        return answer

    def __getattr__(self, name: str) -> Any:  # the optional hooks (confirm_signature, ...)
        return getattr(self._inner, name)


def settings() -> tuple[str, str, str | None]:
    """Server URL, environment id (asked of the server when not set) and session token."""
    url = os.environ.get("STEPGUARD_URL", "http://127.0.0.1:8000")
    environment = os.environ.get("STEPGUARD_ENVIRONMENT")
    if not environment:
        config = httpx.get(f"{url}/.well-known/stepguard-configuration", timeout=10).json()
        environment = str(config["environment_id"])
    return url, environment, os.environ.get("STEPGUARD_SESSION")
