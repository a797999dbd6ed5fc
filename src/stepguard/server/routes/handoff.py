"""Browser hand-off: a program without a browser (the Python SDK, a CLI) lets the user finish a
step-up, an enrolment or a WebAuthn ceremony in a browser, then collects the result.

    SDK (session)                        server                          browser
    POST /sdk/{env}/handoff  ───────►  row: pending, bound to the
                             ◄───────  session; {handoff_id, url}
    opens / prints url  ─────────────────────────────────────────────►  GET /handoff/{id}#<secret>
                                        claim (secret, once) ◄────────  POST /handoff/{id}/claim
                                        → browser token     ────────►  step-up UI, through
                                        proxy to /sdk/{env}/… ◄───────  POST /handoff/{id}/sdk/<path>
                                        (session attached server-side; requested_scopes forced)
                                        verify OK → result sealed, the browser gets no token
    GET /sdk/{env}/handoff/{id}?wait=25 ► result, exactly once

Why it is shaped like this:

* The URL carries a 128-bit secret in its *fragment*, so it never reaches a server log or a
  ``Referer``; the page trades it once (compare-and-set) for a browser token. A second tab, or
  anyone who finds the link later, gets ``code_used``.
* The SDK's session token never leaves the server: it is sealed in the row (AES-GCM, purpose
  bound to the hand-off id) and attached to the proxied calls, which are limited to the step-up
  (or enrolment) routes of the hand-off's kind. The browser cannot ask for other scopes: the proxy
  overwrites ``requested_scopes``.
* The elevated token minted in the browser is intercepted by the proxy and sealed for the SDK; it
  is delivered to the session that created the hand-off, once, then wiped.
* Rows live at most :data:`MAX_TTL` seconds; the session and the result are wiped when the
  hand-off ends (delivered, cancelled, expired).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import Field, StrictStr
from sqlalchemy import JSON, Float, Index, String, Text, update
from sqlalchemy.orm import Mapped, mapped_column

from stepguard.core.challenge import ELEVATED_TOKEN_HEADER
from stepguard.core.errors import (
    CodeExpired,
    CodeUsed,
    Conflict,
    InvalidSession,
    NotFound,
    Unauthorized,
    ValidationFailed,
)
from stepguard.core.scopes import TokenScope
from stepguard.server.db import Base, new_id
from stepguard.server.deps import CurrentSession, Service
from stepguard.server.http import bearer
from stepguard.server.schemas import Body
from stepguard.server.service import LiveSession, StepGuardService

__all__ = [
    "HANDOFF_TOKEN_HEADER",
    "Handoff",
    "HandoffKind",
    "HandoffStatus",
    "browser_router",
    "router",
]

#: The header carrying the browser token the page got from ``claim``.
HANDOFF_TOKEN_HEADER = "X-Handoff-Token"  # noqa: S105 (a header name)
DEFAULT_TTL = 300
MIN_TTL = 30
MAX_TTL = 600
#: Long-poll ceiling and the interval between database reads while waiting (any worker may
#: complete the hand-off, so the database is the rendezvous).
MAX_WAIT = 30.0
POLL_INTERVAL = 0.15


class HandoffKind(StrEnum):
    """What the browser is asked to do."""

    STEP_UP = "step_up"  # method choice follows MFA/re-auth routing
    MFA = "mfa"  # passkey, TOTP or recovery code only
    REAUTHENTICATE = "reauthenticate"  # email/SMS code or wallet signature only
    ENROLL = "enroll"  # TOTP, passkey, recovery codes, wallet linking
    PASSKEY_CREATE = "passkey.create"  # navigator.credentials.create(options) -> credential JSON
    PASSKEY_GET = "passkey.get"  # navigator.credentials.get(options) -> credential JSON


class HandoffStatus(StrEnum):
    PENDING = "pending"  # created, link not opened yet
    CLAIMED = "claimed"  # the page opened and traded the secret
    COMPLETED = "completed"  # result waiting for the SDK
    DELIVERED = "delivered"  # result handed to the SDK (and wiped)
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # stored by the first poll after expires_at


_STEP_UP_KINDS = {HandoffKind.STEP_UP, HandoffKind.MFA, HandoffKind.REAUTHENTICATE}
_CEREMONY_KINDS = {HandoffKind.PASSKEY_CREATE, HandoffKind.PASSKEY_GET}
_OPEN = (HandoffStatus.PENDING.value, HandoffStatus.CLAIMED.value)


class Handoff(Base):
    """One browser hand-off (see the module docstring). Secrets are hashed or sealed."""

    __tablename__ = "handoffs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    environment_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    scopes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    #: WebAuthn options for the ceremony kinds (public data).
    options: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: SHA-256 of the URL secret and of the browser token.
    secret_hash: Mapped[str] = mapped_column(String(64))
    browser_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The SDK's session token, sealed; only while the hand-off is open.
    session_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Enrolment: the ``credential:link`` token the proxy attaches (never shown to the browser).
    elevated_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    result_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    claimed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    completed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    __table_args__ = (Index("ix_handoffs_session", "session_id"),)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _purpose(what: str, handoff_id: str) -> str:
    return f"handoff/{what}/{handoff_id}"


def _public(row: Handoff) -> dict[str, Any]:
    """What the page may know about its hand-off."""
    return {
        "handoff_id": row.id,
        "environment_id": row.environment_id,
        "kind": row.kind,
        "requested_scopes": list(row.scopes),
        "options": row.options,
        "status": row.status,
        "expires_at": row.expires_at,
    }


# -- the SDK side -------------------------------------------------------------------------------


class CreateBody(Body):
    kind: Literal["step_up", "mfa", "reauthenticate", "enroll", "passkey.create", "passkey.get"] = (
        "step_up"
    )
    requested_scopes: list[StrictStr] = Field(default_factory=list, max_length=32)
    options: dict[str, Any] | None = None
    ttl_seconds: int | None = Field(default=None, ge=MIN_TTL, le=MAX_TTL)


router = APIRouter(prefix="/sdk/{environment_id}/handoff", tags=["hand-off"])


@router.post("", status_code=201)
async def create_handoff(
    body: CreateBody, request: Request, session: CurrentSession, service: Service
) -> Any:
    """Start a hand-off for this session; answers ``{handoff_id, url, expires_at, kind}``.

    Open (or print) ``url``; then long-poll ``GET …/handoff/{handoff_id}?wait=25``.
    """
    kind = HandoffKind(body.kind)
    scopes: list[str] = []
    if kind in _STEP_UP_KINDS:
        if not body.requested_scopes:
            raise ValidationFailed("a step-up hand-off needs requested_scopes")
        policy = await service.policy(session.environment_id)
        scopes = list(policy.normalize(body.requested_scopes))
    elif body.requested_scopes:
        raise ValidationFailed(f"a {kind.value} hand-off takes no requested_scopes")
    if kind in _CEREMONY_KINDS:
        if not body.options or not isinstance(body.options.get("challenge"), str):
            raise ValidationFailed("a passkey hand-off needs the WebAuthn options JSON")
    elif body.options is not None:
        raise ValidationFailed(f"a {kind.value} hand-off takes no options")
    now = service.clock.now()
    handoff_id = new_id("hof_")
    secret = secrets.token_urlsafe(16)
    session_token = bearer(request)
    if session_token is None:  # CurrentSession already refused this; kept for the type checker
        raise InvalidSession()
    row = Handoff(
        id=handoff_id,
        environment_id=session.environment_id,
        user_id=session.user_id,
        session_id=session.id,
        kind=kind.value,
        scopes=scopes,
        options=body.options,
        secret_hash=_digest(secret),
        browser_token_hash=None,
        # Ceremonies need no session in the browser: only the routes that act for the user do.
        session_sealed=(
            None
            if kind in _CEREMONY_KINDS
            else service.box.seal(session_token.encode(), purpose=_purpose("session", handoff_id))
        ),
        elevated_sealed=None,
        status=HandoffStatus.PENDING.value,
        result_sealed=None,
        created_at=now,
        expires_at=now + (body.ttl_seconds or DEFAULT_TTL),
    )
    async with service.db.transaction() as s:
        s.add(row)
    return {
        "handoff_id": handoff_id,
        "url": f"{service.settings.issuer}/handoff/{handoff_id}#{secret}",
        "kind": kind.value,
        "requested_scopes": scopes,
        "expires_at": row.expires_at,
    }


async def _sdk_row(service: StepGuardService, session: LiveSession, handoff_id: str) -> Handoff:
    async with service.db.session() as s:
        row = await s.get(Handoff, handoff_id)
    # Another session's hand-off does not exist for this caller.
    if row is None or row.session_id != session.id:
        raise NotFound("unknown hand-off", resource="handoff")
    return row


async def _wipe(service: StepGuardService, handoff_id: str, *, to: HandoffStatus) -> bool:
    """Close an open hand-off (compare-and-set on its status); True if this call did."""
    async with service.db.transaction() as s:
        result = await s.execute(
            update(Handoff)
            .where(Handoff.id == handoff_id, Handoff.status.in_(_OPEN))
            .values(status=to.value, session_sealed=None, elevated_sealed=None)
        )
    return (result.rowcount or 0) == 1  # type: ignore[attr-defined]


@router.get("/{handoff_id}")
async def poll_handoff(
    handoff_id: str,
    session: CurrentSession,
    service: Service,
    wait: float = Query(default=0.0, ge=0.0, le=MAX_WAIT),
) -> Any:
    """The hand-off's status; with ``wait`` (seconds) a long poll that answers as soon as it
    leaves ``pending``/``claimed``. ``completed`` carries ``result``, exactly once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        row = await _sdk_row(service, session, handoff_id)
        now = service.clock.now()
        if row.status == HandoffStatus.COMPLETED.value:
            return await _deliver(service, row)
        if row.status == HandoffStatus.DELIVERED.value:
            raise CodeUsed("this hand-off's result was already delivered")
        if row.status in _OPEN and now >= row.expires_at:
            await _wipe(service, row.id, to=HandoffStatus.EXPIRED)
            return {"handoff_id": row.id, "status": HandoffStatus.EXPIRED.value}
        if row.status not in _OPEN or loop.time() >= deadline:
            return {"handoff_id": row.id, "status": row.status, "expires_at": row.expires_at}
        await asyncio.sleep(min(POLL_INTERVAL, max(0.0, deadline - loop.time())))


async def _deliver(service: StepGuardService, row: Handoff) -> dict[str, Any]:
    async with service.db.transaction() as s:
        won = await s.execute(
            update(Handoff)
            .where(Handoff.id == row.id, Handoff.status == HandoffStatus.COMPLETED.value)
            .values(status=HandoffStatus.DELIVERED.value, result_sealed=None)
        )
    if (won.rowcount or 0) != 1 or row.result_sealed is None:  # type: ignore[attr-defined]
        raise CodeUsed("this hand-off's result was already delivered")
    result = json.loads(service.box.open(row.result_sealed, purpose=_purpose("result", row.id)))
    return {
        "handoff_id": row.id,
        "status": HandoffStatus.COMPLETED.value,
        "kind": row.kind,
        "result": result,
    }


@router.delete("/{handoff_id}")
async def cancel_handoff_sdk(handoff_id: str, session: CurrentSession, service: Service) -> Any:
    """The program gave up (Ctrl-C, timeout): the link stops working."""
    row = await _sdk_row(service, session, handoff_id)
    cancelled = await _wipe(service, row.id, to=HandoffStatus.CANCELLED)
    return {"handoff_id": row.id, "cancelled": cancelled}


# -- the browser side ---------------------------------------------------------------------------


class ClaimBody(Body):
    secret: StrictStr = Field(min_length=1, max_length=100)


class CompleteBody(Body):
    credential: dict[str, Any]


browser_router = APIRouter(prefix="/handoff/{handoff_id}", tags=["hand-off"])


async def _browser_row(service: StepGuardService, request: Request, handoff_id: str) -> Handoff:
    """The claimed, open hand-off this browser token belongs to."""
    token = request.headers.get(HANDOFF_TOKEN_HEADER, "")
    async with service.db.session() as s:
        row = await s.get(Handoff, handoff_id)
    if (
        row is None
        or row.browser_token_hash is None
        or not token
        or not hmac.compare_digest(row.browser_token_hash, _digest(token))
    ):
        raise Unauthorized("this hand-off link is not valid in this browser")
    if row.status == HandoffStatus.CANCELLED.value:
        raise Conflict("this hand-off was cancelled", status="cancelled")
    if row.status in (HandoffStatus.COMPLETED.value, HandoffStatus.DELIVERED.value):
        raise CodeUsed("this hand-off is already complete")
    if service.clock.now() >= row.expires_at:
        raise CodeExpired("this hand-off has expired; start again from the app")
    return row


@browser_router.post("/claim")
async def claim_handoff(handoff_id: str, body: ClaimBody, service: Service) -> Any:
    """Trade the URL secret for a browser token, once."""
    async with service.db.session() as s:
        row = await s.get(Handoff, handoff_id)
    if row is None or not hmac.compare_digest(row.secret_hash, _digest(body.secret)):
        raise NotFound("unknown hand-off", resource="handoff")
    if row.status != HandoffStatus.PENDING.value:
        raise CodeUsed("this hand-off link was already opened")
    now = service.clock.now()
    if now >= row.expires_at:
        raise CodeExpired("this hand-off has expired; start again from the app")
    token = "sgh_" + secrets.token_urlsafe(32)
    async with service.db.transaction() as s:
        won = await s.execute(
            update(Handoff)
            .where(Handoff.id == row.id, Handoff.status == HandoffStatus.PENDING.value)
            .values(
                status=HandoffStatus.CLAIMED.value,
                browser_token_hash=_digest(token),
                claimed_at=now,
            )
        )
    if (won.rowcount or 0) != 1:  # type: ignore[attr-defined]
        raise CodeUsed("this hand-off link was already opened")
    row.status = HandoffStatus.CLAIMED.value
    return {**_public(row), "browser_token": token}


@browser_router.get("/state")
async def handoff_state(handoff_id: str, request: Request, service: Service) -> Any:
    """The hand-off as the page needs it (after a reload: the token is in sessionStorage)."""
    return _public(await _browser_row(service, request, handoff_id))


@browser_router.post("/cancel")
async def cancel_handoff_browser(handoff_id: str, request: Request, service: Service) -> Any:
    """The user closed the prompt: the SDK's poll answers ``cancelled``."""
    row = await _browser_row(service, request, handoff_id)
    return {"cancelled": await _wipe(service, row.id, to=HandoffStatus.CANCELLED)}


async def _complete(service: StepGuardService, row: Handoff, result: Mapping[str, Any]) -> None:
    sealed = service.box.seal(json.dumps(result).encode(), purpose=_purpose("result", row.id))
    async with service.db.transaction() as s:
        won = await s.execute(
            update(Handoff)
            .where(Handoff.id == row.id, Handoff.status == HandoffStatus.CLAIMED.value)
            .values(
                status=HandoffStatus.COMPLETED.value,
                result_sealed=sealed,
                session_sealed=None,
                elevated_sealed=None,
                completed_at=service.clock.now(),
            )
        )
    if (won.rowcount or 0) != 1:  # type: ignore[attr-defined]
        raise Conflict("this hand-off is no longer open")


@browser_router.post("/complete")
async def complete_ceremony(
    handoff_id: str, body: CompleteBody, request: Request, service: Service
) -> Any:
    """Hand the WebAuthn ceremony's ``PublicKeyCredential.toJSON()`` to the SDK (ceremony kinds);
    an enrolment hand-off finishes with ``{"credential": {}}``."""
    row = await _browser_row(service, request, handoff_id)
    kind = HandoffKind(row.kind)
    if kind in _CEREMONY_KINDS:
        if not isinstance(body.credential.get("id"), str):
            raise ValidationFailed("credential must be PublicKeyCredential.toJSON()")
        await _complete(service, row, {"credential": body.credential})
    elif kind is HandoffKind.ENROLL:
        await _complete(service, row, {"enrolled": True})
    else:
        raise ValidationFailed("a step-up hand-off completes through its verify call")
    return {"completed": True}


# -- the proxy: the browser acts for the session, within the hand-off's kind --------------------


class _Role(StrEnum):
    PLAIN = "plain"
    CHECK = "check"  # body.scope must be one of the hand-off's scopes
    VERIFY = "verify"  # requested_scopes forced; a minted token is intercepted


@dataclass(frozen=True, slots=True)
class _Allowed:
    role: _Role
    kinds: frozenset[HandoffKind]


_MFA = frozenset({HandoffKind.STEP_UP, HandoffKind.MFA, HandoffKind.ENROLL})
_REAUTH = frozenset({HandoffKind.STEP_UP, HandoffKind.REAUTHENTICATE, HandoffKind.ENROLL})
_ANY_STEP_UP = _MFA | _REAUTH
_ENROLL = frozenset({HandoffKind.ENROLL})

#: (HTTP method, path under /sdk/{env}/) -> what the proxy allows. Paths with an id use "*".
_ROUTES: dict[tuple[str, str], _Allowed] = {
    ("POST", "step-up/check"): _Allowed(_Role.CHECK, _ANY_STEP_UP),
    ("POST", "otp/send"): _Allowed(_Role.PLAIN, _REAUTH),
    ("POST", "otp/verify"): _Allowed(_Role.VERIFY, _REAUTH),
    ("POST", "wallets/challenge"): _Allowed(_Role.PLAIN, _REAUTH),
    ("POST", "wallets/verify"): _Allowed(_Role.VERIFY, _REAUTH),
    ("POST", "mfa/totp/verify"): _Allowed(_Role.VERIFY, _MFA),
    ("POST", "mfa/recovery/verify"): _Allowed(_Role.VERIFY, _MFA),
    ("POST", "passkeys/authenticate/options"): _Allowed(_Role.PLAIN, _MFA),
    ("POST", "passkeys/authenticate"): _Allowed(_Role.VERIFY, _MFA),
    ("GET", "credentials"): _Allowed(_Role.PLAIN, _ENROLL),
    ("GET", "mfa/devices"): _Allowed(_Role.PLAIN, _ENROLL),
    ("POST", "mfa/totp/devices"): _Allowed(_Role.PLAIN, _ENROLL),
    ("POST", "mfa/totp/devices/*/verify"): _Allowed(_Role.PLAIN, _ENROLL),
    ("POST", "mfa/recovery-codes"): _Allowed(_Role.PLAIN, _ENROLL),
    ("GET", "mfa/recovery-codes"): _Allowed(_Role.PLAIN, _ENROLL),
    ("POST", "passkeys/register/options"): _Allowed(_Role.PLAIN, _ENROLL),
    ("POST", "passkeys/register"): _Allowed(_Role.PLAIN, _ENROLL),
    ("POST", "wallets/link/challenge"): _Allowed(_Role.PLAIN, _ENROLL),
    ("POST", "wallets/link"): _Allowed(_Role.PLAIN, _ENROLL),
}
_FORWARDED_HEADERS = ("content-type", "retry-after", "www-authenticate")
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _route(method: str, path: str) -> tuple[_Allowed, str] | None:
    """What the proxy allows for ``method path`` (``*`` matches one id segment), and the
    normalised path to call; None when the call is not on the list."""
    parts = path.strip("/").split("/")
    for (allowed_method, pattern), allowed in _ROUTES.items():
        shape = pattern.split("/")
        if (
            allowed_method == method
            and len(shape) == len(parts)
            and all(
                want == got or (want == "*" and _ID.fullmatch(got))
                for want, got in zip(shape, parts, strict=True)
            )
        ):
            return allowed, "/".join(parts)
    return None


@dataclass(slots=True)
class _Captured:
    status: int = 500
    headers: list[tuple[bytes, bytes]] | None = None
    body: bytes = b""


async def _dispatch(
    request: Request, *, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> _Captured:
    """Run one request through this same application, in process (middleware, error handlers
    and all), and capture the answer."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": request.url.scheme,
        "server": request.scope.get("server"),
        "client": request.scope.get("client"),
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "state": {},
    }
    captured = _Captured()
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Mapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            captured.status = int(message["status"])
            captured.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            captured.body += bytes(message.get("body", b""))

    await request.app(scope, receive, send)
    return captured


# One route per method: a two-method route gives both the same OpenAPI operation id.
@browser_router.get("/sdk/{path:path}")
@browser_router.post("/sdk/{path:path}")
async def proxy(handoff_id: str, path: str, request: Request, service: Service) -> Any:
    """Call a step-up (or enrolment) route of the SDK API for the hand-off's session.

    Only the routes of the hand-off's kind are reachable; ``requested_scopes`` is the hand-off's;
    a minted elevated token goes to the SDK (enrolment: it is kept here for the linking calls).
    """
    row = await _browser_row(service, request, handoff_id)
    kind = HandoffKind(row.kind)
    found = _route(request.method, path)
    if found is None or kind not in found[0].kinds or row.session_sealed is None:
        raise NotFound("this call is not part of the hand-off", resource="route")
    allowed, target = found
    payload: dict[str, Any] = {}
    if request.method == "POST":
        raw = await request.body()
        try:
            parsed = json.loads(raw or b"{}")
        except ValueError as exc:
            raise ValidationFailed("the body must be a JSON object") from exc
        if not isinstance(parsed, dict):
            raise ValidationFailed("the body must be a JSON object")
        payload = parsed
    # Enrolment steps up for credential:link only; a step-up hand-off for its own scopes.
    scopes = [TokenScope.CREDENTIAL_LINK.value] if kind is HandoffKind.ENROLL else list(row.scopes)
    if allowed.role is _Role.CHECK and payload.get("scope") not in scopes:
        raise ValidationFailed("scope must be one of the hand-off's scopes")
    if allowed.role is _Role.VERIFY:
        payload["requested_scopes"] = scopes
    session_token = service.box.open(row.session_sealed, purpose=_purpose("session", row.id))
    headers = [
        (b"authorization", b"Bearer " + session_token),
        (b"content-type", b"application/json"),
        (b"accept", b"application/json"),
    ]
    if kind is HandoffKind.ENROLL and row.elevated_sealed is not None:
        elevated = service.box.open(row.elevated_sealed, purpose=_purpose("elevated", row.id))
        headers.append((ELEVATED_TOKEN_HEADER.lower().encode(), elevated))
    body = json.dumps(payload).encode() if request.method == "POST" else b""
    headers.append((b"content-length", str(len(body)).encode()))
    answer = await _dispatch(
        request,
        method=request.method,
        path=f"/sdk/{row.environment_id}/{target}",
        headers=headers,
        body=body,
    )
    if allowed.role is _Role.VERIFY and answer.status == 200:
        minted = json.loads(answer.body)
        if isinstance(minted, dict) and isinstance(minted.get("elevated_access_token"), str):
            summary = {k: minted.get(k) for k in ("scopes", "expires_at", "single_use")}
            if kind is HandoffKind.ENROLL:
                await _keep_link_token(service, row, minted["elevated_access_token"])
                return {"elevated": True, **summary}
            await _complete(service, row, minted)
            return {"handed_off": True, **summary}
    # Anything else goes back as it came (errors keep their code, status and challenge).
    return Response(
        answer.body,
        status_code=answer.status,
        headers={
            k.decode(): v.decode()
            for k, v in answer.headers or []
            if k.decode().lower() in _FORWARDED_HEADERS
        },
    )


async def _keep_link_token(service: StepGuardService, row: Handoff, token: str) -> None:
    sealed = service.box.seal(token.encode(), purpose=_purpose("elevated", row.id))
    async with service.db.transaction() as s:
        await s.execute(
            update(Handoff)
            .where(Handoff.id == row.id, Handoff.status == HandoffStatus.CLAIMED.value)
            .values(elevated_sealed=sealed)
        )
