"""The browser hand-off over HTTP, without a browser: the SDK side, the page's calls and the
proxy, with the attacks the design must stop (a second claim, another session polling, scope
swapping, routes outside the hand-off, expiry, replaying the result)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from _e2e_helpers import Account, create_account, e2e_settings, outbox_code, running
from fastapi import FastAPI
from sqlalchemy import select

from stepguard.core.clock import FixedClock
from stepguard.server.routes.handoff import Handoff

PUBLIC = "http://localhost:8123"
START = 1_700_000_000.0


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
async def app(tmp_path: Path, clock: FixedClock) -> AsyncIterator[FastAPI]:
    async with running(e2e_settings(tmp_path, public_url=PUBLIC), clock) as app:
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC) as client:
        yield client


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> Account:
    return await create_account(client)


async def start(
    client: httpx.AsyncClient, account: Account, **body: Any
) -> tuple[str, str, dict[str, Any]]:
    """Create a hand-off; returns (id, URL secret, answer)."""
    body.setdefault("kind", "reauthenticate")
    body.setdefault("requested_scopes", ["wallet:export"])
    r = await client.post(account.sdk("handoff"), json=body, headers=account.headers)
    assert r.status_code == 201, r.text
    answer = r.json()
    url = urlsplit(answer["url"])
    assert f"{url.scheme}://{url.netloc}" == PUBLIC
    assert url.path == f"/handoff/{answer['handoff_id']}"
    return answer["handoff_id"], url.fragment, answer


async def claim(client: httpx.AsyncClient, handoff_id: str, secret: str) -> dict[str, str]:
    r = await client.post(f"/handoff/{handoff_id}/claim", json={"secret": secret})
    assert r.status_code == 200, r.text
    return {"X-Handoff-Token": r.json()["browser_token"]}


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def session_id(client: httpx.AsyncClient, account: Account) -> str:
    return str(
        (await client.get(account.sdk("session"), headers=account.headers)).json()["session_id"]
    )


async def test_step_up_in_the_browser_hands_the_token_to_the_sdk_once(
    client: httpx.AsyncClient, alice: Account, app: FastAPI
) -> None:
    handoff_id, secret, answer = await start(client, alice)
    assert answer["requested_scopes"] == ["wallet:export"]
    page = await client.get(f"/handoff/{handoff_id}")
    assert page.status_code == 200 and "/static/handoff.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]

    r = await client.get(alice.sdk(f"handoff/{handoff_id}"), headers=alice.headers)
    assert r.json()["status"] == "pending"
    browser = await claim(client, handoff_id, secret)
    r = await client.post(f"/handoff/{handoff_id}/claim", json={"secret": secret})
    assert (r.status_code, r.json()["code"]) == (400, "code_used"), "a link opens once"
    r = await client.get(alice.sdk(f"handoff/{handoff_id}"), headers=alice.headers)
    assert r.json()["status"] == "claimed"

    proxy = f"/handoff/{handoff_id}/sdk"
    r = await client.post(
        f"{proxy}/step-up/check", json={"scope": "wallet:export"}, headers=browser
    )
    assert r.status_code == 200 and r.json()["is_required"] is True, r.text
    assert [c["format"] for c in r.json()["credentials"]] == ["email"]
    r = await client.post(f"{proxy}/otp/send", json={}, headers=browser)
    assert r.status_code == 200, r.text
    assert r.json()["destination"] != alice.email  # masked
    code = await outbox_code(client, alice)
    # The page asks for a broader scope: the proxy grants only the hand-off's.
    r = await client.post(
        f"{proxy}/otp/verify",
        json={
            "verification_id": r.json()["verification_id"],
            "code": code,
            "requested_scopes": ["user:delete"],
        },
        headers=browser,
    )
    assert r.status_code == 200, r.text
    assert r.json()["handed_off"] is True and r.json()["scopes"] == ["wallet:export"]
    assert "elevated_access_token" not in r.text and "eyJ" not in r.text

    r = await client.get(alice.sdk(f"handoff/{handoff_id}"), headers=alice.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "completed" and body["kind"] == "reauthenticate"
    token = body["result"]["elevated_access_token"]
    claims = claims_of(token)
    assert claims["scope"] == "wallet:export" and claims["sub"] == alice.user_id
    assert claims["sid"] == await session_id(client, alice)

    r = await client.get(alice.sdk(f"handoff/{handoff_id}"), headers=alice.headers)
    assert (r.status_code, r.json()["code"]) == (400, "code_used"), "the result is delivered once"
    r = await client.post(f"{proxy}/otp/send", json={}, headers=browser)
    assert r.status_code == 400 and r.json()["code"] == "code_used", "the page is done"
    async with app.state.service.db.session() as s:
        row = (await s.scalars(select(Handoff).where(Handoff.id == handoff_id))).one()
    assert (row.status, row.session_sealed, row.result_sealed) == ("delivered", None, None)


async def test_the_session_token_is_sealed_at_rest(
    client: httpx.AsyncClient, alice: Account, app: FastAPI
) -> None:
    handoff_id, secret, _ = await start(client, alice)
    async with app.state.service.db.session() as s:
        row = await s.get(Handoff, handoff_id)
    assert row is not None and row.session_sealed
    text = json.dumps([str(getattr(row, c.key)) for c in Handoff.__table__.columns])
    assert alice.session_token not in text and secret not in text


async def test_another_session_cannot_see_or_cancel_the_handoff(
    client: httpx.AsyncClient, alice: Account
) -> None:
    handoff_id, _, _ = await start(client, alice)
    bob = await create_account(client, "bob@example.com")
    admin = {"X-StepGuard-Admin-Key": "sgadm_e2e_0123456789abcdef0123456789abcdef"}
    r = await client.post(
        f"/admin/environments/{alice.environment_id}/sessions",
        json={"user_id": alice.user_id},
        headers=admin,
    )
    alice_elsewhere = Account(
        alice.environment_id, alice.user_id, r.json()["session_token"], alice.email
    )
    for other in (bob, alice_elsewhere):
        r = await client.get(other.sdk(f"handoff/{handoff_id}"), headers=other.headers)
        assert (r.status_code, r.json()["code"]) == (404, "not_found")
        r = await client.delete(other.sdk(f"handoff/{handoff_id}"), headers=other.headers)
        assert r.status_code == 404
    r = await client.get(alice.sdk(f"handoff/{handoff_id}"), headers=alice.headers)
    assert r.json()["status"] == "pending"


async def test_wrong_secret_or_browser_token_is_refused(
    client: httpx.AsyncClient, alice: Account
) -> None:
    handoff_id, secret, _ = await start(client, alice)
    wrong = ("B" if secret[0] == "A" else "A") + secret[1:]
    r = await client.post(f"/handoff/{handoff_id}/claim", json={"secret": wrong})
    assert r.status_code == 404
    r = await client.post("/handoff/hof_nope/claim", json={"secret": secret})
    assert r.status_code == 404
    browser = await claim(client, handoff_id, secret)
    for headers in ({}, {"X-Handoff-Token": browser["X-Handoff-Token"] + "x"}):
        r = await client.get(f"/handoff/{handoff_id}/state", headers=headers)
        assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
        r = await client.post(
            f"/handoff/{handoff_id}/sdk/step-up/check",
            json={"scope": "wallet:export"},
            headers=headers,
        )
        assert r.status_code == 401
    r = await client.get(f"/handoff/{handoff_id}/state", headers=browser)
    assert r.status_code == 200 and r.json()["kind"] == "reauthenticate"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "mfa/totp/devices", {}),  # enrolment: not part of a step-up hand-off
        ("POST", "passkeys/register/options", {}),
        ("GET", "credentials", None),
        ("POST", "mfa/totp/verify", {"code": "123456"}),  # MFA route in a re-auth hand-off
        ("POST", "../../admin/keys/rotate", {}),
        ("POST", "sign-in/email/send", {"email": "alice@example.com"}),
        ("DELETE", "session", None),
    ],
)
async def test_the_proxy_only_reaches_the_routes_of_its_kind(
    client: httpx.AsyncClient, alice: Account, method: str, path: str, body: Any
) -> None:
    handoff_id, secret, _ = await start(client, alice)
    browser = await claim(client, handoff_id, secret)
    r = await client.request(
        method, f"/handoff/{handoff_id}/sdk/{path}", json=body, headers=browser
    )
    assert r.status_code in (404, 405), r.text
    # The session is still alive and the hand-off still open.
    assert (await client.get(alice.sdk("session"), headers=alice.headers)).status_code == 200


async def test_check_is_limited_to_the_handoff_scopes(
    client: httpx.AsyncClient, alice: Account
) -> None:
    handoff_id, secret, _ = await start(client, alice)
    browser = await claim(client, handoff_id, secret)
    r = await client.post(
        f"/handoff/{handoff_id}/sdk/step-up/check", json={"scope": "user:delete"}, headers=browser
    )
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")


async def test_an_expired_handoff_cannot_be_opened_and_polls_expired(
    client: httpx.AsyncClient, alice: Account, clock: FixedClock
) -> None:
    handoff_id, secret, answer = await start(client, alice, ttl_seconds=60)
    assert answer["expires_at"] == START + 60
    clock.advance(61)
    r = await client.post(f"/handoff/{handoff_id}/claim", json={"secret": secret})
    assert (r.status_code, r.json()["code"]) == (400, "code_expired")
    for _ in range(2):
        r = await client.get(alice.sdk(f"handoff/{handoff_id}"), headers=alice.headers)
        assert r.json()["status"] == "expired"


async def test_a_claimed_handoff_expires_for_the_page_too(
    client: httpx.AsyncClient, alice: Account, clock: FixedClock
) -> None:
    handoff_id, secret, _ = await start(client, alice, ttl_seconds=60)
    browser = await claim(client, handoff_id, secret)
    clock.advance(60)
    r = await client.post(f"/handoff/{handoff_id}/sdk/otp/send", json={}, headers=browser)
    assert (r.status_code, r.json()["code"]) == (400, "code_expired")


async def test_cancel_from_the_page_reaches_the_sdk(
    client: httpx.AsyncClient, alice: Account
) -> None:
    handoff_id, secret, _ = await start(client, alice)
    browser = await claim(client, handoff_id, secret)
    r = await client.post(f"/handoff/{handoff_id}/cancel", headers=browser)
    assert r.json() == {"cancelled": True}
    r = await client.get(alice.sdk(f"handoff/{handoff_id}?wait=5"), headers=alice.headers)
    assert r.json()["status"] == "cancelled"
    r = await client.post(f"/handoff/{handoff_id}/sdk/otp/send", json={}, headers=browser)
    assert (r.status_code, r.json()["code"]) == (409, "conflict")


async def test_cancel_from_the_sdk_closes_the_link(
    client: httpx.AsyncClient, alice: Account
) -> None:
    handoff_id, secret, _ = await start(client, alice)
    r = await client.delete(alice.sdk(f"handoff/{handoff_id}"), headers=alice.headers)
    assert r.json() == {"handoff_id": handoff_id, "cancelled": True}
    r = await client.post(f"/handoff/{handoff_id}/claim", json={"secret": secret})
    assert r.json()["code"] == "code_used"


async def test_long_poll_answers_as_soon_as_the_ceremony_completes(
    client: httpx.AsyncClient, alice: Account
) -> None:
    options = {"challenge": "AAAA", "rpId": "localhost", "allowCredentials": []}
    handoff_id, secret, _ = await start(
        client, alice, kind="passkey.get", requested_scopes=[], options=options
    )
    browser = await claim(client, handoff_id, secret)
    r = await client.get(f"/handoff/{handoff_id}/state", headers=browser)
    assert r.json()["options"] == options
    began = time.monotonic()
    poll = asyncio.create_task(
        client.get(alice.sdk(f"handoff/{handoff_id}?wait=20"), headers=alice.headers)
    )
    await asyncio.sleep(0.3)
    assert not poll.done()
    credential = {"id": "cred-1", "type": "public-key", "response": {"signature": "AA"}}
    r = await client.post(
        f"/handoff/{handoff_id}/complete", json={"credential": credential}, headers=browser
    )
    assert r.status_code == 200, r.text
    answer = (await poll).json()
    assert time.monotonic() - began < 2.0
    assert answer["status"] == "completed" and answer["result"] == {"credential": credential}


async def test_a_ceremony_cannot_use_the_proxy_and_a_step_up_cannot_complete_directly(
    client: httpx.AsyncClient, alice: Account
) -> None:
    options = {"challenge": "AAAA", "rp": {"id": "localhost", "name": "x"}}
    ceremony, secret, _ = await start(
        client, alice, kind="passkey.create", requested_scopes=[], options=options
    )
    browser = await claim(client, ceremony, secret)
    r = await client.post(
        f"/handoff/{ceremony}/sdk/step-up/check", json={"scope": "wallet:export"}, headers=browser
    )
    assert r.status_code == 404
    step_up, secret, _ = await start(client, alice)
    browser = await claim(client, step_up, secret)
    r = await client.post(
        f"/handoff/{step_up}/complete",
        json={"credential": {"elevated_access_token": "forged"}},
        headers=browser,
    )
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"kind": "step_up", "requested_scopes": []}, "validation_error"),
        ({"kind": "step_up", "requested_scopes": ["no:such:scope"]}, "invalid_scopes"),
        ({"kind": "passkey.get", "requested_scopes": []}, "validation_error"),
        ({"kind": "enroll", "requested_scopes": ["wallet:export"]}, "validation_error"),
        ({"kind": "mfa", "requested_scopes": ["wallet:export"], "ttl_seconds": 5}, None),
        ({"kind": "steal", "requested_scopes": ["wallet:export"]}, "validation_error"),
    ],
)
async def test_creation_is_validated(
    client: httpx.AsyncClient, alice: Account, body: dict[str, Any], code: str | None
) -> None:
    r = await client.post(alice.sdk("handoff"), json=body, headers=alice.headers)
    assert r.status_code == 422
    if code:
        assert r.json()["code"] == code


async def test_creating_needs_a_session(client: httpx.AsyncClient, alice: Account) -> None:
    r = await client.post(
        alice.sdk("handoff"), json={"kind": "step_up", "requested_scopes": ["wallet:export"]}
    )
    assert (r.status_code, r.json()["code"]) == (401, "invalid_session")


async def test_refusals_come_back_through_the_proxy_unchanged(
    client: httpx.AsyncClient, alice: Account
) -> None:
    handoff_id, secret, _ = await start(client, alice)
    browser = await claim(client, handoff_id, secret)
    proxy = f"/handoff/{handoff_id}/sdk"
    sent = (await client.post(f"{proxy}/otp/send", json={}, headers=browser)).json()
    code = await outbox_code(client, alice)
    wrong = "000000" if code != "000000" else "111111"
    r = await client.post(
        f"{proxy}/otp/verify",
        json={"verification_id": sent["verification_id"], "code": wrong},
        headers=browser,
    )
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_code" and r.json()["attempts_remaining"] == 4
    assert r.headers["content-type"].startswith("application/json")
    r = await client.get(alice.sdk(f"handoff/{handoff_id}"), headers=alice.headers)
    assert r.json()["status"] == "claimed", "a failed attempt leaves the hand-off open"
