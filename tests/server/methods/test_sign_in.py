"""Signing in with an email code over HTTP, on SQLite and PostgreSQL (code read from real SMTP)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from _server_helpers import AdminApi, UserSession
from fastapi import FastAPI
from sqlalchemy import update

from stepguard.core.clock import FixedClock
from stepguard.server.db import User

from ._code_flows import auth_headers, sdk


@pytest.fixture
def settings_overrides(smtp_sink: Any) -> dict[str, Any]:
    return {"smtp_url": smtp_sink.url}


async def start(client: httpx.AsyncClient, env: str, email: str) -> httpx.Response:
    return await client.post(sdk(env, "/sign-in/email/send"), json={"email": email})


async def finish(client: httpx.AsyncClient, env: str, vid: str, code: str) -> httpx.Response:
    return await client.post(
        sdk(env, "/sign-in/email/verify"), json={"verification_id": vid, "code": code}
    )


async def mailed_code(sink: Any, to: str) -> str:
    await sink.wait_for_async(lambda m: to in str(m["to"]))
    return str(sink.last_code(to=to))


async def test_sign_in_with_an_email_code_opens_a_session(
    server_client: httpx.AsyncClient, user_session: UserSession, smtp_sink: Any, clock: FixedClock
) -> None:
    env = user_session.environment_id
    r = await start(server_client, env, "alice@example.com")
    assert r.status_code == 200, r.text
    sent = r.json()
    code = await mailed_code(smtp_sink, "alice@example.com")
    r = await finish(server_client, env, sent["verification_id"], code)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_id"] == user_session.user_id
    assert body["session_id"] != user_session.session_id
    assert body["expires_at"] > clock.now()
    r = await server_client.get(sdk(env, "/session"), headers=auth_headers(body["session_token"]))
    assert r.status_code == 200 and r.json()["user_id"] == user_session.user_id
    # The code opens one session only.
    r = await finish(server_client, env, sent["verification_id"], code)
    assert r.status_code == 400 and r.json()["code"] == "code_used"


async def test_send_looks_the_same_for_unknown_addresses(
    server_app: FastAPI, server_client: httpx.AsyncClient, user_session: UserSession, smtp_sink: Any
) -> None:
    env = user_session.environment_id
    known = await start(server_client, env, "alice@example.com")
    unknown = await start(server_client, env, "nobody@example.com")
    assert known.status_code == unknown.status_code == 200
    a, b = known.json(), unknown.json()
    assert set(a) == set(b)
    assert a["channel"] == b["channel"] == "email"
    assert b["destination"] == "n***y@example.com"
    assert len(a["verification_id"]) == len(b["verification_id"])
    assert a["expires_at"] == b["expires_at"] and a["resend_after"] == b["resend_after"]
    assert dict(known.headers).keys() == dict(unknown.headers).keys()
    await mailed_code(smtp_sink, "alice@example.com")
    assert smtp_sink.to("nobody@example.com") == []
    # Guessing at the decoy behaves like a real wrong code, not like a missing challenge.
    r = await finish(server_client, env, b["verification_id"], "123456")
    assert r.status_code == 400 and r.json()["code"] == "invalid_code"
    assert r.json()["attempts_remaining"] == 4


async def test_wrong_codes_then_lockout_shared_with_step_up(
    server_client: httpx.AsyncClient, user_session: UserSession, smtp_sink: Any
) -> None:
    env = user_session.environment_id
    sent = (await start(server_client, env, "alice@example.com")).json()
    code = await mailed_code(smtp_sink, "alice@example.com")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        r = await finish(server_client, env, sent["verification_id"], wrong)
        assert r.status_code == 400
    smtp_sink.clear()
    sent = (await start(server_client, env, "alice@example.com")).json()
    code = await mailed_code(smtp_sink, "alice@example.com")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert (await finish(server_client, env, sent["verification_id"], wrong)).status_code == 400
    r = await finish(server_client, env, sent["verification_id"], code)
    assert r.status_code == 429
    # The same address is locked for step-up too (one authenticator, one count).
    r = await server_client.post(sdk(env, "/otp/send"), json={}, headers=user_session.headers)
    assert r.status_code == 429


async def test_sign_in_code_cannot_elevate_and_step_up_code_cannot_sign_in(
    server_client: httpx.AsyncClient, user_session: UserSession, smtp_sink: Any
) -> None:
    env = user_session.environment_id
    sent = (await start(server_client, env, "alice@example.com")).json()
    code = await mailed_code(smtp_sink, "alice@example.com")
    r = await server_client.post(
        sdk(env, "/otp/verify"),
        json={
            "verification_id": sent["verification_id"],
            "code": code,
            "requested_scopes": ["wallet:export"],
        },
        headers=user_session.headers,
    )
    assert r.status_code == 400 and r.json()["code"] == "challenge_not_found"
    r = await server_client.post(sdk(env, "/otp/send"), json={}, headers=user_session.headers)
    step_up = r.json()
    r = await finish(
        server_client, env, step_up["verification_id"], smtp_sink.last_code(to="alice@example.com")
    )
    assert r.status_code == 400 and r.json()["code"] == "challenge_not_found"


async def test_disabled_user_gets_no_code_and_the_same_answer(
    server_app: FastAPI, admin: AdminApi, server_client: httpx.AsyncClient, smtp_sink: Any
) -> None:
    env = await admin.default_environment_id()
    user = await admin.create_user(env, email="erin@example.com")
    async with server_app.state.service.db.transaction() as s:
        await s.execute(update(User).where(User.id == user["id"]).values(disabled=True))
    r = await start(server_client, env, "erin@example.com")
    assert r.status_code == 200 and set(r.json()) >= {"verification_id", "destination"}
    r = await finish(server_client, env, r.json()["verification_id"], "000000")
    assert r.status_code == 400 and r.json()["code"] == "invalid_code"
    assert smtp_sink.to("erin@example.com") == []


async def test_send_is_throttled_per_address_and_per_ip(
    server_client: httpx.AsyncClient, user_session: UserSession, clock: FixedClock
) -> None:
    env = user_session.environment_id
    for _ in range(3):
        assert (await start(server_client, env, "alice@example.com")).status_code == 200
    r = await start(server_client, env, "alice@example.com")
    assert r.status_code == 429
    # Unknown addresses are throttled the same way.
    for _ in range(3):
        assert (await start(server_client, env, "ghost@example.com")).status_code == 200
    assert (await start(server_client, env, "ghost@example.com")).status_code == 429
    # Per IP: 20 sends (the 6 above counted), then refused whatever the address.
    statuses = [
        (await start(server_client, env, f"u{i}@example.com")).status_code for i in range(15)
    ]
    assert statuses == [200] * 14 + [429]


async def test_email_sign_in_can_be_disabled(
    admin: AdminApi, server_client: httpx.AsyncClient, user_session: UserSession
) -> None:
    env = user_session.environment_id
    await admin.set_policy(env, {"enabled_methods": ["totp", "passkey", "recovery_code"]})
    r = await start(server_client, env, "alice@example.com")
    assert r.status_code == 403 and r.json()["code"] == "method_not_allowed"


async def test_unknown_environment_is_404(server_client: httpx.AsyncClient) -> None:
    r = await start(server_client, "env_nope", "alice@example.com")
    assert r.status_code == 404


async def test_failures_look_the_same_for_unknown_addresses(
    server_client: httpx.AsyncClient, user_session: UserSession, smtp_sink: Any
) -> None:
    env = user_session.environment_id

    async def story(email: str) -> list[tuple[int, str, str | None]]:
        seen = []
        for wrong_guesses in (5, 2):  # a code's five tries, then a resend and two more
            sent = (await start(server_client, env, email)).json()
            if email == "alice@example.com":
                code = await mailed_code(smtp_sink, email)
                guess = f"{(int(code) + 1) % 1_000_000:06d}"
            else:
                guess = "123456"
            for _ in range(wrong_guesses):
                r = await finish(server_client, env, sent["verification_id"], guess)
                seen.append((r.status_code, r.json()["code"], r.headers.get("Retry-After")))
        return seen

    real = await story("alice@example.com")
    decoy = await story("ghost@example.com")
    assert real == decoy
    assert real[-1] == (429, "rate_limited", "30")
