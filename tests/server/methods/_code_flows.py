"""Client-side halves of the code-based flows (email/SMS OTP, TOTP, recovery codes) over HTTP.

Codes are read where a person would read them: the email from the real SMTP sink, the SMS from
the Twilio-shaped test double, the TOTP code computed from the enrolment secret like an
authenticator app.
"""

from __future__ import annotations

import base64
import http.server
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs

import httpx

from stepguard.core.clock import FixedClock
from stepguard.core.methods.totp import totp_at

__all__ = [
    "FakeTwilio",
    "auth_headers",
    "enroll_totp",
    "link_token",
    "sdk",
    "totp_code",
]


def sdk(env: str, path: str) -> str:
    return f"/sdk/{env}{path}"


def auth_headers(session_token: str, elevated: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {session_token}"}
    if elevated:
        headers["X-Elevated-Access-Token"] = elevated
    return headers


def totp_code(secret: str, clock: FixedClock, *, steps: int = 0) -> str:
    """What an authenticator app shows for ``secret`` now (``steps`` periods later or earlier)."""
    raw = base64.b32decode(secret + "=" * (-len(secret) % 8))
    return totp_at(raw, clock.now() + 30 * steps)


async def link_token(
    client: httpx.AsyncClient, env: str, session_token: str, email: str, sink: Any
) -> str:
    """A ``credential:link`` token earned the honest way: an email code read from the sink."""
    headers = auth_headers(session_token)
    r = await client.post(sdk(env, "/otp/send"), json={}, headers=headers)
    assert r.status_code == 200, r.text
    r = await client.post(
        sdk(env, "/otp/verify"),
        json={
            "verification_id": r.json()["verification_id"],
            "code": sink.last_code(to=email),
            "requested_scopes": ["credential:link"],
        },
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["elevated_access_token"])


async def enroll_totp(
    client: httpx.AsyncClient,
    env: str,
    session_token: str,
    clock: FixedClock,
    *,
    elevated: str | None = None,
    alias: str | None = None,
) -> dict[str, Any]:
    """Enrol and confirm a TOTP device; returns the enrolment answer (``id``, ``secret``, ...)."""
    body = {} if alias is None else {"alias": alias}
    r = await client.post(
        sdk(env, "/mfa/totp/devices"), json=body, headers=auth_headers(session_token, elevated)
    )
    assert r.status_code == 201, r.text
    device = dict(r.json())
    r = await client.post(
        sdk(env, f"/mfa/totp/devices/{device['id']}/verify"),
        json={"code": totp_code(device["secret"], clock)},
        headers=auth_headers(session_token),
    )
    assert r.status_code == 200, r.text
    clock.advance(30)  # the enrolment code's step is spent; move to a fresh one
    return device


class FakeTwilio:
    """A local HTTP server speaking Twilio's Messages API shape; records every request."""

    SID = "AC0123456789abcdef0123456789abcdef"
    TOKEN = "twilio-test-token"  # noqa: S105 (a test double's credential)

    def __init__(self, *, status: int = 201) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = status
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length).decode()
                outer.requests.append(
                    {
                        "path": self.path,
                        "authorization": self.headers.get("authorization", ""),
                        "content_type": self.headers.get("content-type", ""),
                        "form": {k: v[0] for k, v in parse_qs(body).items()},
                    }
                )
                payload = b'{"sid": "SM123", "status": "queued"}'
                self.send_response(outer.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def provider_url(self) -> str:
        return f"twilio+http://{self.SID}:{self.TOKEN}@127.0.0.1:{self.port}?from=%2B15550001111"

    def last_code(self, to: str) -> str:
        import re

        for req in reversed(self.requests):
            if req["form"].get("To") == to:
                found = re.search(r"\b\d{6}\b", req["form"].get("Body", ""))
                if found:
                    return found.group(0)
        raise LookupError(f"no SMS to {to}")

    @contextmanager
    def running(self) -> Iterator[FakeTwilio]:
        self._thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
