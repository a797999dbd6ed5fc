"""POST /sdk/{env}/step-up/check over HTTP on SQLite and PostgreSQL, following the reference product
(§4.1, §9): ``is_required`` from enforcement, scope policy and the user; ``credentials`` empty when
not required, only MFA devices (and the recovery-code entry) for MFA users, otherwise the verified,
sign-in-enabled re-auth credentials allowed for the scope (never an embedded wallet);
``default_credential_id`` the default (or newest) MFA device, else the first sign-in credential.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from _server_helpers import AdminApi, UserSession
from fastapi import FastAPI
from methods._code_flows import auth_headers, enroll_totp
from methods._flows import (
    EthWallet,
    SoftwareAuthenticator,
    elevated_token,
    link_wallet,
    register_passkey,
    sdk,
)

from stepguard.core.assurance import MethodName
from stepguard.core.clock import FixedClock
from stepguard.server.db import Credential, new_id


async def check(
    client: httpx.AsyncClient,
    user: UserSession,
    scope: str,
    *,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(
        sdk(user.environment_id, "/step-up/check"),
        json={"scope": scope},
        headers=user.headers if headers is None else headers,
    )


async def required(client: httpx.AsyncClient, user: UserSession, scope: str) -> dict[str, Any]:
    r = await check(client, user, scope)
    assert r.status_code == 200, r.text
    body = dict(r.json())
    assert set(body) == {"is_required", "credentials", "default_credential_id"}
    return body


def ids(body: dict[str, Any]) -> list[str]:
    return [c["id"] for c in body["credentials"]]


async def link(app: FastAPI, user: UserSession) -> str:
    """A ``credential:link`` token minted by the service (the factor is not under test here)."""
    return await elevated_token(
        app, user.session_token, user.environment_id, ["credential:link"], MethodName.TOTP
    )


async def email_id(client: httpx.AsyncClient, user: UserSession) -> str:
    r = await client.get(sdk(user.environment_id, "/credentials"), headers=user.headers)
    return str(next(c["id"] for c in r.json()["credentials"] if c["format"] == "email"))


async def embedded_wallet(app: FastAPI, user: UserSession) -> str:
    """A wallet row not linked by signature (as an embedded/custodial wallet would be)."""
    service = app.state.service
    async with service.db.transaction() as s:
        cred = Credential(
            id=new_id("cred_"),
            environment_id=user.environment_id,
            user_id=user.user_id,
            kind="wallet",
            value=EthWallet().address,
            chain="ethereum",
            verified=True,
            sign_in_enabled=True,
            is_default=False,
            data={"source": "embedded", "chain_id": 1},
            # Older than every other credential: it would be the default if it were eligible.
            created_at=service.clock.now() - 1000,
            verified_at=service.clock.now() - 1000,
        )
        s.add(cred)
    return cred.id


async def test_not_required_when_enforcement_is_off_or_scope_not_required(
    admin: AdminApi, server_client: httpx.AsyncClient, user_session: UserSession, clock: FixedClock
) -> None:
    env = user_session.environment_id
    body = await required(server_client, user_session, "wallet:export")
    assert body["is_required"] is True and body["credentials"]
    await admin.set_policy(env, {"scopes": {"user:update": {"required": False}}})
    body = await required(server_client, user_session, "user:update")
    assert body == {"is_required": False, "credentials": [], "default_credential_id": None}
    await admin.set_policy(env, {"enforcement": False})
    for scope in ("wallet:export", "credential:link", "credential:unlink", "user:delete"):
        body = await required(server_client, user_session, scope)
        assert body == {"is_required": False, "credentials": [], "default_credential_id": None}


async def test_reauth_user_sees_allowed_sign_in_credentials(
    server_app: FastAPI,
    admin: AdminApi,
    server_client: httpx.AsyncClient,
    user_session: UserSession,
) -> None:
    env = user_session.environment_id
    mail = await email_id(server_client, user_session)
    embedded = await embedded_wallet(server_app, user_session)
    wallet = await link_wallet(
        server_client,
        env,
        user_session.headers,
        EthWallet(),
        token=await link(server_app, user_session),
    )
    body = await required(server_client, user_session, "wallet:export")
    assert body["is_required"] is True
    # The embedded wallet is never offered (nor the default), the external one is.
    assert ids(body) == [mail, wallet["id"]] and embedded not in ids(body)
    assert body["default_credential_id"] == mail  # the first sign-in credential
    email, eth = body["credentials"]
    assert (email["format"], email["type"], email["alias"]) == (
        "email",
        "email",
        "a***e@example.com",
    )
    assert (eth["format"], eth["type"]) == ("blockchain", "ethereum")
    # A credential with sign-in turned off is not offered; the next sign-in one is the default.
    async with server_app.state.service.db.transaction() as s:
        (await s.get(Credential, mail)).sign_in_enabled = False  # type: ignore[union-attr]
    body = await required(server_client, user_session, "wallet:export")
    assert ids(body) == [wallet["id"]] and body["default_credential_id"] == wallet["id"]
    async with server_app.state.service.db.transaction() as s:
        (await s.get(Credential, mail)).sign_in_enabled = True  # type: ignore[union-attr]
    # Only the methods the scope allows: a wallet-only scope lists (and defaults to) the wallet.
    await admin.set_policy(env, {"scopes": {"user:update": {"allowed_methods": ["ethereum"]}}})
    body = await required(server_client, user_session, "user:update")
    assert ids(body) == [wallet["id"]] and body["default_credential_id"] == wallet["id"]


async def test_sms_phone_listed_only_where_sms_is_enabled(
    admin: AdminApi, server_client: httpx.AsyncClient, clock: FixedClock
) -> None:
    user = await admin.user_with_session("bob@example.com", phone="+14155550100")
    body = await required(server_client, user, "user:update")
    assert [c["format"] for c in body["credentials"]] == ["email"]  # SMS is opt-in
    await admin.set_policy(
        user.environment_id, {"enabled_methods": ["email_otp", "sms_otp", "totp", "passkey"]}
    )
    clock.advance(3)  # past the policy cache
    body = await required(server_client, user, "user:update")
    assert sorted(c["format"] for c in body["credentials"]) == ["email", "phone_number"]
    phone = next(c for c in body["credentials"] if c["format"] == "phone_number")
    assert "+14155550100" not in str(phone)  # masked alias


async def test_mfa_user_sees_only_mfa_devices_and_the_default(
    server_app: FastAPI,
    admin: AdminApi,
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    clock: FixedClock,
) -> None:
    env, tok = user_session.environment_id, user_session.session_token
    first = await enroll_totp(
        server_client, env, tok, clock, elevated=await link(server_app, user_session)
    )
    second = await enroll_totp(
        server_client, env, tok, clock, elevated=await link(server_app, user_session)
    )
    key = await register_passkey(
        server_client,
        env,
        user_session.headers,
        SoftwareAuthenticator("test", "http://test"),
        token=await link(server_app, user_session),
    )
    # An enrolment started but never confirmed is not a step-up credential.
    r = await server_client.post(
        sdk(env, "/mfa/totp/devices"),
        json={},
        headers=auth_headers(tok, await link(server_app, user_session)),
    )
    pending = r.json()["id"]
    body = await required(server_client, user_session, "wallet:export")
    assert body["is_required"] is True
    assert ids(body) == [first["id"], second["id"], key["id"]]  # no email, no pending device
    assert pending not in ids(body)
    assert [c["type"] for c in body["credentials"]] == ["totp", "totp", "passkey"]
    assert body["default_credential_id"] == first["id"]  # the first MFA device is the default
    r = await server_client.put(
        sdk(env, f"/credentials/{key['id']}/default"), headers=user_session.headers
    )
    assert r.status_code == 200 and r.json()["default"] is True
    assert (await required(server_client, user_session, "wallet:export"))[
        "default_credential_id"
    ] == key["id"]
    # Recovery codes add one entry (and only for MFA-allowed scopes).
    r = await server_client.post(
        sdk(env, "/mfa/recovery-codes"),
        json={"generate_new": True},
        headers=auth_headers(tok, await link(server_app, user_session)),
    )
    assert r.status_code == 200, r.text
    body = await required(server_client, user_session, "wallet:export")
    assert ids(body)[-1] == "recovery_code" and body["credentials"][-1]["format"] == "recovery_code"
    await admin.set_policy(env, {"scopes": {"user:update": {"allowed_methods": ["passkey"]}}})
    body = await required(server_client, user_session, "user:update")
    assert ids(body) == [key["id"]] and body["default_credential_id"] == key["id"]
    # Without MFA precedence in the environment, the user is offered re-auth credentials.
    await admin.set_policy(env, {"mfa_enabled": False})
    body = await required(server_client, user_session, "wallet:export")
    assert [c["format"] for c in body["credentials"]] == ["email"]


async def test_newest_mfa_device_is_the_default_when_none_is_marked(
    server_app: FastAPI,
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    clock: FixedClock,
) -> None:
    env, tok = user_session.environment_id, user_session.session_token
    first = await enroll_totp(
        server_client, env, tok, clock, elevated=await link(server_app, user_session)
    )
    second = await enroll_totp(
        server_client, env, tok, clock, elevated=await link(server_app, user_session)
    )
    async with server_app.state.service.db.transaction() as s:
        (await s.get(Credential, first["id"])).is_default = False  # type: ignore[union-attr]
    body = await required(server_client, user_session, "user:update")
    assert body["default_credential_id"] == second["id"]


async def test_link_and_unlink_follow_the_enrolment_gate(
    server_app: FastAPI, admin: AdminApi, server_client: httpx.AsyncClient
) -> None:
    """``is_required`` for credential:link/unlink says exactly whether the gate will ask."""
    env = await admin.default_environment_id()
    user = await admin.create_user(env)  # no credential at all yet
    session = await admin.create_session(user["id"], env)
    bare = UserSession(env, user["id"], session["id"], session["session_token"])
    body = await required(server_client, bare, "credential:link")
    assert body == {"is_required": False, "credentials": [], "default_credential_id": None}
    wallet = await link_wallet(server_client, env, bare.headers, EthWallet())  # no token needed
    body = await required(server_client, bare, "credential:link")
    assert body["is_required"] is True and ids(body) == [wallet["id"]]
    # ... and now the gate does ask for it.
    r = await server_client.post(sdk(env, "/mfa/totp/devices"), json={}, headers=bare.headers)
    assert r.status_code == 401 and r.json()["code"] == "elevated_token_required"
    # A per-scope "required: false" does not lift it: linking always needs step-up when enforced.
    await admin.set_policy(env, {"scopes": {"credential:link": {"required": False}}})
    assert (await required(server_client, bare, "credential:link"))["is_required"] is True
    # With enforcement off neither the check nor the gate asks.
    await admin.set_policy(env, {"enforcement": False})
    assert (await required(server_client, bare, "credential:unlink"))["is_required"] is False
    r = await server_client.post(sdk(env, "/mfa/totp/devices"), json={}, headers=bare.headers)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("scope", ["nope:nope", "wallet:exportx", "shop:refund", "a" * 100])
async def test_unknown_scope_is_invalid_scopes(
    server_client: httpx.AsyncClient, user_session: UserSession, scope: str
) -> None:
    r = await check(server_client, user_session, scope)
    assert r.status_code == 422 and r.json()["code"] == "invalid_scopes", r.text


async def test_custom_scope_once_configured(
    admin: AdminApi, server_client: httpx.AsyncClient, user_session: UserSession
) -> None:
    await admin.set_policy(user_session.environment_id, {"custom_scopes": ["shop:refund"]})
    body = await required(server_client, user_session, "shop:refund")
    assert body["is_required"] is True and [c["format"] for c in body["credentials"]] == ["email"]


async def test_needs_a_live_session_of_this_environment(
    admin: AdminApi, server_client: httpx.AsyncClient, user_session: UserSession, clock: FixedClock
) -> None:
    for headers in ({}, {"Authorization": "Bearer sgs_not-a-session"}):
        r = await check(server_client, user_session, "wallet:export", headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "invalid_session"
    other = await admin.create_environment("other")
    r = await server_client.post(
        sdk(other["id"], "/step-up/check"),
        json={"scope": "wallet:export"},
        headers=user_session.headers,
    )
    assert r.status_code == 401 and r.json()["code"] == "invalid_session"
    await admin.revoke_session(user_session.environment_id, user_session.session_id)
    r = await check(server_client, user_session, "wallet:export")
    assert r.status_code == 401 and r.json()["code"] == "invalid_session"
    short = await admin.user_with_session("carol@example.com")
    clock.advance(86_400 * 31)  # past any session lifetime
    r = await check(server_client, short, "wallet:export")
    assert r.status_code == 401 and r.json()["code"] == "invalid_session"


@pytest.mark.parametrize("body", [{}, {"scope": ""}, {"scope": 3}, {"scope": ["wallet:export"]}])
async def test_bad_bodies_get_stable_codes(
    server_client: httpx.AsyncClient, user_session: UserSession, body: dict[str, Any]
) -> None:
    r = await server_client.post(
        sdk(user_session.environment_id, "/step-up/check"), json=body, headers=user_session.headers
    )
    assert r.status_code == 422 and r.json()["code"] == "validation_error", r.text
