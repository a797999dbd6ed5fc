"""The examples in ``examples/`` run against a real server with the demo wallet app: imported and
called with the test kit's clients, and run as programs with the answer typed on stdin."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from stepguard.client import ScriptedPrompter
from stepguard.core.clock import FixedClock
from stepguard.testing import StepGuardTestServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> ModuleType:
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(EXAMPLES))


@pytest.fixture
def server(tmp_path) -> StepGuardTestServer:
    # The programs read the real clock (their token store drops what it thinks expired), so the
    # server's clock starts at the real time here.
    with StepGuardTestServer(tmp_path / "sg", clock=FixedClock(time.time()), demo=True) as running:
        yield running


async def test_quick_start(server) -> None:
    quick_start = load("quick_start")
    user = server.create_user()
    async with server.async_client(user, api_base_url=server.url + "/demo") as client:
        exported = await quick_start.export_private_key(client)
    assert exported["private_key"].startswith("0x") and exported["address"].startswith("0x")


def test_full_example(server) -> None:
    full = load("full_example")
    user = server.create_user()
    with server.client(user, api_base_url=server.url + "/demo") as client:
        assert full.export_wallet(client) == "Export completed"
        assert client.step_up_auth.state.otp_verification is None
    with server.client(
        user, api_base_url=server.url + "/demo", prompter=ScriptedPrompter([None])
    ) as client:
        server.clock.advance(61)
        assert full.export_wallet(client) == "Error: verification cancelled"
    with server.client(
        user, api_base_url=server.url + "/demo", prompter=ScriptedPrompter(["1", "2", "3"])
    ) as client:
        server.clock.advance(61)
        assert full.export_wallet(client).startswith("Error: invalid_code")


@pytest.mark.parametrize("name", ["quick_start", "full_example"])
def test_examples_run_as_programs(server, name: str) -> None:
    user = server.create_user()
    user.add_totp()  # an MFA user: the one prompt is the authenticator code, known in advance
    env = {
        **os.environ,
        "STEPGUARD_URL": server.url,
        "STEPGUARD_SESSION": user.session_token,
        "STEPGUARD_ENVIRONMENT": server.environment_id,
    }
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")],
        input=user.totp_code() + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-1500:]
    assert ("Export completed" in done.stdout) or ("Exported the key of 0x" in done.stdout)
