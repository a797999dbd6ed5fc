"""Single-use tokens over HTTP with every replay store (memory, SQLite, PostgreSQL, Redis):
exactly one success sequentially and with 50 concurrent requests; consume-on-success (a failed
handler leaves the token usable, a reserved token is refused to everyone else). Across separate
server processes: ``test_guard_processes.py``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from guardkit import NOW, Calls, Forge, as_alice, make_app, make_guard

from _services import run_uvicorn_in_thread
from stepguard.core.clock import FixedClock
from stepguard.guard import MemoryReplayStore, RedisReplayStore, ReplayStore

ClientFor = Callable[[FastAPI], httpx.AsyncClient]

STORES = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the replay store lives: ``memory``, an SQLite file, a fresh PostgreSQL database or
    the test session's redis-server (flushed)."""
    kind: str = request.param
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    if kind == "postgresql":
        url: str = request.getfixturevalue("postgres_server").create_database()
        return url
    if kind == "redis":
        redis: str = request.getfixturevalue("redis_url")
        return redis
    return kind


def open_store(url: str) -> ReplayStore | str:
    """The guard's ``replay_store`` argument for ``url`` (a SQL URL is passed as it is)."""
    if url == "memory":
        return MemoryReplayStore()
    if url.startswith("redis://"):
        return RedisReplayStore(url)
    return url


@pytest.fixture
async def store_app(
    forge: Forge, clock: FixedClock, calls: Calls, store_url: str
) -> AsyncIterator[FastAPI]:
    """The test app guarded with the parametrized store (closed after the test)."""
    guard = make_guard(forge, clock, open_store(store_url))
    yield make_app(guard, calls, hold=0.2)
    await guard.aclose()


def single_use(forge: Forge, **claims: Any) -> str:
    return forge.token(scope="wallet:export", single_use=True, **claims)


def codes(responses: list[httpx.Response]) -> list[str]:
    return [r.json()["code"] for r in responses if r.status_code == 401]


async def test_sequential_replay(
    forge: Forge, store_app: FastAPI, calls: Calls, client_for: ClientFor
) -> None:
    client = client_for(store_app)
    token = single_use(forge)
    assert (await client.post("/export", headers=as_alice(token))).status_code == 200
    for _ in range(3):
        again = await client.post("/export", headers=as_alice(token))
        assert again.status_code == 401
        assert again.json()["code"] == "elevated_token_used"
        assert 'scope="wallet:export"' in again.headers["www-authenticate"]
    assert calls.handled == ["export"]


async def test_single_use_tokens_are_not_cached(
    forge: Forge, clock: FixedClock, client_for: ClientFor
) -> None:
    guard = make_guard(forge, clock)
    client = client_for(make_app(guard))
    await client.post("/export", headers=as_alice(single_use(forge)))
    assert len(guard.cache) == 0


async def test_failing_handler_leaves_the_token_usable(
    forge: Forge, store_app: FastAPI, calls: Calls, client_for: ClientFor
) -> None:
    client = client_for(store_app)
    token = single_use(forge)
    assert (await client.post("/export-fails", headers=as_alice(token))).status_code == 500
    assert (await client.post("/export-refuses", headers=as_alice(token))).status_code == 409
    # Both failures released the reservation: the user retries with the same token.
    assert (await client.post("/export", headers=as_alice(token))).status_code == 200
    refused = await client.post("/export", headers=as_alice(token))
    assert refused.json()["code"] == "elevated_token_used"
    assert calls.handled == ["export-fails", "export-refuses", "export"]


async def test_a_reserved_token_is_refused_while_the_handler_runs(
    forge: Forge, store_app: FastAPI, calls: Calls, client_for: ClientFor
) -> None:
    client = client_for(store_app)
    token = single_use(forge)
    first = asyncio.create_task(client.post("/export", headers=as_alice(token)))
    for _ in range(200):  # until the first request holds the reservation (its handler runs)
        await asyncio.sleep(0.01)
        if calls.handled or first.done():
            break
    assert calls.handled == ["export"] and not first.done()
    second = await client.post("/export", headers=as_alice(token))
    assert second.status_code == 401
    assert second.json()["code"] == "elevated_token_used"
    assert "in use" in second.json()["detail"]
    assert (await first).status_code == 200
    assert calls.handled == ["export"]


async def test_refused_by_another_check_does_not_consume(
    forge: Forge, clock: FixedClock, client_for: ClientFor
) -> None:
    """A token refused by another check (wrong user, a route it does not grant) is not reserved."""
    client = client_for(make_app(make_guard(forge, clock)))
    token = single_use(forge)
    bob = await client.post(
        "/export", headers={"X-User": "usr_bob", "X-Elevated-Access-Token": token}
    )
    assert bob.json()["code"] == "subject_mismatch"
    elsewhere = await client.post("/profile", headers=as_alice(token))
    assert elsewhere.json()["code"] == "scope_not_granted"
    assert (await client.post("/export", headers=as_alice(token))).status_code == 200


async def test_without_the_middleware_single_use_tokens_fail_loudly(
    forge: Forge, clock: FixedClock
) -> None:
    from fastapi import Depends

    from stepguard.guard import RequireStepUp

    store = MemoryReplayStore()
    guard = make_guard(forge, clock, store)
    app = FastAPI()
    app.state.stepguard_guard = guard

    @app.post("/export", dependencies=[Depends(RequireStepUp("wallet:export"))])
    async def export() -> Any:
        return {"ok": True}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        with pytest.raises(RuntimeError, match="install_guard"):
            await client.post("/export", headers=as_alice(single_use(forge)))
    assert len(store) == 0  # released, not left reserved


async def _burst(urls: list[str], token: str, n: int = 50) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=n)) as client:
        return await asyncio.gather(
            *(
                client.post(urls[i % len(urls)] + "/export", headers=as_alice(token))
                for i in range(n)
            )
        )


@pytest.mark.parametrize("hold", [0.0, 0.05], ids=["instant", "slow-handler"])
async def test_fifty_concurrent_requests_one_success(
    forge: Forge, store_url: str, hold: float
) -> None:
    """50 concurrent presentations of one token to a real uvicorn, with each replay store."""
    guard = make_guard(forge, FixedClock(NOW), open_store(store_url))
    calls = Calls()
    token = single_use(forge)
    with run_uvicorn_in_thread(make_app(guard, calls, hold=hold)) as server:
        responses = await _burst([server.url], token)
        statuses = [r.status_code for r in responses]
        assert statuses.count(200) == 1, statuses
        assert codes(responses) == ["elevated_token_used"] * 49
        assert calls.handled == ["export"]
        later = await _burst([server.url], token, n=3)
        assert codes(later) == ["elevated_token_used"] * 3
