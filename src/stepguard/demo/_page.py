"""The demo's single HTML page (``page.html`` beside this module): the seed's "full example".

Sign in (an email code, read from the dev outbox in demo mode, or a pasted session token), enrol
factors with the built-in UI of ``/static/stepguard.js`` (TOTP with a QR code, a passkey, recovery
codes, a browser wallet), then Export Wallet: the button is disabled while the step-up prompt is
open and the page shows the exported key or the error. Nothing comes from a CDN.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PAGE"]

PAGE = (Path(__file__).resolve().parent / "page.html").read_text(encoding="utf-8")
