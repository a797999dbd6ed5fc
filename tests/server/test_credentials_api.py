"""The credentials API and the enrolment gate over HTTP on SQLite and PostgreSQL.

GET /credentials, DELETE /credentials/{id} (needs ``credential:unlink``; the last sign-in
credential stays: 409 ``last_credential``; a removal revokes the elevated tokens minted before it),
PUT /credentials/{id}/default; and elevation never outliving or crossing its session: a token's
``exp`` is capped by the session's, and a token of one session is refused at another's gate.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from _server_helpers import AdminApi, UserSession
from fastapi import FastAPI
from methods._code_flows import auth_headers, enroll_totp, totp_code
from methods._flows import EthWallet, claims_of, elevated_token, link_wallet, sdk

from stepguard.core.assurance import MethodName
from stepguard.core.clock import FixedClock


async def token(app: FastAPI, user: UserSession, *scopes: str) -> str:
    """An elevated token minted by the service as a verified TOTP code would mint it."""
    return await elevated_token(
        app, user.session_token, user.environment_id, list(scopes), MethodName.TOTP
    )


async def listed(client: httpx.AsyncClient, user: UserSession) -> list[dict[str, Any]]:
    r = await client.get(sdk(user.environment_id, "/credentials"), headers=user.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["credentials"])


async def delete(
    client: httpx.AsyncClient, user: UserSession, cred_id: str, elevated: str | None = None
) -> httpx.Response:
    return await client.delete(
        sdk(user.environment_id, f"/credentials/{cred_id}"),
        headers=auth_headers(user.session_token, elevated),
    )


async def new_totp(
    app: FastAPI, client: httpx.AsyncClient, user: UserSession, clock: FixedClock
) -> dict[str, Any]:
    link = await token(app, user, "credential:link")
    return await enroll_totp(client, user.environment_id, user.session_token, clock, elevated=link)


def email_of(creds: list[dict[str, Any]]) -> str:
    return str(next(c["id"] for c in creds if c["format"] == "email"))


async def test_list_shows_every_credential_and_hides_bookkeeping(
    server_app: FastAPI,
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    clock: FixedClock,
) -> None:
    env, tok = user_session.environment_id, user_session.session_token
    device = await new_totp(server_app, server_client, user_session, clock)
    r = await server_client.post(
        sdk(env, "/mfa/totp/devices"),
        json={},
        headers=auth_headers(tok, await token(server_app, user_session, "credential:link")),
    )
    pending = r.json()["id"]
    r = await server_client.post(
        sdk(env, "/mfa/recovery-codes"),
        json={"generate_new": True},
        headers=auth_headers(tok, await token(server_app, user_session, "credential:link")),
    )
    assert r.status_code == 200
    creds = await listed(server_client, user_session)
    by_id = {c["id"]: c for c in creds}
    assert [c["format"] for c in creds] == ["email", "totp", "totp"]  # no recovery row
    assert by_id[device["id"]]["verified"] is True and by_id[pending]["verified"] is False
    for c in creds:
        assert {"id", "format", "type", "alias", "verified", "default"} <= set(c)
        assert "secret" not in c and "value" not in c
    r = await server_client.get(sdk(env, "/credentials"))
    assert r.status_code == 401 and r.json()["code"] == "invalid_session"


async def test_removal_needs_a_credential_unlink_token_of_this_user(
    server_app: FastAPI,
    admin: AdminApi,
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    clock: FixedClock,
) -> None:
    device = await new_totp(server_app, server_client, user_session, clock)
    r = await delete(server_client, user_session, device["id"])
    assert r.status_code == 401 and r.json()["code"] == "elevated_token_required"
    assert 'scope="credential:unlink"' in r.headers["WWW-Authenticate"]
    link = await token(server_app, user_session, "credential:link")
    r = await delete(server_client, user_session, device["id"], link)
    assert r.status_code == 401 and r.json()["code"] == "scope_not_granted"
    bob = await admin.user_with_session("bob@example.com")
    bobs = await token(server_app, bob, "credential:unlink")
    r = await delete(server_client, user_session, device["id"], bobs)
    assert r.status_code == 401 and r.json()["code"] == "subject_mismatch"
    r = await delete(server_client, user_session, device["id"], "not.a.token")
    assert r.status_code == 401 and r.json()["code"] == "elevated_token_invalid"
    # Bob cannot remove Alice's device even with his own valid token.
    r = await delete(server_client, bob, device["id"], bobs)
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert device["id"] in [c["id"] for c in await listed(server_client, user_session)]
    unlink = await token(server_app, user_session, "credential:unlink")
    r = await delete(server_client, user_session, device["id"], unlink)
    assert r.status_code == 200 and r.json() == {"deleted": True, "id": device["id"]}
    assert device["id"] not in [c["id"] for c in await listed(server_client, user_session)]
    r = await delete(server_client, user_session, device["id"], unlink)
    assert r.status_code == 404


async def test_single_use_unlink_token_is_spent_once(
    server_app: FastAPI,
    admin: AdminApi,
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    clock: FixedClock,
) -> None:
    await admin.set_policy(
        user_session.environment_id,
        {"scopes": {"credential:unlink": {"token_behavior": "single_use"}}},
    )
    clock.advance(3)  # past the policy cache
    first = await new_totp(server_app, server_client, user_session, clock)
    second = await new_totp(server_app, server_client, user_session, clock)
    unlink = await token(server_app, user_session, "credential:unlink")
    assert claims_of(unlink)["single_use"] is True
    assert (await delete(server_client, user_session, first["id"], unlink)).status_code == 200
    r = await delete(server_client, user_session, second["id"], unlink)
    assert r.status_code == 401 and r.json()["code"] in {"elevated_token_used"}


async def test_an_unverified_credential_goes_without_elevation(
    server_app: FastAPI, server_client: httpx.AsyncClient, user_session: UserSession
) -> None:
    r = await server_client.post(
        sdk(user_session.environment_id, "/mfa/totp/devices"),
        json={},
        headers=auth_headers(
            user_session.session_token, await token(server_app, user_session, "credential:link")
        ),
    )
    pending = r.json()["id"]
    r = await delete(server_client, user_session, pending)
    assert r.status_code == 200, r.text


async def test_the_last_sign_in_credential_cannot_be_removed(
    server_app: FastAPI,
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    clock: FixedClock,
) -> None:
    env = user_session.environment_id
    await new_totp(server_app, server_client, user_session, clock)  # MFA does not sign in
    mail = email_of(await listed(server_client, user_session))
    unlink = await token(server_app, user_session, "credential:unlink")
    r = await delete(server_client, user_session, mail, unlink)
    assert r.status_code == 409 and r.json()["code"] == "last_credential"
    assert mail in [c["id"] for c in await listed(server_client, user_session)]
    link = await token(server_app, user_session, "credential:link")
    wallet = await link_wallet(server_client, env, user_session.headers, EthWallet(), token=link)
    clock.advance(1)
    unlink = await token(server_app, user_session, "credential:unlink")
    assert (await delete(server_client, user_session, mail, unlink)).status_code == 200
    clock.advance(1)
    unlink = await token(server_app, user_session, "credential:unlink")
    r = await delete(server_client, user_session, wallet["id"], unlink)
    assert r.status_code == 409 and r.json()["code"] == "last_credential"


async def test_recovery_bookkeeping_row_is_not_removable_here(
    server_app: FastAPI, server_client: httpx.AsyncClient, user_session: UserSession
) -> None:
    link = await token(server_app, user_session, "credential:link")
    r = await server_client.post(
        sdk(user_session.environment_id, "/mfa/recovery-codes"),
        json={"generate_new": True},
        headers=auth_headers(user_session.session_token, link),
    )
    assert r.status_code == 200
    async with server_app.state.service.db.session() as s:
        from sqlalchemy import select

        from stepguard.server.db import Credential

        row = (
            await s.scalars(
                select(Credential).where(
                    Credential.user_id == user_session.user_id, Credential.kind == "recovery"
                )
            )
        ).one()
    unlink = await token(server_app, user_session, "credential:unlink")
    r = await delete(server_client, user_session, row.id, unlink)
    assert r.status_code == 404


async def test_removing_a_factor_revokes_tokens_minted_before_it(
    server_app: FastAPI,
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    clock: FixedClock,
) -> None:
    env, tok = user_session.environment_id, user_session.session_token
    first = await new_totp(server_app, server_client, user_session, clock)
    second = await new_totp(server_app, server_client, user_session, clock)
    # All within one second: the revocation must not depend on whole-second ``iat``s.
    clock.set(clock.now() // 1 + 0.1)
    unlink = await token(server_app, user_session, "credential:unlink")  # time-bound, reusable
    link = await token(server_app, user_session, "credential:link")
    clock.advance(0.2)
    assert (await delete(server_client, user_session, first["id"], unlink)).status_code == 200
    # Both tokens were minted before the removal: neither opens the gate any more.
    r = await delete(server_client, user_session, second["id"], unlink)
    assert r.status_code == 401 and r.json()["code"] == "elevated_token_invalid", r.text
    r = await server_client.post(
        sdk(env, "/mfa/totp/devices"), json={}, headers=auth_headers(tok, link)
    )
    assert r.status_code == 401 and r.json()["code"] == "elevated_token_invalid"
    # A token earned after the removal works, even in the same second.
    clock.advance(0.2)
    fresh = await token(server_app, user_session, "credential:unlink")
    assert claims_of(fresh)["iat"] == claims_of(unlink)["iat"]
    assert (await delete(server_client, user_session, second["id"], fresh)).status_code == 200


async def test_default_is_an_mfa_device_of_this_user(
    server_app: FastAPI,
    admin: AdminApi,
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    clock: FixedClock,
) -> None:
    env = user_session.environment_id
    first = await new_totp(server_app, server_client, user_session, clock)
    second = await new_totp(server_app, server_client, user_session, clock)
    r = await server_client.put(
        sdk(env, f"/credentials/{second['id']}/default"), headers=user_session.headers
    )
    assert r.status_code == 200 and r.json()["default"] is True
    defaults = {c["id"]: c["default"] for c in await listed(server_client, user_session)}
    assert defaults[second["id"]] is True and defaults[first["id"]] is False
    mail = email_of(await listed(server_client, user_session))
    r = await server_client.put(
        sdk(env, f"/credentials/{mail}/default"), headers=user_session.headers
    )
    assert r.status_code == 404
    bob = await admin.user_with_session("bob@example.com")
    r = await server_client.put(
        sdk(env, f"/credentials/{first['id']}/default"), headers=bob.headers
    )
    assert r.status_code == 404
    # The TOTP verify without device_id now uses the default device.
    r = await server_client.post(
        sdk(env, "/mfa/totp/verify"),
        json={"code": totp_code(second["secret"], clock), "requested_scopes": ["user:update"]},
        headers=user_session.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["device_id"] == second["id"]


async def test_gate_honours_max_age_and_expiry_without_leeway(
    server_app: FastAPI,
    admin: AdminApi,
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    clock: FixedClock,
) -> None:
    env, tok = user_session.environment_id, user_session.session_token
    device = await new_totp(server_app, server_client, user_session, clock)
    link = await token(server_app, user_session, "credential:link")
    clock.advance(601)  # just past exp (600 s): the server's own gate forgives no skew
    r = await server_client.post(
        sdk(env, "/mfa/totp/devices"), json={}, headers=auth_headers(tok, link)
    )
    assert r.status_code == 401 and r.json()["code"] == "elevated_token_expired"
    await admin.set_policy(env, {"scopes": {"credential:unlink": {"max_age": 30}}})
    clock.advance(3)  # past the policy cache
    unlink = await token(server_app, user_session, "credential:unlink")
    clock.advance(31)
    r = await delete(server_client, user_session, device["id"], unlink)
    assert r.status_code == 401, r.text
    assert (
        'max_age="30"' in r.headers["WWW-Authenticate"]
        or "max_age=30" in r.headers["WWW-Authenticate"]
    )


# -- elevation never outlives or crosses its session ---------------------------------------------
async def test_token_never_outlives_its_session(
    admin: AdminApi, server_client: httpx.AsyncClient, clock: FixedClock
) -> None:
    env = await admin.default_environment_id()
    user = await admin.create_user(env)  # no credential: enrolment needs no elevation
    first = await admin.create_session(user["id"], env)
    alice = UserSession(env, user["id"], first["id"], first["session_token"])
    device = await enroll_totp(server_client, env, alice.session_token, clock)
    short = await admin.create_session(user["id"], env, ttl_seconds=120)
    r = await server_client.post(
        sdk(env, "/mfa/totp/verify"),
        json={"code": totp_code(device["secret"], clock), "requested_scopes": ["user:update"]},
        headers=auth_headers(short["session_token"]),
    )
    assert r.status_code == 200, r.text
    claims = claims_of(r.json()["elevated_access_token"])
    assert claims["sid"] == short["id"]
    assert r.json()["expires_at"] == claims["exp"] == int(short["expires_at"]) < claims["iat"] + 600


async def test_token_of_one_session_is_refused_at_another(
    server_app: FastAPI,
    admin: AdminApi,
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    clock: FixedClock,
) -> None:
    env = user_session.environment_id
    other = await admin.create_session(user_session.user_id, env)
    b = UserSession(env, user_session.user_id, other["id"], other["session_token"])
    link_a = await token(server_app, user_session, "credential:link")
    r = await server_client.post(
        sdk(env, "/mfa/totp/devices"), json={}, headers=auth_headers(b.session_token, link_a)
    )
    assert r.status_code == 401 and r.json()["code"] == "subject_mismatch"
    # Once session A is revoked its token is good nowhere: A's own calls fail first.
    await admin.revoke_session(env, user_session.session_id)
    r = await server_client.post(
        sdk(env, "/mfa/totp/devices"),
        json={},
        headers=auth_headers(user_session.session_token, link_a),
    )
    assert r.status_code == 401 and r.json()["code"] == "invalid_session"
    r = await server_client.post(
        sdk(env, "/mfa/totp/devices"), json={}, headers=auth_headers(b.session_token, link_a)
    )
    assert r.status_code == 401 and r.json()["code"] == "subject_mismatch"
    # B's own token works at B's gate.
    link_b = await token(server_app, b, "credential:link")
    r = await server_client.post(
        sdk(env, "/mfa/totp/devices"), json={}, headers=auth_headers(b.session_token, link_b)
    )
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("via", ["signout", "admin"])
async def test_a_signed_out_session_cannot_elevate(
    server_app: FastAPI,
    admin: AdminApi,
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    via: str,
) -> None:
    env = user_session.environment_id
    link = await token(server_app, user_session, "credential:link")
    if via == "signout":
        r = await server_client.delete(sdk(env, "/session"), headers=user_session.headers)
        assert r.status_code == 200
    else:
        await admin.revoke_session(env, user_session.session_id)
    r = await server_client.post(
        sdk(env, "/mfa/totp/devices"),
        json={},
        headers=auth_headers(user_session.session_token, link),
    )
    assert r.status_code == 401 and r.json()["code"] == "invalid_session"
    r = await server_client.post(
        sdk(env, "/otp/send"), json={}, headers=auth_headers(user_session.session_token)
    )
    assert r.status_code == 401 and r.json()["code"] == "invalid_session"
