"""ASGI adapters: the FastAPI dependency, the Starlette decorator and the settling middleware.

FastAPI::

    guard = Guard(issuer=..., audience=..., keys=JwksKeys(...), replay_store=DATABASE_URL,
                  current_user=session)                 # e.g. a StepGuardSession
    install_guard(app, guard)                           # 401 challenges + consume-on-success
    @app.post("/wallet/export", dependencies=[Depends(RequireStepUp("wallet:export"))])

:class:`RequireStepUp` is an ``async def`` dependency (a plain ``def`` one runs in the threadpool
and costs a third of the throughput, performance.md G4). A single-use token it accepts is reserved;
:class:`StepUpMiddleware` (added by :func:`install_guard`) watches the response: the token is spent
when the status is 2xx and released otherwise (also when the handler raises), before the response
starts, so a client retrying after a failure finds the token usable again.

Starlette endpoints use :func:`require_step_up`, which does the same around one endpoint.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stepguard.core.errors import ElevatedTokenError, StepGuardError

from ._challenge import PROBLEM_CONTENT_TYPE, build_challenge
from ._check import StepUpRequirement
from ._guard import Elevation, Guard

__all__ = [
    "RequireStepUp",
    "StepUpMiddleware",
    "challenge_response",
    "install_guard",
    "require_step_up",
]

_PENDING = "stepguard.pending"
_STATE_ATTR = "stepguard_guard"


def challenge_response(
    error: StepGuardError, requirement: StepUpRequirement | None = None
) -> Response:
    """The 401 answer (RFC 9470 challenge + problem JSON) for a guard error, as a Response."""
    challenge = build_challenge(error, requirement)
    headers = {k: v for k, v in challenge.headers if k != "Content-Type"}
    return Response(
        challenge.body,
        status_code=challenge.status,
        headers=headers,
        media_type=PROBLEM_CONTENT_TYPE,
    )


def _guard_of(request: Request, explicit: Guard | None) -> Guard:
    if explicit is not None:
        return explicit
    guard = getattr(request.app.state, _STATE_ATTR, None)
    if not isinstance(guard, Guard):
        raise RuntimeError("no stepguard Guard on this app: call install_guard(app, guard)")
    return guard


def install_guard(app: Any, guard: Guard | None = None) -> None:
    """Set up a Starlette or FastAPI app for the guard: store ``guard`` (it may also be set later
    as ``app.state.stepguard_guard``), answer guard errors with RFC 9470 challenges, and add
    :class:`StepUpMiddleware` (must run before the app starts)."""
    if guard is not None:
        setattr(app.state, _STATE_ATTR, guard)

    async def on_guard_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StepGuardError)
        return challenge_response(exc)

    app.add_exception_handler(ElevatedTokenError, on_guard_error)
    if StepGuardError not in app.exception_handlers:
        # e.g. invalid_session from StepGuardSession: a problem body, not a 500.
        app.add_exception_handler(StepGuardError, on_guard_error)
    app.add_middleware(StepUpMiddleware)


class StepUpMiddleware:
    """Settles the single-use tokens reserved while handling a request: spent on a 2xx response,
    released on any other status or an exception. Pure ASGI (no response buffering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        pending: list[Elevation] = []
        scope[_PENDING] = pending

        async def settle(success: bool) -> None:
            while pending:
                elevation = pending.pop()
                if elevation.guard is not None:
                    await elevation.guard.settle(elevation, success=success)

        async def send_settled(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Settle before the client sees the answer, so a retry after a failure works.
                await settle(200 <= int(message["status"]) < 300)
            await send(message)

        try:
            await self.app(scope, receive, send_settled)
        finally:
            await settle(False)


class RequireStepUp:
    """FastAPI dependency: the request must carry an elevated token granting ``scope`` (one scope,
    several space-separated, or a list) to the signed-in user, from an authentication no older than
    ``max_age`` seconds when given. Returns the :class:`Elevation`.

    The guard comes from ``install_guard(app, guard)`` unless given here.
    """

    def __init__(
        self,
        scope: str | Iterable[str],
        max_age: int | None = None,
        *,
        guard: Guard | None = None,
    ) -> None:
        self.requirement = StepUpRequirement.of(scope, max_age)
        self._guard = guard

    def __repr__(self) -> str:
        return f"RequireStepUp({self.requirement.scope!r}, max_age={self.requirement.max_age!r})"

    async def __call__(self, request: Request) -> Elevation:
        guard = _guard_of(request, self._guard)
        principal = await guard.principal_for(request)
        elevation = await guard.authorize(
            request.headers.get(guard.header), self.requirement, principal=principal
        )
        if elevation.reservation is not None:
            pending = request.scope.get(_PENDING)
            if pending is None:
                # Without the middleware nobody would spend or release the token: refuse loudly.
                await guard.settle(elevation, success=False)
                raise RuntimeError("single-use tokens need StepUpMiddleware: call install_guard()")
            pending.append(elevation)
        return elevation


Endpoint = Callable[[Request], Awaitable[Response]]


def require_step_up(
    scope: str | Iterable[str],
    max_age: int | None = None,
    *,
    guard: Guard | None = None,
) -> Callable[[Endpoint], Endpoint]:
    """Decorator for a Starlette endpoint ``async def endpoint(request) -> Response``.

    Answers 401 with the challenge when the elevation is missing or insufficient; otherwise puts the
    :class:`Elevation` on ``request.state.elevation``, runs the endpoint and settles a single-use
    token by the returned response's status (2xx spends it). Needs no middleware.
    """
    requirement = StepUpRequirement.of(scope, max_age)

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            g = _guard_of(request, guard)
            try:
                principal = await g.principal_for(request)
                elevation = await g.authorize(
                    request.headers.get(g.header), requirement, principal=principal
                )
            except StepGuardError as exc:
                return challenge_response(exc, requirement)
            request.state.elevation = elevation
            success = False
            try:
                response = await endpoint(request)
                success = 200 <= response.status_code < 300
                return response
            finally:
                await g.settle(elevation, success=success)

        return guarded

    return decorate
