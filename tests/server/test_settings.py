"""Settings from the environment and a TOML file; database URLs; the generated master secret."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from stepguard.server.settings import Settings, normalize_database_url


def test_defaults() -> None:
    s = Settings()
    assert s.database_url is None and s.admin_key is None and s.smtp_url is None
    assert s.token_algorithm == "EdDSA" and s.public_url == "http://localhost:8000"
    assert s.data_dir == ".stepguard" and s.max_body_bytes == 64 * 1024


def test_from_env_reads_prefixed_variables_with_types() -> None:
    s = Settings.from_env(
        {
            "STEPGUARD_DATABASE_URL": "postgresql://u@h/db",
            "STEPGUARD_PUBLIC_URL": "https://sg.example/",
            "STEPGUARD_ADMIN_KEY": "k" * 40,
            "STEPGUARD_SMTP_URL": "smtp://127.0.0.1:2525",
            "STEPGUARD_SMS_PROVIDER": "console",
            "STEPGUARD_TOKEN_ALGORITHM": "ES256",
            "STEPGUARD_SESSION_TTL_SECONDS": "120",
            "STEPGUARD_MAX_BODY_BYTES": "1000",
            "STEPGUARD_TRUST_PROXY_HEADERS": "yes",
            "STEPGUARD_SECRET_KEY": "",  # empty: unset
            "OTHER_VARIABLE": "ignored",
        }
    )
    assert s.database_url == "postgresql://u@h/db"
    assert s.issuer == "https://sg.example"  # no trailing slash
    assert s.admin_key == "k" * 40 and s.smtp_url == "smtp://127.0.0.1:2525"
    assert s.sms_provider == "console" and s.token_algorithm == "ES256"
    assert s.session_ttl_seconds == 120 and s.max_body_bytes == 1000
    assert s.trust_proxy_headers is True and s.secret_key is None
    assert s.resolved_database_url() == "postgresql+asyncpg://u@h/db"


def test_config_file_and_environment_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "sg.toml"
    cfg.write_text(
        '[stepguard]\npublic_url = "https://file.example"\nmax_body_bytes = 2048\n'
        'smtp_url = "smtp://file:25"\nnot_a_setting = 1\n'
    )
    s = Settings.from_env({"STEPGUARD_SMTP_URL": "smtp://env:25"}, config_file=cfg)
    assert s.public_url == "https://file.example" and s.max_body_bytes == 2048
    assert s.smtp_url == "smtp://env:25"  # the environment wins
    flat = tmp_path / "flat.toml"
    flat.write_text('admin_key = "from-file-0123456789012345678901234567"\n')
    assert Settings.from_env({}, config_file=flat).admin_key.startswith("from-file")  # type: ignore[union-attr]


def test_bad_numbers_in_the_environment_are_refused() -> None:
    with pytest.raises(ValueError):
        Settings.from_env({"STEPGUARD_MAX_BODY_BYTES": "lots"})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h:5432/d", "postgresql+asyncpg://u:p@h:5432/d"),
        ("postgresql://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_database_urls(url: str, expected: str) -> None:
    assert normalize_database_url(url) == expected


def test_default_database_lives_in_the_data_dir(tmp_path: Path) -> None:
    s = Settings(data_dir=str(tmp_path / "d"))
    url = s.resolved_database_url()
    assert url == f"sqlite+aiosqlite:///{(tmp_path / 'd' / 'stepguard.db').resolve()}"
    assert (tmp_path / "d").is_dir()


def test_master_secret_is_generated_once_and_private(tmp_path: Path) -> None:
    s = Settings(data_dir=str(tmp_path / "d"))
    first = s.resolved_secret()
    assert len(first) == 32 and first == s.resolved_secret()
    path = tmp_path / "d" / "secret.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # A new Settings on the same directory reads the same secret.
    assert Settings(data_dir=str(tmp_path / "d")).resolved_secret() == first


def test_configured_master_secret(tmp_path: Path) -> None:
    hexkey = "ab" * 32
    assert Settings(secret_key=hexkey, data_dir=str(tmp_path)).resolved_secret() == bytes.fromhex(
        hexkey
    )
    phrase = "a long passphrase that is over thirty-two characters"
    assert Settings(secret_key=phrase, data_dir=str(tmp_path)).resolved_secret() == phrase.encode()
    with pytest.raises(ValueError):
        Settings(secret_key="short", data_dir=str(tmp_path)).resolved_secret()
    assert not (tmp_path / "secret.key").exists()  # nothing generated when one is configured


def test_with_overrides_ignores_none() -> None:
    s = Settings(public_url="https://a.example").with_overrides(public_url=None, admin_key="k")
    assert s.public_url == "https://a.example" and s.admin_key == "k"
