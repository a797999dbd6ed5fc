"""Flask adapter (``pip install stepguard[flask]``)::

    from stepguard.guard import Guard, JwksKeys
    from stepguard.guard.flask import init_app, require_step_up

    guard = Guard(issuer=..., audience=..., keys=JwksKeys(...), replay_store=DATABASE_URL,
                  current_user=lambda request: session.get("user_id"))
    init_app(app, guard)

    @app.post("/wallet/export")
    @require_step_up("wallet:export")
    def export(): ...

``current_user`` receives :data:`flask.request`. The view's elevation is ``flask.g.elevation``. A
single-use token is spent when the view's response is 2xx and released otherwise (also when the
view raises). The guard's I/O runs on its own background event loop (:class:`SyncGuard`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

import flask

from stepguard.core.errors import StepGuardError

from ._challenge import build_challenge
from ._check import StepUpRequirement
from ._guard import Guard

__all__ = ["init_app", "require_step_up"]

F = TypeVar("F", bound=Callable[..., Any])
_EXTENSION = "stepguard"


def init_app(app: flask.Flask, guard: Guard) -> None:
    """Register ``guard`` for :func:`require_step_up` in ``app``."""
    app.extensions[_EXTENSION] = guard


def _response(error: StepGuardError, requirement: StepUpRequirement) -> flask.Response:
    challenge = build_challenge(error, requirement)
    return flask.Response(challenge.body, status=challenge.status, headers=list(challenge.headers))


def require_step_up(
    scope: str | Iterable[str],
    max_age: int | None = None,
    *,
    guard: Guard | None = None,
) -> Callable[[F], F]:
    """Protect a Flask view: an elevated token granting ``scope`` to the signed-in user."""
    requirement = StepUpRequirement.of(scope, max_age)

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            g = guard or flask.current_app.extensions.get(_EXTENSION)
            if not isinstance(g, Guard):
                raise RuntimeError("no stepguard Guard: call stepguard.guard.flask.init_app()")
            driver = g.sync()
            request = flask.request
            try:
                elevation = driver.authorize(
                    request.headers.get(g.header),
                    requirement,
                    principal=driver.principal_for(request),
                )
            except StepGuardError as exc:
                return _response(exc, requirement)
            flask.g.elevation = elevation
            success = False
            try:
                response = flask.current_app.make_response(view(*args, **kwargs))
                success = 200 <= response.status_code < 300
                return response
            finally:
                driver.settle(elevation, success=success)

        return cast(F, guarded)

    return decorate
