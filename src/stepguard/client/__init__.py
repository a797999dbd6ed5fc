"""The stepguard client SDK: step-up checks and verifications, a token store, and an httpx
client for the app's API that attaches elevated tokens and answers step-up challenges.

The logic is written once as sans-IO generators (``_flows``) and run by a sync and an async
driver (``_drivers``); :class:`Client` and :class:`AsyncClient` are thin facades over them.
"""

from __future__ import annotations

from stepguard.client._adapters import (
    Authenticator,
    EthereumSigner,
    Prompter,
    ScriptedPrompter,
    SolanaSigner,
    WalletSigner,
    as_signer,
)
from stepguard.client._client import (
    AsyncClient,
    AsyncMfa,
    AsyncStepUpAuth,
    AsyncWallets,
    Client,
    Mfa,
    StepUpAuth,
    Wallets,
)
from stepguard.client._errors import (
    ApiError,
    ChallengeNotFound,
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
    PrompterMissing,
    RateLimited,
    SessionInvalid,
    StepUpCancelled,
    StepUpRequired,
    VerificationError,
)
from stepguard.client._flows import SCOPE_EXTENSION
from stepguard.client._handoff import BrowserHandoff
from stepguard.client._models import (
    CONTINUE_IN_BROWSER,
    RESEND_CODE,
    Credential,
    MfaDevice,
    OtpVerification,
    PromptKind,
    PromptNeeded,
    RecoveryCodes,
    Session,
    StepUpCheck,
    StepUpState,
    TotpDevice,
)
from stepguard.client._store import StoredToken, TokenStore

__all__ = [
    "ApiError",
    "AsyncClient",
    "AsyncMfa",
    "AsyncStepUpAuth",
    "AsyncWallets",
    "Authenticator",
    "BrowserHandoff",
    "CONTINUE_IN_BROWSER",
    "ChallengeNotFound",
    "Client",
    "ClientError",
    "CodeExpired",
    "CodeUsed",
    "Credential",
    "EthereumSigner",
    "InvalidCode",
    "InvalidExternalAuth",
    "InvalidScopes",
    "InvalidSignature",
    "MethodNotAllowed",
    "Mfa",
    "MfaDevice",
    "MfaRequired",
    "NoMethodsAvailable",
    "OtpNotInitiated",
    "OtpVerification",
    "PromptKind",
    "PromptNeeded",
    "Prompter",
    "PrompterMissing",
    "RESEND_CODE",
    "RateLimited",
    "RecoveryCodes",
    "SCOPE_EXTENSION",
    "ScriptedPrompter",
    "Session",
    "SessionInvalid",
    "SolanaSigner",
    "StepUpAuth",
    "StepUpCancelled",
    "StepUpCheck",
    "StepUpRequired",
    "StepUpState",
    "StoredToken",
    "TokenStore",
    "TotpDevice",
    "VerificationError",
    "WalletSigner",
    "Wallets",
    "as_signer",
]
