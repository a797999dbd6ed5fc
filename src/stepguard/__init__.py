"""stepguard: self-hostable step-up authentication (server, client SDK and backend guard).

The client SDK is importable from here::

    import stepguard
    client = stepguard.AsyncClient(base_url=..., environment_id=...)   # stepguard.Client: sync

The names below load :mod:`stepguard.client` on first use, so ``import stepguard.server`` or
``import stepguard.guard`` does not pay for the SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stepguard.client import (
        ApiError,
        AsyncClient,
        Authenticator,
        ChallengeNotFound,
        Client,
        ClientError,
        CodeExpired,
        CodeUsed,
        InvalidCode,
        InvalidExternalAuth,
        InvalidScopes,
        InvalidSignature,
        MethodNotAllowed,
        MfaRequired,
        NoMethodsAvailable,
        OtpNotInitiated,
        Prompter,
        PrompterMissing,
        PromptKind,
        PromptNeeded,
        RateLimited,
        ScriptedPrompter,
        SessionInvalid,
        StepUpCancelled,
        StepUpRequired,
        TokenStore,
        VerificationError,
        WalletSigner,
    )

__all__ = [
    "ApiError",
    "AsyncClient",
    "Authenticator",
    "ChallengeNotFound",
    "Client",
    "ClientError",
    "CodeExpired",
    "CodeUsed",
    "InvalidCode",
    "InvalidExternalAuth",
    "InvalidScopes",
    "InvalidSignature",
    "MethodNotAllowed",
    "MfaRequired",
    "NoMethodsAvailable",
    "OtpNotInitiated",
    "PromptKind",
    "PromptNeeded",
    "Prompter",
    "PrompterMissing",
    "RateLimited",
    "ScriptedPrompter",
    "SessionInvalid",
    "StepUpCancelled",
    "StepUpRequired",
    "TokenStore",
    "VerificationError",
    "WalletSigner",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in __all__:
        value = getattr(importlib.import_module("stepguard.client"), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'stepguard' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
