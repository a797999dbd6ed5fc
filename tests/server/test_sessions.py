"""Session tokens: issued by the admin API for an existing user, checked on every user request,
revocable, bounded in lifetime."""

from __future__ import annotations

import httpx
from _server_helpers import AdminApi, UserSession


async def test_session_bounds_and_unknown_users(admin: AdminApi) -> None:
    env = await admin.default_environment_id()
    user = await admin.create_user(env, email="erin@example.com")
    url = f"/admin/environments/{env}/sessions"
    for ttl in (59, 30 * 86_400 + 1, -1, 0):
        r = await admin.request("POST", url, json={"user_id": user["id"], "ttl_seconds": ttl})
        assert r.status_code == 422 and r.json()["code"] == "validation_error", ttl
    r = await admin.request("POST", url, json={"user_id": "usr_nope"})
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    # A user of another environment is unknown here.
    other = await admin.create_environment("other")
    stranger = await admin.create_user(other["id"], email="erin@example.com")
    r = await admin.request("POST", url, json={"user_id": stranger["id"]})
    assert r.status_code == 404
    default = await admin.create_session(user["id"], env)
    assert default["expires_at"] - default["created_at"] == 86_400


async def test_revoke_is_scoped_and_idempotent(admin: AdminApi, user_session: UserSession) -> None:
    other = await admin.create_environment("other")
    r = await admin.request(
        "DELETE", f"/admin/environments/{other['id']}/sessions/{user_session.session_id}"
    )
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    # Still live: the wrong-environment revoke did nothing.
    url = f"/sdk/{user_session.environment_id}/session"
    assert (await admin.client.get(url, headers=user_session.headers)).status_code == 200
    await admin.revoke_session(user_session.environment_id, user_session.session_id)
    await admin.revoke_session(user_session.environment_id, user_session.session_id)
    assert (await admin.client.get(url, headers=user_session.headers)).status_code == 401


async def test_session_token_forms(
    server_client: httpx.AsyncClient, user_session: UserSession
) -> None:
    url = f"/sdk/{user_session.environment_id}/session"
    token = user_session.session_token
    ok = await server_client.get(url, headers={"Authorization": f"bearer {token}"})
    assert ok.status_code == 200  # the scheme is case-insensitive (RFC 7235)
    for headers in (
        {},
        {"Authorization": token},
        {"Authorization": f"Basic {token}"},
        {"Authorization": f"Bearer {token}x"},
        {"Authorization": f"Bearer {token[:-1]}"},
        {"Authorization": "Bearer " + "a" * 5000},
        {"X-StepGuard-Admin-Key": token},
    ):
        r = await server_client.get(url, headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "invalid_session", headers


async def test_one_session_revoked_leaves_the_others(admin: AdminApi) -> None:
    a = await admin.user_with_session("frank@example.com")
    second = await admin.create_session(a.user_id, a.environment_id)
    await admin.revoke_session(a.environment_id, a.session_id)
    url = f"/sdk/{a.environment_id}/session"
    assert (await admin.client.get(url, headers=a.headers)).status_code == 401
    r = await admin.client.get(url, headers={"Authorization": f"Bearer {second['session_token']}"})
    assert r.status_code == 200 and r.json()["session_id"] == second["id"]
