"""Several processes starting on one fresh database: one migrates, nobody fails or duplicates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

WORKER = """
import asyncio, json, sys
from stepguard.server.service import StepGuardService
from stepguard.server.settings import Settings

async def go():
    s = StepGuardService(Settings(database_url=sys.argv[1], data_dir=sys.argv[2],
                                  secret_key="ab" * 32, admin_key="k" * 24))
    try:
        await s.start()
        envs = await s.list_environments()
        jwks = await s.keyring.jwks()
        print(json.dumps({"envs": len(envs), "keys": len(jwks["keys"])}))
    finally:
        await s.close()

asyncio.run(go())
"""


def test_processes_starting_at_once_share_one_schema_and_default_rows(
    database_url: str, tmp_path: Path
) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, database_url, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-2000:]
        # Exactly one default environment and one signing key, whoever got there first.
        assert out.strip().splitlines()[-1] == '{"envs": 1, "keys": 1}'
