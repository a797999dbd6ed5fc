"""The two drivers of the sans-IO flows, and the httpx auth that runs :func:`._flows.exchange`.

A driver answers each effect a flow yields: requests through its httpx client, prompts through
the prompter, calls of signers and authenticators, and :class:`Exclusive` sub-flows under a lock
per key, so that concurrent requests hitting the same challenge share one prompt (the first one
prompts; the others wait, then find the token it stored). An exception while answering is thrown
into the flow, which may handle it (the step-up check fails closed that way).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncGenerator, Generator
from typing import Any, TypeVar

import httpx

from stepguard.client._errors import PrompterMissing
from stepguard.client._flows import ClientCore, exchange
from stepguard.client._models import Call, Effect, Flow, PromptNeeded

__all__ = ["AsyncDriver", "StepUpHttpAuth", "SyncDriver"]

T = TypeVar("T")


def _plain(value: Any) -> Any:
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()
        raise TypeError("an async prompter, signer or authenticator needs stepguard.AsyncClient")
    return value


def _prompter(core: ClientCore) -> Any:
    if core.prompter is None:
        raise PrompterMissing()
    return core.prompter


class SyncDriver:
    """Runs flows with an :class:`httpx.Client`; locks are :class:`threading.Lock` per key."""

    def __init__(self, core: ClientCore, http: httpx.Client) -> None:
        self.core = core
        self.http = http
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def run(self, flow: Flow[T]) -> T:
        reply: Any = None
        error: Exception | None = None
        while True:
            try:
                effect = flow.send(reply) if error is None else flow.throw(error)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            try:
                reply, error = self.handle(effect), None
            except Exception as exc:  # thrown into the flow, which may handle it
                reply, error = None, exc

    def handle(self, effect: Effect) -> Any:
        if isinstance(effect, httpx.Request):
            return self.http.send(effect)
        if isinstance(effect, PromptNeeded):
            return _plain(_prompter(self.core).prompt(effect))
        if isinstance(effect, Call):
            return _plain(effect.fn(*effect.args))
        with self._guard:
            lock = self._locks.setdefault(effect.key, threading.Lock())
        with lock:
            return self.run(effect.flow())


class AsyncDriver:
    """Runs flows with an :class:`httpx.AsyncClient`; locks are :class:`asyncio.Lock` per key."""

    def __init__(self, core: ClientCore, http: httpx.AsyncClient) -> None:
        self.core = core
        self.http = http
        self._locks: dict[str, asyncio.Lock] = {}

    async def run(self, flow: Flow[T]) -> T:
        reply: Any = None
        error: Exception | None = None
        while True:
            try:
                effect = flow.send(reply) if error is None else flow.throw(error)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            try:
                reply, error = await self.handle(effect), None
            except Exception as exc:  # thrown into the flow, which may handle it
                reply, error = None, exc

    async def handle(self, effect: Effect) -> Any:
        if isinstance(effect, httpx.Request):
            return await self.http.send(effect)
        if isinstance(effect, PromptNeeded):
            answer = _prompter(self.core).prompt(effect)
            return await answer if inspect.isawaitable(answer) else answer
        if isinstance(effect, Call):
            result = effect.fn(*effect.args)
            return await result if inspect.isawaitable(result) else result
        lock = self._locks.setdefault(effect.key, asyncio.Lock())
        async with lock:
            return await self.run(effect.flow())


class StepUpHttpAuth(httpx.Auth):
    """The auth of ``client.http``: :func:`exchange` for every request of the app's API.

    Requests go through the app's httpx client (yielded to httpx); step-up sub-flows run on the
    SDK's driver, against the stepguard server. Bodies are read before the flow sees a response
    (as httpx's ``requires_response_body``)
    (the challenge's ``code`` is in the body), so ``client.http`` does not stream responses.
    """

    def __init__(
        self,
        core: ClientCore,
        *,
        sync_driver: SyncDriver | None = None,
        async_driver: AsyncDriver | None = None,
    ) -> None:
        self._core = core
        self._sync = sync_driver
        self._async = async_driver

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        if self._sync is None:
            raise TypeError("this auth belongs to an async client")
        flow = exchange(self._core, request)
        reply: Any = None
        while True:
            try:
                effect = flow.send(reply)
            except StopIteration:
                return
            if isinstance(effect, httpx.Request):
                reply = yield effect
                reply.read()
            else:
                reply = self._sync.handle(effect)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self._async is None:
            raise TypeError("this auth belongs to a sync client")
        flow = exchange(self._core, request)
        reply: Any = None
        while True:
            try:
                effect = flow.send(reply)
            except StopIteration:
                return
            if isinstance(effect, httpx.Request):
                reply = yield effect
                await reply.aread()
            else:
                reply = await self._async.handle(effect)
