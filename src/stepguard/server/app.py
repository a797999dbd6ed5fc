"""The ASGI application: ``create_app(settings)``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response

from stepguard.core.clock import Clock
from stepguard.core.errors import ValidationFailed
from stepguard.server import schemas
from stepguard.server.audit import list_events
from stepguard.server.db import AuditEvent, Environment, SessionRow, User
from stepguard.server.deps import CurrentSession, Service, require_admin
from stepguard.server.http import (
    BodyLimitMiddleware,
    JsonResponse,
    client_ip,
    install_error_handlers,
)
from stepguard.server.routes import ROUTERS
from stepguard.server.service import StepGuardService
from stepguard.server.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger("stepguard")


def environment_json(env: Environment, service: StepGuardService) -> dict[str, Any]:
    from stepguard.core.policy import EnvironmentPolicy

    return {
        "id": env.id,
        "name": env.name,
        "is_default": env.is_default,
        "created_at": env.created_at,
        "policy": EnvironmentPolicy.from_dict(env.policy).to_dict(),
        "external_jwks_url": env.external_jwks_url,
        "has_external_jwks": env.external_jwks is not None,
    }


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "environment_id": user.environment_id,
        "external_id": user.external_id,
        "created_at": user.created_at,
        "disabled": user.disabled,
    }


def session_json(row: SessionRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "user_id": row.user_id,
        "environment_id": row.environment_id,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "revoked": row.revoked_at is not None,
    }


def audit_json(e: AuditEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": e.at,
        "actor": e.actor,
        "action": e.action,
        "outcome": e.outcome,
        "user_id": e.user_id,
        "ip": e.ip,
        "method": e.method,
        "scopes": e.scopes.split() if e.scopes else [],
        "details": e.details,
    }


def _admin_router() -> APIRouter:
    r = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])

    @r.post("/environments", status_code=201)
    async def create_environment(body: schemas.CreateEnvironment, service: Service) -> Any:
        env = await service.create_environment(body.name, policy=body.policy)
        return environment_json(env, service)

    @r.get("/environments")
    async def list_environments(service: Service) -> Any:
        return {
            "environments": [
                environment_json(e, service) for e in await service.list_environments()
            ]
        }

    @r.get("/environments/{environment_id}")
    async def get_environment(environment_id: str, service: Service) -> Any:
        return environment_json(await service.get_environment(environment_id), service)

    @r.patch("/environments/{environment_id}/policy")
    async def set_policy(environment_id: str, body: dict[str, Any], service: Service) -> Any:
        return (await service.set_policy(environment_id, body)).to_dict()

    @r.put("/environments/{environment_id}/external-jwks")
    async def set_external_jwks(
        environment_id: str, body: schemas.ExternalJwks, service: Service
    ) -> Any:
        if body.jwks is None and body.jwks_url is None:
            raise ValidationFailed("give jwks or jwks_url")
        await service.set_external_jwks(environment_id, jwks=body.jwks, jwks_url=body.jwks_url)
        return environment_json(await service.get_environment(environment_id), service)

    @r.post("/environments/{environment_id}/users", status_code=201)
    async def create_user(environment_id: str, body: schemas.CreateUser, service: Service) -> Any:
        user = await service.create_user(
            environment_id, email=body.email, phone=body.phone, external_id=body.external_id
        )
        return user_json(user)

    @r.get("/environments/{environment_id}/users/{user_id}")
    async def get_user(environment_id: str, user_id: str, service: Service) -> Any:
        user = await service.get_user(environment_id, user_id)
        creds = await service.credentials(user.id)
        out = user_json(user)
        out["credentials"] = [
            {"id": c.id, "kind": c.kind, "verified": c.verified, "created_at": c.created_at}
            for c in creds
        ]
        return out

    @r.post("/environments/{environment_id}/sessions", status_code=201)
    async def create_session(
        environment_id: str, body: schemas.CreateSession, request: Request, service: Service
    ) -> Any:
        token, row = await service.create_session(
            environment_id,
            body.user_id,
            ttl_seconds=body.ttl_seconds,
            ip=client_ip(request, trust_proxy=service.settings.trust_proxy_headers),
        )
        return {"session_token": token, **session_json(row)}

    @r.delete("/environments/{environment_id}/sessions/{session_id}")
    async def revoke_session(environment_id: str, session_id: str, service: Service) -> Any:
        await service.revoke_session(environment_id, session_id)
        return {"revoked": True, "id": session_id}

    @r.get("/environments/{environment_id}/audit")
    async def audit_log(
        environment_id: str,
        service: Service,
        user_id: str | None = None,
        action: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    ) -> Any:
        await service.get_environment(environment_id)
        async with service.db.session() as s:
            events = await list_events(
                s,
                environment_id=environment_id,
                user_id=user_id,
                action=action,
                limit=limit,
                before_id=before,
            )
        return {"events": [audit_json(e) for e in events]}

    @r.post("/keys/rotate")
    async def rotate_keys(service: Service) -> Any:
        kid = await service.keyring.rotate()
        return {"kid": kid}

    return r


def _sdk_router() -> APIRouter:
    r = APIRouter(prefix="/sdk/{environment_id}", tags=["sdk"])

    @r.get("/session")
    async def whoami(session: CurrentSession) -> Any:
        return {
            "session_id": session.id,
            "user_id": session.user_id,
            "environment_id": session.environment_id,
            "expires_at": session.expires_at,
        }

    @r.delete("/session")
    async def sign_out(session: CurrentSession, service: Service) -> Any:
        await service.revoke_session(session.environment_id, session.id, actor="user")
        return {"revoked": True}

    return r


def _well_known_router() -> APIRouter:
    r = APIRouter(tags=["discovery"])

    @r.get("/healthz")
    async def healthz() -> Any:
        return {"status": "ok"}

    @r.get("/.well-known/jwks.json")
    async def jwks(service: Service) -> Response:
        return JsonResponse(
            await service.keyring.jwks(), headers={"Cache-Control": "public, max-age=60"}
        )

    @r.get("/.well-known/stepguard-configuration")
    async def configuration(service: Service, environment_id: str | None = None) -> Any:
        env = await service.get_environment(environment_id)
        policy = await service.policy(env.id)
        issuer = service.settings.issuer
        return {
            "issuer": issuer,
            "jwks_uri": f"{issuer}/.well-known/jwks.json",
            "environment_id": env.id,
            "environment_name": env.name,
            "token_type": "elevated+jwt",
            "token_header": "X-Elevated-Access-Token",
            "signing_alg_values_supported": ["EdDSA", "ES256"],
            "enforcement": policy.enforcement,
            "mfa_enabled": policy.mfa_enabled,
            "methods": sorted(policy.enabled_methods),
            "scopes": {s: policy.policy_for(s).to_dict() for s in sorted(policy.known_scopes)},
            "sdk_base": f"{issuer}/sdk/{env.id}",
        }

    return r


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    routers: list[APIRouter] | None = None,
) -> FastAPI:
    """The stepguard server as an ASGI app. Start-up migrates the database and creates the
    default environment and the first signing key."""
    settings = settings or Settings.from_env()
    service = StepGuardService(settings, clock=clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        generated = await service.start()
        if generated:
            log.warning(
                "No STEPGUARD_ADMIN_KEY set: generated admin key (shown once): %s", generated
            )
            app.state.generated_admin_key = generated
        try:
            yield
        finally:
            await service.close()

    app = FastAPI(
        title="stepguard",
        version="0.1.0",
        default_response_class=JsonResponse,
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.settings = settings
    app.state.generated_admin_key = None
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.include_router(_well_known_router())
    app.include_router(_admin_router())
    app.include_router(_sdk_router())
    for method_router in ROUTERS:
        app.include_router(method_router)
    for router in routers or []:
        app.include_router(router)
    return app
