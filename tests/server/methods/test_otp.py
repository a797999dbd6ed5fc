"""Email and SMS one-time codes over HTTP, on SQLite and PostgreSQL.

The email code is read from a real SMTP server (aiosmtpd) and the SMS code from a local HTTP server
shaped like Twilio's API; nothing reaches into the server to learn a code.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
from _server_helpers import AdminApi, UserSession
from fastapi import FastAPI
from sqlalchemy import select, update

from stepguard.core.clock import FixedClock
from stepguard.core.tokens import unverified_claims
from stepguard.server.db import Challenge, Credential

from ._code_flows import FakeTwilio, auth_headers, enroll_totp, link_token, sdk


@pytest.fixture
def settings_overrides(smtp_sink: Any) -> dict[str, Any]:
    return {"smtp_url": smtp_sink.url}


async def send(
    client: httpx.AsyncClient, user: UserSession, body: dict[str, Any] | None = None
) -> httpx.Response:
    return await client.post(
        sdk(user.environment_id, "/otp/send"), json=body or {}, headers=user.headers
    )


async def verify(
    client: httpx.AsyncClient,
    user: UserSession,
    vid: str,
    code: str,
    scopes: list[str] | None = None,
) -> httpx.Response:
    return await client.post(
        sdk(user.environment_id, "/otp/verify"),
        json={"verification_id": vid, "code": code, "requested_scopes": scopes or []},
        headers=user.headers,
    )


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def credential_row(app: FastAPI, user_id: str, kind: str = "email") -> Credential:
    async with app.state.service.db.session() as s:
        return (
            await s.scalars(
                select(Credential).where(Credential.user_id == user_id, Credential.kind == kind)
            )
        ).one()


async def test_email_code_from_smtp_mints_a_token_with_email_amr(
    server_client: httpx.AsyncClient, user_session: UserSession, smtp_sink: Any, clock: FixedClock
) -> None:
    r = await send(server_client, user_session)
    assert r.status_code == 200, r.text
    sent = r.json()
    assert sent["channel"] == "email"
    assert sent["destination"] == "a***e@example.com"
    assert clock.now() < sent["expires_at"] <= clock.now() + 600
    assert sent["resend_after"] >= int(clock.now())
    code = smtp_sink.last_code(to="alice@example.com")
    assert len(code) == 6 and code.isdigit()

    r = await verify(server_client, user_session, sent["verification_id"], code, ["wallet:export"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scopes"] == ["wallet:export"] and body["single_use"] is True
    claims = unverified_claims(body["elevated_access_token"])
    assert claims["amr"] == ["otp", "email"]
    assert claims["sub"] == user_session.user_id and claims["sid"] == user_session.session_id
    assert claims["auth_time"] == int(clock.now())
    assert claims["scope"] == "wallet:export"
    assert claims["exp"] == body["expires_at"] == int(clock.now()) + 300


async def test_verify_without_scopes_only_verifies(
    server_client: httpx.AsyncClient, user_session: UserSession, smtp_sink: Any
) -> None:
    sent = (await send(server_client, user_session)).json()
    r = await verify(
        server_client,
        user_session,
        sent["verification_id"],
        smtp_sink.last_code(to="alice@example.com"),
    )
    assert r.status_code == 200 and r.json() == {"verified": True}


async def test_only_a_keyed_digest_is_stored(
    server_app: FastAPI, server_client: httpx.AsyncClient, user_session: UserSession, smtp_sink: Any
) -> None:
    sent = (await send(server_client, user_session)).json()
    code = smtp_sink.last_code(to="alice@example.com")
    async with server_app.state.service.db.session() as s:
        row = await s.get(Challenge, sent["verification_id"])
    assert row is not None and row.digest is not None
    stored = json.dumps(row.state) + row.digest
    assert code not in stored
    assert len(row.digest) == 64  # HMAC-SHA256 hex
    # The digest is keyed: a plain hash of the code (or of the digest input without the key)
    # does not reproduce it.
    import hashlib

    assert hashlib.sha256(code.encode()).hexdigest() != row.digest


async def test_wrong_code_counts_down_then_the_code_dies(
    server_client: httpx.AsyncClient, user_session: UserSession, smtp_sink: Any
) -> None:
    sent = (await send(server_client, user_session)).json()
    code = smtp_sink.last_code(to="alice@example.com")
    for left in (4, 3, 2, 1, 0):
        r = await verify(server_client, user_session, sent["verification_id"], wrong(code))
        assert r.status_code == 400
        assert r.json()["code"] == "invalid_code" and r.json()["attempts_remaining"] == left
    # Five wrong guesses: even the right code is refused now.
    r = await verify(server_client, user_session, sent["verification_id"], code)
    assert r.status_code in (400, 429)
    assert r.json()["code"] in ("code_expired", "rate_limited")


async def test_concurrent_guesses_get_five_tries_per_code_in_all(
    server_client: httpx.AsyncClient, user_session: UserSession, smtp_sink: Any
) -> None:
    """Guesses fired at once cannot exceed a code's five attempts: each is reserved (committed)
    before the comparison, so the sixth and later find the code dead and compare nothing."""
    sent = (await send(server_client, user_session)).json()
    code = smtp_sink.last_code(to="alice@example.com")
    guesses = [f"{(int(code) + k) % 1_000_000:06d}" for k in range(1, 9)]
    results = await asyncio.gather(
        *(verify(server_client, user_session, sent["verification_id"], g) for g in guesses)
    )
    codes = sorted(r.json()["code"] for r in results)
    assert codes.count("invalid_code") == 5, codes
    assert set(codes) <= {"invalid_code", "code_expired"}, codes
    r = await verify(server_client, user_session, sent["verification_id"], code)
    assert r.status_code in (400, 429) and r.json()["code"] in ("code_expired", "rate_limited")


async def test_expired_code_is_refused(
    server_client: httpx.AsyncClient, user_session: UserSession, smtp_sink: Any, clock: FixedClock
) -> None:
    sent = (await send(server_client, user_session)).json()
    code = smtp_sink.last_code(to="alice@example.com")
    clock.set(sent["expires_at"])
    r = await verify(server_client, user_session, sent["verification_id"], code, ["wallet:export"])
    assert r.status_code == 400 and r.json()["code"] == "code_expired"


async def test_new_code_voids_the_older_one(
    server_client: httpx.AsyncClient, user_session: UserSession, smtp_sink: Any
) -> None:
    first = (await send(server_client, user_session)).json()
    first_code = smtp_sink.last_code(to="alice@example.com")
    second = (await send(server_client, user_session)).json()
    second_code = smtp_sink.last_code(to="alice@example.com")
    r = await verify(server_client, user_session, first["verification_id"], first_code)
    assert r.status_code == 400 and r.json()["code"] == "code_expired"
    r = await verify(server_client, user_session, second["verification_id"], second_code)
    assert r.status_code == 200, r.text


async def test_code_works_once(
    server_client: httpx.AsyncClient, user_session: UserSession, smtp_sink: Any
) -> None:
    sent = (await send(server_client, user_session)).json()
    code = smtp_sink.last_code(to="alice@example.com")
    assert (
        await verify(server_client, user_session, sent["verification_id"], code)
    ).status_code == 200
    r = await verify(server_client, user_session, sent["verification_id"], code, ["wallet:export"])
    assert r.status_code == 400 and r.json()["code"] == "code_used"


async def test_concurrent_submissions_of_one_code_give_one_token(
    server_client: httpx.AsyncClient, user_session: UserSession, smtp_sink: Any
) -> None:
    sent = (await send(server_client, user_session)).json()
    code = smtp_sink.last_code(to="alice@example.com")
    results = await asyncio.gather(
        *(
            verify(server_client, user_session, sent["verification_id"], code, ["wallet:export"])
            for _ in range(4)
        )
    )
    assert sorted(r.status_code for r in results).count(200) == 1
    assert all(r.json().get("code") in (None, "code_used", "code_expired") for r in results)


async def test_code_is_bound_to_its_session_and_user(
    admin: AdminApi, server_client: httpx.AsyncClient, user_session: UserSession, smtp_sink: Any
) -> None:
    sent = (await send(server_client, user_session)).json()
    code = smtp_sink.last_code(to="alice@example.com")
    bob = await admin.user_with_session("bob@example.com")
    other_session = await admin.create_session(user_session.user_id)
    alice2 = UserSession(
        user_session.environment_id,
        user_session.user_id,
        other_session["id"],
        other_session["session_token"],
    )
    for intruder in (bob, alice2):
        r = await verify(server_client, intruder, sent["verification_id"], code, ["wallet:export"])
        assert r.status_code == 400 and r.json()["code"] == "challenge_not_found"
    assert (
        await verify(server_client, user_session, sent["verification_id"], code)
    ).status_code == 200


async def test_resend_does_not_reset_the_lockout_and_the_delay_grows(
    server_app: FastAPI,
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    smtp_sink: Any,
    clock: FixedClock,
) -> None:
    failures = 0
    for _ in range(2):  # two codes, three wrong guesses each, with a resend in between
        sent = (await send(server_client, user_session)).json()
        code = smtp_sink.last_code(to="alice@example.com")
        for _ in range(3):
            r = await verify(server_client, user_session, sent["verification_id"], wrong(code))
            failures += 1
            assert r.status_code == 400
    assert (await credential_row(server_app, user_session.user_id)).failure_count == 6
    # Six consecutive failures across two codes: locked, even for the right code.
    r = await verify(server_client, user_session, sent["verification_id"], code)
    assert r.status_code == 429 and r.json()["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) == 30
    # A locked authenticator gets no new codes either.
    assert (await send(server_client, user_session)).status_code == 429
    clock.advance(31)
    sent = (await send(server_client, user_session)).json()
    code = smtp_sink.last_code(to="alice@example.com")
    r = await verify(server_client, user_session, sent["verification_id"], wrong(code))
    assert r.status_code == 400
    r = await verify(server_client, user_session, sent["verification_id"], code)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) == 60  # doubled
    clock.advance(61)
    r = await verify(server_client, user_session, sent["verification_id"], code)
    assert r.status_code == 200, r.text
    assert (await credential_row(server_app, user_session.user_id)).failure_count == 0


async def test_hard_lock_at_100_consecutive_failures(
    server_app: FastAPI,
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    smtp_sink: Any,
    clock: FixedClock,
) -> None:
    sent = (await send(server_client, user_session)).json()
    code = smtp_sink.last_code(to="alice@example.com")
    async with server_app.state.service.db.transaction() as s:
        await s.execute(
            update(Credential)
            .where(Credential.user_id == user_session.user_id, Credential.kind == "email")
            .values(failure_count=99, locked_until=0.0)
        )
    r = await verify(server_client, user_session, sent["verification_id"], wrong(code))
    assert r.status_code == 400
    clock.advance(3601)  # longer than any growing delay: only an admin reset helps now
    r = await verify(server_client, user_session, sent["verification_id"], code)
    assert r.status_code == 429 and r.json()["locked"] is True


async def test_send_is_throttled_per_destination(
    admin: AdminApi, server_client: httpx.AsyncClient, user_session: UserSession, clock: FixedClock
) -> None:
    for _ in range(3):
        assert (await send(server_client, user_session)).status_code == 200
    r = await send(server_client, user_session)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    events = await admin.audit(user_session.environment_id, action="email_otp.send")
    assert sorted(e["outcome"] for e in events) == ["rate_limited"] + ["success"] * 3
    clock.advance(60)
    assert (await send(server_client, user_session)).status_code == 200


async def test_send_is_throttled_per_user_across_destinations(
    server_app: FastAPI,
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    smtp_sink: Any,
) -> None:
    # A second verified address: five sends spread over two destinations hit the user's bucket.
    token = await link_token(
        server_client,
        user_session.environment_id,
        user_session.session_token,
        "alice@example.com",
        smtp_sink,
    )
    r = await server_client.post(
        sdk(user_session.environment_id, "/credentials/email"),
        json={"email": "alice.two@example.com"},
        headers=auth_headers(user_session.session_token, token),
    )
    assert r.status_code == 201, r.text
    second = r.json()
    r = await verify(
        server_client,
        user_session,
        second["verification_id"],
        smtp_sink.last_code(to="alice.two@example.com"),
    )
    assert r.status_code == 200, r.text
    # Sends so far: 1 (link token) + 1 (linking) = 2 of the user's 5.
    statuses = []
    for cred in (second["credential_id"], None, second["credential_id"], None):
        statuses.append(
            (await send(server_client, user_session, {"credential_id": cred})).status_code
        )
    assert statuses == [200, 200, 200, 429]


async def test_mfa_user_gets_mfa_required_and_keeps_the_code(
    server_client: httpx.AsyncClient, user_session: UserSession, smtp_sink: Any, clock: FixedClock
) -> None:
    env, tok = user_session.environment_id, user_session.session_token
    link = await link_token(server_client, env, tok, "alice@example.com", smtp_sink)
    await enroll_totp(server_client, env, tok, clock, elevated=link)
    sent = (await send(server_client, user_session)).json()
    code = smtp_sink.last_code(to="alice@example.com")
    r = await verify(server_client, user_session, sent["verification_id"], code, ["wallet:export"])
    assert r.status_code == 403 and r.json()["code"] == "mfa_required"
    # The refusal neither spent the code nor counted as a failed guess.
    r = await verify(server_client, user_session, sent["verification_id"], code)
    assert r.status_code == 200 and r.json() == {"verified": True}


async def test_unknown_scope_is_refused_before_the_code_is_spent(
    server_client: httpx.AsyncClient, user_session: UserSession, smtp_sink: Any
) -> None:
    sent = (await send(server_client, user_session)).json()
    code = smtp_sink.last_code(to="alice@example.com")
    r = await verify(server_client, user_session, sent["verification_id"], code, ["nope:nope"])
    assert r.status_code == 422 and r.json()["code"] == "invalid_scopes"
    r = await verify(server_client, user_session, sent["verification_id"], code, ["wallet:export"])
    assert r.status_code == 200, r.text


async def test_email_disabled_in_environment(
    admin: AdminApi, server_client: httpx.AsyncClient, user_session: UserSession
) -> None:
    await admin.set_policy(user_session.environment_id, {"enabled_methods": ["totp", "passkey"]})
    r = await send(server_client, user_session)
    assert r.status_code == 400 and r.json()["code"] == "no_methods_available"


async def test_linking_an_email_needs_credential_link_and_a_code(
    server_app: FastAPI,
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    smtp_sink: Any,
) -> None:
    env, tok = user_session.environment_id, user_session.session_token
    r = await server_client.post(
        sdk(env, "/credentials/email"),
        json={"email": "new@example.com"},
        headers=user_session.headers,
    )
    assert r.status_code == 401 and r.json()["code"] == "elevated_token_required"
    assert smtp_sink.to("new@example.com") == []
    token = await link_token(server_client, env, tok, "alice@example.com", smtp_sink)
    r = await server_client.post(
        sdk(env, "/credentials/email"),
        json={"email": "new@example.com"},
        headers=auth_headers(tok, token),
    )
    assert r.status_code == 201, r.text
    linked = r.json()
    assert linked["destination"] == "n***w@example.com"
    creds = (await server_client.get(sdk(env, "/credentials"), headers=user_session.headers)).json()
    new = next(c for c in creds["credentials"] if c["id"] == linked["credential_id"])
    assert new["verified"] is False
    # A wrong code leaves it unverified; the right one (from the new mailbox) confirms it.
    code = smtp_sink.last_code(to="new@example.com")
    assert (
        await verify(server_client, user_session, linked["verification_id"], wrong(code))
    ).status_code == 400
    r = await verify(server_client, user_session, linked["verification_id"], code)
    assert r.status_code == 200, r.text
    assert r.json()["verified"] is True and r.json()["credential"]["verified"] is True
    # Already linked: a second attempt (by anyone) is a conflict.
    token = await link_token(server_client, env, tok, "alice@example.com", smtp_sink)
    r = await server_client.post(
        sdk(env, "/credentials/email"),
        json={"email": "new@example.com"},
        headers=auth_headers(tok, token),
    )
    assert r.status_code == 409


async def test_sms_is_opt_in_and_goes_through_the_twilio_shaped_provider(
    admin: AdminApi,
    make_server: Any,
    smtp_sink: Any,
    clock: FixedClock,
) -> None:
    twilio = FakeTwilio()
    with twilio.running():
        async with make_server(smtp_url=smtp_sink.url, sms_provider=twilio.provider_url) as app:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://test"
            ) as client:
                from _server_helpers import ADMIN_KEY

                api = AdminApi(client, {"X-StepGuard-Admin-Key": ADMIN_KEY})
                user = await api.user_with_session("carol@example.com")
                env, tok = user.environment_id, user.session_token
                token = await link_token(client, env, tok, "carol@example.com", smtp_sink)
                headers = auth_headers(tok, token)
                r = await client.post(
                    sdk(env, "/credentials/phone"),
                    json={"phone": "+1 415 555 0100"},
                    headers=headers,
                )
                assert r.status_code == 403 and r.json()["code"] == "method_not_allowed"
                assert twilio.requests == []

                await api.set_policy(
                    env,
                    {
                        "enabled_methods": [
                            "email_otp",
                            "sms_otp",
                            "totp",
                            "passkey",
                            "recovery_code",
                        ]
                    },
                )
                clock.advance(3)  # the policy cache lives 2 s
                r = await client.post(
                    sdk(env, "/credentials/phone"),
                    json={"phone": "+1 415 555 0100"},
                    headers=headers,
                )
                assert r.status_code == 201, r.text
                linked = r.json()
                assert linked["channel"] == "sms" and linked["destination"] == "+*******0100"
                req = twilio.requests[-1]
                assert req["path"] == f"/2010-04-01/Accounts/{FakeTwilio.SID}/Messages.json"
                assert req["content_type"].startswith("application/x-www-form-urlencoded")
                import base64

                assert (
                    req["authorization"]
                    == "Basic "
                    + base64.b64encode(f"{FakeTwilio.SID}:{FakeTwilio.TOKEN}".encode()).decode()
                )
                assert req["form"]["To"] == "+14155550100"
                assert req["form"]["From"] == "+15550001111"
                r = await verify(
                    client, user, linked["verification_id"], twilio.last_code("+14155550100")
                )
                assert r.status_code == 200, r.text

                r = await send(client, user, {"credential_id": linked["credential_id"]})
                assert r.status_code == 200, r.text
                r = await verify(
                    client,
                    user,
                    r.json()["verification_id"],
                    twilio.last_code("+14155550100"),
                    ["wallet:sign"],
                )
                assert r.status_code == 200, r.text
                assert unverified_claims(r.json()["elevated_access_token"])["amr"] == ["otp", "sms"]


async def test_provider_failure_is_a_clean_502(
    admin: AdminApi, make_server: Any, smtp_sink: Any
) -> None:
    # The SMTP server is gone: the user gets a stable error, not a 500 or a stack trace.
    url = smtp_sink.url
    smtp_sink.stop()
    async with make_server(smtp_url=url) as app:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            from _server_helpers import ADMIN_KEY

            api = AdminApi(client, {"X-StepGuard-Admin-Key": ADMIN_KEY})
            user = await api.user_with_session("dave@example.com")
            r = await send(client, user)
            assert r.status_code == 502 and r.json()["code"] == "delivery_failed"


async def test_every_attempt_is_audited_without_the_code(
    admin: AdminApi, server_client: httpx.AsyncClient, user_session: UserSession, smtp_sink: Any
) -> None:
    sent = (await send(server_client, user_session)).json()
    code = smtp_sink.last_code(to="alice@example.com")
    await verify(server_client, user_session, sent["verification_id"], wrong(code))
    await verify(server_client, user_session, sent["verification_id"], code, ["wallet:export"])
    events = await admin.audit(user_session.environment_id, user_id=user_session.user_id)
    verifies = [e for e in events if e["action"] == "email_otp.verify"]
    assert sorted(e["outcome"] for e in verifies) == ["invalid_code", "success"]
    assert any(e["action"] == "email_otp.send" for e in events)
    assert all(e["ip"] for e in verifies)
    assert code not in json.dumps(events)


async def test_no_code_seed_or_token_reaches_any_log(
    server_client: httpx.AsyncClient,
    user_session: UserSession,
    smtp_sink: Any,
    clock: FixedClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    env, tok = user_session.environment_id, user_session.session_token
    secrets_seen: list[str] = [tok]
    sent = (await send(server_client, user_session)).json()
    code = smtp_sink.last_code(to="alice@example.com")
    secrets_seen.append(code)
    r = await verify(
        server_client, user_session, sent["verification_id"], code, ["credential:link"]
    )
    link = r.json()["elevated_access_token"]
    secrets_seen.append(link)
    device = await enroll_totp(server_client, env, tok, clock, elevated=link)
    secrets_seen.append(device["secret"])
    r = await server_client.post(
        sdk(env, "/mfa/recovery-codes"),
        json={"generate_new": True},
        headers=auth_headers(tok, (await _fresh_link(server_client, env, tok, device, clock))),
    )
    assert r.status_code == 200, r.text
    codes = r.json()["codes"]
    secrets_seen.extend(codes)
    r = await server_client.post(
        sdk(env, "/mfa/recovery/verify"),
        json={"code": codes[0], "requested_scopes": ["wallet:export"]},
        headers=user_session.headers,
    )
    assert r.status_code == 200, r.text
    secrets_seen.append(r.json()["elevated_access_token"])
    r = await server_client.post(
        sdk(env, "/sign-in/email/send"), json={"email": "alice@example.com"}
    )
    msg = await smtp_sink.wait_for_async(lambda m: "sign-in" in str(m["subject"]))
    sign_in_code = smtp_sink.text_of(msg).split("code is ")[1][:6]
    secrets_seen.append(sign_in_code)
    r = await server_client.post(
        sdk(env, "/sign-in/email/verify"),
        json={"verification_id": r.json()["verification_id"], "code": sign_in_code},
    )
    assert r.status_code == 200, r.text
    secrets_seen.append(r.json()["session_token"])
    # Every record of this process, the database driver's debug output included; only the test's
    # own SMTP sink (aiosmtpd's "mail.log", the mailbox that is meant to see the code) is left out.
    ours = [rec for rec in caplog.records if not rec.name.startswith("mail.log")]
    assert len(ours) > 5, "the flows should have logged (httpx, driver debug lines, ...)"
    logged = "\n".join(rec.getMessage() for rec in ours)
    for secret in secrets_seen:
        assert secret not in logged


async def _fresh_link(
    client: httpx.AsyncClient, env: str, tok: str, device: dict[str, Any], clock: FixedClock
) -> str:
    from ._code_flows import totp_code

    r = await client.post(
        sdk(env, "/mfa/totp/verify"),
        json={"code": totp_code(device["secret"], clock), "requested_scopes": ["credential:link"]},
        headers=auth_headers(tok),
    )
    assert r.status_code == 200, r.text
    clock.advance(30)
    return str(r.json()["elevated_access_token"])


async def test_code_to_a_removed_address_no_longer_works(
    server_client: httpx.AsyncClient, user_session: UserSession, smtp_sink: Any
) -> None:
    env, tok = user_session.environment_id, user_session.session_token
    link = await link_token(server_client, env, tok, "alice@example.com", smtp_sink)
    r = await server_client.post(
        sdk(env, "/credentials/email"),
        json={"email": "old@example.com"},
        headers=auth_headers(tok, link),
    )
    second = r.json()
    code = smtp_sink.last_code(to="old@example.com")
    assert (
        await verify(server_client, user_session, second["verification_id"], code)
    ).status_code == 200
    sent = (
        await send(server_client, user_session, {"credential_id": second["credential_id"]})
    ).json()
    pending = smtp_sink.last_code(to="old@example.com")
    # Remove the address (with a credential:unlink token earned through the other one).
    r = await send(server_client, user_session)
    r = await verify(
        server_client,
        user_session,
        r.json()["verification_id"],
        smtp_sink.last_code(to="alice@example.com"),
        ["credential:unlink"],
    )
    unlink = r.json()["elevated_access_token"]
    r = await server_client.delete(
        sdk(env, f"/credentials/{second['credential_id']}"), headers=auth_headers(tok, unlink)
    )
    assert r.status_code == 200, r.text
    r = await verify(
        server_client, user_session, sent["verification_id"], pending, ["wallet:export"]
    )
    assert r.status_code == 400 and r.json()["code"] == "challenge_not_found"
