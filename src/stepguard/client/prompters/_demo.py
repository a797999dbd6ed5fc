"""``stepguard demo``: a terminal walk-through of check -> verify -> proceed.

The command line starts (or finds) the server and a signed-in session; this module is the
client side: optional TOTP enrolment with the QR code, the step-up check, the prompt, the guarded
call with the elevated token, and the check again (a single-use token is gone once used). On a
server in dev mode the codes it "sends" are read from its dev outbox and shown as hints, so the
demo works without a mail server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
from rich.console import Console
from rich.panel import Panel

from stepguard.client._client import Client
from stepguard.client._errors import ClientError, StepUpCancelled
from stepguard.client._flows import SCOPE_EXTENSION
from stepguard.client._models import PromptKind, PromptNeeded
from stepguard.client.prompters._enroll import enroll_totp
from stepguard.client.prompters._terminal import TerminalPrompter, describe_credential

__all__ = ["DemoPrompter", "dev_outbox_reader", "walk_through"]

CodeHint = Callable[[PromptNeeded], str | None]
_CODE_KINDS = (PromptKind.OTP_CODE, PromptKind.SIGN_IN_CODE)


def dev_outbox_reader(base_url: str, environment_id: str) -> CodeHint:
    """The newest code in the server's dev outbox (dev mode only; ``None`` otherwise)."""
    url = f"{base_url.rstrip('/')}/sdk/{environment_id}/dev/outbox"

    def read(request: PromptNeeded) -> str | None:
        try:
            response = httpx.get(url, timeout=5)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        messages = response.json().get("messages") or []
        return str(messages[-1]["code"]) if messages and messages[-1].get("code") else None

    return read


class DemoPrompter(TerminalPrompter):
    """The terminal prompter, plus the code the server just "sent" (demo servers only)."""

    def __init__(self, hint: CodeHint | None = None, console: Console | None = None) -> None:
        super().__init__(console)
        self.hint = hint

    def prompt(self, request: PromptNeeded) -> str | None | Awaitable[str | None]:
        if request.kind in _CODE_KINDS and self.hint is not None:
            code = self.hint(request)
            if code:
                self.console.print(
                    f"[dim](demo) the message says your code is[/] [bold cyan]{code}[/]"
                )
        return super().prompt(request)


def walk_through(
    client: Client,
    prompter: TerminalPrompter,
    *,
    scope: str = "wallet:export",
    api_path: str | None = "/demo/api/wallet/export",
    offer_enrolment: bool = True,
) -> bool:
    """Run the walk-through with ``client`` (signed in; its prompter is ``prompter``).
    True when the guarded call went through with the elevated token."""
    console = prompter.console
    console.print(
        Panel(
            f"1. [bold]check[/]   is a step-up needed for [bold]{scope}[/]?\n"
            "2. [bold]verify[/]  prove it is you (MFA users: MFA; others: a code or a wallet)\n"
            "3. [bold]proceed[/] call the protected API with the elevated token",
            title="stepguard demo",
            expand=False,
        )
    )
    try:
        if offer_enrolment and not client.mfa.list_devices():
            if _choose(prompter, "Before we start:", [
                ("skip", "Verify with an email code (re-authentication)"),
                ("totp", "Add an authenticator app first (MFA, QR code in the terminal)"),
            ]) == "totp":  # fmt: skip
                enroll_totp(client, prompter, alias="stepguard demo")

        console.rule("[bold]1. check[/]", align="left")
        check = client.step_up_auth.check_step_up_auth(scope)
        console.print(
            f"Step-up required for {scope}: [bold]{'yes' if check.is_required else 'no'}[/]"
        )
        for credential in check.credentials:
            default = "  (default)" if credential.id == check.default_credential_id else ""
            console.print(f"  • {describe_credential(credential)}{default}")

        console.rule("[bold]2. verify[/]", align="left")
        if check.is_required:
            client.step_up_auth.prompt_step_up_auth([scope])
        console.print(f"[green]✓[/] Elevated token held for {scope}.")

        console.rule("[bold]3. proceed[/]", align="left")
        if api_path is None:
            return True
        response = client.http.post(api_path, extensions={SCOPE_EXTENSION: scope})
        if response.status_code == 404:
            console.print(f"No demo app at {api_path}: the token is ready for your own API.")
            return True
        response.raise_for_status()
        shown = {k: v for k, v in response.json().items() if k != "private_key"}
        console.print(f"[green]✓[/] {api_path} answered {response.status_code}: {shown}")
        again = client.step_up_auth.is_step_up_required(scope)
        console.print(
            "The token was single-use: the next call needs a new step-up."
            if again
            else "The token is still valid for further calls."
        )
        return True
    except StepUpCancelled:
        console.print("[yellow]Demo cancelled.[/]")
        return False
    except ClientError as exc:
        prompter.report_error(exc)
        return False


def _choose(prompter: TerminalPrompter, message: str, options: list[tuple[str, str]]) -> str:
    answer = prompter.ask_choice(message, options)
    if answer is not None and not isinstance(answer, str):
        raise TypeError("the demo runs outside an event loop")
    if answer is None:
        raise StepUpCancelled("Demo closed")
    return answer
