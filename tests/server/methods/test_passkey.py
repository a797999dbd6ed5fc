"""Passkeys over HTTP: registration, step-up assertion and sign-in, on SQLite and PostgreSQL.

Every response is a real attestation or assertion from the software authenticator; the attacks
(UV off, wrong origin or RP id, replayed or expired challenge, lowered counter, another user's
passkey) are correctly signed, so only the server's check can stop them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from _server_helpers import AdminApi, UserSession, client_for
from fastapi import FastAPI

from stepguard.core.assurance import MethodName
from stepguard.core.clock import FixedClock

from ._flows import ORIGIN, RP_ID, SoftwareAuthenticator, claims_of, elevated_token, sdk


async def register(
    client: httpx.AsyncClient,
    user: UserSession,
    auth: SoftwareAuthenticator,
    *,
    token: str | None = None,
    alias: str | None = None,
    **create_kw: Any,
) -> httpx.Response:
    headers = dict(user.headers)
    if token:
        headers["X-Elevated-Access-Token"] = token
    body: dict[str, Any] = {} if alias is None else {"alias": alias}
    r = await client.post(
        sdk(user.environment_id, "/passkeys/register/options"), json=body, headers=headers
    )
    assert r.status_code == 200, r.text
    opts = r.json()
    return await client.post(
        sdk(user.environment_id, "/passkeys/register"),
        json={
            "challenge_id": opts["challenge_id"],
            "credential": auth.create(opts["options"], **create_kw),
        },
        headers=user.headers,
    )


async def options(client: httpx.AsyncClient, user: UserSession) -> dict[str, Any]:
    r = await client.post(
        sdk(user.environment_id, "/passkeys/authenticate/options"), json={}, headers=user.headers
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


async def authenticate(
    client: httpx.AsyncClient,
    user: UserSession,
    opts: dict[str, Any],
    credential: dict[str, Any],
    scopes: list[str] | None = None,
) -> httpx.Response:
    return await client.post(
        sdk(user.environment_id, "/passkeys/authenticate"),
        json={
            "challenge_id": opts["challenge_id"],
            "credential": credential,
            "requested_scopes": ["wallet:export"] if scopes is None else scopes,
        },
        headers=user.headers,
    )


@pytest.fixture
async def fresh_user(admin: AdminApi) -> UserSession:
    """A user with no credential yet: the first enrolment needs no elevation."""
    env = await admin.default_environment_id()
    user = await admin.create_user(env)
    session = await admin.create_session(user["id"], env)
    return UserSession(env, user["id"], session["id"], session["session_token"])


@pytest.fixture
def auth() -> SoftwareAuthenticator:
    return SoftwareAuthenticator(RP_ID, ORIGIN)


async def test_register_then_step_up_mints_a_token(
    server_client: httpx.AsyncClient, fresh_user: UserSession, auth: SoftwareAuthenticator
) -> None:
    r = await register(server_client, fresh_user, auth, alias="Laptop")
    assert r.status_code == 200, r.text
    passkey = r.json()
    assert passkey["verified"] is True and passkey["type"] == "passkey"
    assert passkey["alias"] == "Laptop" and passkey["sign_count"] == 0

    opts = await options(server_client, fresh_user)
    assert opts["options"]["userVerification"] == "required"
    assert opts["options"]["rpId"] == RP_ID
    assert [c["id"] for c in opts["options"]["allowCredentials"]] == [passkey["credential_id"]]

    r = await authenticate(server_client, fresh_user, opts, auth.get(opts["options"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scopes"] == ["wallet:export"] and body["single_use"] is True
    claims = claims_of(body["elevated_access_token"])
    assert claims["sub"] == fresh_user.user_id and claims["sid"] == fresh_user.session_id
    assert "hwk" in claims["amr"] and "user" in claims["amr"]

    devices = (
        await server_client.get(
            sdk(fresh_user.environment_id, "/credentials"), headers=fresh_user.headers
        )
    ).json()
    assert [c["format"] for c in devices["credentials"]] == ["passkey"]


async def test_empty_scopes_only_verifies(
    server_client: httpx.AsyncClient, fresh_user: UserSession, auth: SoftwareAuthenticator
) -> None:
    assert (await register(server_client, fresh_user, auth)).status_code == 200
    opts = await options(server_client, fresh_user)
    r = await authenticate(server_client, fresh_user, opts, auth.get(opts["options"]), scopes=[])
    assert r.status_code == 200 and r.json() == {"verified": True}


async def test_user_verification_is_required(
    server_client: httpx.AsyncClient, fresh_user: UserSession, auth: SoftwareAuthenticator
) -> None:
    r = await register(server_client, fresh_user, auth, user_verified=False)
    assert r.status_code == 400 and r.json()["code"] == "invalid_signature"
    assert (await register(server_client, fresh_user, auth)).status_code == 200
    opts = await options(server_client, fresh_user)
    r = await authenticate(
        server_client, fresh_user, opts, auth.get(opts["options"], user_verified=False)
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_signature"


async def test_challenge_is_single_use_even_after_a_failure(
    server_client: httpx.AsyncClient, fresh_user: UserSession, auth: SoftwareAuthenticator
) -> None:
    assert (await register(server_client, fresh_user, auth)).status_code == 200
    opts = await options(server_client, fresh_user)
    good = auth.get(opts["options"])
    assert (await authenticate(server_client, fresh_user, opts, good)).status_code == 200
    replay = await authenticate(server_client, fresh_user, opts, auth.get(opts["options"]))
    assert replay.status_code == 400 and replay.json()["code"] == "code_used"

    opts = await options(server_client, fresh_user)
    bad = await authenticate(
        server_client, fresh_user, opts, auth.get(opts["options"], origin="http://evil")
    )
    assert bad.json()["code"] == "invalid_signature"
    # The failed response spent the challenge: a good one cannot follow on it.
    again = await authenticate(server_client, fresh_user, opts, auth.get(opts["options"]))
    assert again.status_code == 400 and again.json()["code"] == "code_used"


async def test_concurrent_assertions_on_one_challenge_give_one_token(
    server_client: httpx.AsyncClient, fresh_user: UserSession, auth: SoftwareAuthenticator
) -> None:
    assert (
        await register(
            server_client,
            fresh_user,
            auth,
        )
    ).status_code == 200
    opts = await options(server_client, fresh_user)
    creds = [auth.get(opts["options"]) for _ in range(4)]
    results = await asyncio.gather(
        *(authenticate(server_client, fresh_user, opts, c) for c in creds)
    )
    assert sorted(r.status_code for r in results) == [200, 400, 400, 400]


async def test_challenge_expires(
    server_client: httpx.AsyncClient,
    fresh_user: UserSession,
    auth: SoftwareAuthenticator,
    clock: FixedClock,
) -> None:
    assert (await register(server_client, fresh_user, auth)).status_code == 200
    opts = await options(server_client, fresh_user)
    assert opts["expires_at"] - clock.now() <= 300
    clock.advance(opts["expires_at"] - clock.now() + 1)
    r = await authenticate(server_client, fresh_user, opts, auth.get(opts["options"]))
    assert r.status_code == 400 and r.json()["code"] == "code_expired"


@pytest.mark.parametrize(
    "mutation",
    [
        {"origin": "http://evil.test"},
        {"origin": "https://test"},
        {"rp_id": "evil.test"},
        {"challenge": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
        {"client_data_extra": {"crossOrigin": True}},
        {"user_present": False},
    ],
    ids=["other-origin", "other-scheme", "other-rp-id", "other-challenge", "cross-origin", "no-up"],
)
async def test_assertion_mutants_are_refused(
    server_client: httpx.AsyncClient,
    fresh_user: UserSession,
    auth: SoftwareAuthenticator,
    mutation: dict[str, Any],
) -> None:
    assert (await register(server_client, fresh_user, auth)).status_code == 200
    opts = await options(server_client, fresh_user)
    r = await authenticate(server_client, fresh_user, opts, auth.get(opts["options"], **mutation))
    assert r.status_code == 400 and r.json()["code"] == "invalid_signature", r.text


async def test_rp_id_and_origin_follow_the_public_url(
    make_server: Any, admin_headers: dict[str, str]
) -> None:
    async with (
        make_server(public_url="https://auth.example.com:8443") as app,
        client_for(app) as client,
    ):
        admin = AdminApi(client, admin_headers)
        env = await admin.default_environment_id()
        user_id = (await admin.create_user(env))["id"]
        session = await admin.create_session(user_id, env)
        user = UserSession(env, user_id, session["id"], session["session_token"])
        r = await client.post(sdk(env, "/passkeys/register/options"), json={}, headers=user.headers)
        assert r.json()["options"]["rp"]["id"] == "auth.example.com"
        # The origin the server expects is the public URL's, port included.
        wrong = SoftwareAuthenticator("auth.example.com", "https://auth.example.com")
        assert (await register(client, user, wrong)).json()["code"] == "invalid_signature"
        right = SoftwareAuthenticator("auth.example.com", "https://auth.example.com:8443")
        assert (await register(client, user, right)).status_code == 200
        opts = await options(client, user)
        assert opts["options"]["rpId"] == "auth.example.com"
        assert (
            await authenticate(client, user, opts, right.get(opts["options"]))
        ).status_code == 200


async def test_sign_counter_is_kept_and_a_regression_refused(
    server_client: httpx.AsyncClient, fresh_user: UserSession, auth: SoftwareAuthenticator
) -> None:
    assert (await register(server_client, fresh_user, auth)).status_code == 200
    for _ in range(3):
        opts = await options(server_client, fresh_user)
        assert (
            await authenticate(server_client, fresh_user, opts, auth.get(opts["options"]))
        ).status_code == 200
    creds = (
        await server_client.get(
            sdk(fresh_user.environment_id, "/credentials"), headers=fresh_user.headers
        )
    ).json()
    cred_id = creds["credentials"][0]["id"]
    async with _service_db(server_client) as s:
        from stepguard.server.db import Credential

        assert (await s.get(Credential, cred_id)).last_used_step == 3
    for stale in (3, 2):  # equal or lower: a cloned authenticator
        opts = await options(server_client, fresh_user)
        r = await authenticate(
            server_client, fresh_user, opts, auth.get(opts["options"], sign_count=stale)
        )
        assert r.status_code == 400 and r.json()["code"] == "invalid_signature"
        assert "counter" in r.json()["error"]
    opts = await options(server_client, fresh_user)
    assert (
        await authenticate(
            server_client, fresh_user, opts, auth.get(opts["options"], sign_count=10)
        )
    ).status_code == 200


async def test_authenticator_without_counter_keeps_working(
    server_client: httpx.AsyncClient, fresh_user: UserSession
) -> None:
    synced = SoftwareAuthenticator(RP_ID, ORIGIN, counter_step=0)
    assert (await register(server_client, fresh_user, synced)).status_code == 200
    for _ in range(2):
        opts = await options(server_client, fresh_user)
        assert (
            await authenticate(server_client, fresh_user, opts, synced.get(opts["options"]))
        ).status_code == 200


def _service_db(client: httpx.AsyncClient) -> Any:
    transport = client._transport
    app = transport.app  # type: ignore[attr-defined]
    return app.state.service.db.session()


async def test_linking_a_passkey_needs_credential_link_once_verified(
    server_client: httpx.AsyncClient,
    server_app: FastAPI,
    user_session: UserSession,
    auth: SoftwareAuthenticator,
) -> None:
    # user_session has a verified email: enrolment needs elevation.
    env = user_session.environment_id
    r = await server_client.post(
        sdk(env, "/passkeys/register/options"), json={}, headers=user_session.headers
    )
    assert r.status_code == 401 and r.json()["code"] == "elevated_token_required"
    assert 'scope="credential:link"' in r.headers["WWW-Authenticate"]
    wrong_scope = await elevated_token(server_app, user_session.session_token, env, ["user:update"])
    r = await server_client.post(
        sdk(env, "/passkeys/register/options"),
        json={},
        headers={**user_session.headers, "X-Elevated-Access-Token": wrong_scope},
    )
    assert r.status_code == 401 and r.json()["code"] == "scope_not_granted"
    token = await elevated_token(server_app, user_session.session_token, env, ["credential:link"])
    r = await register(server_client, user_session, auth, token=token)
    assert r.status_code == 200, r.text


async def test_several_passkeys_per_user(
    server_client: httpx.AsyncClient, server_app: FastAPI, fresh_user: UserSession
) -> None:
    laptop, phone = SoftwareAuthenticator(RP_ID, ORIGIN), SoftwareAuthenticator(RP_ID, ORIGIN)
    assert (await register(server_client, fresh_user, laptop)).status_code == 200
    # The first passkey is a verified credential: the second needs credential:link.
    assert (await register_options_status(server_client, fresh_user)) == 401
    # ...which the first passkey earns (the user now has MFA, so only MFA may).
    opts = await options(server_client, fresh_user)
    r = await authenticate(
        server_client, fresh_user, opts, laptop.get(opts["options"]), ["credential:link"]
    )
    assert r.status_code == 200, r.text
    second = await register(
        server_client, fresh_user, phone, token=r.json()["elevated_access_token"]
    )
    assert second.status_code == 200, second.text
    opts = await options(server_client, fresh_user)
    assert len(opts["options"]["allowCredentials"]) == 2
    for device in (phone, laptop):
        opts = await options(server_client, fresh_user)
        assert (
            await authenticate(server_client, fresh_user, opts, device.get(opts["options"]))
        ).status_code == 200
    devices = (
        await server_client.get(
            sdk(fresh_user.environment_id, "/credentials"), headers=fresh_user.headers
        )
    ).json()["credentials"]
    assert sum(d["default"] for d in devices) == 1


async def register_options_status(client: httpx.AsyncClient, user: UserSession) -> int:
    r = await client.post(
        sdk(user.environment_id, "/passkeys/register/options"), json={}, headers=user.headers
    )
    return r.status_code


async def test_another_users_passkey_is_refused(
    server_client: httpx.AsyncClient,
    admin: AdminApi,
    fresh_user: UserSession,
    auth: SoftwareAuthenticator,
) -> None:
    env = fresh_user.environment_id
    other_id = (await admin.create_user(env))["id"]
    other_s = await admin.create_session(other_id, env)
    other = UserSession(env, other_id, other_s["id"], other_s["session_token"])
    mallory = SoftwareAuthenticator(RP_ID, ORIGIN)
    assert (await register(server_client, fresh_user, auth)).status_code == 200
    assert (await register(server_client, other, mallory)).status_code == 200
    opts = await options(server_client, fresh_user)
    forged = mallory.get(opts["options"], credential_id=next(iter(mallory.credentials)))
    r = await authenticate(server_client, fresh_user, opts, forged)
    assert r.status_code == 400 and r.json()["code"] == "invalid_signature"
    # Nor can one session use another session's challenge.
    opts = await options(server_client, fresh_user)
    r = await authenticate(
        server_client,
        other,
        opts,
        mallory.get(opts["options"], credential_id=next(iter(mallory.credentials))),
    )
    assert r.status_code == 400 and r.json()["code"] == "challenge_not_found"


async def test_same_authenticator_cannot_register_twice(
    server_client: httpx.AsyncClient,
    server_app: FastAPI,
    fresh_user: UserSession,
    auth: SoftwareAuthenticator,
) -> None:
    first = await register(server_client, fresh_user, auth)
    assert first.status_code == 200
    token = await elevated_token(
        server_app,
        fresh_user.session_token,
        fresh_user.environment_id,
        ["credential:link"],
        MethodName.PASSKEY,
    )
    r = await server_client.post(
        sdk(fresh_user.environment_id, "/passkeys/register/options"),
        json={},
        headers={**fresh_user.headers, "X-Elevated-Access-Token": token},
    )
    excluded = [c["id"] for c in r.json()["options"]["excludeCredentials"]]
    assert excluded == [first.json()["credential_id"]]


async def test_no_passkey_means_no_options(
    server_client: httpx.AsyncClient, fresh_user: UserSession
) -> None:
    r = await server_client.post(
        sdk(fresh_user.environment_id, "/passkeys/authenticate/options"),
        json={},
        headers=fresh_user.headers,
    )
    assert r.status_code == 400 and r.json()["code"] == "no_methods_available"


async def sign_in(
    client: httpx.AsyncClient, env: str, auth: SoftwareAuthenticator, **get_kw: Any
) -> httpx.Response:
    r = await client.post(sdk(env, "/sign-in/passkey/options"), json={})
    assert r.status_code == 200, r.text
    opts = r.json()
    assert opts["options"]["allowCredentials"] == []
    assert opts["options"]["userVerification"] == "required"
    return await client.post(
        sdk(env, "/sign-in/passkey"),
        json={
            "challenge_id": opts["challenge_id"],
            "credential": auth.get(opts["options"], **get_kw),
        },
    )


async def test_passkey_sign_in_starts_a_session(
    server_client: httpx.AsyncClient, fresh_user: UserSession, auth: SoftwareAuthenticator
) -> None:
    assert (await register(server_client, fresh_user, auth)).status_code == 200
    r = await sign_in(server_client, fresh_user.environment_id, auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_id"] == fresh_user.user_id and body["session_id"] != fresh_user.session_id
    me = await server_client.get(
        sdk(fresh_user.environment_id, "/session"),
        headers={"Authorization": f"Bearer {body['session_token']}"},
    )
    assert me.status_code == 200 and me.json()["user_id"] == fresh_user.user_id


async def test_passkey_sign_in_attacks(
    server_client: httpx.AsyncClient, fresh_user: UserSession, auth: SoftwareAuthenticator
) -> None:
    env = fresh_user.environment_id
    stranger = SoftwareAuthenticator(RP_ID, ORIGIN)
    stranger.create(
        {
            "pubKeyCredParams": [{"alg": -7, "type": "public-key"}],
            "challenge": "AAAA",
            "rp": {"id": RP_ID},
            "user": {"id": "dXNlcg"},
        }
    )
    r = await sign_in(server_client, env, stranger)
    assert r.status_code == 400 and r.json()["code"] == "invalid_signature"
    assert (await register(server_client, fresh_user, auth)).status_code == 200
    assert (await sign_in(server_client, env, auth, user_verified=False)).json()[
        "code"
    ] == "invalid_signature"
    assert (await sign_in(server_client, env, auth, origin="http://evil")).json()[
        "code"
    ] == "invalid_signature"
    # Replaying a whole sign-in (same challenge, same assertion) is refused.
    r = await server_client.post(sdk(env, "/sign-in/passkey/options"), json={})
    opts = r.json()
    cred = auth.get(opts["options"])
    body = {"challenge_id": opts["challenge_id"], "credential": cred}
    assert (await server_client.post(sdk(env, "/sign-in/passkey"), json=body)).status_code == 200
    again = await server_client.post(sdk(env, "/sign-in/passkey"), json=body)
    assert again.status_code == 400 and again.json()["code"] == "code_used"
    # Without the userHandle the owner is not named.
    r = await server_client.post(sdk(env, "/sign-in/passkey/options"), json={})
    opts = r.json()
    cred = auth.get(opts["options"])
    cred["response"].pop("userHandle")
    r = await server_client.post(
        sdk(env, "/sign-in/passkey"),
        json={"challenge_id": opts["challenge_id"], "credential": cred},
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_signature"
    # A step-up challenge is not a sign-in challenge.
    opts = await options(server_client, fresh_user)
    r = await server_client.post(
        sdk(env, "/sign-in/passkey"),
        json={"challenge_id": opts["challenge_id"], "credential": auth.get(opts["options"])},
    )
    assert r.status_code == 400 and r.json()["code"] == "challenge_not_found"


async def test_every_attempt_is_audited(
    server_client: httpx.AsyncClient,
    admin: AdminApi,
    fresh_user: UserSession,
    auth: SoftwareAuthenticator,
) -> None:
    assert (await register(server_client, fresh_user, auth)).status_code == 200
    opts = await options(server_client, fresh_user)
    await authenticate(
        server_client, fresh_user, opts, auth.get(opts["options"], user_verified=False)
    )
    opts = await options(server_client, fresh_user)
    await authenticate(server_client, fresh_user, opts, auth.get(opts["options"]))
    opts = await options(server_client, fresh_user)
    await authenticate(server_client, fresh_user, opts, {"id": "!!", "response": 5})
    events = await admin.audit(fresh_user.environment_id, action="passkey.verify")
    outcomes = sorted(e["outcome"] for e in events)
    assert outcomes == ["invalid_signature", "success", "validation_error"]
    assert all(e["user_id"] == fresh_user.user_id and e["method"] == "passkey" for e in events)
    assert [e["scopes"] for e in events if e["outcome"] == "success"] == [["wallet:export"]]
    assert [
        e["outcome"]
        for e in await admin.audit(fresh_user.environment_id, action="passkey.register")
    ] == ["success"]


BAD_BODIES: list[Any] = [
    None,
    [],
    "x",
    {},
    {"challenge_id": 5, "credential": {}},
    {"challenge_id": "x" * 65, "credential": {}},
    {"challenge_id": "chl_x", "credential": "abc"},
    {"challenge_id": "chl_x", "credential": {}, "extra": 1},
    {"challenge_id": "chl_x", "credential": {}, "requested_scopes": "wallet:export"},
]


@pytest.mark.parametrize(
    "path", ["/passkeys/register", "/passkeys/authenticate", "/sign-in/passkey"]
)
async def test_bad_bodies_get_stable_codes(
    server_client: httpx.AsyncClient,
    fresh_user: UserSession,
    auth: SoftwareAuthenticator,
    path: str,
) -> None:
    env = fresh_user.environment_id
    for body in BAD_BODIES:
        r = await server_client.post(sdk(env, path), json=body, headers=fresh_user.headers)
        assert 400 <= r.status_code < 500 and "code" in r.json(), (body, r.text)
    r = await server_client.post(
        sdk(env, path),
        content=b"{not json",
        headers={**fresh_user.headers, "content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_json"
    # A real challenge with garbage credentials of every shape.
    if path == "/passkeys/register":
        assert (await register(server_client, fresh_user, auth)).status_code == 200
        return
    if path == "/passkeys/authenticate":
        assert (await register(server_client, fresh_user, auth)).status_code == 200
    garbage: list[dict[str, Any]] = [
        {},
        {"id": 5},
        {"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {}},
        {
            "id": "AAAA",
            "rawId": "AAAA",
            "type": "public-key",
            "response": {"clientDataJSON": "!!", "authenticatorData": "AA", "signature": "AA"},
        },
        {
            "id": "AAAA",
            "rawId": "AAAA",
            "type": "public-key",
            "response": {
                "clientDataJSON": "bm90IGpzb24",
                "authenticatorData": "AA",
                "signature": "AA",
                "userHandle": 7,
            },
        },
        {"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": [1, 2]},
    ]
    for cred in garbage:
        if path == "/sign-in/passkey":
            opts = (await server_client.post(sdk(env, "/sign-in/passkey/options"), json={})).json()
            body2: dict[str, Any] = {"challenge_id": opts["challenge_id"], "credential": cred}
        else:
            opts = await options(server_client, fresh_user)
            body2 = {
                "challenge_id": opts["challenge_id"],
                "credential": cred,
                "requested_scopes": [],
            }
        r = await server_client.post(sdk(env, path), json=body2, headers=fresh_user.headers)
        assert 400 <= r.status_code < 500 and "code" in r.json(), (cred, r.text)


async def test_bad_sign_ins_cannot_lock_the_owner_out(
    server_client: httpx.AsyncClient, fresh_user: UserSession, auth: SoftwareAuthenticator
) -> None:
    """Credential ids are not secret: failed anonymous sign-ins must not lock the passkey."""
    assert (await register(server_client, fresh_user, auth)).status_code == 200
    env = fresh_user.environment_id
    for _ in range(8):
        r = await sign_in(server_client, env, auth, user_verified=False)
        assert r.status_code == 400 and r.json()["code"] == "invalid_signature"
    assert (await sign_in(server_client, env, auth)).status_code == 200
    opts = await options(server_client, fresh_user)
    r = await authenticate(server_client, fresh_user, opts, auth.get(opts["options"]))
    assert r.status_code == 200, r.text


async def test_cloned_authenticators_racing_with_one_counter_get_one_token(
    server_client: httpx.AsyncClient, fresh_user: UserSession, auth: SoftwareAuthenticator
) -> None:
    """Two assertions carrying the same counter on two challenges at once (a cloned
    authenticator): the counter moves by compare-and-set, so only one of them can win."""
    assert (await register(server_client, fresh_user, auth)).status_code == 200
    first, second = (
        await options(server_client, fresh_user),
        await options(server_client, fresh_user),
    )
    results = await asyncio.gather(
        authenticate(server_client, fresh_user, first, auth.get(first["options"], sign_count=5)),
        authenticate(server_client, fresh_user, second, auth.get(second["options"], sign_count=5)),
    )
    assert sorted(r.status_code for r in results) == [200, 400], [r.text for r in results]
    loser = next(r for r in results if r.status_code == 400)
    assert loser.json()["code"] == "invalid_signature"
