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

from stepguard.core.errors import AuthTooOld, ElevatedTokenError

__all__ = [
    "ELEVATED_TOKEN_HEADER",
    "PROBLEM_CONTENT_TYPE",
    "StepUpChallenge",
    "challenge_for",
    "parse_challenge",
    "problem_body",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
#: The request header that carries the elevated access token (one per request).
ELEVATED_TOKEN_HEADER = "X-Elevated-Access-Token"  # noqa: S105 (a header name)
_PARAM = re.compile(r'([a-zA-Z_]+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
# RFC 6750 §3: error_description and scope are %x20-21 / %x23-5B / %x5D-7E (no quote, no backslash).
_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5B\x5D-\x7E]")


def _param(value: str) -> str:
    return _UNSAFE.sub("?", value)[:200]


@dataclass(frozen=True, slots=True)
class StepUpChallenge:
    """One RFC 9470 challenge: the ``WWW-Authenticate`` value and the problem+json body."""

    code: str
    title: str
    description: str
    scope: str | None
    max_age: int | None = None

    @property
    def www_authenticate(self) -> str:
        params = [
            'error="insufficient_user_authentication"',
            f'error_description="{_param(self.description)}"',
        ]
        if self.scope:
            params.append(f'scope="{_param(self.scope)}"')
        if self.max_age is not None:
            params.append(f"max_age={int(self.max_age)}")
        return "Bearer " + ", ".join(params)

    def problem(self) -> dict[str, Any]:
        body = problem_body(self.code, title=self.title, status=401, detail=self.description)
        if self.scope:
            body["scope"] = self.scope
        if self.max_age is not None:
            body["max_age"] = self.max_age
        return body

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": self.www_authenticate, "Cache-Control": "no-store"}


def problem_body(code: str, *, title: str, status: int, detail: str) -> dict[str, Any]:
    """An RFC 9457 problem document carrying stepguard's stable ``code``."""
    return {
        "type": f"urn:stepguard:error:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }


def challenge_for(
    error: ElevatedTokenError, *, scope: str | None = None, max_age: int | None = None
) -> StepUpChallenge:
    """The challenge answering ``error`` for a route that needs ``scope``.

    ``scope``/``max_age`` default to what the raiser put in ``error.extra``. ``max_age`` (RFC 9470
    §3) is sent with every challenge of a route that sets it, so the client's first step-up is
    already fresh enough; when the authentication was too old and the route gave none, ``0``.
    """
    scope = scope if scope is not None else error.extra.get("scope")
    age = max_age if max_age is not None else error.extra.get("max_age")
    if not isinstance(age, int) or isinstance(age, bool):
        age = 0 if isinstance(error, AuthTooOld) else None
    return StepUpChallenge(
        code=error.code,
        title=error.description,
        description=error.detail,
        scope=scope if isinstance(scope, str) and scope else None,
        max_age=age,
    )


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
