"""The guard's answer to a missing or insufficient elevation (RFC 9470 §3, RFC 9457).

Every adapter answers the same way: ``401``, a ``WWW-Authenticate: Bearer
error="insufficient_user_authentication", error_description="…", scope="…"`` challenge (plus
``max_age`` when the route asks for a fresh authentication) and an ``application/problem+json``
body carrying the stable ``code`` of DESIGN.md and the required ``scope``. The client SDK reads the
challenge, steps up for ``scope`` and retries once.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from stepguard.core.challenge import (
    ELEVATED_TOKEN_HEADER,
    PROBLEM_CONTENT_TYPE,
    challenge_for,
    problem_body,
)
from stepguard.core.errors import ElevatedTokenError, StepGuardError

from ._check import StepUpRequirement

__all__ = [
    "ELEVATED_TOKEN_HEADER",
    "PROBLEM_CONTENT_TYPE",
    "Challenge",
    "build_challenge",
]


@dataclass(frozen=True, slots=True)
class Challenge:
    """A ready-made HTTP answer: status, headers and the JSON body as bytes."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def content_type(self) -> str:
        return PROBLEM_CONTENT_TYPE

    def header_dict(self) -> dict[str, str]:
        return dict(self.headers)


def build_challenge(
    error: StepGuardError, requirement: StepUpRequirement | None = None
) -> Challenge:
    """The answer for ``error``. Guard errors become an RFC 9470 challenge; other stepguard errors
    (e.g. ``invalid_session`` from the session dependency) a problem body with their own status.

    The required scope and ``max_age`` come from ``requirement`` or, when the error was raised
    inside a framework and caught by its exception handler, from ``error.extra`` (the guard puts
    them there before raising).
    """
    scope = requirement.scope if requirement is not None else None
    max_age = requirement.max_age if requirement is not None else None
    headers: list[tuple[str, str]] = [("Content-Type", PROBLEM_CONTENT_TYPE)]
    if isinstance(error, ElevatedTokenError):
        challenge = challenge_for(error, scope=scope, max_age=max_age)
        headers.extend(challenge.headers().items())
        return Challenge(status=401, headers=tuple(headers), body=orjson.dumps(challenge.problem()))
    body = problem_body(
        error.code, title=error.description, status=error.status, detail=error.detail
    )
    return Challenge(status=error.status, headers=tuple(headers), body=orjson.dumps(body))
