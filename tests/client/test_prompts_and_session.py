"""Prompts (MFA vs re-auth routing, retries, cancel), sign-in by email code, sign-out."""

from __future__ import annotations

import pytest

from stepguard.client import (
    InvalidCode,
    NoMethodsAvailable,
    PrompterMissing,
    PromptKind,
    ScriptedPrompter,
    SessionInvalid,
    StepUpCancelled,
)
from stepguard.core.tokens import unverified_claims


async def test_prompt_routes_a_user_without_mfa_to_an_email_code(sg) -> None:
    user = await sg.user()
    prompter = ScriptedPrompter([lambda r: sg.last_code("alice@example.com")])
    client = sg.client(user, prompter=prompter)
    token = await sg.r(client.step_up_auth.prompt_step_up_auth(["wallet:export"]))
    assert unverified_claims(token)["scope"] == "wallet:export"
    assert [p.kind for p in prompter.prompts] == [PromptKind.OTP_CODE]
    assert prompter.prompts[0].destination and "@" in prompter.prompts[0].destination
    assert client.step_up_auth.get_elevated_access_token("wallet:export", consume=False) == token
    # prompt_mfa has nothing to offer this user.
    with pytest.raises(NoMethodsAvailable):
        await sg.r(client.step_up_auth.prompt_mfa(["wallet:export"]))


async def test_prompt_routes_an_mfa_user_to_totp_and_retries_a_wrong_code(sg) -> None:
    user = await sg.user()
    client = sg.client(user)
    await sg.enrol_totp(client, user)
    prompter = ScriptedPrompter(["000000", lambda r: sg.totp_code(user)])
    client.prompter = prompter
    token = await sg.r(client.step_up_auth.prompt_step_up_auth(["user:update"]))
    assert unverified_claims(token)["scope"] == "user:update"
    kinds = [p.kind for p in prompter.prompts]
    assert kinds == [PromptKind.TOTP_CODE, PromptKind.TOTP_CODE]
    assert prompter.prompts[1].error  # the retry says why
    # Re-authentication is not offered to an MFA user.
    with pytest.raises(NoMethodsAvailable, match="reauthentication"):
        await sg.r(client.step_up_auth.prompt_reauthenticate(["user:update"]))


async def test_three_wrong_codes_raise_and_cancel_raises(sg) -> None:
    user = await sg.user()
    client = sg.client(user, prompter=ScriptedPrompter(["000001", "000002", "000003"]))
    with pytest.raises(InvalidCode):
        await sg.r(client.step_up_auth.prompt_reauthenticate(["user:update"]))
    assert len(client.tokens) == 0
    client.prompter = ScriptedPrompter([None])
    sg.clock.advance(61)
    with pytest.raises(StepUpCancelled, match="closed"):
        await sg.r(client.step_up_auth.prompt_step_up_auth(["user:update"]))
    client.prompter = None
    with pytest.raises(PrompterMissing):
        await sg.r(client.step_up_auth.prompt_step_up_auth(["user:update"]))


async def test_choice_between_several_mfa_methods(sg) -> None:
    user = await sg.user()
    authenticator = sg.authenticator()
    client = sg.client(user, authenticator=authenticator)
    await sg.enrol_totp(client, user)
    await sg.r(
        client.step_up_auth.verify_totp_mfa(
            sg.totp_code(user), requested_scopes=["credential:link"]
        )
    )
    passkey = await sg.r(client.mfa.register_passkey())
    prompter = ScriptedPrompter([passkey.id], auto_choose=False)
    client.prompter = prompter
    token = await sg.r(client.step_up_auth.prompt_mfa(["wallet:export"]))
    assert "wallet:export" in unverified_claims(token)["scope"]
    choose = prompter.prompts[0]
    assert choose.kind is PromptKind.CHOOSE_METHOD
    assert {o.format for o in choose.options} >= {"totp", "passkey"}


async def test_sign_in_with_email_and_sign_out(sg) -> None:
    await sg.user()
    client = sg.client(None, prompter=ScriptedPrompter([sg.code_answer()]))
    session = await sg.r(client.sign_in_with_email("alice@example.com"))
    assert session.session_token and client.session_token == session.session_token
    me = await sg.r(client.get_session())
    assert me.user_id == session.user_id
    await sg.r(client.step_up_auth.send_otp())
    sg.clock.advance(1)
    await sg.r(
        client.step_up_auth.verify_otp(
            sg.last_code("alice@example.com"), requested_scopes=["user:update"]
        )
    )
    assert len(client.tokens) == 1
    await sg.r(client.sign_out())
    assert client.session_token is None and len(client.tokens) == 0
    # The revoked session is refused by the server.
    client.set_session(session.session_token)
    with pytest.raises(SessionInvalid):
        await sg.r(client.get_session())


async def test_two_step_sign_in_and_wrong_code(sg) -> None:
    await sg.user()
    client = sg.client(None)
    sent = await sg.r(client.send_sign_in_code("alice@example.com"))
    assert sent.verification_id
    code = await sg.r(sg.code_answer()(None))
    with pytest.raises(InvalidCode):
        await sg.r(client.sign_in_with_email_code("000000" if code != "000000" else "111111"))
    assert client.session_token is None
    session = await sg.r(client.sign_in_with_email_code(code))
    assert client.session_token == session.session_token
