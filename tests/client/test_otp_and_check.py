"""The step-up check and the email code, end to end (sync and async) against the real server."""

from __future__ import annotations

import pytest

from stepguard.client import (
    CodeUsed,
    InvalidCode,
    OtpNotInitiated,
    SessionInvalid,
)
from stepguard.core.tokens import unverified_claims

from .conftest import CountingTransport


async def test_check_lists_reauth_credentials_then_local_token_skips_the_network(sg) -> None:
    user = await sg.user()
    counting = CountingTransport(sg.transport())
    client = sg.client(user, transport=counting)
    step_up = client.step_up_auth

    check = await sg.r(step_up.check_step_up_auth("wallet:export"))
    assert check.is_required is True
    assert [c.format for c in check.credentials] == ["email"]
    assert check.default_credential_id == check.credentials[0].id
    assert await sg.r(step_up.is_step_up_required("user:update")) is True

    sent = await sg.r(step_up.send_otp())
    assert sent.channel == "email" and "@" in (sent.destination or "")
    assert step_up.state.otp_verification == sent
    token = await sg.r(
        step_up.verify_otp(sg.last_code("alice@example.com"), requested_scopes=["user:update"])
    )
    claims = unverified_claims(token)
    assert claims["scope"] == "user:update" and claims["sub"] == user.id
    assert claims["single_use"] is False
    assert step_up.state.otp_verification is None  # one verification, one code

    before = len(counting.requests)
    for _ in range(5):
        assert await sg.r(step_up.is_step_up_required("user:update")) is False
        check = await sg.r(step_up.check_step_up_auth("user:update"))
        assert check.is_required is False and check.credentials == ()
    assert len(counting.requests) == before  # the local token answered: zero network calls
    # Another scope still asks the server.
    assert await sg.r(step_up.is_step_up_required("wallet:export")) is True
    assert len(counting.requests) == before + 1


async def test_token_expiry_makes_the_check_ask_again(sg) -> None:
    user = await sg.user()
    client = sg.client(user)
    await sg.r(client.step_up_auth.send_otp())
    await sg.r(
        client.step_up_auth.verify_otp(
            sg.last_code("alice@example.com"), requested_scopes=["user:update"]
        )
    )
    assert await sg.r(client.step_up_auth.is_step_up_required("user:update")) is False
    sg.clock.advance(600)  # time-bound default TTL
    assert await sg.r(client.step_up_auth.is_step_up_required("user:update")) is True
    assert len(client.tokens) == 0


async def test_verify_otp_before_send_is_a_clear_error(sg) -> None:
    counting = CountingTransport(sg.transport())
    client = sg.client(await sg.user(), transport=counting)
    with pytest.raises(OtpNotInitiated, match=r"has not been initiated\. Call send_otp\(\) first"):
        await sg.r(client.step_up_auth.verify_otp("123456", requested_scopes=["user:update"]))
    assert client.step_up_auth.state.error == OtpNotInitiated.description
    await sg.r(client.step_up_auth.reset_state())
    with pytest.raises(OtpNotInitiated):  # also when only verifying (no scopes)
        await sg.r(client.step_up_auth.verify_otp("123456"))
    assert counting.requests == []  # refused locally: the code never left the client


async def test_wrong_code_maps_to_invalid_code_and_keeps_the_verification(sg) -> None:
    user = await sg.user()
    client = sg.client(user)
    step_up = client.step_up_auth
    await sg.r(step_up.send_otp())
    code = sg.last_code("alice@example.com")
    wrong = "000000" if code != "000000" else "111111"
    with pytest.raises(InvalidCode) as caught:
        await sg.r(step_up.verify_otp(wrong, requested_scopes=["user:update"]))
    assert caught.value.code == "invalid_code"
    assert caught.value.http_status == 400
    assert isinstance(caught.value.attempts_remaining, int)
    assert step_up.state.error and step_up.state.otp_verification is not None
    assert len(client.tokens) == 0
    # The right code still works after a wrong one; replaying it does not.
    await sg.r(step_up.verify_otp(code, requested_scopes=["user:update"]))
    await sg.r(step_up.reset_state())
    assert step_up.state.otp_verification is None and step_up.state.error is None
    assert len(client.tokens) == 1  # reset_state never touches tokens
    with pytest.raises(OtpNotInitiated):
        await sg.r(step_up.verify_otp(code, requested_scopes=["user:update"]))


async def test_replayed_code_is_refused(sg) -> None:
    user = await sg.user()
    client = sg.client(user)
    step_up = client.step_up_auth
    sent = await sg.r(step_up.send_otp())
    code = sg.last_code("alice@example.com")
    await sg.r(step_up.verify_otp(code, requested_scopes=["user:update"]))
    step_up.state.otp_verification = sent  # an attacker replays the same verification
    with pytest.raises((CodeUsed, InvalidCode)):
        await sg.r(step_up.verify_otp(code, requested_scopes=["user:update"]))


async def test_check_fails_closed_on_a_bad_session(sg) -> None:
    client = sg.client(None, session_token="not-a-session")
    assert await sg.r(client.step_up_auth.is_step_up_required("wallet:export")) is True
    check = await sg.r(client.step_up_auth.check_step_up_auth("wallet:export"))
    assert check.is_required is True and check.credentials == ()
    with pytest.raises(SessionInvalid):
        await sg.r(client.step_up_auth.send_otp())
