"""The ``stepguard`` command line (click's CliRunner against a temporary SQLite database)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from stepguard.cli import main
from stepguard.core.errors import InvalidSession
from stepguard.server.keyring import RETIRED_KEY_GRACE
from stepguard.server.service import StepGuardService
from stepguard.server.settings import Settings

ADMIN_KEY = "sgadm_cli_test_0123456789abcdef0123456789"


class Cli:
    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "cli.db"
        self.env = {
            "STEPGUARD_DATABASE_URL": f"sqlite:///{self.db}",
            "STEPGUARD_DATA_DIR": str(tmp_path / "data"),
            "STEPGUARD_ADMIN_KEY": ADMIN_KEY,
        }
        self.runner = CliRunner()

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return self.runner.invoke(main, list(args), env={**self.env, **(env or {})})

    def ok(self, *args: str) -> dict[str, Any]:
        r = self.run(*args, "--json")
        assert r.exit_code == 0, (r.output, r.stderr if r.stderr_bytes else "")
        return dict(json.loads(r.stdout))

    def fails(self, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
        r = self.run(*args, env=env)
        assert r.exit_code != 0, r.output
        lines = [line for line in r.stderr.splitlines() if line.startswith("{")]
        assert lines, r.stderr
        body = json.loads(lines[-1])
        assert isinstance(body["code"], str) and body["code"], body
        return dict(body)

    def service(self) -> StepGuardService:
        return StepGuardService(Settings.from_env(self.env))


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def _authenticate(cli: Cli, env_id: str, token: str) -> Any:
    async def go() -> Any:
        service = cli.service()
        try:
            return await service.authenticate(env_id, token)
        finally:
            await service.close()

    return asyncio.run(go())


def test_db_upgrade(cli: Cli) -> None:
    r = cli.run("db", "upgrade")
    assert r.exit_code == 0 and "up to date" in r.stdout
    assert cli.db.exists()
    assert cli.run("db", "upgrade").exit_code == 0  # idempotent


def test_admin_commands_end_to_end(cli: Cli) -> None:
    envs = cli.ok("admin", "list-environments")["environments"]
    assert [e["is_default"] for e in envs] == [True]
    default = envs[0]["id"]

    shop = cli.ok("admin", "create-environment", "--name", "shop")
    assert shop["name"] == "shop" and shop["id"].startswith("env_")
    names = {e["name"] for e in cli.ok("admin", "list-environments")["environments"]}
    assert names == {"default", "shop"}

    user = cli.ok("admin", "create-user", "--email", "a@example.com")
    assert user["environment_id"] == default and user["id"].startswith("usr_")
    shop_user = cli.ok(
        "admin", "create-user", "--phone", "+14155550100", "--environment", shop["id"]
    )
    assert shop_user["environment_id"] == shop["id"]

    session = cli.ok("admin", "create-session", "--user", user["id"], "--ttl", "600")
    token = session["session_token"]
    live = _authenticate(cli, default, token)
    assert live.user_id == user["id"] and live.id == session["session_id"]

    revoked = cli.ok("admin", "revoke-session", "--session", session["session_id"])
    assert revoked == {"revoked": True, "session_id": session["session_id"]}
    with pytest.raises(InvalidSession):
        _authenticate(cli, default, token)

    policy = cli.ok(
        "admin",
        "set-policy",
        "--no-enforcement",
        "--methods",
        "totp,passkey",
        "--scope",
        "user:update",
        "--token-behavior",
        "single_use",
        "--ttl",
        "120",
    )
    assert policy["enforcement"] is False
    assert policy["enabled_methods"] == ["passkey", "totp"]
    assert policy["scopes"]["user:update"]["token_behavior"] == "single_use"
    assert policy["scopes"]["user:update"]["ttl_seconds"] == 120
    policy = cli.ok(
        "admin",
        "set-policy",
        "--environment",
        shop["id"],
        "--policy",
        json.dumps({"custom_scopes": ["shop:refund"], "mfa_enabled": False}),
    )
    assert "shop:refund" in policy["scopes"] and policy["mfa_enabled"] is False


def test_human_output_without_json(cli: Cli) -> None:
    r = cli.run("admin", "create-environment", "--name", "plain")
    assert r.exit_code == 0 and r.stdout.startswith("created environment plain: env_")


def test_keys_rotate(cli: Cli) -> None:
    async def jwks_kids(advance: float = 0.0) -> list[str]:
        from stepguard.core.clock import FixedClock

        clock = FixedClock()
        clock.set(__import__("time").time() + advance)
        service = StepGuardService(Settings.from_env(cli.env), clock=clock)
        try:
            await service.start()
            return [k["kid"] for k in (await service.keyring.jwks())["keys"]]
        finally:
            await service.close()

    assert cli.run("db", "upgrade").exit_code == 0
    (first,) = asyncio.run(jwks_kids())
    new = cli.ok("keys", "rotate")["kid"]
    assert new != first
    assert asyncio.run(jwks_kids()) == [new, first]  # old key still verifies
    assert asyncio.run(jwks_kids(RETIRED_KEY_GRACE + 10)) == [new]  # then leaves the JWKS


def test_errors_are_json_with_a_code_and_nonzero_exit(cli: Cli) -> None:
    assert cli.fails("admin", "create-session", "--user", "usr_nope")["code"] == "not_found"
    user = cli.ok("admin", "create-user", "--email", "ttl@example.com")["id"]
    for ttl in ("0", "59", "-5", str(31 * 86_400)):
        # Regression: --ttl 0 silently made a one-day session.
        assert cli.fails("admin", "create-session", "--user", user, "--ttl", ttl)["code"] == (
            "validation_error"
        )
    assert cli.fails("admin", "create-user", "--email", "not-an-email")["code"] == (
        "validation_error"
    )
    assert cli.fails("admin", "create-user", "--phone", "12")["code"] == "validation_error"
    cli.ok("admin", "create-environment", "--name", "twice")
    assert cli.fails("admin", "create-environment", "--name", "twice")["code"] == "conflict"
    assert cli.fails("admin", "create-environment", "--name", " ")["code"] == "validation_error"
    assert cli.fails("admin", "revoke-session", "--session", "ses_nope")["code"] == "not_found"
    assert (
        cli.fails("admin", "create-user", "--email", "b@example.com", "--environment", "env_x")[
            "code"
        ]
        == "not_found"
    )
    assert cli.fails("admin", "set-policy", "--policy", "{not json")["code"] == "validation_error"
    assert cli.fails("admin", "set-policy", "--policy", "[1]")["code"] == "validation_error"
    assert cli.fails("admin", "set-policy", "--ttl", "60")["code"] == "validation_error"
    assert cli.fails("admin", "set-policy", "--methods", "fax")["code"] == "validation_error"
    assert (
        cli.fails("admin", "set-policy", "--scope", "nope:nope", "--ttl", "60")["code"]
        == "invalid_scopes"
    )
    bad_config = cli.fails("db", "upgrade", env={"STEPGUARD_TOKEN_ALGORITHM": "RS256"})
    assert bad_config["code"] == "invalid_configuration"
    bad_number = cli.fails("db", "upgrade", env={"STEPGUARD_MAX_BODY_BYTES": "lots"})
    assert bad_number["code"] == "invalid_configuration"
    unreachable = cli.fails(
        "db", "upgrade", env={"STEPGUARD_DATABASE_URL": "postgresql://u@127.0.0.1:1/none"}
    )
    assert unreachable["code"] == "database_unavailable"


def test_missing_required_option_exits_nonzero(cli: Cli) -> None:
    r = cli.run("admin", "create-session")
    assert r.exit_code == 2 and "--user" in r.output


def test_generated_admin_key_is_printed_once(cli: Cli) -> None:
    env = {"STEPGUARD_ADMIN_KEY": ""}
    first = cli.run("db", "upgrade", env=env)
    assert first.exit_code == 0 and "Generated admin key" in first.stderr
    second = cli.run("db", "upgrade", env=env)
    assert second.exit_code == 0 and "Generated admin key" not in second.stderr
