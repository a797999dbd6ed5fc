"""Terminal enrolment: a TOTP device through its QR code, and recovery codes shown once.

Both call the sync :class:`~stepguard.Client`; enrolling once the user has a verified credential
needs a ``credential:link`` step-up, which the client answers through its prompter (give the
client the same :class:`TerminalPrompter`).
"""

from __future__ import annotations

from stepguard.client._client import Client
from stepguard.client._errors import InvalidCode, StepUpCancelled
from stepguard.client._models import MfaDevice, RecoveryCodes
from stepguard.client.prompters._terminal import TerminalPrompter

__all__ = ["enroll_totp", "show_new_recovery_codes"]

ATTEMPTS = 3


def _plain(value: object) -> object:
    if hasattr(value, "__await__"):
        raise TypeError("terminal enrolment runs with the sync Client, outside an event loop")
    return value


def enroll_totp(client: Client, prompter: TerminalPrompter, alias: str | None = None) -> MfaDevice:
    """Add a TOTP device: show its QR code and secret, then confirm it with a first code
    (:data:`ATTEMPTS` tries). Esc or Ctrl-C raises :class:`~stepguard.StepUpCancelled`."""
    device = client.mfa.add_totp_device(alias)
    prompter.show_totp_device(device)
    title = "Enter the code your authenticator app shows"
    for _ in range(ATTEMPTS):
        code = _plain(prompter.ask_code(title))
        if not isinstance(code, str):
            raise StepUpCancelled("TOTP enrolment closed")
        try:
            verified = client.mfa.verify_totp_device(device.id, code)
        except InvalidCode as exc:
            if exc.attempts_remaining == 0:
                prompter.report_error(exc)
                raise
            title = f"{exc.detail} Enter the current code again"
            continue
        prompter.console.print(f"[green]✓[/] Authenticator app added ({verified.id}).")
        return verified
    raise StepUpCancelled("TOTP enrolment: too many wrong codes")


def show_new_recovery_codes(client: Client, prompter: TerminalPrompter) -> RecoveryCodes:
    """Generate recovery codes and show them once, until the user says they saved them."""
    codes = client.mfa.get_recovery_codes(generate_new=True)
    if not _plain(prompter.show_recovery_codes(codes)):
        raise StepUpCancelled("Recovery codes closed before they were saved")
    return codes
