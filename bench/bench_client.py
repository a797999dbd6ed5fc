"""Client SDK: the local step-up check with a cached token (issue 5 target: <= 2 µs, no I/O).

``client.step_up_auth.is_step_up_required(scope)`` with a valid token held runs the whole sans-IO
flow through the sync driver and answers from the token store; the SDK's transport counts the
requests that reach it, and the benchmark fails if any does. Floors: the store lookup alone and
one ``time.time()`` call (the clock read every check needs). performance.md G7 measured 0.2 µs
for a bare dict hit plus clock; the flow and driver add the generator's creation and one step.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import httpx

from bench._harness import Case, Report
from stepguard.client import AsyncClient, Client, TokenStore

TARGET_US = 2.0
SCOPE = "wallet:export"


def _token(exp: float) -> str:
    def part(data: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {"scope": "wallet:export wallet:sign", "exp": exp, "single_use": False}
    return f"{part({'alg': 'EdDSA', 'typ': 'elevated+jwt'})}.{part(claims)}.sig"


class _Counting(httpx.BaseTransport, httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.count = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        return httpx.Response(503)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        return httpx.Response(503)


def run(report: Report) -> None:
    transport = _Counting()
    client = Client("http://stepguard.invalid", "env", session_token="s", transport=transport)
    token = _token(time.time() + 3600)
    client.tokens.add(token)
    store: TokenStore = client.tokens
    check = client.step_up_auth.is_step_up_required

    def local_check() -> bool:
        return check(SCOPE)

    assert local_check() is False
    report.group(
        [
            Case("clock read (time.time)", time.time, floor=True),
            Case("token store peek", lambda: store.peek(SCOPE), vs="clock read (time.time)"),
            Case(
                "is_step_up_required (sync, cached token)",
                local_check,
                vs="clock read (time.time)",
            ),
        ]
    )

    async_client = AsyncClient(
        "http://stepguard.invalid", "env", session_token="s", transport=transport
    )
    async_client.tokens.add(token)
    async_check = async_client.step_up_auth.is_step_up_required
    batch = 1000

    async def many() -> None:
        for _ in range(batch):
            await async_check(SCOPE)

    loop = asyncio.new_event_loop()
    try:
        m = report.measure(
            f"async is_step_up_required x{batch} (cached)",
            lambda: loop.run_until_complete(many()),
            note=f"per call: divide by {batch}",
        )
    finally:
        loop.close()
    client.close()

    per_call = report.find("is_step_up_required (sync, cached token)").median_s * 1e6
    per_async = m.median_s / batch * 1e6
    report.note(
        f"local check: sync {per_call:.2f} µs, async {per_async:.2f} µs per call "
        f"(target <= {TARGET_US} µs); network calls during the runs: {transport.count}"
    )
    if transport.count:
        raise AssertionError(f"the cached check made {transport.count} network calls")
    if per_call > TARGET_US:
        report.note(f"MISSED: the sync local check took {per_call:.2f} µs (> {TARGET_US} µs)")
