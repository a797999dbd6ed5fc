"""FastAPI dependencies shared by every router: the service, the caller's session, the admin key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from stepguard.core.errors import InvalidApiKey
from stepguard.server.http import bearer
from stepguard.server.service import LiveSession, StepGuardService

__all__ = ["CurrentSession", "Service", "current_session", "get_service", "require_admin"]


def get_service(request: Request) -> StepGuardService:
    service: StepGuardService = request.app.state.service
    return service


Service = Annotated[StepGuardService, Depends(get_service)]


async def require_admin(request: Request, service: Service) -> None:
    key = request.headers.get("x-stepguard-admin-key") or bearer(request)
    if not await service.check_admin_key(key):
        raise InvalidApiKey()


async def current_session(environment_id: str, request: Request, service: Service) -> LiveSession:
    """The caller's live session (``Authorization: Bearer <session token>``)."""
    return await service.authenticate(environment_id, bearer(request))


CurrentSession = Annotated[LiveSession, Depends(current_session)]
