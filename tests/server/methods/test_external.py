"""Bring your own auth over HTTP: the app backend's assertion JWT (signed with joserfc) exchanged
for an elevated token, with keys inline or behind a JWKS URL served by a local uvicorn.

Attacks: a replayed ``jti`` (also concurrently), another user's ``sub``, expired or future or
over-long assertions, a wrong ``aud``, a key the environment does not trust, ``alg`` games.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from _server_helpers import AdminApi, UserSession
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from _services import run_uvicorn_in_thread
from stepguard.core.clock import FixedClock
from stepguard.server.db import UsedNonce

from ._flows import SoftwareAuthenticator, claims_of, register_passkey, sdk

Key = ECKey | OKPKey | RSAKey
ALG = {ECKey: "ES256", OKPKey: "EdDSA", RSAKey: "RS256"}


def ec_key(kid: str = "app-1") -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid})


def sign(key: Key, claims: dict[str, Any], **header: Any) -> str:
    alg = header.pop("alg", ALG[type(key)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc flags EdDSA (RFC 9864) when signing
        return jwt.encode({"alg": alg, "kid": key.kid, **header}, claims, key, algorithms=[alg])


def assertion_claims(now: float, subject: str, **over: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": subject,
        "scope": "wallet:export",
        "jti": uuid.uuid4().hex,
        "iat": int(now),
        "exp": int(now) + 120,
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def jwks(*keys: Key) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


async def set_jwks(
    admin: AdminApi, env: str, *, keys: dict[str, Any] | None = None, url: str | None = None
) -> None:
    body: dict[str, Any] = {}
    if keys is not None:
        body["jwks"] = keys
    if url is not None:
        body["jwks_url"] = url
    r = await admin.request("PUT", f"/admin/environments/{env}/external-jwks", json=body)
    assert r.status_code == 200, r.text


async def exchange(client: httpx.AsyncClient, user: UserSession, token: str) -> httpx.Response:
    return await client.post(
        sdk(user.environment_id, "/external-auth/verify"), json={"jwt": token}, headers=user.headers
    )


@pytest.fixture
async def fresh_user(admin: AdminApi) -> UserSession:
    env = await admin.default_environment_id()
    user = await admin.create_user(env, external_id="app-user-42")
    session = await admin.create_session(user["id"], env)
    return UserSession(env, user["id"], session["id"], session["session_token"])


@pytest.fixture
async def key(admin: AdminApi, fresh_user: UserSession) -> ECKey:
    k = ec_key()
    await set_jwks(admin, fresh_user.environment_id, keys=jwks(k))
    return k


@pytest.mark.parametrize("kind", ["ES256", "EdDSA", "RS256"])
async def test_assertion_is_exchanged_for_a_token(
    server_client: httpx.AsyncClient,
    admin: AdminApi,
    fresh_user: UserSession,
    clock: FixedClock,
    kind: str,
) -> None:
    k: Key = {
        "ES256": lambda: ec_key("k"),
        "EdDSA": lambda: OKPKey.generate_key("Ed25519", parameters={"kid": "k"}),
        "RS256": lambda: RSAKey.generate_key(2048, parameters={"kid": "k"}),
    }[kind]()
    await set_jwks(admin, fresh_user.environment_id, keys=jwks(k))
    token = sign(
        k, assertion_claims(clock.now(), fresh_user.user_id, scope="wallet:export credential:link")
    )
    r = await exchange(server_client, fresh_user, token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert sorted(body["scopes"]) == ["credential:link", "wallet:export"]
    claims = claims_of(body["elevated_access_token"])
    assert claims["sub"] == fresh_user.user_id and claims["sid"] == fresh_user.session_id
    assert claims["amr"] == ["ext"]


async def test_sub_may_be_the_external_id_but_never_another_user(
    server_client: httpx.AsyncClient,
    admin: AdminApi,
    fresh_user: UserSession,
    key: ECKey,
    clock: FixedClock,
) -> None:
    r = await exchange(
        server_client, fresh_user, sign(key, assertion_claims(clock.now(), "app-user-42"))
    )
    assert r.status_code == 200, r.text
    other = await admin.create_user(fresh_user.environment_id, external_id="app-user-43")
    for sub in (other["id"], "app-user-43", "", "APP-USER-42"):
        r = await exchange(server_client, fresh_user, sign(key, assertion_claims(clock.now(), sub)))
        assert r.status_code == 400 and r.json()["code"] == "invalid_external_auth", sub


async def test_jti_is_accepted_once(
    server_app: FastAPI,
    server_client: httpx.AsyncClient,
    fresh_user: UserSession,
    key: ECKey,
    clock: FixedClock,
) -> None:
    token = sign(key, assertion_claims(clock.now(), fresh_user.user_id))
    assert (await exchange(server_client, fresh_user, token)).status_code == 200
    r = await exchange(server_client, fresh_user, token)
    assert r.status_code == 400 and r.json()["code"] == "code_used"
    # The same jti in a freshly signed assertion is still a replay.
    jti = claims_of(token)["jti"]
    again = sign(key, assertion_claims(clock.now(), fresh_user.user_id, jti=jti))
    assert (await exchange(server_client, fresh_user, again)).json()["code"] == "code_used"
    # It is remembered until the assertion's expiry.
    async with server_app.state.service.db.session() as s:
        from sqlalchemy import select

        rows = (await s.scalars(select(UsedNonce).where(UsedNonce.key.like("external:%")))).all()
    assert [r.expires_at for r in rows] == [claims_of(token)["exp"]]


async def test_concurrent_replays_give_one_token(
    server_client: httpx.AsyncClient, fresh_user: UserSession, key: ECKey, clock: FixedClock
) -> None:
    token = sign(key, assertion_claims(clock.now(), fresh_user.user_id))
    results = await asyncio.gather(*(exchange(server_client, fresh_user, token) for _ in range(4)))
    assert sorted(r.status_code for r in results) == [200, 400, 400, 400]


@pytest.mark.parametrize(
    "over",
    [
        {"exp": -1},  # expired a second ago
        {"iat": 120, "exp": 240},  # issued 2 minutes in the future
        {"iat": -10, "exp": 600},  # lives longer than 300 s
        {"exp": None},
        {"iat": None},
        {"jti": None},
        {"sub": None},
        {"scope": None},
        {"scope": ""},
        {"nbf": 300},
        {"aud": "env_someone_else"},
        {"iat": "now"},
    ],
    ids=[
        "expired",
        "future-iat",
        "too-long",
        "no-exp",
        "no-iat",
        "no-jti",
        "no-sub",
        "no-scope",
        "empty-scope",
        "nbf",
        "aud",
        "iat-text",
    ],
)
async def test_claims_are_checked(
    server_client: httpx.AsyncClient,
    fresh_user: UserSession,
    key: ECKey,
    clock: FixedClock,
    over: dict[str, Any],
) -> None:
    now = int(clock.now())
    shifted = {
        k: (now + v if isinstance(v, int) and k in ("exp", "iat", "nbf") else v)
        for k, v in over.items()
    }
    claims = assertion_claims(clock.now(), fresh_user.user_id, **shifted)
    r = await exchange(server_client, fresh_user, sign(key, claims))
    assert r.status_code == 400 and r.json()["code"] == "invalid_external_auth", r.text


async def test_aud_must_be_the_environment_when_present(
    server_client: httpx.AsyncClient, fresh_user: UserSession, key: ECKey, clock: FixedClock
) -> None:
    claims = assertion_claims(clock.now(), fresh_user.user_id, aud=fresh_user.environment_id)
    assert (await exchange(server_client, fresh_user, sign(key, claims))).status_code == 200


async def test_untrusted_keys_and_algorithms_are_refused(
    server_client: httpx.AsyncClient, fresh_user: UserSession, key: ECKey, clock: FixedClock
) -> None:
    claims = assertion_claims(clock.now(), fresh_user.user_id)
    impostor = ec_key(key.kid)  # same kid, another key
    stranger = ec_key("stranger")
    header = (
        base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": key.kid}).encode())
        .rstrip(b"=")
        .decode()
    )
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    for token in (
        sign(impostor, claims),
        sign(stranger, claims),
        f"{header}.{payload}.",
        f"{header}.{payload}.AAAA",
        sign(key, claims, jku="http://127.0.0.1:1/jwks"),
    ):
        r = await exchange(server_client, fresh_user, token)
        assert r.status_code == 400 and r.json()["code"] == "invalid_external_auth", token
    # An elevated token of ours is not an assertion either.
    ok = sign(key, assertion_claims(clock.now(), fresh_user.user_id))
    elevated = (await exchange(server_client, fresh_user, ok)).json()["elevated_access_token"]
    assert (await exchange(server_client, fresh_user, elevated)).json()[
        "code"
    ] == "invalid_external_auth"


async def test_not_configured(
    server_client: httpx.AsyncClient, fresh_user: UserSession, clock: FixedClock
) -> None:
    r = await exchange(
        server_client, fresh_user, sign(ec_key(), assertion_claims(clock.now(), fresh_user.user_id))
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_external_auth"


async def test_unknown_scopes_spend_nothing(
    server_client: httpx.AsyncClient, fresh_user: UserSession, key: ECKey, clock: FixedClock
) -> None:
    claims = assertion_claims(clock.now(), fresh_user.user_id, scope="wallet:export no-such:scope")
    r = await exchange(server_client, fresh_user, sign(key, claims))
    assert r.status_code == 422 and r.json()["code"] == "invalid_scopes"


async def test_scope_not_allowed_for_assertions_spends_nothing(
    server_client: httpx.AsyncClient,
    admin: AdminApi,
    fresh_user: UserSession,
    key: ECKey,
    clock: FixedClock,
) -> None:
    env = fresh_user.environment_id
    await admin.set_policy(env, {"scopes": {"user:update": {"allowed_methods": ["passkey"]}}})
    clock.advance(3)  # past the policy cache
    token = sign(key, assertion_claims(clock.now(), fresh_user.user_id, scope="user:update"))
    r = await exchange(server_client, fresh_user, token)
    assert r.status_code == 403 and r.json()["code"] == "method_not_allowed", r.text
    await admin.set_policy(env, {"scopes": {"user:update": {"allowed_methods": None}}})
    clock.advance(3)
    r = await exchange(server_client, fresh_user, token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scopes"] == ["user:update"] and body["single_use"] is False
    assert body["expires_at"] == claims_of(body["elevated_access_token"])["exp"]


async def test_accepted_for_a_user_with_mfa(
    server_client: httpx.AsyncClient, fresh_user: UserSession, key: ECKey, clock: FixedClock
) -> None:
    """The app backend vouches (a server factor): MFA precedence does not refuse it."""
    env = fresh_user.environment_id
    await register_passkey(
        server_client, env, fresh_user.headers, SoftwareAuthenticator("test", "http://test")
    )
    r = await exchange(
        server_client, fresh_user, sign(key, assertion_claims(clock.now(), fresh_user.user_id))
    )
    assert r.status_code == 200, r.text


class JwksServer:
    """A JWKS endpoint that counts its requests."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {"keys": []}
        self.hits = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.hits += 1
        body = json.dumps(self.keys).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def jwks_server() -> Iterator[tuple[JwksServer, str]]:
    app = JwksServer()
    with run_uvicorn_in_thread(app, lifespan="off") as running:
        yield app, f"http://127.0.0.1:{running.port}/.well-known/jwks.json"


async def test_jwks_url_is_fetched_and_cached_by_kid(
    server_client: httpx.AsyncClient,
    admin: AdminApi,
    fresh_user: UserSession,
    clock: FixedClock,
    jwks_server: tuple[JwksServer, str],
) -> None:
    server, url = jwks_server
    first = ec_key("2024-01")
    server.keys = jwks(first)
    await set_jwks(admin, fresh_user.environment_id, url=url)
    for _ in range(3):
        r = await exchange(
            server_client,
            fresh_user,
            sign(first, assertion_claims(clock.now(), fresh_user.user_id)),
        )
        assert r.status_code == 200, r.text
    assert server.hits == 1

    # Rotation: a new kid refetches the set (once the refresh floor has passed).
    second = ec_key("2024-02")
    server.keys = jwks(first, second)
    clock.advance(31)
    r = await exchange(
        server_client, fresh_user, sign(second, assertion_claims(clock.now(), fresh_user.user_id))
    )
    assert r.status_code == 200, r.text
    assert server.hits == 2

    # Made-up kids do not hammer the app's backend: one refetch per 30 s at most.
    for i in range(5):
        bogus = ec_key(f"bogus-{i}")
        r = await exchange(
            server_client,
            fresh_user,
            sign(bogus, assertion_claims(clock.now(), fresh_user.user_id)),
        )
        assert r.json()["code"] == "invalid_external_auth"
    assert server.hits == 2

    # A key removed from the set stops working when the cache expires.
    server.keys = jwks(second)
    clock.advance(301)
    r = await exchange(
        server_client, fresh_user, sign(first, assertion_claims(clock.now(), fresh_user.user_id))
    )
    assert r.json()["code"] == "invalid_external_auth"
    assert server.hits == 3


async def test_unreachable_jwks_url(
    server_client: httpx.AsyncClient, admin: AdminApi, fresh_user: UserSession, clock: FixedClock
) -> None:
    from _services import free_port

    await set_jwks(admin, fresh_user.environment_id, url=f"http://127.0.0.1:{free_port()}/jwks")
    started = time.monotonic()
    r = await exchange(
        server_client, fresh_user, sign(ec_key(), assertion_claims(clock.now(), fresh_user.user_id))
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_external_auth"
    assert time.monotonic() - started < 6


async def test_every_attempt_is_audited(
    server_client: httpx.AsyncClient,
    admin: AdminApi,
    fresh_user: UserSession,
    key: ECKey,
    clock: FixedClock,
) -> None:
    token = sign(key, assertion_claims(clock.now(), fresh_user.user_id))
    await exchange(server_client, fresh_user, token)
    await exchange(server_client, fresh_user, token)
    await exchange(server_client, fresh_user, "not.a.jwt")
    events = await admin.audit(fresh_user.environment_id, action="external.verify")
    assert sorted(e["outcome"] for e in events) == ["code_used", "invalid_external_auth", "success"]
    assert all(e["user_id"] == fresh_user.user_id and e["method"] == "external" for e in events)
    assert token not in json.dumps(events)


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {},
        {"jwt": 5},
        {"jwt": ""},
        {"jwt": "x" * 9000},
        {"jwt": "a.b.c", "extra": 1},
        {"jwt": "ą.ę.ś"},
        {"jwt": "...."},
        {"jwt": "e30.e30.e30"},
    ],
)
async def test_bad_bodies_get_stable_codes(
    server_client: httpx.AsyncClient, fresh_user: UserSession, key: ECKey, body: Any
) -> None:
    r = await server_client.post(
        sdk(fresh_user.environment_id, "/external-auth/verify"),
        json=body,
        headers=fresh_user.headers,
    )
    assert 400 <= r.status_code < 500 and "code" in r.json(), r.text
