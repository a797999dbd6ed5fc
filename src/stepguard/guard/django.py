"""Django adapter (``pip install stepguard[django]``)::

    # settings.py
    STEPGUARD_GUARD = "myproject.security.guard"    # dotted path to a Guard (or set the object)

    # views.py
    from stepguard.guard.django import require_step_up

    @require_step_up("wallet:export")
    def export(request): ...

``current_user`` receives the :class:`~django.http.HttpRequest`, e.g.
``lambda r: str(r.user.pk) if r.user.is_authenticated else None``. The elevation is
``request.elevation``. A single-use token is spent when the view returns a 2xx response and
released otherwise (also when it raises). Synchronous views only; the guard's I/O runs on its own
background event loop (:class:`SyncGuard`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

from stepguard.core.errors import StepGuardError

from ._challenge import build_challenge
from ._check import StepUpRequirement
from ._guard import Guard

__all__ = ["require_step_up"]

F = TypeVar("F", bound=Callable[..., Any])


def _configured_guard() -> Guard:
    value = getattr(settings, "STEPGUARD_GUARD", None)
    if isinstance(value, str):
        value = import_string(value)
    if not isinstance(value, Guard):
        raise RuntimeError("set STEPGUARD_GUARD to a stepguard.guard.Guard (or its dotted path)")
    return value


def _response(error: StepGuardError, requirement: StepUpRequirement) -> HttpResponse:
    challenge = build_challenge(error, requirement)
    response = HttpResponse(challenge.body, status=challenge.status)
    for name, value in challenge.headers:
        response[name] = value
    return response


def require_step_up(
    scope: str | Iterable[str],
    max_age: int | None = None,
    *,
    guard: Guard | None = None,
) -> Callable[[F], F]:
    """Protect a Django view: an elevated token granting ``scope`` to the signed-in user."""
    requirement = StepUpRequirement.of(scope, max_age)

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            g = guard or _configured_guard()
            driver = g.sync()
            try:
                elevation = driver.authorize(
                    request.headers.get(g.header),
                    requirement,
                    principal=driver.principal_for(request),
                )
            except StepGuardError as exc:
                return _response(exc, requirement)
            request.elevation = elevation
            success = False
            try:
                response = view(request, *args, **kwargs)
                success = 200 <= int(getattr(response, "status_code", 500)) < 300
                return response
            finally:
                driver.settle(elevation, success=success)

        return cast(F, guarded)

    return decorate
