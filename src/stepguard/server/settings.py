"""Server settings: environment variables, optionally a TOML file given with ``--config``.

Environment variables win over the file. Secrets that are not configured are generated once and
kept under the data directory (``./.stepguard/`` by default) with 0600 permissions.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = ["Settings"]

_ENV_PREFIX = "STEPGUARD_"
_FIELDS = {
    "database_url": str,
    "public_url": str,
    "admin_key": str,
    "smtp_url": str,
    "smtp_from": str,
    "sms_provider": str,
    "secret_key": str,
    "data_dir": str,
    "token_algorithm": str,
    "session_ttl_seconds": int,
    "max_body_bytes": int,
    "trust_proxy_headers": bool,
    "dev_mode": bool,
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server reads from its environment."""

    database_url: str | None = None
    #: Origin used as the token issuer, for WebAuthn (RP id, origin) and in wallet messages.
    public_url: str = "http://localhost:8000"
    admin_key: str | None = None
    smtp_url: str | None = None
    smtp_from: str = "stepguard <no-reply@localhost>"
    sms_provider: str | None = None
    #: Master secret (hex or any >= 32-character string) for sealing keys/seeds and keyed digests.
    secret_key: str | None = None
    data_dir: str = ".stepguard"
    token_algorithm: str = "EdDSA"  # noqa: S105 (an algorithm name)
    session_ttl_seconds: int = 86_400
    max_body_bytes: int = 64 * 1024
    trust_proxy_headers: bool = False
    #: Mount the demo wallet app (``stepguard serve --demo``).
    demo: bool = False
    #: Development conveniences: the dev outbox logs message text and is readable over HTTP.
    #: Never in production (``stepguard serve --demo`` turns it on).
    dev_mode: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, config_file: str | Path | None = None
    ) -> Settings:
        values: dict[str, Any] = {}
        if config_file is not None:
            with open(config_file, "rb") as fh:
                data = tomllib.load(fh)
            section = data.get("stepguard", data)
            for key, value in section.items():
                if key in _FIELDS:
                    values[key] = value
        environ = os.environ if environ is None else environ
        for key, typ in _FIELDS.items():
            raw = environ.get(_ENV_PREFIX + key.upper())
            if raw is None or raw == "":
                continue
            if typ is bool:
                values[key] = raw.strip().lower() in {"1", "true", "yes", "on"}
            elif typ is int:
                values[key] = int(raw)
            else:
                values[key] = raw
        return cls(**values)

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def issuer(self) -> str:
        return self.public_url.rstrip("/")

    def resolved_database_url(self) -> str:
        if self.database_url:
            return normalize_database_url(self.database_url)
        self.data_path.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{(self.data_path / 'stepguard.db').resolve()}"

    def resolved_secret(self) -> bytes:
        """The master secret; generated once into ``<data_dir>/secret.key`` when not configured."""
        if self.secret_key:
            raw = self.secret_key.strip()
            try:
                value = bytes.fromhex(raw)
            except ValueError:
                value = raw.encode()
            if len(value) < 32:
                raise ValueError("STEPGUARD_SECRET_KEY must be at least 32 bytes (64 hex digits)")
            return value
        path = self.data_path / "secret.key"
        if not path.exists():
            self.data_path.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        return bytes.fromhex(path.read_text().strip())


def normalize_database_url(url: str) -> str:
    """Accept plain ``postgresql://`` and ``sqlite:///`` URLs and pick the async drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://") :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url
