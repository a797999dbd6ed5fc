"""Single-use tokens across real server processes.

Two uvicorn servers, each in its own Python process (``guard_process.py``) with its own guard,
replay store instance and connections, share one database (an SQLite file or a PostgreSQL
database) or one Redis: a single-use token fired at both at once is accepted exactly once overall,
a replay to the other process is refused, and a failed handler in one process leaves the token
usable in the other (consume on success)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from guard_process import GuardProcess, serve_processes
from guardkit import Forge, as_alice

BURST = 50
HOLD = 0.2  # the winner holds its reservation while the other 49 requests arrive


def single_use(forge: Forge) -> str:
    return forge.token(scope="wallet:export", single_use=True)


def jwks(forge: Forge) -> dict[str, Any]:
    return {"keys": [forge.material.public_jwk()]}


def logs(servers: list[GuardProcess]) -> str:
    return "\n".join(s.log_text() for s in servers)


async def burst(client: httpx.AsyncClient, urls: list[str], token: str) -> list[httpx.Response]:
    return await asyncio.gather(
        *(
            client.post(urls[i % len(urls)] + "/export", headers=as_alice(token))
            for i in range(BURST)
        )
    )


async def exactly_once_across(servers: list[GuardProcess], forge: Forge) -> None:
    a, b = servers
    pids = {str(a.proc.pid), str(b.proc.pid)}
    limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=BURST)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for _ in range(2):
            token = single_use(forge)
            responses = await burst(client, [a.url, b.url], token)
            statuses = [r.status_code for r in responses]
            assert statuses.count(200) == 1, (statuses, logs(servers))
            refused = [r.json()["code"] for r in responses if r.status_code != 200]
            assert refused == ["elevated_token_used"] * (BURST - 1)
            for r in responses:
                if r.status_code == 401:
                    assert r.headers["www-authenticate"].startswith(
                        'Bearer error="insufficient_user_authentication"'
                    )
            # Both processes answered half the burst each: the one that did not run the handler
            # refused all of its 25 because of a reservation made in the other process.
            by_pid = Counter(r.headers["x-server-pid"] for r in responses)
            assert set(by_pid) == pids and set(by_pid.values()) == {BURST // 2}

        # Sequential replay to the other process after a success in one.
        token = single_use(forge)
        assert (await client.post(a.url + "/export", headers=as_alice(token))).status_code == 200
        for url in (b.url, a.url):
            replay = await client.post(url + "/export", headers=as_alice(token))
            assert replay.status_code == 401 and replay.json()["code"] == "elevated_token_used"

        # Consume on success: failures in process A release the token; process B then spends it.
        token = single_use(forge)
        failed = await client.post(a.url + "/export-fails", headers=as_alice(token))
        assert failed.status_code == 500
        refused_by_app = await client.post(a.url + "/export-refuses", headers=as_alice(token))
        assert refused_by_app.status_code == 409
        assert (await client.post(b.url + "/export", headers=as_alice(token))).status_code == 200
        spent = await client.post(a.url + "/export", headers=as_alice(token))
        assert spent.json()["code"] == "elevated_token_used"


@pytest.mark.timeout(90)
async def test_two_server_processes_sharing_one_database(forge: Forge, database_url: str) -> None:
    with serve_processes(2, store=database_url, jwks=jwks(forge), hold=HOLD) as servers:
        await exactly_once_across(servers, forge)


@pytest.mark.redis
@pytest.mark.timeout(90)
async def test_two_server_processes_sharing_one_redis(forge: Forge, redis_url: str) -> None:
    with serve_processes(2, store=redis_url, jwks=jwks(forge), hold=HOLD) as servers:
        await exactly_once_across(servers, forge)
