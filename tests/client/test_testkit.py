"""The test kit as an app developer uses it: the ``stepguard`` pytest plugin's fixtures, users with
every factor enrolled through the SDK, captured codes, the controllable clock."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import stepguard
import stepguard.testing
from stepguard.client import PromptKind, StepUpCancelled
from stepguard.core.tokens import unverified_claims


def test_the_plugin_is_registered_and_imports_lazily() -> None:
    eps = importlib.metadata.entry_points(group="pytest11")
    assert any(e.name == "stepguard" and e.value == "stepguard.testing.plugin" for e in eps)
    code = (
        "import sys, stepguard.testing.plugin;"
        "assert 'stepguard.client' not in sys.modules and 'stepguard.server' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_names_are_honest() -> None:
    for module in (stepguard, stepguard.testing, stepguard.client):
        assert module.__all__ == sorted(module.__all__)
        for name in module.__all__:
            assert getattr(module, name) is not None, name


def test_fixtures_give_a_server_a_user_and_captured_codes(
    stepguard_server, stepguard_user, stepguard_clock
) -> None:
    assert stepguard_server.clock is stepguard_clock
    with stepguard_server.client(stepguard_user) as client:
        assert client.step_up_auth.is_step_up_required("wallet:export") is True
        client.step_up_auth.send_otp()
        code = stepguard_server.last_code(stepguard_user.email)
        token = client.step_up_auth.verify_otp(code, requested_scopes=["wallet:export"])
        assert unverified_claims(token)["sub"] == stepguard_user.id
        stepguard_clock.advance(301)  # wallet:* tokens live 300 s
        assert client.step_up_auth.is_step_up_required("wallet:export") is True


def test_a_user_with_every_factor(stepguard_server) -> None:
    user = stepguard_server.create_user()
    user.link_wallet("ethereum")  # before MFA: wallets re-authenticate
    user.link_wallet("solana")
    with stepguard_server.client(user) as client:
        assert {w.type for w in client.wallets.list_wallets()} == {"ethereum", "solana"}
        token = client.step_up_auth.verify_wallet(requested_scopes=["user:update"])
        assert unverified_claims(token)["scope"] == "user:update"
    user.add_totp()
    user.add_passkey()
    assert len(user.add_recovery_codes()) == 10
    for prefer, kind in (
        ("totp", PromptKind.TOTP_CODE),
        ("recovery_code", PromptKind.RECOVERY_CODE),
    ):
        prompter = user.prompter(prefer=prefer)
        with stepguard_server.client(user, prompter=prompter) as client:
            token = client.step_up_auth.prompt_step_up_auth(["wallet:export"])
            assert unverified_claims(token)["scope"] == "wallet:export"
        assert prompter.count(kind) == 1
    prompter = user.prompter(prefer="passkey")
    with stepguard_server.client(user, prompter=prompter) as client:
        client.step_up_auth.prompt_step_up_auth(["wallet:export"])
        assert prompter.count() == 1  # only the choice: the passkey needs no code
        devices = client.mfa.list_devices()
        assert {d.type for d in devices} == {"totp", "passkey"}


async def test_async_client_from_the_kit(stepguard_server, stepguard_user) -> None:
    client = stepguard_server.async_client(stepguard_user)
    async with client:
        token = await client.step_up_auth.prompt_step_up_auth(["user:update"])
        assert unverified_claims(token)["sub"] == stepguard_user.id
        client.prompter = stepguard.ScriptedPrompter([None])
        await client.step_up_auth.clear_elevated_tokens()
        stepguard_server.clock.advance(61)
        with pytest.raises(StepUpCancelled):
            await client.step_up_auth.prompt_step_up_auth(["user:update"])
