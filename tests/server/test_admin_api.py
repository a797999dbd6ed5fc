"""The admin API: environments, users, sessions, policy, revocation, audit log, admin keys."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import httpx
from _server_helpers import ADMIN_KEY, AdminApi, client_for, row_counts
from fastapi import FastAPI
from sqlalchemy import select

from stepguard.server.db import AuditEvent, Credential, ServerState, SessionRow
from stepguard.server.service import hash_token


async def test_default_environment_exists_with_default_policy(admin: AdminApi) -> None:
    r = await admin.request("GET", "/admin/environments")
    envs = r.json()["environments"]
    assert [e["is_default"] for e in envs] == [True]
    policy = envs[0]["policy"]
    assert policy["enforcement"] is True
    assert policy["scopes"]["wallet:export"]["token_behavior"] == "single_use"
    assert policy["scopes"]["wallet:export"]["ttl_seconds"] == 300
    assert policy["scopes"]["user:update"]["token_behavior"] == "time_bound"
    assert policy["scopes"]["user:update"]["ttl_seconds"] == 600


async def test_create_environment_user_and_session(admin: AdminApi, server_app: FastAPI) -> None:
    env = await admin.create_environment("shop")
    assert env["name"] == "shop" and env["is_default"] is False
    r = await admin.request("GET", f"/admin/environments/{env['id']}")
    assert r.status_code == 200 and r.json()["id"] == env["id"]

    user = await admin.create_user(env["id"], email="Bob@Example.COM", phone="+1 (415) 555-0100")
    assert user["environment_id"] == env["id"] and user["id"].startswith("usr_")
    r = await admin.request("GET", f"/admin/environments/{env['id']}/users/{user['id']}")
    kinds = sorted(c["kind"] for c in r.json()["credentials"])
    assert kinds == ["email", "phone"]
    async with server_app.state.service.db.session() as s:
        values = sorted((await s.scalars(select(Credential.value))).all())
    # Domain lower-cased, local part kept; phone in E.164.
    assert values == ["+14155550100", "Bob@example.com"]

    session = await admin.create_session(user["id"], env["id"], ttl_seconds=3600)
    token = session["session_token"]
    assert token.startswith("sgs_") and session["revoked"] is False
    assert session["expires_at"] - session["created_at"] == 3600
    r = await admin.client.get(
        f"/sdk/{env['id']}/session", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] == user["id"] and r.json()["session_id"] == session["id"]

    # The token itself is never stored, only its SHA-256.
    async with server_app.state.service.db.session() as s:
        row = await s.get(SessionRow, session["id"])
    assert row is not None and row.token_hash == hash_token(token) and token not in row.token_hash


async def test_duplicate_environment_and_email_conflict(admin: AdminApi) -> None:
    await admin.create_environment("dup")
    r = await admin.request("POST", "/admin/environments", json={"name": "dup"})
    assert r.status_code == 409 and r.json()["code"] == "conflict"
    env = await admin.default_environment_id()
    await admin.create_user(env, email="carol@example.com")
    r = await admin.request(
        "POST", f"/admin/environments/{env}/users", json={"email": "carol@EXAMPLE.com"}
    )
    assert r.status_code == 409 and r.json()["code"] == "conflict"


async def test_session_of_another_environment_is_refused(admin: AdminApi) -> None:
    other = await admin.create_environment("other")
    us = await admin.user_with_session()
    r = await admin.client.get(f"/sdk/{other['id']}/session", headers=us.headers)
    assert r.status_code == 401 and r.json()["code"] == "invalid_session"


async def test_revoked_session_is_refused(admin: AdminApi) -> None:
    us = await admin.user_with_session()
    assert (
        await admin.client.get(f"/sdk/{us.environment_id}/session", headers=us.headers)
    ).status_code == 200
    await admin.revoke_session(us.environment_id, us.session_id)
    r = await admin.client.get(f"/sdk/{us.environment_id}/session", headers=us.headers)
    assert r.status_code == 401 and r.json()["code"] == "invalid_session"
    r = await admin.request("GET", f"/admin/environments/{us.environment_id}/users/{us.user_id}")
    assert r.status_code == 200  # the user itself stays


async def test_session_expires_with_the_clock(admin: AdminApi, clock: Any) -> None:
    us = await admin.user_with_session()
    session = await admin.create_session(us.user_id, us.environment_id, ttl_seconds=60)
    headers = {"Authorization": f"Bearer {session['session_token']}"}
    url = f"/sdk/{us.environment_id}/session"
    assert (await admin.client.get(url, headers=headers)).status_code == 200
    clock.advance(60)
    r = await admin.client.get(url, headers=headers)
    assert r.status_code == 401 and r.json()["code"] == "invalid_session"
    # The other (24 h) session is unaffected.
    assert (await admin.client.get(url, headers=us.headers)).status_code == 200


async def test_user_signs_out(admin: AdminApi) -> None:
    us = await admin.user_with_session()
    url = f"/sdk/{us.environment_id}/session"
    r = await admin.client.delete(url, headers=us.headers)
    assert r.status_code == 200 and r.json() == {"revoked": True}
    r = await admin.client.get(url, headers=us.headers)
    assert r.status_code == 401 and r.json()["code"] == "invalid_session"


WRONG_ADMIN_HEADERS = {
    "missing": {},
    "empty": {"X-StepGuard-Admin-Key": ""},
    "longer": {"X-StepGuard-Admin-Key": ADMIN_KEY + "x"},
    "shorter": {"X-StepGuard-Admin-Key": ADMIN_KEY[:-1]},
    "other-case": {"X-StepGuard-Admin-Key": ADMIN_KEY.upper()},
    "basic-scheme": {"Authorization": f"Basic {ADMIN_KEY}"},
    "session-like": {"Authorization": "Bearer sgs_not_an_admin_key"},
}


async def test_wrong_or_missing_admin_key(server_client: httpx.AsyncClient) -> None:
    for name, headers in WRONG_ADMIN_HEADERS.items():
        r = await server_client.get("/admin/environments", headers=headers)
        assert r.status_code == 401, name
        assert r.json()["code"] == "invalid_api_key", name


async def test_admin_key_as_bearer_token_works(server_client: httpx.AsyncClient) -> None:
    r = await server_client.get(
        "/admin/environments", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert r.status_code == 200


async def test_set_policy_round_trip(admin: AdminApi) -> None:
    env = await admin.default_environment_id()
    out = await admin.set_policy(
        env,
        {
            "custom_scopes": ["app:report:export"],
            "scopes": {
                "app:report:export": {"token_behavior": "single_use", "ttl_seconds": 120},
                "user:update": {"allowed_methods": ["totp", "passkey"], "max_age": 900},
            },
        },
    )
    assert out["scopes"]["app:report:export"]["token_behavior"] == "single_use"
    assert out["scopes"]["app:report:export"]["ttl_seconds"] == 120
    assert out["scopes"]["user:update"]["allowed_methods"] == ["passkey", "totp"]
    # A later partial update keeps earlier changes.
    out = await admin.set_policy(env, {"enforcement": False})
    assert out["enforcement"] is False
    assert out["scopes"]["app:report:export"]["ttl_seconds"] == 120
    r = await admin.request("GET", f"/admin/environments/{env}")
    assert r.json()["policy"] == out


async def test_removing_a_custom_scope_keeps_the_environment_usable(admin: AdminApi) -> None:
    """Regression: dropping a custom scope that had an override bricked the environment (422
    on every read) because the stored override named a scope that no longer existed."""
    env = await admin.default_environment_id()
    await admin.set_policy(
        env,
        {"custom_scopes": ["app:x:y"], "scopes": {"app:x:y": {"ttl_seconds": 60}}},
    )
    out = await admin.set_policy(env, {"custom_scopes": []})
    assert "app:x:y" not in out["scopes"]
    r = await admin.request("GET", f"/admin/environments/{env}")
    assert r.status_code == 200, r.text
    r = await admin.client.get("/.well-known/stepguard-configuration")
    assert r.status_code == 200 and "app:x:y" not in r.json()["scopes"]


BAD_POLICIES: list[tuple[dict[str, Any], str]] = [
    ({"enforcement": "yes"}, "validation_error"),
    ({"unknown_field": 1}, "validation_error"),
    ({"enabled_methods": ["carrier_pigeon"]}, "validation_error"),
    ({"scopes": {"nope:scope": {"ttl_seconds": 60}}}, "invalid_scopes"),
    ({"scopes": {"wallet:export": {"ttl_seconds": 5}}}, "validation_error"),
    ({"scopes": {"wallet:export": {"ttl_seconds": 10**6}}}, "validation_error"),
    ({"scopes": {"wallet:export": {"token_behavior": "forever"}}}, "validation_error"),
    ({"scopes": {"wallet:export": []}}, "validation_error"),
    ({"custom_scopes": ["Bad Scope"]}, "invalid_scopes"),
    ({"custom_scopes": "app:x:y"}, "validation_error"),
    ({"scopes": {"wallet:export": {"allowed_methods": "totp"}}}, "validation_error"),
    ({"scopes": {"wallet:export": {"allowed_methods": [{"x": 1}]}}}, "validation_error"),
    ({"scopes": {"wallet:export": {"max_age": True}}}, "validation_error"),
    ({"mfa_enabled": None}, "validation_error"),
]


async def test_bad_policy_is_refused_and_nothing_changes(
    admin: AdminApi, server_app: FastAPI
) -> None:
    env = await admin.default_environment_id()
    before = (await admin.request("GET", f"/admin/environments/{env}")).json()["policy"]
    counts = await row_counts(server_app)
    for changes, code in BAD_POLICIES:
        r = await admin.request("PATCH", f"/admin/environments/{env}/policy", json=changes)
        assert r.status_code == 422, (changes, r.text)
        assert r.json()["code"] == code, (changes, r.text)
    after = (await admin.request("GET", f"/admin/environments/{env}")).json()["policy"]
    assert after == before
    assert await row_counts(server_app) == counts  # not even an audit event


async def test_audit_log_has_one_event_per_admin_action(
    admin: AdminApi, server_app: FastAPI
) -> None:
    env_id = await admin.default_environment_id()
    base = len(await admin.audit(env_id))
    user = await admin.create_user(env_id, email="dave@example.com")
    session = await admin.create_session(user["id"], env_id)
    await admin.set_policy(env_id, {"mfa_enabled": False})
    await admin.revoke_session(env_id, session["id"])
    events = await admin.audit(env_id)
    assert len(events) == base + 4
    newest_first = [e["action"] for e in events[:4]]
    assert newest_first == [
        "session.revoke",
        "environment.set_policy",
        "session.create",
        "user.create",
    ]
    assert all(e["actor"] == "admin" and e["outcome"] == "success" for e in events[:4])
    assert events[0]["details"]["session_id"] == session["id"]
    assert events[3]["user_id"] == user["id"]
    # Filters.
    only = await admin.audit(env_id, action="session.create")
    assert [e["details"]["session_id"] for e in only] == [session["id"]]
    assert len(await admin.audit(env_id, limit=1)) == 1
    older = await admin.audit(env_id, before=events[0]["id"])
    assert older[0]["id"] == events[1]["id"]

    # Secrets never reach the log: neither the session token nor the email address.
    async with server_app.state.service.db.session() as s:
        rows = (await s.scalars(select(AuditEvent))).all()
    dump = repr([(r.details, r.scopes, r.action) for r in rows])
    assert session["session_token"] not in dump
    assert "dave@example.com" not in dump


async def test_audit_masks_secret_detail_keys(admin: AdminApi, server_app: FastAPI) -> None:
    """A secret-looking key inside an admin request's details is stored masked."""
    env_id = await admin.default_environment_id()
    # set_policy records the requested changes; a (refused) secret in them must not be logged.
    from stepguard.server.audit import mask

    assert mask({"code": "123456", "nested": {"session_token": "sgs_x"}, "ok": 1}) == {
        "code": "***",
        "nested": {"session_token": "***"},
        "ok": 1,
    }
    await admin.set_policy(env_id, {"mfa_enabled": True})
    events = await admin.audit(env_id, action="environment.set_policy")
    assert events[0]["details"] == {"changes": {"mfa_enabled": True}}


async def test_rotate_keys_via_admin_api_is_audited(admin: AdminApi, server_app: FastAPI) -> None:
    before = (await admin.client.get("/.well-known/jwks.json")).json()["keys"]
    r = await admin.request("POST", "/admin/keys/rotate")
    assert r.status_code == 200
    kid = r.json()["kid"]
    after = (await admin.client.get("/.well-known/jwks.json")).json()["keys"]
    assert [k["kid"] for k in after] == [kid, before[0]["kid"]]
    async with server_app.state.service.db.session() as s:
        events = (
            await s.scalars(select(AuditEvent).where(AuditEvent.action == "signing_key.rotate"))
        ).all()
    assert [(e.actor, e.details) for e in events] == [
        ("admin", {"kid": kid, "retired": [before[0]["kid"]]})
    ]


async def test_generated_admin_key_works_and_is_stored_hashed(
    make_server: Callable[..., contextlib.AbstractAsyncContextManager[FastAPI]],
) -> None:
    async with make_server(admin_key=None) as app:
        key = app.state.generated_admin_key
        assert isinstance(key, str) and key.startswith("sgadm_") and len(key) > 40
        async with client_for(app) as client:
            ok = await client.get("/admin/environments", headers={"X-StepGuard-Admin-Key": key})
            assert ok.status_code == 200
            bad = await client.get(
                "/admin/environments",
                headers={"X-StepGuard-Admin-Key": key[:-1] + ("A" if key[-1] != "A" else "B")},
            )
            assert bad.status_code == 401 and bad.json()["code"] == "invalid_api_key"
        async with app.state.service.db.session() as s:
            rows = (await s.scalars(select(ServerState))).all()
            events = (await s.scalars(select(AuditEvent))).all()
        stored = {r.key: r.value for r in rows}
        assert stored["admin_key_hash"] == hash_token(key)
        assert all(key not in v for v in stored.values())
        assert all(key not in repr(e.details) for e in events)
        assert "admin_key.generate" in [e.action for e in events]
    # A restart neither prints a new key nor invalidates the stored one.
    async with make_server(admin_key=None) as app:
        assert app.state.generated_admin_key is None
        async with client_for(app) as client:
            ok = await client.get("/admin/environments", headers={"X-StepGuard-Admin-Key": key})
            assert ok.status_code == 200


async def test_session_ip_in_audit_respects_trust_proxy_headers(
    admin: AdminApi,
    make_server: Callable[..., contextlib.AbstractAsyncContextManager[FastAPI]],
) -> None:
    headers = {"X-Forwarded-For": "203.0.113.7, 10.0.0.1"}
    us = await admin.user_with_session()
    await admin.client.post(
        f"/admin/environments/{us.environment_id}/sessions",
        json={"user_id": us.user_id},
        headers={**admin.headers, **headers},
    )
    untrusted = await admin.audit(us.environment_id, action="session.create", limit=1)
    assert untrusted[0]["ip"] == "127.0.0.1"  # the peer, not the spoofable header
    async with make_server(trust_proxy_headers=True) as app, client_for(app) as client:
        r = await client.post(
            f"/admin/environments/{us.environment_id}/sessions",
            json={"user_id": us.user_id},
            headers={**admin.headers, **headers},
        )
        assert r.status_code == 201
        trusted = await AdminApi(client, admin.headers).audit(
            us.environment_id, action="session.create", limit=1
        )
    assert trusted[0]["ip"] == "203.0.113.7"


async def test_unexpected_errors_are_json_500(server_settings: Any, clock: Any) -> None:
    from fastapi import APIRouter

    from stepguard.server.app import create_app

    broken = APIRouter()

    @broken.get("/broken")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    app = create_app(server_settings, clock=clock, routers=[broken])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            r = await client.get("/broken")
    assert r.status_code == 500
    assert r.json() == {
        "code": "internal_error",
        "error": "The server failed to handle the request.",
    }
    assert "secret internals" not in r.text
