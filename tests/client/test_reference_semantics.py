"""Reference product §9, line by line, against the real server (sync and async): verifying without
scopes, ``send_otp``'s exact messages, the error classes and their codes, the token store through the
client (sessions, file persistence, sign-out), and ``clear_elevated_tokens``."""

from __future__ import annotations

import json
import os
import stat

import httpx
import nacl.signing
import pytest

import stepguard
from stepguard.client import (
    ApiError,
    Client,
    CodeExpired,
    CodeUsed,
    InvalidCode,
    MethodNotAllowed,
    NoMethodsAvailable,
    OtpNotInitiated,
    PromptKind,
    RateLimited,
    ScriptedPrompter,
)
from stepguard.client import _errors as errors
from stepguard.client import _flows as flows
from stepguard.core.clock import FixedClock
from stepguard.core.tokens import unverified_claims

from .conftest import CountingTransport
from .test_store import NOW, jwt

EMAIL = "alice@example.com"


def sent_scopes(request: httpx.Request) -> object:
    return json.loads(request.content).get("requested_scopes")


async def test_without_scopes_every_method_only_verifies_and_returns_none(sg) -> None:
    """The reference's ``requestedScopes`` is optional: without it the factor is verified (a
    wrong code is still refused, a right one is spent) and nothing is minted, stored or
    returned. With scopes the same call returns the token and stores it."""
    user = await sg.user()
    counting = CountingTransport(sg.transport())
    authenticator = sg.authenticator()
    client = sg.client(user, transport=counting, authenticator=authenticator)
    step_up = client.step_up_auth

    # A prompt without scopes: the user is asked (an email code), the code is checked, None.
    prompter = ScriptedPrompter([lambda r: sg.last_code(EMAIL)])
    client.prompter = prompter
    assert await sg.r(step_up.prompt_step_up_auth()) is None
    assert prompter.count(PromptKind.OTP_CODE) == 1 and len(client.tokens) == 0
    client.prompter = None

    # Email code: a wrong one is refused, the right one verifies; the code is then spent.
    sent = await sg.r(step_up.send_otp())
    code = sg.last_code(EMAIL)
    with pytest.raises(InvalidCode):
        await sg.r(step_up.verify_otp("000000" if code != "000000" else "111111"))
    assert await sg.r(step_up.verify_otp(code, requested_scopes=[])) is None
    assert sent_scopes(counting.requests[-1]) == []
    assert step_up.state.otp_verification is None and len(client.tokens) == 0
    step_up.state.otp_verification = sent
    with pytest.raises((CodeUsed, InvalidCode)):  # it really was verified: spent
        await sg.r(step_up.verify_otp(code))

    # With scopes: a string (space-separated works too), stored, answered locally next time.
    sg.clock.advance(61)
    link = await sg.link_token(client, user)
    assert isinstance(link, str) and unverified_claims(link)["scope"] == "credential:link"
    assert len(client.tokens) == 1

    wallet = await sg.r(client.wallets.link(nacl.signing.SigningKey.generate()))
    assert await sg.r(step_up.verify_wallet()) is None
    assert await sg.r(step_up.verify_wallet(wallet.id, requested_scopes=None)) is None
    assert sent_scopes(counting.requests[-1]) == []

    device = await sg.r(client.mfa.add_totp_device())
    user.totp_secret = device.secret
    await sg.r(client.mfa.verify_totp_device(device.id, sg.totp_code(user)))
    assert await sg.r(step_up.verify_totp_mfa(sg.totp_code(user))) is None
    assert await sg.r(step_up.verify_totp_mfa(sg.totp_code(user), device.id)) is None
    with pytest.raises(InvalidCode):
        await sg.r(step_up.verify_totp_mfa("000000"))

    codes = (await sg.r(client.mfa.get_recovery_codes(generate_new=True))).codes
    assert await sg.r(step_up.verify_recovery_code(codes[0])) is None
    with pytest.raises((CodeUsed, InvalidCode)):  # spent by the verification
        await sg.r(step_up.verify_recovery_code(codes[0]))

    await sg.r(client.mfa.register_passkey())
    assert await sg.r(step_up.verify_passkey_mfa()) is None

    client.prompter = ScriptedPrompter([lambda r: sg.totp_code(user)])
    assert await sg.r(step_up.prompt_mfa()) is None
    assert len(client.tokens) == 1  # still only the credential:link token

    token = await sg.r(
        step_up.verify_totp_mfa(sg.totp_code(user), requested_scopes="user:update user:delete")
    )
    assert isinstance(token, str)
    assert set(unverified_claims(token)["scope"].split()) == {"user:update", "user:delete"}
    before = len(counting.requests)
    assert await sg.r(step_up.is_step_up_required("user:delete")) is False
    assert len(counting.requests) == before


async def test_send_otp_refusals_use_the_reference_messages(sg) -> None:
    user = await sg.user()
    client = sg.client(user)
    step_up = client.step_up_auth

    with pytest.raises(ApiError) as caught:
        await sg.r(step_up.send_otp(credential_id="cred_nope"))
    assert str(caught.value) == 'Credential with id "cred_nope" not found'
    assert caught.value.http_status == 404 and step_up.state.error == str(caught.value)

    await sg.link_token(client, user)
    wallet = await sg.r(client.wallets.link(nacl.signing.SigningKey.generate()))
    with pytest.raises(ApiError) as caught:
        await sg.r(step_up.send_otp(wallet.id))
    assert str(caught.value).startswith(
        'Credential format "blockchain" does not support OTP verification'
    )

    # Email sign-in codes switched off in this environment: no eligible credential.
    await sg.set_policy({"enabled_methods": ["totp", "passkey", "recovery_code", "solana"]})
    with pytest.raises(NoMethodsAvailable) as caught:
        await sg.r(step_up.send_otp())
    assert str(caught.value) == (
        "No sign-in enabled email or SMS credential found for step-up authentication"
    )
    assert caught.value.code == "no_methods_available"
    assert step_up.state.otp_verification is None

    # A user with no verified credential at all (signed in through the app's own identity).
    env = sg.environment_id
    bare = await sg.admin("POST", f"/admin/environments/{env}/users", {"external_id": "ext-1"})
    session = await sg.admin("POST", f"/admin/environments/{env}/sessions", {"user_id": bare["id"]})
    nobody = sg.client(None, session_token=session["session_token"])
    with pytest.raises(NoMethodsAvailable) as caught:
        await sg.r(nobody.step_up_auth.send_otp())
    assert str(caught.value) == "No verified credentials found for the authenticated user"


async def test_send_otp_to_a_chosen_credential(sg) -> None:
    phone = "+15555550123"
    await sg.set_policy({"enabled_methods": ["email_otp", "sms_otp", "totp"]})
    user = await sg.user(EMAIL, phone)
    client = sg.client(user)
    creds = {c.format: c.id for c in await sg.r(client.list_credentials())}
    by_default = await sg.r(client.step_up_auth.send_otp())
    assert by_default.channel == "email"  # the reference's default: email first
    chosen = await sg.r(client.step_up_auth.send_otp(credential_id=creds["phone_number"]))
    assert chosen.channel == "sms" and chosen.verification_id != by_default.verification_id
    token = await sg.r(
        client.step_up_auth.verify_otp(sg.last_code(phone), requested_scopes=["user:update"])
    )
    assert unverified_claims(token)["amr"]


async def test_refusals_raise_the_class_of_the_servers_code(sg) -> None:
    user = await sg.user()
    client = sg.client(user)
    step_up = client.step_up_auth

    await sg.r(step_up.send_otp())
    code = sg.last_code(EMAIL)
    sg.clock.advance(301)  # email codes live 300 s
    with pytest.raises(CodeExpired) as expired:
        await sg.r(step_up.verify_otp(code, requested_scopes=["user:update"]))
    assert expired.value.code == "code_expired" and step_up.state.otp_verification is None

    # The email policy for user:update now allows TOTP only: the code is refused before use.
    await sg.set_policy({"scopes": {"user:update": {"allowed_methods": ["totp"]}}})
    await sg.r(step_up.send_otp())
    with pytest.raises(MethodNotAllowed) as refused:
        await sg.r(step_up.verify_otp(sg.last_code(EMAIL), requested_scopes=["user:update"]))
    assert refused.value.code == "method_not_allowed"
    assert step_up.state.error == refused.value.detail

    # Sending again and again: the send throttle answers rate_limited with a wait time.
    with pytest.raises(RateLimited) as limited:
        for _ in range(5):
            await sg.r(step_up.send_otp())
    assert limited.value.code == "rate_limited" and limited.value.retry_after > 0
    for error in (expired.value, refused.value, limited.value):
        assert isinstance(error, stepguard.VerificationError)


@pytest.mark.parametrize(
    "cls",
    [
        errors.InvalidCode,
        errors.CodeExpired,
        errors.CodeUsed,
        errors.RateLimited,
        errors.MethodNotAllowed,
        errors.MfaRequired,
        errors.NoMethodsAvailable,
        errors.InvalidSignature,
        errors.InvalidScopes,
        errors.ChallengeNotFound,
    ],
)
def test_every_verification_code_maps_to_its_class(cls: type[errors.ApiError]) -> None:
    answer = httpx.Response(400, json={"code": cls.code, "error": "refused", "retry_after": 7})
    with Client(
        "http://sg.test", "env1", session_token="s", transport=httpx.MockTransport(lambda r: answer)
    ) as client:
        with pytest.raises(stepguard.VerificationError) as caught:
            client.step_up_auth.verify_totp_mfa("123456", requested_scopes=["user:update"])
    assert type(caught.value) is cls and caught.value.code == cls.code == caught.value.server_code
    assert str(caught.value) == "refused" and client.step_up_auth.state.error == "refused"
    assert getattr(stepguard, cls.__name__) is cls


def test_clear_elevated_tokens_and_switching_sessions() -> None:
    requests: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"is_required": True, "credentials": []})

    clock = FixedClock(NOW)
    with Client(
        "http://sg.test",
        "env1",
        session_token="s1",
        clock=clock,
        transport=httpx.MockTransport(server),
    ) as client:
        step_up = client.step_up_auth
        client.tokens.add(jwt("user:update", NOW + 600))
        assert step_up.is_step_up_required("user:update") is False and requests == []
        step_up.clear_elevated_tokens()
        assert len(client.tokens) == 0
        assert step_up.is_step_up_required("user:update") is True and len(requests) == 1

        client.tokens.add(jwt("user:update", NOW + 600))
        step_up.state.otp_verification = flows.OtpVerification("v1")
        client.set_session("s1")  # the same session: tokens and flow state stay
        assert len(client.tokens) == 1 and step_up.state.otp_verification is not None
        client.set_session("s2")  # another session never inherits them
        assert len(client.tokens) == 0 and step_up.state.otp_verification is None
        with pytest.raises(OtpNotInitiated):
            step_up.verify_otp("123456")


async def test_token_file_is_private_survives_a_restart_and_sign_out_clears_it(sg) -> None:
    user = await sg.user()
    path = sg.tmp / "state" / "tokens.json"
    first = sg.client(user, token_file=path)
    await sg.r(first.step_up_auth.send_otp())
    token = await sg.r(
        first.step_up_auth.verify_otp(sg.last_code(EMAIL), requested_scopes=["user:update"])
    )
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert user.session_token not in path.read_text()  # a fingerprint only

    # A new client (the program restarted) with the same session: the token is back, and the
    # check is answered from it without a network call.
    counting = CountingTransport(sg.transport())
    second = sg.client(user, token_file=path, transport=counting)
    assert second.step_up_auth.get_elevated_access_token("user:update", consume=False) == token
    assert await sg.r(second.step_up_auth.is_step_up_required("user:update")) is False
    assert counting.requests == []

    await sg.r(second.sign_out())
    assert not path.exists() and len(second.tokens) == 0 and second.session_token is None
    third = sg.client(user, token_file=path)
    assert len(third.tokens) == 0


async def test_mfa_namespace_recovery_codes_and_default_device(sg) -> None:
    """``get_recovery_codes()`` creates a set only when there is none and never shows issued
    codes again; ``generate_new=True`` replaces the set (old codes stop working). The step-up
    check names the default MFA device."""
    user = await sg.user()
    client = sg.client(user, authenticator=sg.authenticator())
    first_totp = await sg.enrol_totp(client, user)
    await sg.r(
        client.step_up_auth.verify_totp_mfa(
            sg.totp_code(user), requested_scopes=["credential:link"]
        )
    )
    created = await sg.r(client.mfa.get_recovery_codes())  # none yet: created now, shown once
    assert len(created.codes) == 10 and created.remaining == 10
    again = await sg.r(client.mfa.get_recovery_codes(generate_new=False))
    assert again.codes == () and again.remaining == 10  # digests only: never shown again
    renewed = await sg.r(client.mfa.get_recovery_codes(generate_new=True))
    assert len(renewed.codes) == 10 and not set(renewed.codes) & set(created.codes)
    with pytest.raises((InvalidCode, CodeUsed)):  # the replaced set is void
        await sg.r(client.step_up_auth.verify_recovery_code(created.codes[0]))
    assert await sg.r(client.step_up_auth.verify_recovery_code(renewed.codes[0])) is None
    assert (await sg.r(client.mfa.get_recovery_codes())).remaining == 9

    passkey = await sg.r(client.mfa.register_passkey())
    devices = {d.id: d for d in await sg.r(client.mfa.list_devices())}
    assert {d.type for d in devices.values()} == {"totp", "passkey"}
    assert all(d.verified for d in devices.values())
    made_default = await sg.r(client.mfa.set_default_device(passkey.id))
    assert made_default.default is True
    check = await sg.r(client.step_up_auth.check_step_up_auth("wallet:export"))
    assert check.default_credential_id == passkey.id
    assert first_totp in {c.id for c in check.credentials}
