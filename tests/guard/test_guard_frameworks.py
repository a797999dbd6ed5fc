"""The Starlette decorator, and the Flask and Django decorators through their own test clients:
same codes and challenge, exactly-once single-use tokens, consume-on-success."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from guardkit import ALICE, NOW, Forge, as_alice, check_challenge, make_guard
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from stepguard.core.clock import FixedClock
from stepguard.guard import Guard, SqliteReplayStore, install_guard, require_step_up


def single_use(forge: Forge) -> str:
    return forge.token(scope="wallet:export", single_use=True)


# ------------------------------------------------------------------------------------------ Starlette


def starlette_app(guard: Guard, failures: list[str]) -> Starlette:
    @require_step_up("user:update")
    async def profile(request: Request) -> Response:
        return JSONResponse({"sub": request.state.elevation.subject})

    @require_step_up("wallet:export", guard=guard)
    async def export(request: Request) -> Response:
        if failures:
            failures.pop()
            return JSONResponse({"error": "try again"}, status_code=503)
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/profile", profile, methods=["POST"]),
                            Route("/export", export, methods=["POST"])])  # fmt: skip
    install_guard(app, guard)
    return app


async def test_starlette_decorator(forge: Forge) -> None:
    failures = ["once"]
    app = starlette_app(make_guard(forge, FixedClock(NOW)), failures)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        ok = await c.post("/profile", headers=as_alice(forge.token()))
        assert ok.status_code == 200 and ok.json() == {"sub": ALICE}
        missing = await c.post("/profile", headers=as_alice())
        check_challenge(
            missing.status_code,
            missing.headers,
            missing.content,
            "elevated_token_required",
            scope="user:update",
        )
        token = single_use(forge)
        assert (await c.post("/export", headers=as_alice(token))).status_code == 503
        assert (await c.post("/export", headers=as_alice(token))).status_code == 200  # retried
        used = await c.post("/export", headers=as_alice(token))
        check_challenge(
            used.status_code,
            used.headers,
            used.content,
            "elevated_token_used",
            scope="wallet:export",
        )


# -------------------------------------------------------------------------------------------- Flask


@pytest.fixture
def flask_kit(forge: Forge, tmp_path: Path) -> Iterator[tuple[Any, Guard]]:
    import flask

    from stepguard.guard.flask import init_app
    from stepguard.guard.flask import require_step_up as flask_step_up

    guard = make_guard(forge, FixedClock(NOW), SqliteReplayStore(tmp_path / "flask.db"))
    guard.current_user = lambda request: request.headers.get("X-User")
    app = flask.Flask(__name__)
    init_app(app, guard)
    state = {"fail": 0}

    @app.post("/profile")
    @flask_step_up("user:update")
    def profile() -> Any:
        return {"sub": flask.g.elevation.subject}

    @app.post("/export")
    @flask_step_up("wallet:export")
    def export() -> Any:
        if state["fail"]:
            state["fail"] -= 1
            raise RuntimeError("backend down")
        return {"ok": True}

    @app.post("/fresh")
    @flask_step_up("user:update", max_age=30)
    def fresh() -> Any:
        return {"ok": True}

    app.config["state"] = state
    yield app, guard
    guard.sync().close()


def test_flask_decorator(flask_kit: tuple[Any, Guard], forge: Forge) -> None:
    app, _ = flask_kit
    client = app.test_client()
    ok = client.post("/profile", headers=as_alice(forge.token()))
    assert ok.status_code == 200 and ok.get_json() == {"sub": ALICE}
    other = client.post("/profile", headers={**as_alice(forge.token(sub="usr_bob"))})
    check_challenge(
        other.status_code, other.headers, other.data, "subject_mismatch", scope="user:update"
    )
    stale = client.post("/fresh", headers=as_alice(forge.token(auth_time=NOW - 31)))
    check_challenge(
        stale.status_code,
        stale.headers,
        stale.data,
        "elevated_token_expired",
        scope="user:update",
        max_age=30,
    )


def test_flask_single_use_consume_on_success(flask_kit: tuple[Any, Guard], forge: Forge) -> None:
    app, _ = flask_kit
    app.config["state"]["fail"] = 1
    app.testing = False  # the failing view answers 500 instead of raising into the test
    client = app.test_client()
    token = single_use(forge)
    assert client.post("/export", headers=as_alice(token)).status_code == 500
    assert client.post("/export", headers=as_alice(token)).status_code == 200
    again = client.post("/export", headers=as_alice(token))
    check_challenge(
        again.status_code, again.headers, again.data, "elevated_token_used", scope="wallet:export"
    )


def test_flask_concurrent_threads_one_success(flask_kit: tuple[Any, Guard], forge: Forge) -> None:
    app, _ = flask_kit
    token = single_use(forge)

    def call(_: int) -> int:
        return int(app.test_client().post("/export", headers=as_alice(token)).status_code)

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(call, range(50)))
    assert statuses.count(200) == 1 and statuses.count(401) == 49


# ------------------------------------------------------------------------------------------- Django


@pytest.fixture(scope="module")
def django_client_cls() -> Callable[..., Any]:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            ROOT_URLCONF="guard_django_urls",
            ALLOWED_HOSTS=["testserver"],
            SECRET_KEY="stepguard-tests-" + "x" * 40,
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
            DATABASES={},
            USE_TZ=True,
        )
        django.setup()
    from django.test import Client

    return Client


@pytest.fixture
def django_guard(forge: Forge, tmp_path: Path) -> Iterator[Guard]:
    from django.test import override_settings

    guard = make_guard(forge, FixedClock(NOW), SqliteReplayStore(tmp_path / "django.db"))
    guard.current_user = lambda request: request.headers.get("X-User")
    with override_settings(STEPGUARD_GUARD=guard):
        yield guard
    guard.sync().close()


def test_django_decorator(
    django_client_cls: Callable[..., Any], django_guard: Guard, forge: Forge
) -> None:
    client = django_client_cls(raise_request_exception=False)
    ok = client.post("/profile", headers=as_alice(forge.token()))
    assert ok.status_code == 200 and json.loads(ok.content) == {"sub": ALICE}
    wrong = client.post("/profile", headers=as_alice(forge.token(scope="wallet:sign")))
    check_challenge(
        wrong.status_code, wrong.headers, wrong.content, "scope_not_granted", scope="user:update"
    )
    token = single_use(forge)
    assert client.post("/export-fails", headers=as_alice(token)).status_code == 500
    assert client.post("/export", headers=as_alice(token)).status_code == 200
    used = client.post("/export", headers=as_alice(token))
    check_challenge(
        used.status_code, used.headers, used.content, "elevated_token_used", scope="wallet:export"
    )
