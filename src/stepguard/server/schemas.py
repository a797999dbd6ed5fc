"""Request bodies at the HTTP edge (Pydantic; strict, unknown fields refused)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CreateEnvironment(Body):
    name: StrictStr = Field(min_length=1, max_length=200)
    policy: dict[str, Any] | None = None


class CreateUser(Body):
    email: StrictStr | None = Field(default=None, max_length=320)
    phone: StrictStr | None = Field(default=None, max_length=32)
    external_id: StrictStr | None = Field(default=None, max_length=200)


class CreateSession(Body):
    user_id: StrictStr = Field(min_length=1, max_length=64)
    ttl_seconds: int | None = Field(default=None, ge=60, le=30 * 86_400)


class ExternalJwks(Body):
    jwks: dict[str, Any] | None = None
    jwks_url: StrictStr | None = Field(default=None, max_length=2000)
