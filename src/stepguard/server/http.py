"""HTTP edge plumbing: error bodies with stable codes, body-size limits, request helpers."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stepguard.core.challenge import PROBLEM_CONTENT_TYPE, challenge_for
from stepguard.core.errors import (
    ElevatedTokenError,
    RateLimited,
    StepGuardError,
    ValidationFailed,
)

__all__ = [
    "BodyLimitMiddleware",
    "JsonResponse",
    "client_ip",
    "error_response",
    "install_error_handlers",
]


class JsonResponse(JSONResponse):
    """JSON through orjson (about 10x faster than the standard library on our bodies)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


_HTTP_CODES = {
    404: "not_found",
    405: "http_method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(exc: StepGuardError) -> JsonResponse:
    if isinstance(exc, ElevatedTokenError):
        challenge = challenge_for(exc)
        return JsonResponse(
            challenge.problem(),
            status_code=401,
            headers=challenge.headers(),
            media_type=PROBLEM_CONTENT_TYPE,
        )
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(int(exc.retry_after + 0.999))
    return JsonResponse(exc.to_dict(), status_code=exc.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every error is JSON with a stable ``code``; bad input is never a 500."""

    @app.exception_handler(StepGuardError)
    async def _stepguard(_: Request, exc: StepGuardError) -> JsonResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JsonResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JsonResponse(
                {"code": "invalid_json", "error": "The request body is not valid JSON."},
                status_code=400,
            )
        fields = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in errors[:20]
        ]
        return JsonResponse(
            {
                "code": "validation_error",
                "error": "The request does not match the expected shape.",
                "fields": fields,
            },
            status_code=422,
        )

    @app.exception_handler(DBAPIError)
    async def _database(_: Request, exc: DBAPIError) -> JsonResponse:
        # SQLSTATE class 22 ("data exception") is the database refusing a value the request
        # carried: a NUL character in text (PostgreSQL), a number out of the column's range.
        # That is bad input, not a server fault; the transaction has already rolled back.
        if str(getattr(exc.orig, "pgcode", None) or getattr(exc.orig, "sqlstate", "")).startswith(
            "22"
        ):
            return error_response(
                ValidationFailed("A value in the request cannot be stored (e.g. a NUL character).")
            )
        raise exc

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JsonResponse:
        # A bug, not bad input: still JSON with a code. Starlette re-raises it afterwards, so the
        # traceback reaches the server log; the client learns nothing about the internals.
        return JsonResponse(
            {"code": "internal_error", "error": "The server failed to handle the request."},
            status_code=500,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JsonResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JsonResponse(
            {"code": code, "error": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` (413) before the app reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    await _send_413(send)
                    return
        received = 0
        refused = False
        replaced = False

        async def limited() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    raise _TooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            # The framework may turn our exception into its own error response: answer 413 instead.
            nonlocal replaced
            if refused:
                if not replaced:
                    replaced = True
                    await _send_413(send)
                return
            await send(message)

        try:
            await self.app(scope, limited, guarded_send)
        except _TooLarge:
            if not replaced:
                await _send_413(send)


class _TooLarge(Exception):
    pass


async def _send_413(send: Send) -> None:
    body = b'{"code":"payload_too_large","error":"The request body is too large."}'
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def client_ip(request: Request, *, trust_proxy: bool = False) -> str | None:
    if trust_proxy:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()[:64]
    return request.client.host if request.client else None


def bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
