"""The service fixtures really work: SQL round trips, Redis, SMTP delivery, uvicorn in a thread."""

from __future__ import annotations

import os
import socket
from email.message import EmailMessage

import aiosmtplib
import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from _services import PostgresServer, SmtpSink, free_port, run_uvicorn_in_thread


async def test_sql_round_trip(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE grants (jti VARCHAR(64) PRIMARY KEY, n INTEGER)"))
            await conn.execute(
                text("INSERT INTO grants (jti, n) VALUES (:j, :n)"),
                [{"j": "a", "n": 1}, {"j": "b", "n": 2}],
            )
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT jti, n FROM grants ORDER BY jti"))).all()
            assert [tuple(r) for r in rows] == [("a", 1), ("b", 2)]
            dialect = conn.dialect.name
    finally:
        await engine.dispose()
    assert dialect == ("sqlite" if "sqlite" in database_url else "postgresql")


@pytest.mark.postgres
async def test_postgres_databases_are_isolated(postgres_server: PostgresServer) -> None:
    url_a, url_b = postgres_server.create_database(), postgres_server.create_database()
    assert url_a != url_b
    assert url_a.startswith(f"postgresql+asyncpg://postgres@127.0.0.1:{postgres_server.port}/")
    a, b = create_async_engine(url_a), create_async_engine(url_b)
    try:
        async with a.begin() as conn:
            await conn.execute(text("CREATE TABLE only_in_a (x INTEGER)"))
        async with b.connect() as conn:
            found = await conn.scalar(text("SELECT to_regclass('only_in_a') IS NOT NULL"))
            assert found is False
            # The server is the throwaway one: durability off, as configured.
            assert await conn.scalar(text("SHOW fsync")) == "off"
    finally:
        await a.dispose()
        await b.dispose()
    # Data dir is not under pytest's root-only tmp dir and belongs to the server's user.
    assert os.path.isdir(os.path.join(postgres_server.dir, "data"))


@pytest.mark.redis
async def test_redis_set_get(redis_url: str) -> None:
    assert redis_url.startswith("redis://127.0.0.1:") and redis_url.endswith("/0")
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await client.set("jti:abc", "1", nx=True, ex=60) is True
        assert await client.set("jti:abc", "1", nx=True, ex=60) is None  # consume-once semantics
        assert await client.get("jti:abc") == b"1"
        assert await client.config_get("save") == {"save": ""}
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_redis_url_is_flushed_per_test(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await client.get("jti:abc") is None  # the key of the test above is gone
    finally:
        await client.aclose()


async def test_smtp_sink_receives_mail(smtp_sink: SmtpSink) -> None:
    assert smtp_sink.url == f"smtp://127.0.0.1:{smtp_sink.port}"
    for code in ("111111", "48213977"):
        msg = EmailMessage()
        msg["From"] = "stepguard@example.test"
        msg["To"] = "Alice <alice@example.test>"
        msg["Subject"] = "Your verification code"
        msg.set_content(f"Your code is {code}. It expires in 5 minutes.")
        await aiosmtplib.send(msg, hostname=smtp_sink.host, port=smtp_sink.port, start_tls=False)
    assert len(smtp_sink.messages) == 2
    assert isinstance(smtp_sink.messages[0], EmailMessage)
    assert smtp_sink.last_code(to="alice@example.test") == "48213977"
    assert smtp_sink.last_code(to="ALICE@example.test") == "48213977"
    got = smtp_sink.wait_for(lambda m: "111111" in SmtpSink.text_of(m), timeout=1)
    assert got["Subject"] == "Your verification code"
    got = await smtp_sink.wait_for_async(lambda m: "48213977" in SmtpSink.text_of(m), timeout=1)
    assert got is smtp_sink.messages[1]
    with pytest.raises(LookupError):
        smtp_sink.last_code(to="bob@example.test")
    with pytest.raises(TimeoutError):
        smtp_sink.wait_for(lambda m: "999999" in SmtpSink.text_of(m), timeout=0.05)


async def test_smtp_sink_code_needs_6_to_8_digits(smtp_sink: SmtpSink) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.test", "b@example.test", "hi"
    msg.set_content("ref 12345, order 123456789, nothing else")
    await aiosmtplib.send(msg, hostname=smtp_sink.host, port=smtp_sink.port, start_tls=False)
    with pytest.raises(LookupError):
        smtp_sink.last_code(to="b@example.test")


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


async def _app(scope: dict, receive: object, send: object) -> None:  # a minimal ASGI app
    if scope["type"] == "lifespan":
        while True:
            message = await receive()  # type: ignore[operator]
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})  # type: ignore[operator]
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})  # type: ignore[operator]
                return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )  # type: ignore[operator]
    await send({"type": "http.response.body", "body": scope["path"].encode()})  # type: ignore[operator]


async def test_run_uvicorn_in_thread_serves_real_http() -> None:
    with run_uvicorn_in_thread(_app) as srv:
        assert srv.url == f"http://127.0.0.1:{srv.port}"
        async with httpx.AsyncClient(base_url=srv.url) as client:
            r = await client.get("/hello")
        assert r.status_code == 200 and r.text == "/hello"
        assert srv.thread.is_alive()
    assert not srv.thread.is_alive()
    with socket.socket() as s:  # stopped: nothing listens any more
        assert s.connect_ex(("127.0.0.1", srv.port)) != 0


def test_run_uvicorn_in_thread_reports_a_taken_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(RuntimeError, match="did not start"):
            with run_uvicorn_in_thread(_app, s.getsockname()[1]):
                pass
