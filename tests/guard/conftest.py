"""Fixtures for the guard tests (helpers in ``guardkit.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from guardkit import NOW, Calls, Forge

from stepguard.core.clock import FixedClock


@pytest.fixture
def forge() -> Forge:
    return Forge()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[[FastAPI], httpx.AsyncClient]]:
    """Make an httpx client talking to an app in-process (app exceptions become 500s)."""
    clients: list[httpx.AsyncClient] = []

    def make(app: FastAPI) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url="http://app.test")
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.aclose()
