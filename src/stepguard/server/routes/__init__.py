"""The SDK API's routers, one module per verification method, registered explicitly here."""

from __future__ import annotations

from fastapi import APIRouter

from stepguard.server import stepup, web
from stepguard.server.routes import external, handoff, otp, passkey, recovery, sign_in, totp, wallet

__all__ = ["ROUTERS"]

ROUTERS: list[APIRouter] = [
    stepup.router,
    passkey.router,
    wallet.router,
    external.router,
    otp.router,
    recovery.router,
    sign_in.router,
    totp.router,
    handoff.router,
    handoff.browser_router,
    web.router,  # browser hand-off and hosted UI
]
