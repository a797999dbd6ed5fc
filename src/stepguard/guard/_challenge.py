"""The guard's answer to a missing or insufficient elevation (RFC 9470 §3, RFC 9457).

Every adapter answers the same way: ``401``, a ``WWW-Authenticate: Bearer
error="insufficient_user_authentication", error_description="…", scope="…"`` challenge (plus
``max_age`` when the route asks for a fresh authentication) and an ``application/problem+json``
body carrying the stable ``code`` of DESIGN.md and the required ``scope``. The client SDK reads the
challenge, steps up for ``scope`` and retries once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from stepguard.core.errors import AuthTooOld, ElevatedTokenError, StepGuardError

from ._check import StepUpRequirement

__all__ = [
    "ELEVATED_TOKEN_HEADER",
    "PROBLEM_CONTENT_TYPE",
    "Challenge",
    "build_challenge",
]

#: The request header that carries the elevated access token (DESIGN.md, wire conventions).
ELEVATED_TOKEN_HEADER = "X-Elevated-Access-Token"  # noqa: S105 (a header name)
PROBLEM_CONTENT_TYPE = "application/problem+json"
_INSUFFICIENT = "insufficient_user_authentication"
# RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E (no quote, no backslash).
_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5B\x5D-\x7E]")


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


def _param(value: str) -> str:
    return _UNSAFE.sub("?", value)[:200]


def build_challenge(
    error: StepGuardError, requirement: StepUpRequirement | None = None
) -> Challenge:
    """The answer for ``error``. Guard errors become an RFC 9470 challenge; other stepguard errors
    (e.g. ``invalid_session`` from the session dependency) a problem body with their own status.

    The required scope and ``max_age`` come from ``requirement`` or, when the error was raised
    inside a framework and caught by its exception handler, from ``error.extra`` (the guard puts
    them there before raising).
    """
    scope = requirement.scope if requirement is not None else error.extra.get("scope")
    max_age = requirement.max_age if requirement is not None else error.extra.get("max_age")
    body: dict[str, Any] = {
        "type": f"urn:stepguard:error:{error.code}",
        "title": error.description,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
    }
    headers: list[tuple[str, str]] = [("Content-Type", PROBLEM_CONTENT_TYPE)]
    if isinstance(error, ElevatedTokenError):
        params = [
            f'error="{_INSUFFICIENT}"',
            f'error_description="{_param(error.detail)}"',
        ]
        if isinstance(scope, str) and scope:
            params.append(f'scope="{_param(scope)}"')
            body["scope"] = scope
        # RFC 9470 §3: max_age tells the client how fresh the authentication must be; sent when
        # freshness is the reason, and with any challenge of a route that sets it, so the client's
        # first step-up is already fresh enough.
        if isinstance(max_age, int) and not isinstance(max_age, bool):
            params.append(f"max_age={max_age}")
            body["max_age"] = max_age
        elif isinstance(error, AuthTooOld):
            params.append("max_age=0")
            body["max_age"] = 0
        headers.append(("WWW-Authenticate", "Bearer " + ", ".join(params)))
        headers.append(("Cache-Control", "no-store"))
    return Challenge(status=error.status, headers=tuple(headers), body=orjson.dumps(body))
