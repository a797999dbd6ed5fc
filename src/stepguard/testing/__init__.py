"""stepguard's test kit for app developers (also a pytest plugin, ``stepguard.testing.plugin``).

* :class:`StepGuardTestServer`: a real stepguard server (uvicorn in a thread, SQLite in a
  temporary directory) with a controllable clock and the codes it sends captured in memory;
* :class:`TestUser`: a user with a session, who enrols factors through the SDK (TOTP with a known
  secret, a software passkey, Ethereum or Solana wallets, recovery codes);
* :class:`AutoPrompter`: answers step-up prompts as the user would;
* :class:`SoftwareAuthenticator`: a WebAuthn authenticator in Python (passkeys without a browser);
* :class:`~stepguard.client.ScriptedPrompter`: answers prompts from a script.

Pytest fixtures (the plugin is registered through the ``pytest11`` entry point):
``stepguard_clock``, ``stepguard_server`` and ``stepguard_user``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stepguard.client import ScriptedPrompter
    from stepguard.testing._authenticator import SoftwareAuthenticator
    from stepguard.testing._server import AutoPrompter, StepGuardTestServer, TestUser

__all__ = [
    "AutoPrompter",
    "ScriptedPrompter",
    "SoftwareAuthenticator",
    "StepGuardTestServer",
    "TestUser",
]

# Loaded on first use: the pytest plugin imports this package in every test run.
_WHERE = {
    "AutoPrompter": "stepguard.testing._server",
    "ScriptedPrompter": "stepguard.client",
    "SoftwareAuthenticator": "stepguard.testing._authenticator",
    "StepGuardTestServer": "stepguard.testing._server",
    "TestUser": "stepguard.testing._server",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'stepguard.testing' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
