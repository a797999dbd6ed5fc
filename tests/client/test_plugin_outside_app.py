"""The test kit as an outside app's test suite sees it: a project of its own (no conftest, none of
this repository's pytest configuration), whose tests use nothing but the ``stepguard`` plugin's
fixtures, run by a separate pytest with warnings as errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

APP_TESTS = '''
"""An app's tests: its own export function, stepped up through stepguard's test kit."""

import stepguard


def export_key(client):
    """The app code under test: check, prompt, then read the token to attach."""
    step_up = client.step_up_auth
    if step_up.is_step_up_required("wallet:export"):
        step_up.prompt_step_up_auth(requested_scopes=["wallet:export"])
    return step_up.get_elevated_access_token("wallet:export")


def test_email_user_steps_up_with_the_captured_code(stepguard_server, stepguard_user):
    with stepguard_server.client(stepguard_user) as client:
        assert export_key(client)  # the kit's prompter read the code the server "sent"
        assert client.step_up_auth.get_elevated_access_token("wallet:export") is None  # spent
    code = stepguard_server.last_code(stepguard_user.email)
    assert len(code) == 6 and code.isdigit()


def test_totp_user_and_the_clock(stepguard_server, stepguard_user, stepguard_clock):
    stepguard_user.add_totp()
    prompter = stepguard_user.prompter()
    with stepguard_server.client(stepguard_user, prompter=prompter) as client:
        token = client.step_up_auth.prompt_step_up_auth(requested_scopes=["user:update"])
        assert client.step_up_auth.is_step_up_required("user:update") is False
        stepguard_clock.advance(601)  # time-bound tokens live 600 s
        assert client.step_up_auth.is_step_up_required("user:update") is True
    assert token and [p.kind.value for p in prompter.prompts] == ["totp_code"]


def test_passkey_wallet_and_recovery_codes(stepguard_server, stepguard_user):
    stepguard_user.link_wallet("solana")
    with stepguard_server.client(stepguard_user) as client:
        assert client.step_up_auth.verify_wallet(requested_scopes=["user:update"])
    stepguard_user.add_passkey()
    codes = stepguard_user.add_recovery_codes()
    with stepguard_server.client(stepguard_user) as client:
        assert client.step_up_auth.verify_passkey_mfa(requested_scopes=["wallet:export"])
        assert client.step_up_auth.verify_recovery_code(codes[0]) is None  # verify only
        try:
            client.step_up_auth.verify_recovery_code(codes[0], requested_scopes=["user:update"])
        except stepguard.VerificationError as exc:
            assert exc.code in ("code_used", "invalid_code")
        else:
            raise AssertionError("a recovery code verified twice")
'''


def test_an_outside_app_uses_the_plugin_fixtures(tmp_path: Path) -> None:
    project = tmp_path / "someapp"
    project.mkdir()
    (project / "test_app.py").write_text(textwrap.dedent(APP_TESTS))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-W",
            "error",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:asyncio",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "3 passed" in out, out[-2000:]
    assert f"rootdir: {project}" in out or "rootdir" not in out  # its own project, not ours
