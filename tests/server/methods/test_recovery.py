"""Recovery codes over HTTP on SQLite and PostgreSQL: shown once, hashed, single use, regeneration."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
import pytest
from _server_helpers import AdminApi, UserSession
from fastapi import FastAPI
from sqlalchemy import select

from stepguard.core.clock import FixedClock
from stepguard.core.tokens import unverified_claims
from stepguard.server.db import RecoveryCode

from ._code_flows import auth_headers, enroll_totp, link_token, sdk


@pytest.fixture
def settings_overrides(smtp_sink: Any) -> dict[str, Any]:
    return {"smtp_url": smtp_sink.url}


@pytest.fixture
async def codes(
    server_client: httpx.AsyncClient, user_session: UserSession, smtp_sink: Any
) -> list[str]:
    link = await link_token(
        server_client,
        user_session.environment_id,
        user_session.session_token,
        "alice@example.com",
        smtp_sink,
    )
    r = await server_client.post(
        sdk(user_session.environment_id, "/mfa/recovery-codes"),
        json={"generate_new": True},
        headers=auth_headers(user_session.session_token, link),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["remaining"] == 10
    return list(body["codes"])


async def use(
    client: httpx.AsyncClient, user: UserSession, code: str, scopes: list[str] | None = None
) -> httpx.Response:
    return await client.post(
        sdk(user.environment_id, "/mfa/recovery/verify"),
        json={
            "code": code,
            "requested_scopes": scopes if scopes is not None else ["wallet:export"],
        },
        headers=user.headers,
    )


async def remaining(client: httpx.AsyncClient, user: UserSession) -> int:
    r = await client.get(sdk(user.environment_id, "/mfa/recovery-codes"), headers=user.headers)
    assert r.status_code == 200, r.text
    return int(r.json()["remaining"])


async def test_ten_distinct_strong_codes_stored_hashed(
    server_app: FastAPI, user_session: UserSession, codes: list[str]
) -> None:
    assert len(codes) == len(set(codes)) == 10
    for code in codes:
        assert len(code.replace("-", "")) * 5 >= 64  # base32: 5 bits a character
    async with server_app.state.service.db.session() as s:
        rows = (
            await s.scalars(
                select(RecoveryCode).where(RecoveryCode.user_id == user_session.user_id)
            )
        ).all()
    assert len(rows) == 10
    stored = " ".join(r.digest for r in rows)
    for code in codes:
        assert code not in stored and code.replace("-", "") not in stored
        assert hashlib.sha256(code.encode()).hexdigest() not in stored


async def test_codes_are_shown_once(
    server_client: httpx.AsyncClient, user_session: UserSession, codes: list[str]
) -> None:
    r = await server_client.post(
        sdk(user_session.environment_id, "/mfa/recovery-codes"),
        json={"generate_new": False},
        headers=user_session.headers,
    )
    assert r.status_code == 200 and r.json() == {"remaining": 10}


async def test_each_code_works_once_and_remaining_counts_down(
    server_client: httpx.AsyncClient, user_session: UserSession, codes: list[str]
) -> None:
    r = await use(server_client, user_session, codes[3])
    assert r.status_code == 200, r.text
    assert r.json()["remaining"] == 9
    claims = unverified_claims(r.json()["elevated_access_token"])
    assert claims["amr"] == ["kba"] and claims["scope"] == "wallet:export"
    assert await remaining(server_client, user_session) == 9
    r = await use(server_client, user_session, codes[3])
    assert r.status_code == 400 and r.json()["code"] == "invalid_code"
    # Typed with spaces and capitals, a code still works (and is then spent).
    r = await use(server_client, user_session, codes[4].upper().replace("-", " "))
    assert r.status_code == 200, r.text
    assert await remaining(server_client, user_session) == 8


async def test_concurrent_use_of_one_code_gives_one_token(
    server_client: httpx.AsyncClient, user_session: UserSession, codes: list[str]
) -> None:
    results = await asyncio.gather(*(use(server_client, user_session, codes[0]) for _ in range(4)))
    assert [r.status_code for r in results].count(200) == 1
    assert await remaining(server_client, user_session) == 9


async def test_regeneration_voids_the_old_set(
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    codes: list[str],
    smtp_sink: Any,
) -> None:
    env, tok = user_session.environment_id, user_session.session_token
    r = await server_client.post(
        sdk(env, "/mfa/recovery-codes"), json={"generate_new": True}, headers=user_session.headers
    )
    assert r.status_code == 401 and r.json()["code"] == "elevated_token_required"
    link = await link_token(server_client, env, tok, "alice@example.com", smtp_sink)
    r = await server_client.post(
        sdk(env, "/mfa/recovery-codes"),
        json={"generate_new": True},
        headers=auth_headers(tok, link),
    )
    assert r.status_code == 200, r.text
    fresh = r.json()["codes"]
    assert not set(fresh) & set(codes)
    r = await use(server_client, user_session, codes[0])
    assert r.status_code == 400 and r.json()["code"] == "invalid_code"
    r = await use(server_client, user_session, fresh[0])
    assert r.status_code == 200, r.text


async def test_other_users_code_does_not_work(
    admin: AdminApi, server_client: httpx.AsyncClient, user_session: UserSession, codes: list[str]
) -> None:
    bob = await admin.user_with_session("bob@example.com")
    r = await use(server_client, bob, codes[0])
    assert r.status_code == 400 and r.json()["code"] == "no_methods_available"
    assert await remaining(server_client, user_session) == 10


async def test_wrong_codes_lock_the_set(
    server_client: httpx.AsyncClient, user_session: UserSession, codes: list[str]
) -> None:
    for _ in range(6):
        r = await use(server_client, user_session, "aaaa-bbbb-cccc-dddd-eeee-ffff")
        assert r.status_code == 400
    r = await use(server_client, user_session, codes[0])
    assert r.status_code == 429
    assert await remaining(server_client, user_session) == 10


async def test_mfa_user_steps_up_with_a_recovery_code(
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    codes: list[str],
    smtp_sink: Any,
    clock: FixedClock,
) -> None:
    env, tok = user_session.environment_id, user_session.session_token
    link = await link_token(server_client, env, tok, "alice@example.com", smtp_sink)
    await enroll_totp(server_client, env, tok, clock, elevated=link)
    r = await server_client.post(
        sdk(env, "/step-up/check"), json={"scope": "wallet:export"}, headers=user_session.headers
    )
    assert "recovery_code" in [c["format"] for c in r.json()["credentials"]]
    r = await use(server_client, user_session, codes[0], ["wallet:sign"])
    assert r.status_code == 200, r.text
    assert unverified_claims(r.json()["elevated_access_token"])["amr"] == ["kba"]


async def test_first_request_without_a_set_generates_one(
    admin: AdminApi, server_client: httpx.AsyncClient, smtp_sink: Any
) -> None:
    # A user with no verified credential at all (created without email) needs no elevation.
    user = await admin.create_user()
    session = await admin.create_session(user["id"])
    env = await admin.default_environment_id()
    r = await server_client.post(
        sdk(env, "/mfa/recovery-codes"),
        json={"generate_new": False},
        headers=auth_headers(session["session_token"]),
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["codes"]) == 10 and r.json()["remaining"] == 10
