"""StepGuardSession against a real stepguard server (uvicorn, sessions made through the admin API):
the user id for sub matching, brief caching, and the documented revocation delay."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from guard_server import settings_for

from _services import RunningServer, run_uvicorn_in_thread
from stepguard.core.clock import FixedClock
from stepguard.core.errors import InvalidSession
from stepguard.guard import Principal, StepGuardSession, bearer_token
from stepguard.server.app import create_app

ADMIN = {"X-StepGuard-Admin-Key": "test-admin-key-" + "x" * 32}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[RunningServer, str]]:
    app = create_app(settings_for(tmp_path))
    with run_uvicorn_in_thread(app) as running:
        config = httpx.get(running.url + "/.well-known/stepguard-configuration").json()
        yield running, config["environment_id"]


def admin(server: RunningServer, method: str, path: str, **kw: Any) -> Any:
    response = httpx.request(method, server.url + path, headers=ADMIN, **kw)
    assert response.status_code < 300, response.text
    return response.json()


async def test_session_gives_the_user_and_caches_revocation_briefly(
    server: tuple[RunningServer, str],
) -> None:
    running, env = server
    user = admin(
        running, "POST", f"/admin/environments/{env}/users", json={"email": "a@example.com"}
    )
    made = admin(
        running, "POST", f"/admin/environments/{env}/sessions", json={"user_id": user["id"]}
    )
    clock = FixedClock(1_000.0)
    requests = 0

    async def count(_: httpx.Request) -> None:
        nonlocal requests
        requests += 1

    http = httpx.AsyncClient(event_hooks={"request": [count]})
    sessions = StepGuardSession(running.url, env, http=http, cache_ttl=5.0, clock=clock)
    principal = await sessions.validate(made["session_token"])
    assert principal == Principal(user_id=user["id"], session_id=made["id"])
    await sessions.validate(made["session_token"])
    assert requests == 1  # cached

    admin(running, "DELETE", f"/admin/environments/{env}/sessions/{made['id']}")
    # Documented revocation delay: the cached answer stands for up to cache_ttl seconds.
    assert await sessions.validate(made["session_token"]) == principal
    clock.advance(5.1)
    with pytest.raises(InvalidSession):
        await sessions.validate(made["session_token"])
    assert requests == 2
    # The negative answer is cached too (a random token cannot become valid later).
    with pytest.raises(InvalidSession):
        await sessions.validate(made["session_token"])
    assert requests == 2
    await http.aclose()


async def test_unknown_or_missing_session(server: tuple[RunningServer, str]) -> None:
    running, env = server
    sessions = StepGuardSession(running.url, env, cache_ttl=0)
    for token in [None, "", "sgs_" + "A" * 43, "x" * 600]:
        with pytest.raises(InvalidSession):
            await sessions.validate(token)
    await sessions.aclose()


async def test_unreachable_server_fails_closed() -> None:
    from _services import free_port

    sessions = StepGuardSession(f"http://127.0.0.1:{free_port()}", "env_x")
    with pytest.raises(InvalidSession, match="could not be checked"):
        await sessions.validate("sgs_whatever")
    await sessions.aclose()


def test_bearer_token_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    for bad in [None, "", "Basic abc", "Bearer", "Bearer  ", "Bearer " + "x" * 600]:
        assert bearer_token(bad) is None
