"""The SDK API's routers, one module per verification method, registered explicitly here."""

from __future__ import annotations

from fastapi import APIRouter

from stepguard.server import stepup

__all__ = ["ROUTERS"]

ROUTERS: list[APIRouter] = [
    stepup.router,
]
