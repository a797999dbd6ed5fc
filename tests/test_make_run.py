"""``make run``-style smoke test: ``stepguard serve`` as a real process on 127.0.0.1 answers the
JWKS and the discovery document within a bounded time, and stops when terminated."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from _services import free_port

STARTUP_LIMIT = 30.0


def _command() -> list[str]:
    script = shutil.which("stepguard", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "stepguard.cli"]


@pytest.mark.slow
def test_serve_answers_jwks_and_discovery(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "STEPGUARD_DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}",
        "STEPGUARD_DATA_DIR": str(tmp_path / "data"),
        "STEPGUARD_ADMIN_KEY": "",
        "STEPGUARD_PUBLIC_URL": "",
    }
    log = (tmp_path / "serve.log").open("w+b")
    started = time.monotonic()
    proc = subprocess.Popen(
        [*_command(), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-demo"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        jwks = discovery = None
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() - started < STARTUP_LIMIT:
                if proc.poll() is not None:
                    break
                try:
                    jwks = client.get(f"{base}/.well-known/jwks.json")
                    discovery = client.get(f"{base}/.well-known/stepguard-configuration")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
        elapsed = time.monotonic() - started
        log.seek(0)
        output = log.read().decode(errors="replace")
        assert jwks is not None and discovery is not None, (
            f"not serving after {elapsed:.1f}s:\n{output}"
        )
        print(f"\nstepguard serve answered JWKS and discovery after {elapsed:.2f}s")
        assert jwks.status_code == 200 and jwks.json()["keys"][0]["alg"] == "EdDSA"
        doc = discovery.json()
        assert discovery.status_code == 200
        assert doc["issuer"] == f"http://localhost:{port}"
        assert doc["jwks_uri"] == f"http://localhost:{port}/.well-known/jwks.json"
        assert "wallet:export" in doc["scopes"]
        # First start without STEPGUARD_ADMIN_KEY: the generated key is shown once.
        assert "Generated admin key" in output or "generated admin key" in output
        assert (tmp_path / "data" / "secret.key").exists() and (tmp_path / "run.db").exists()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
    assert proc.returncode is not None
