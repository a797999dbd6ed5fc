"""Ready-made prompters: :class:`TerminalPrompter` (rich + prompt_toolkit) for terminal programs,
and terminal enrolment (:func:`enroll_totp` with its QR code, :func:`show_new_recovery_codes`).

The browser hand-off (passkeys and wallets in a browser, from a Python program) is
:class:`stepguard.client.BrowserHandoff`; the terminal prompter draws its spinner.
"""

from __future__ import annotations

from stepguard.client.prompters._demo import DemoPrompter, dev_outbox_reader, walk_through
from stepguard.client.prompters._enroll import enroll_totp, show_new_recovery_codes
from stepguard.client.prompters._terminal import (
    TerminalPrompter,
    describe_credential,
    format_wait,
    render_qr,
)

__all__ = [
    "DemoPrompter",
    "TerminalPrompter",
    "describe_credential",
    "dev_outbox_reader",
    "enroll_totp",
    "format_wait",
    "render_qr",
    "show_new_recovery_codes",
    "walk_through",
]
