"""Single-use tokens over HTTP: exactly one success, sequentially, with 50 concurrent requests,
and from two servers sharing one database; consume-on-success (a failed handler leaves the token
usable, a reserved token is refused to everyone else)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from guardkit import NOW, Calls, Forge, as_alice, make_app, make_guard

from _services import run_uvicorn_in_thread
from stepguard.core.clock import FixedClock
from stepguard.guard import Guard, MemoryReplayStore

ClientFor = Callable[[FastAPI], httpx.AsyncClient]


def single_use(forge: Forge, **claims: Any) -> str:
    return forge.token(scope="wallet:export", single_use=True, **claims)


def codes(responses: list[httpx.Response]) -> list[str]:
    return [r.json()["code"] for r in responses if r.status_code == 401]


async def test_sequential_replay(forge: Forge, clock: FixedClock, client_for: ClientFor) -> None:
    calls = Calls()
    client = client_for(make_app(make_guard(forge, clock), calls))
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
    forge: Forge, clock: FixedClock, client_for: ClientFor
) -> None:
    calls = Calls()
    client = client_for(make_app(make_guard(forge, clock), calls))
    token = single_use(forge)
    assert (await client.post("/export-fails", headers=as_alice(token))).status_code == 500
    assert (await client.post("/export-refuses", headers=as_alice(token))).status_code == 409
    # Both failures released the reservation: the user retries with the same token.
    assert (await client.post("/export", headers=as_alice(token))).status_code == 200
    refused = await client.post("/export", headers=as_alice(token))
    assert refused.json()["code"] == "elevated_token_used"
    assert calls.handled == ["export-fails", "export-refuses", "export"]


async def test_a_reserved_token_is_refused_while_the_handler_runs(
    forge: Forge, clock: FixedClock, client_for: ClientFor
) -> None:
    client = client_for(make_app(make_guard(forge, clock), hold=0.3))
    token = single_use(forge)
    first = asyncio.create_task(client.post("/export", headers=as_alice(token)))
    await asyncio.sleep(0.1)  # the first request now holds the reservation
    second = await client.post("/export", headers=as_alice(token))
    assert second.status_code == 401
    assert second.json()["code"] == "elevated_token_used"
    assert "in use" in second.json()["detail"]
    assert (await first).status_code == 200


async def test_refused_by_another_check_does_not_consume(
    forge: Forge, clock: FixedClock, client_for: ClientFor
) -> None:
    """A token presented by the wrong user or at a max_age route it fails is not reserved."""
    client = client_for(make_app(make_guard(forge, clock)))
    token = single_use(forge)
    bob = await client.post(
        "/export", headers={"X-User": "usr_bob", "X-Elevated-Access-Token": token}
    )
    assert bob.json()["code"] == "subject_mismatch"
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
    forge: Forge, database_url: str, hold: float
) -> None:
    """50 concurrent presentations of one token to a real uvicorn, replay store in the app's DB."""
    guard = make_guard(forge, FixedClock(NOW), database_url)
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


async def test_two_servers_sharing_one_database(forge: Forge, database_url: str) -> None:
    """Two server "processes" (two uvicorns, each with its own guard, store and connections)
    share one database: across both, one token is accepted exactly once."""
    guards: list[Guard] = [make_guard(forge, FixedClock(NOW), database_url) for _ in range(2)]
    calls = [Calls(), Calls()]
    tokens = [single_use(forge) for _ in range(3)]
    with (
        run_uvicorn_in_thread(make_app(guards[0], calls[0], hold=0.02)) as a,
        run_uvicorn_in_thread(make_app(guards[1], calls[1], hold=0.02)) as b,
    ):
        for token in tokens:
            responses = await _burst([a.url, b.url], token)
            assert [r.status_code for r in responses].count(200) == 1
            assert codes(responses) == ["elevated_token_used"] * 49
        # Sequential replay to the other server after a success on one.
        fresh = single_use(forge)
        async with httpx.AsyncClient() as client:
            assert (
                await client.post(a.url + "/export", headers=as_alice(fresh))
            ).status_code == 200
            replay = await client.post(b.url + "/export", headers=as_alice(fresh))
            assert replay.json()["code"] == "elevated_token_used"
    assert len(calls[0].handled) + len(calls[1].handled) == len(tokens) + 1


@pytest.mark.redis
async def test_fifty_concurrent_requests_with_redis(forge: Forge, redis_url: str) -> None:
    from stepguard.guard import RedisReplayStore

    def guard() -> Guard:
        return make_guard(forge, FixedClock(NOW), RedisReplayStore(redis_url))

    token = single_use(forge)
    with (
        run_uvicorn_in_thread(make_app(guard(), hold=0.02)) as a,
        run_uvicorn_in_thread(make_app(guard(), hold=0.02)) as b,
    ):
        responses = await _burst([a.url, b.url], token)
    assert [r.status_code for r in responses].count(200) == 1
    assert codes(responses) == ["elevated_token_used"] * 49
