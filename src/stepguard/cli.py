"""The ``stepguard`` command line: serve, admin, db, keys, demo.

Admin commands talk to the database directly (``STEPGUARD_DATABASE_URL``), like the server, so they
work before the server runs and need no network.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import click
from sqlalchemy.exc import InterfaceError, OperationalError

from stepguard.core.errors import (
    DatabaseUnavailable,
    InvalidConfiguration,
    StepGuardError,
    ValidationFailed,
)
from stepguard.server.service import StepGuardService
from stepguard.server.settings import Settings

T = TypeVar("T")

__all__ = ["main"]


def _settings(ctx: click.Context) -> Settings:
    obj: dict[str, Any] = ctx.find_root().obj or {}
    settings = Settings.from_env(config_file=obj.get("config"))
    return settings.with_overrides(database_url=obj.get("database_url"))


def _fail(exc: StepGuardError) -> NoReturn:
    """Print the error as JSON (``{"code", "error"}``) on stderr and exit with status 2."""
    click.echo(json.dumps(exc.to_dict()), err=True)
    sys.exit(2)


def _run(ctx: click.Context, fn: Callable[[StepGuardService], Awaitable[T]]) -> T:
    async def go() -> T:
        try:
            service = StepGuardService(_settings(ctx))
        except ValueError as exc:  # a malformed setting (number, algorithm, secret, URL)
            raise InvalidConfiguration(str(exc)) from None
        try:
            generated = await service.start()
            if generated:
                click.echo(f"Generated admin key (shown once): {generated}", err=True)
            return await fn(service)
        finally:
            await service.close()

    try:
        return asyncio.run(go())
    except StepGuardError as exc:
        _fail(exc)
    except (OSError, OperationalError, InterfaceError) as exc:
        _fail(DatabaseUnavailable(f"The database cannot be reached: {type(exc).__name__}"))


def _emit(data: dict[str, Any], as_json: bool, human: str) -> None:
    click.echo(json.dumps(data, indent=None if as_json else 2) if as_json else human)


@click.group()
@click.option("--config", type=click.Path(exists=True, dir_okay=False), help="TOML settings file.")
@click.option("--database-url", envvar="STEPGUARD_DATABASE_URL", help="SQLAlchemy URL.")
@click.pass_context
def main(ctx: click.Context, config: str | None, database_url: str | None) -> None:
    """stepguard: self-hostable step-up authentication."""
    ctx.obj = {"config": config, "database_url": database_url}


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--database-url", "db_url", default=None, help="Overrides STEPGUARD_DATABASE_URL.")
@click.option(
    "--demo/--no-demo", default=False, show_default=True, help="Mount the demo wallet app."
)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.pass_context
def serve(
    ctx: click.Context, host: str, port: int, db_url: str | None, demo: bool, workers: int
) -> None:
    """Migrate the database and serve the API (and the demo)."""
    import uvicorn

    obj = ctx.find_root().obj
    if db_url:
        obj["database_url"] = db_url
    # Workers are separate processes: hand them the settings through the environment.
    if obj.get("database_url"):
        os.environ["STEPGUARD_DATABASE_URL"] = obj["database_url"]
    if obj.get("config"):
        os.environ["STEPGUARD_CONFIG"] = obj["config"]
    if not os.environ.get("STEPGUARD_PUBLIC_URL"):  # empty counts as unset, as in Settings
        shown = "localhost" if host in {"127.0.0.1", "0.0.0.0", "::1"} else host  # noqa: S104
        os.environ["STEPGUARD_PUBLIC_URL"] = f"http://{shown}:{port}"
    os.environ["STEPGUARD_DEMO"] = "1" if demo else "0"
    if demo:
        os.environ["STEPGUARD_DEV_MODE"] = "1"  # the demo reads codes from the dev outbox
    # Migrate once, before any worker starts, so workers never race on the schema.
    _run(ctx, lambda service: asyncio.sleep(0))
    url = os.environ["STEPGUARD_PUBLIC_URL"]
    click.echo(f"stepguard serving on {url}  (JWKS: {url}/.well-known/jwks.json)")
    if demo:
        click.echo(f"Demo wallet app: {url}/demo/")
    uvicorn.run(
        "stepguard.asgi:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
    )


@main.group()
def admin() -> None:
    """Environments, users, sessions and policy (direct database access)."""


def _env_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--environment",
        "environment",
        default=None,
        help="Environment id (default: the default one).",
    )(fn)


def _json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)


async def _env_id(service: StepGuardService, environment: str | None) -> str:
    return (await service.get_environment(environment)).id


@admin.command("create-environment")
@click.option("--name", required=True)
@_json_option
@click.pass_context
def create_environment(ctx: click.Context, name: str, as_json: bool) -> None:
    """Create an environment."""

    async def go(service: StepGuardService) -> dict[str, Any]:
        env = await service.create_environment(name)
        return {"id": env.id, "name": env.name}

    data = _run(ctx, go)
    _emit(data, as_json, f"created environment {data['name']}: {data['id']}")


@admin.command("list-environments")
@_json_option
@click.pass_context
def list_environments(ctx: click.Context, as_json: bool) -> None:
    """List environments."""

    async def go(service: StepGuardService) -> dict[str, Any]:
        envs = await service.list_environments()
        return {
            "environments": [{"id": e.id, "name": e.name, "is_default": e.is_default} for e in envs]
        }

    data = _run(ctx, go)
    human = "\n".join(
        f"{e['id']}  {e['name']}{'  (default)' if e['is_default'] else ''}"
        for e in data["environments"]
    )
    _emit(data, as_json, human)


@admin.command("create-user")
@click.option("--email", default=None)
@click.option("--phone", default=None)
@click.option("--external-id", default=None)
@_env_option
@_json_option
@click.pass_context
def create_user(
    ctx: click.Context,
    email: str | None,
    phone: str | None,
    external_id: str | None,
    environment: str | None,
    as_json: bool,
) -> None:
    """Create a user with an email and/or phone number."""

    async def go(service: StepGuardService) -> dict[str, Any]:
        env_id = await _env_id(service, environment)
        user = await service.create_user(env_id, email=email, phone=phone, external_id=external_id)
        return {"id": user.id, "environment_id": env_id}

    data = _run(ctx, go)
    _emit(data, as_json, f"created user {data['id']}")


@admin.command("create-session")
@click.option("--user", "user_id", required=True)
@click.option("--ttl", "ttl", type=int, default=None, help="Lifetime in seconds.")
@_env_option
@_json_option
@click.pass_context
def create_session(
    ctx: click.Context, user_id: str, ttl: int | None, environment: str | None, as_json: bool
) -> None:
    """Create a session for a user (what an app's backend does after its own login)."""

    async def go(service: StepGuardService) -> dict[str, Any]:
        env_id = await _env_id(service, environment)
        token, row = await service.create_session(env_id, user_id, ttl_seconds=ttl)
        return {"session_token": token, "session_id": row.id, "expires_at": row.expires_at}

    data = _run(ctx, go)
    _emit(data, as_json, f"session {data['session_id']}: {data['session_token']}")


@admin.command("revoke-session")
@click.option("--session", "session_id", required=True)
@_env_option
@_json_option
@click.pass_context
def revoke_session(
    ctx: click.Context, session_id: str, environment: str | None, as_json: bool
) -> None:
    """Revoke a session."""

    async def go(service: StepGuardService) -> dict[str, Any]:
        env_id = await _env_id(service, environment)
        await service.revoke_session(env_id, session_id)
        return {"revoked": True, "session_id": session_id}

    data = _run(ctx, go)
    _emit(data, as_json, f"revoked {session_id}")


@admin.command("set-policy")
@click.option("--policy", "policy_json", default=None, help="Partial policy as JSON.")
@click.option("--enforcement/--no-enforcement", default=None)
@click.option("--mfa/--no-mfa", "mfa_enabled", default=None)
@click.option("--methods", default=None, help="Comma-separated enabled methods.")
@click.option("--scope", default=None, help="Scope whose policy to change.")
@click.option("--token-behavior", type=click.Choice(["single_use", "time_bound"]), default=None)
@click.option("--ttl", type=int, default=None, help="Token lifetime in seconds for --scope.")
@click.option("--required/--not-required", default=None)
@_env_option
@_json_option
@click.pass_context
def set_policy(
    ctx: click.Context,
    policy_json: str | None,
    enforcement: bool | None,
    mfa_enabled: bool | None,
    methods: str | None,
    scope: str | None,
    token_behavior: str | None,
    ttl: int | None,
    required: bool | None,
    environment: str | None,
    as_json: bool,
) -> None:
    """Change an environment's policy (partial update)."""
    try:
        changes: dict[str, Any] = json.loads(policy_json) if policy_json else {}
    except json.JSONDecodeError as exc:
        _fail(ValidationFailed(f"--policy is not JSON: {exc}"))
    if not isinstance(changes, dict):
        _fail(ValidationFailed("--policy must be a JSON object"))
    if enforcement is not None:
        changes["enforcement"] = enforcement
    if mfa_enabled is not None:
        changes["mfa_enabled"] = mfa_enabled
    if methods is not None:
        changes["enabled_methods"] = [m.strip() for m in methods.split(",") if m.strip()]
    scope_changes: dict[str, Any] = {}
    if token_behavior is not None:
        scope_changes["token_behavior"] = token_behavior
    if ttl is not None:
        scope_changes["ttl_seconds"] = ttl
    if required is not None:
        scope_changes["required"] = required
    if scope_changes:
        if not scope:
            _fail(ValidationFailed("--token-behavior/--ttl/--required need --scope"))
        changes.setdefault("scopes", {})[scope] = scope_changes

    async def go(service: StepGuardService) -> dict[str, Any]:
        env_id = await _env_id(service, environment)
        return (await service.set_policy(env_id, changes)).to_dict()

    data = _run(ctx, go)
    _emit(data, as_json, json.dumps(data, indent=2))


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply every pending migration."""
    _run(ctx, lambda service: asyncio.sleep(0))
    click.echo("database is up to date")


@main.group()
def keys() -> None:
    """Token signing keys."""


@keys.command("rotate")
@_json_option
@click.pass_context
def keys_rotate(ctx: click.Context, as_json: bool) -> None:
    """Start signing with a new key; old keys verify until their tokens expire."""

    async def go(service: StepGuardService) -> dict[str, Any]:
        return {"kid": await service.keyring.rotate()}

    data = _run(ctx, go)
    _emit(data, as_json, f"new signing key: {data['kid']}")


@main.command()
@click.option("--url", envvar="STEPGUARD_URL", help="A running server (default: one in process).")
@click.option("--session", envvar="STEPGUARD_SESSION", help="Session token (with --url).")
@click.option("--email", envvar="STEPGUARD_EMAIL", help="Sign in by email code (with --url).")
@click.option("--environment", envvar="STEPGUARD_ENVIRONMENT", help="Environment id (with --url).")
@click.option("--scope", default="wallet:export", show_default=True)
def demo(
    url: str | None,
    session: str | None,
    email: str | None,
    environment: str | None,
    scope: str,
) -> None:
    """Walk through check -> verify -> proceed in the terminal.

    Without --url, a throwaway server runs in process on SQLite (codes shown as hints)."""
    from stepguard.client import Client
    from stepguard.client.prompters import DemoPrompter, dev_outbox_reader, walk_through

    def run(base: str, env: str, token: str | None, api: str) -> bool:
        prompter = DemoPrompter(hint=dev_outbox_reader(base, env))
        with Client(base, env, session_token=token, prompter=prompter, api_base_url=api) as c:
            if token is None:
                if not email:
                    raise click.UsageError("with --url, give --session or --email")
                c.sign_in_with_email(email)
            return walk_through(c, prompter, scope=scope)

    if url:
        import httpx

        if not environment:
            found = httpx.get(f"{url}/.well-known/stepguard-configuration", timeout=10).json()
            environment = str(found["environment_id"])
        ok = run(url, environment, session, url)
    else:
        import logging

        from stepguard.core.clock import SystemClock
        from stepguard.testing import StepGuardTestServer

        logging.getLogger("stepguard").setLevel(logging.ERROR)  # codes show as hints instead
        # The real clock, not the kit's fixed one: codes come from a real authenticator app.
        clock: Any = SystemClock()
        with StepGuardTestServer(clock=clock, dev_mode=True, demo=True) as server:
            user = server.create_user(email="demo@example.com")
            click.echo(f"stepguard demo server on {server.url} (in process, SQLite, throwaway)")
            ok = run(server.url, server.environment_id, user.session_token, server.url)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":  # pragma: no cover
    main()
