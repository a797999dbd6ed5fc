"""The step-up challenge (RFC 9470 §3): what a resource answers when elevation is missing.

``401`` with ``WWW-Authenticate: Bearer error="insufficient_user_authentication",
error_description="…", scope="<scope>"`` (plus ``max_age`` when freshness is the reason) and an
``application/problem+json`` body (RFC 9457) carrying the stable ``code``. The guard and the
server's own enrolment gate both answer this way, and the client SDK parses it with
:func:`parse_challenge`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from stepguard.core.errors import ElevatedTokenError

__all__ = [
    "ELEVATED_TOKEN_HEADER",
    "PROBLEM_CONTENT_TYPE",
    "StepUpChallenge",
    "challenge_for",
    "parse_challenge",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
#: The request header that carries the elevated access token (one per request).
ELEVATED_TOKEN_HEADER = "X-Elevated-Access-Token"  # noqa: S105 (a header name)
_PARAM = re.compile(r'([a-zA-Z_]+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class StepUpChallenge:
    code: str
    description: str
    scope: str
    max_age: int | None = None

    @property
    def www_authenticate(self) -> str:
        parts = [
            'Bearer error="insufficient_user_authentication"',
            f"error_description={_quote(self.description)}",
            f"scope={_quote(self.scope)}",
        ]
        if self.max_age is not None:
            parts.append(f'max_age="{int(self.max_age)}"')
        return ", ".join(parts)

    def problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "https://stepguard.dev/problems/" + self.code,
            "title": "Step-up authentication required",
            "status": 401,
            "detail": self.description,
            "code": self.code,
            "scope": self.scope,
        }
        if self.max_age is not None:
            body["max_age"] = self.max_age
        return body

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": self.www_authenticate, "Cache-Control": "no-store"}


def challenge_for(error: ElevatedTokenError, *, scope: str) -> StepUpChallenge:
    """The challenge answering ``error`` for a route that needs ``scope``."""
    # max_age is only a reason when the authentication was too old (RFC 9470 §3).
    age = error.extra.get("max_age") if "max_age" in error.extra else None
    return StepUpChallenge(code=error.code, description=error.detail, scope=scope, max_age=age)


def parse_challenge(header: str | None) -> dict[str, str] | None:
    """The parameters of a ``Bearer error="insufficient_user_authentication"`` challenge, or None."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    params = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).replace(
            '\\"', '"'
        )
        for m in _PARAM.finditer(rest)
    }
    if params.get("error") != "insufficient_user_authentication":
        return None
    return params
