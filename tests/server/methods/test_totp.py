"""TOTP over HTTP on SQLite and PostgreSQL: enrolment, several devices, step-up, replay refusal.

Codes are computed from the enrolment secret as an authenticator app would (RFC 6238, SHA-1,
30 s, 6 digits); the server's clock is a :class:`FixedClock` the tests move.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import pytest
from _server_helpers import AdminApi, UserSession
from fastapi import FastAPI
from sqlalchemy import select

from stepguard.core.clock import FixedClock
from stepguard.core.tokens import unverified_claims
from stepguard.server.db import Credential

from ._code_flows import auth_headers, enroll_totp, link_token, sdk, totp_code


@pytest.fixture
def settings_overrides(smtp_sink: Any) -> dict[str, Any]:
    return {"smtp_url": smtp_sink.url}


@pytest.fixture
async def link(server_client: httpx.AsyncClient, user_session: UserSession, smtp_sink: Any) -> str:
    return await link_token(
        server_client,
        user_session.environment_id,
        user_session.session_token,
        "alice@example.com",
        smtp_sink,
    )


async def totp_verify(
    client: httpx.AsyncClient,
    user: UserSession,
    code: str,
    scopes: list[str] | None = None,
    device_id: str | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {"code": code, "requested_scopes": scopes or []}
    if device_id is not None:
        body["device_id"] = device_id
    return await client.post(
        sdk(user.environment_id, "/mfa/totp/verify"), json=body, headers=user.headers
    )


async def test_enrolment_answer_and_sealed_seed(
    server_app: FastAPI, server_client: httpx.AsyncClient, user_session: UserSession, link: str
) -> None:
    r = await server_client.post(
        sdk(user_session.environment_id, "/mfa/totp/devices"),
        json={"alias": "phone"},
        headers=auth_headers(user_session.session_token, link),
    )
    assert r.status_code == 201, r.text
    device = r.json()
    assert device["verified"] is False and device["alias"] == "phone"
    assert len(base64.b32decode(device["secret"] + "=" * (-len(device["secret"]) % 8))) >= 20
    assert device["uri"].startswith("otpauth://totp/")
    assert f"secret={device['secret']}" in device["uri"]
    assert "alice%40example.com" in device["uri"] or "alice@example.com" in device["uri"]
    assert device["qr_svg"].lstrip().startswith("<svg") and "</svg>" in device["qr_svg"]
    async with server_app.state.service.db.session() as s:
        row = await s.get(Credential, device["id"])
    assert row is not None and row.secret_sealed is not None
    assert device["secret"] not in row.secret_sealed and device["secret"] not in str(row.data)
    assert device["secret"] not in row.value
    # The sealed seed is bound to its device: opened under another id it does not decrypt.
    from stepguard.core.keys import SecretKeyError

    box = server_app.state.service.box
    assert (
        box.open(row.secret_sealed, purpose=f"stepguard/totp-seed/{row.id}").decode()
        == device["secret"]
    )
    with pytest.raises(SecretKeyError):
        box.open(row.secret_sealed, purpose="stepguard/totp-seed/totp_other")


async def test_unverified_device_cannot_step_up_until_its_first_code(
    server_client: httpx.AsyncClient, user_session: UserSession, link: str, clock: FixedClock
) -> None:
    env, tok = user_session.environment_id, user_session.session_token
    r = await server_client.post(
        sdk(env, "/mfa/totp/devices"), json={}, headers=auth_headers(tok, link)
    )
    device = r.json()
    r = await totp_verify(
        server_client, user_session, totp_code(device["secret"], clock), ["wallet:export"]
    )
    assert r.status_code == 400 and r.json()["code"] == "no_methods_available"
    r = await totp_verify(
        server_client,
        user_session,
        totp_code(device["secret"], clock),
        ["wallet:export"],
        device["id"],
    )
    assert r.status_code == 404
    # A wrong first code does not verify it.
    r = await server_client.post(
        sdk(env, f"/mfa/totp/devices/{device['id']}/verify"),
        json={"code": totp_code(device["secret"], clock, steps=5)},
        headers=user_session.headers,
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_code"
    r = await server_client.post(
        sdk(env, f"/mfa/totp/devices/{device['id']}/verify"),
        json={"code": totp_code(device["secret"], clock)},
        headers=user_session.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["verified"] is True and r.json()["default"] is True
    # The enrolment code's step is spent: the same code cannot then step up.
    r = await totp_verify(
        server_client, user_session, totp_code(device["secret"], clock), ["wallet:export"]
    )
    assert r.status_code == 400 and r.json()["code"] == "code_used"
    clock.advance(30)
    r = await totp_verify(
        server_client, user_session, totp_code(device["secret"], clock), ["wallet:export"]
    )
    assert r.status_code == 200, r.text
    claims = unverified_claims(r.json()["elevated_access_token"])
    assert claims["amr"] == ["otp", "swk"] and claims["auth_time"] == int(clock.now())


async def test_enrolment_needs_credential_link(
    server_client: httpx.AsyncClient, user_session: UserSession
) -> None:
    r = await server_client.post(
        sdk(user_session.environment_id, "/mfa/totp/devices"), json={}, headers=user_session.headers
    )
    assert r.status_code == 401 and r.json()["code"] == "elevated_token_required"
    assert 'scope="credential:link"' in r.headers["WWW-Authenticate"]


async def test_window_is_plus_minus_one_step(
    server_client: httpx.AsyncClient, user_session: UserSession, link: str, clock: FixedClock
) -> None:
    env, tok = user_session.environment_id, user_session.session_token
    device = await enroll_totp(server_client, env, tok, clock, elevated=link)
    secret = device["secret"]
    clock.advance(60)  # well clear of the enrolment step
    for steps in (2, -2):
        r = await totp_verify(server_client, user_session, totp_code(secret, clock, steps=steps))
        assert r.status_code == 400 and r.json()["code"] == "invalid_code", steps
    r = await totp_verify(server_client, user_session, totp_code(secret, clock, steps=-1))
    assert r.status_code == 200, r.text
    clock.advance(30)
    r = await totp_verify(server_client, user_session, totp_code(secret, clock, steps=1))
    assert r.status_code == 200, r.text
    # Any step at or before the last used one is refused (the current step is now behind it).
    r = await totp_verify(server_client, user_session, totp_code(secret, clock))
    assert r.status_code == 400 and r.json()["code"] == "code_used"


async def test_used_step_refused_under_concurrency(
    server_client: httpx.AsyncClient, user_session: UserSession, link: str, clock: FixedClock
) -> None:
    env, tok = user_session.environment_id, user_session.session_token
    device = await enroll_totp(server_client, env, tok, clock, elevated=link)
    code = totp_code(device["secret"], clock)
    results = await asyncio.gather(
        *(totp_verify(server_client, user_session, code, ["wallet:export"]) for _ in range(4))
    )
    assert [r.status_code for r in results].count(200) == 1
    assert {r.json()["code"] for r in results if r.status_code != 200} == {"code_used"}


async def test_several_devices_default_and_device_id(
    server_app: FastAPI,
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    link: str,
    smtp_sink: Any,
    clock: FixedClock,
) -> None:
    env, tok = user_session.environment_id, user_session.session_token
    first = await enroll_totp(server_client, env, tok, clock, elevated=link, alias="one")
    # Now an MFA user: the next enrolment needs a credential:link token earned with MFA.
    r = await totp_verify(
        server_client, user_session, totp_code(first["secret"], clock), ["credential:link"]
    )
    assert r.status_code == 200, r.text
    clock.advance(30)
    second = await enroll_totp(
        server_client, env, tok, clock, elevated=r.json()["elevated_access_token"], alias="two"
    )
    r = await server_client.get(sdk(env, "/mfa/devices"), headers=user_session.headers)
    devices = {d["id"]: d for d in r.json()["devices"]}
    assert devices[first["id"]]["default"] is True and devices[second["id"]]["default"] is False
    assert {d["type"] for d in devices.values()} == {"totp"}
    # Without device_id the default device is used: the second device's code is wrong for it.
    r = await totp_verify(server_client, user_session, totp_code(second["secret"], clock))
    assert r.status_code == 400 and r.json()["code"] == "invalid_code"
    r = await totp_verify(
        server_client, user_session, totp_code(second["secret"], clock), device_id=second["id"]
    )
    assert r.status_code == 200 and r.json()["device_id"] == second["id"]
    # Make the second one default.
    r = await server_client.put(
        sdk(env, f"/credentials/{second['id']}/default"), headers=user_session.headers
    )
    assert r.status_code == 200, r.text
    clock.advance(30)
    r = await totp_verify(server_client, user_session, totp_code(second["secret"], clock))
    assert r.status_code == 200 and r.json()["device_id"] == second["id"]
    # Deleting a device needs credential:unlink.
    r = await server_client.delete(
        sdk(env, f"/mfa/devices/{first['id']}"), headers=user_session.headers
    )
    assert r.status_code == 401 and r.json()["code"] == "elevated_token_required"
    clock.advance(30)
    r = await totp_verify(
        server_client, user_session, totp_code(second["secret"], clock), ["credential:unlink"]
    )
    unlink = r.json()["elevated_access_token"]
    r = await server_client.delete(
        sdk(env, f"/mfa/devices/{first['id']}"), headers=auth_headers(tok, unlink)
    )
    assert r.status_code == 200, r.text
    r = await server_client.get(sdk(env, "/mfa/devices"), headers=user_session.headers)
    assert [d["id"] for d in r.json()["devices"]] == [second["id"]]


async def test_device_of_another_user_is_not_found(
    admin: AdminApi,
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    link: str,
    clock: FixedClock,
) -> None:
    device = await enroll_totp(
        server_client, user_session.environment_id, user_session.session_token, clock, elevated=link
    )
    bob = await admin.user_with_session("bob@example.com")
    r = await totp_verify(
        server_client, bob, totp_code(device["secret"], clock), device_id=device["id"]
    )
    assert r.status_code == 404
    r = await server_client.post(
        sdk(bob.environment_id, f"/mfa/totp/devices/{device['id']}/verify"),
        json={"code": totp_code(device["secret"], clock)},
        headers=bob.headers,
    )
    assert r.status_code == 404


async def test_wrong_codes_lock_the_device(
    server_app: FastAPI,
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    link: str,
    clock: FixedClock,
) -> None:
    device = await enroll_totp(
        server_client, user_session.environment_id, user_session.session_token, clock, elevated=link
    )
    good = totp_code(device["secret"], clock)
    bad = f"{(int(good) + 1) % 1_000_000:06d}"
    for _ in range(6):
        r = await totp_verify(server_client, user_session, bad)
        assert r.status_code == 400 and r.json()["code"] == "invalid_code"
    r = await totp_verify(server_client, user_session, good, ["wallet:export"])
    assert r.status_code == 429 and r.json()["retry_after"] == 30
    async with server_app.state.service.db.session() as s:
        row = (await s.scalars(select(Credential).where(Credential.id == device["id"]))).one()
    assert row.failure_count == 6


async def test_mfa_user_cannot_use_email_but_can_use_totp(
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    link: str,
    smtp_sink: Any,
    clock: FixedClock,
) -> None:
    env, tok = user_session.environment_id, user_session.session_token
    device = await enroll_totp(server_client, env, tok, clock, elevated=link)
    r = await server_client.post(
        sdk(env, "/step-up/check"), json={"scope": "wallet:export"}, headers=user_session.headers
    )
    check = r.json()
    assert check["is_required"] is True and check["default_credential_id"] == device["id"]
    assert [c["format"] for c in check["credentials"]] == ["totp"]
    r = await server_client.post(sdk(env, "/otp/send"), json={}, headers=user_session.headers)
    vid = r.json()["verification_id"]
    r = await server_client.post(
        sdk(env, "/otp/verify"),
        json={
            "verification_id": vid,
            "code": smtp_sink.last_code(to="alice@example.com"),
            "requested_scopes": ["wallet:export"],
        },
        headers=user_session.headers,
    )
    assert r.status_code == 403 and r.json()["code"] == "mfa_required"
    r = await totp_verify(
        server_client, user_session, totp_code(device["secret"], clock), ["wallet:export"]
    )
    assert r.status_code == 200, r.text
