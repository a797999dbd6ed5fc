"""The guard for app backends: enforce elevated scopes on sensitive endpoints.

A pure check (:func:`check_step_up`) plus thin adapters: the FastAPI dependency
:class:`RequireStepUp`, the Starlette decorator :func:`require_step_up` and
:class:`StepUpMiddleware`, and ``stepguard.guard.flask`` / ``stepguard.guard.django`` decorators.
Single-use tokens are consumed exactly once across processes through a :class:`ReplayStore`.
See ``docs/guard.md``.
"""

from __future__ import annotations

from ._asgi import (
    RequireStepUp,
    StepUpMiddleware,
    challenge_response,
    install_guard,
    require_step_up,
)
from ._cache import VerifiedTokenCache
from ._challenge import (
    ELEVATED_TOKEN_HEADER,
    PROBLEM_CONTENT_TYPE,
    Challenge,
    build_challenge,
)
from ._check import Principal, StepUpRequirement, check_step_up
from ._guard import CurrentUser, Elevation, Guard, SyncGuard
from ._keys import JwksKeys, KeySource, LocalKeys
from ._replay import (
    MemoryReplayStore,
    PostgresReplayStore,
    RedisReplayStore,
    ReplayStore,
    Reservation,
    SqliteReplayStore,
    sql_replay_store,
)
from ._session import StepGuardSession, bearer_token

__all__ = [
    "ELEVATED_TOKEN_HEADER",
    "PROBLEM_CONTENT_TYPE",
    "Challenge",
    "CurrentUser",
    "Elevation",
    "Guard",
    "JwksKeys",
    "KeySource",
    "LocalKeys",
    "MemoryReplayStore",
    "PostgresReplayStore",
    "Principal",
    "RedisReplayStore",
    "ReplayStore",
    "RequireStepUp",
    "Reservation",
    "SqliteReplayStore",
    "StepGuardSession",
    "StepUpMiddleware",
    "StepUpRequirement",
    "SyncGuard",
    "VerifiedTokenCache",
    "bearer_token",
    "build_challenge",
    "challenge_response",
    "check_step_up",
    "install_guard",
    "require_step_up",
    "sql_replay_store",
]
