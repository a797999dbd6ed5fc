"""The demo wallet app mounted on the real server: sign-in by session, the three protected
actions, single-use export through the server's own database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from guard_server import ServerKit, running_server
from guardkit import check_challenge


@pytest.fixture
async def kit(tmp_path: Path, database_url: str) -> AsyncIterator[ServerKit]:
    async with running_server(tmp_path, database_url=database_url, demo=True) as kit:
        yield kit


def auth(session: str, elevated: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {session}"}
    if elevated:
        headers["X-Elevated-Access-Token"] = elevated
    return headers


async def test_page_and_sign_in(kit: ServerKit) -> None:
    page = await kit.http.get("/demo/")
    assert page.status_code == 200 and "stepguard demo wallet" in page.text
    assert "<script src" not in page.text and "//cdn" not in page.text
    anonymous = await kit.http.get("/demo/api/me")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "invalid_session"
    token, session = await kit.sign_in()
    me = await kit.http.get("/demo/api/me", headers=auth(token))
    assert me.json()["user_id"] == session.user_id and me.json()["session_id"] == session.id
    config = (await kit.http.get("/demo/api/config")).json()
    assert config["environment_id"] == kit.environment_id


async def test_export_private_key_is_single_use(kit: ServerKit) -> None:
    token, session = await kit.sign_in()
    refused = await kit.http.post("/demo/api/wallet/export", headers=auth(token))
    check_challenge(
        refused.status_code,
        refused.headers,
        refused.content,
        "elevated_token_required",
        scope="wallet:export",
    )

    elevated = await kit.mint(session, ["wallet:export"])
    exported = await kit.http.post("/demo/api/wallet/export", headers=auth(token, elevated))
    assert exported.status_code == 200, exported.text
    wallet = (await kit.http.get("/demo/api/wallet", headers=auth(token))).json()
    from eth_account import Account

    assert Account.from_key(exported.json()["private_key"]).address == wallet["address"]
    replay = await kit.http.post("/demo/api/wallet/export", headers=auth(token, elevated))
    check_challenge(
        replay.status_code,
        replay.headers,
        replay.content,
        "elevated_token_used",
        scope="wallet:export",
    )


async def test_export_with_concurrent_presentations(kit: ServerKit) -> None:
    token, session = await kit.sign_in()
    elevated = await kit.mint(session, ["wallet:export"])
    responses = await asyncio.gather(
        *(
            kit.http.post("/demo/api/wallet/export", headers=auth(token, elevated))
            for _ in range(20)
        )
    )
    assert [r.status_code for r in responses].count(200) == 1


async def test_sign_message_and_update_profile(kit: ServerKit) -> None:
    from eth_account import Account
    from eth_account.messages import encode_defunct

    token, session = await kit.sign_in()
    sign_token = await kit.mint(session, ["wallet:sign"])
    signed = await kit.http.post(
        "/demo/api/wallet/sign", headers=auth(token, sign_token), json={"message": "pay 1 ETH"}
    )
    assert signed.status_code == 200
    body = signed.json()
    recovered = Account.recover_message(
        encode_defunct(text="pay 1 ETH"), signature=body["signature"]
    )
    assert recovered == body["address"]
    # An export token is not a signing token.
    export_token = await kit.mint(session, ["wallet:export"])
    wrong = await kit.http.post(
        "/demo/api/wallet/sign", headers=auth(token, export_token), json={"message": "x"}
    )
    assert wrong.json()["code"] == "scope_not_granted"

    profile_token = await kit.mint(session, ["user:update"])
    for name in ["Alice", "Alice B."]:  # time-bound: reusable
        updated = await kit.http.post(
            "/demo/api/profile", headers=auth(token, profile_token), json={"display_name": name}
        )
        assert updated.status_code == 200 and updated.json()["profile"]["display_name"] == name


async def test_tokens_are_bound_to_user_and_session(kit: ServerKit) -> None:
    alice_token, alice = await kit.sign_in("alice@example.com")
    bob_token, bob = await kit.sign_in("bob@example.com")
    bobs = await kit.mint(bob, ["user:update"])
    stolen = await kit.http.post(
        "/demo/api/profile", headers=auth(alice_token, bobs), json={"display_name": "x"}
    )
    assert stolen.status_code == 401 and stolen.json()["code"] == "subject_mismatch"
    # Alice's token from another of her sessions is refused in this session.
    other_session_token, _ = await kit.service.create_session(kit.environment_id, alice.user_id)
    from_other = await kit.mint(
        await kit.service.authenticate(kit.environment_id, other_session_token), ["user:update"]
    )
    crossed = await kit.http.post(
        "/demo/api/profile", headers=auth(alice_token, from_other), json={"display_name": "x"}
    )
    assert crossed.json()["code"] == "subject_mismatch"
    assert bob_token


async def test_revoked_session_is_refused_after_the_cache_delay(kit: ServerKit) -> None:
    token, session = await kit.sign_in()
    assert (await kit.http.get("/demo/api/me", headers=auth(token))).status_code == 200
    await kit.service.revoke_session(kit.environment_id, session.id)
    kit.clock.advance(2.1)  # the demo caches session answers for 2 s
    refused = await kit.http.get("/demo/api/me", headers=auth(token))
    assert refused.status_code == 401 and refused.json()["code"] == "invalid_session"


def test_asgi_entry_point_mounts_the_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stepguard.asgi import app_from_env

    monkeypatch.setenv("STEPGUARD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STEPGUARD_SECRET_KEY", "ab" * 32)
    monkeypatch.setenv("STEPGUARD_DEMO", "1")
    app = app_from_env()
    assert any(getattr(r, "path", "") == "/demo" for r in app.routes)


@pytest.mark.timeout(90)
def test_stepguard_serve_demo_as_a_process(tmp_path: Path) -> None:
    """``stepguard serve --demo`` (a real process) mounts the demo: a session made through the
    admin API, an email code from the dev outbox, a single-use ``wallet:export`` token that the
    demo's guard accepts once and then refuses with the RFC 9470 challenge."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    import httpx

    from _services import free_port

    port, admin_key = free_port(), "demo-admin-key-" + "k" * 32
    script = shutil.which("stepguard", path=os.path.dirname(sys.executable))
    command = [script] if script else [sys.executable, "-m", "stepguard.cli"]
    env = {
        **os.environ,
        "STEPGUARD_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
        "STEPGUARD_DATA_DIR": str(tmp_path / "data"),
        "STEPGUARD_ADMIN_KEY": admin_key,
        "STEPGUARD_PUBLIC_URL": "",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(port), "--demo"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            start_new_session=True,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as http:
            deadline = time.monotonic() + 45
            while True:
                assert proc.poll() is None, log.read_text(errors="replace")
                try:
                    config = http.get("/demo/api/config")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, log.read_text(errors="replace")
                    time.sleep(0.1)
            assert config.status_code == 200
            env_id = config.json()["environment_id"]
            admin = {"X-StepGuard-Admin-Key": admin_key}
            user = http.post(
                f"/admin/environments/{env_id}/users", headers=admin, json={"email": "a@x.test"}
            ).json()
            made = http.post(
                f"/admin/environments/{env_id}/sessions",
                headers=admin,
                json={"user_id": user["id"]},
            ).json()
            session = {"Authorization": f"Bearer {made['session_token']}"}
            assert http.get("/demo/api/me", headers=session).json()["user_id"] == user["id"]

            challenge = http.post("/demo/api/wallet/export", headers=session)
            assert challenge.status_code == 401
            assert challenge.headers["www-authenticate"].startswith(
                'Bearer error="insufficient_user_authentication"'
            )
            assert challenge.json()["code"] == "elevated_token_required"

            sent = http.post(f"/sdk/{env_id}/otp/send", headers=session, json={}).json()
            outbox = http.get(f"/sdk/{env_id}/dev/outbox").json()["messages"]
            verified = http.post(
                f"/sdk/{env_id}/otp/verify",
                headers=session,
                json={
                    "verification_id": sent["verification_id"],
                    "code": outbox[-1]["code"],
                    "requested_scopes": ["wallet:export"],
                },
            )
            assert verified.status_code == 200, verified.text
            elevated = {
                **session,
                "X-Elevated-Access-Token": verified.json()["elevated_access_token"],
            }
            exported = http.post("/demo/api/wallet/export", headers=elevated)
            assert exported.status_code == 200 and exported.json()["private_key"].startswith("0x")
            replay = http.post("/demo/api/wallet/export", headers=elevated)
            assert replay.status_code == 401 and replay.json()["code"] == "elevated_token_used"
            assert 'scope="wallet:export"' in replay.headers["www-authenticate"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
