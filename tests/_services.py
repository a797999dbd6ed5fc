"""Real services for the tests: a throwaway PostgreSQL, Redis, an SMTP sink, uvicorn in a thread.

Every server binds to 127.0.0.1 on a port picked at run time, keeps its files in its own temporary
directory and is stopped by its own PID (or ``pg_ctl stop``) when the session ends, also on failure.
The recipes and their pitfalls are in ``shared/reference/components.md``; the short version:

* PostgreSQL refuses to run as root, so as root we run Debian's binaries through
  ``runuser -u postgres``; the data dir lives in a ``mkdtemp`` dir chowned to ``postgres`` (not
  under pytest's root-only ``tmp_path``), the Unix socket goes there too (``-k``) so it cannot
  clash with a system cluster, and durability is off because the data is thrown away.
* Redis runs in the foreground (``Popen``), no RDB/AOF, readiness by polling ``PING``.
* aiosmtpd's ``Controller(port=0)`` probes the port it was given and fails: pick a port first.

Helpers other test folders import directly:
``from _services import free_port, run_uvicorn_in_thread``
(the root ``conftest.py`` puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import glob
import itertools
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Any

__all__ = [
    "PostgresServer",
    "RedisServer",
    "RunningServer",
    "ServiceUnavailable",
    "SmtpSink",
    "find_pg_bin",
    "free_port",
    "run_uvicorn_in_thread",
]

LOOPBACK = "127.0.0.1"


class ServiceUnavailable(RuntimeError):
    """The binary a fixture needs is not installed (the fixture turns this into ``pytest.skip``)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _wait_port_closed(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((LOOPBACK, port)) != 0:
                return
        time.sleep(0.02)


# --------------------------------------------------------------------------------------------------
# PostgreSQL


def find_pg_bin() -> str | None:
    """Directory of the newest installed PostgreSQL server binaries (Debian layout first)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: [int(x) for x in re.findall(r"\d+", p)],
    )
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return os.path.dirname(initdb)
    return None


class PostgresServer:
    """A throwaway PostgreSQL cluster on a free loopback port.

    ``url(db)`` is an SQLAlchemy async URL (asyncpg driver); ``create_database()`` makes a fresh,
    uniquely named database and returns its URL, so each test that needs isolation gets its own.
    """

    def __init__(self) -> None:
        bindir = find_pg_bin()
        if bindir is None:
            raise ServiceUnavailable(
                "PostgreSQL server binaries (initdb, pg_ctl) are not installed; "
                "run scripts/ensure-system-deps.sh (apt-get install postgresql)"
            )
        self.bindir = bindir
        self.port = 0
        self.dir = ""
        self._started = False
        self._admin: Any = None
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._as_root = os.geteuid() == 0
        if self._as_root and shutil.which("runuser") is None:
            raise ServiceUnavailable("running as root but runuser is missing (util-linux)")

    # The server's own processes run as `postgres` when we are root (initdb refuses root).
    def _cmd(self, *args: str) -> list[str]:
        return (["runuser", "-u", "postgres", "--"] if self._as_root else []) + list(args)

    def _run(self, *args: str, timeout: float = 60) -> None:
        proc = subprocess.run(
            self._cmd(*args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{os.path.basename(args[0])} failed ({proc.returncode}): "
                f"{proc.stdout.strip()} {proc.stderr.strip()} {self._log_tail()}"
            )

    def _log_tail(self) -> str:
        try:
            with open(os.path.join(self.dir, "log"), encoding="utf-8", errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def start(self) -> PostgresServer:
        self.dir = tempfile.mkdtemp(prefix="stepguard-pg-")
        if self._as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        data = os.path.join(self.dir, "data")
        self._run(
            os.path.join(self.bindir, "initdb"),
            "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        # The port is free when picked but may be taken before the postmaster binds it: retry.
        last: Exception | None = None
        for _ in range(3):
            self.port = free_port()
            opts = (
                f"-h {LOOPBACK} -p {self.port} -k {self.dir} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            try:
                self._run(
                    os.path.join(self.bindir, "pg_ctl"),
                    "-D", data, "-l", os.path.join(self.dir, "log"), "-w", "-t", "30",
                    "-o", opts, "start",
                )  # fmt: skip
            except RuntimeError as exc:
                last = exc
                continue
            self._started = True
            return self
        raise RuntimeError(f"PostgreSQL did not start: {last}")

    def stop(self) -> None:
        """Stop the server and delete its directory; safe to call twice or after a failed start."""
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.close()
            self._admin = None
        if self._started:
            data = os.path.join(self.dir, "data")
            try:
                self._run(
                    os.path.join(self.bindir, "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop",
                    timeout=30,
                )  # fmt: skip
            except (RuntimeError, subprocess.TimeoutExpired):
                self._kill_postmaster(data)
            self._started = False
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = ""

    @staticmethod
    def _kill_postmaster(data: str) -> None:
        # Last resort, by the PID the postmaster wrote itself (never by name).
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(os.path.join(data, "postmaster.pid"), encoding="ascii") as f:
                pid = int(f.readline().strip())
            os.kill(pid, signal.SIGQUIT)

    @property
    def dsn_base(self) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}"

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq/asyncpg DSN (no SQLAlchemy driver suffix)."""
        return f"{self.dsn_base}/{dbname}"

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy async URL for ``dbname``."""
        return f"postgresql+asyncpg://postgres@{LOOPBACK}:{self.port}/{dbname}"

    def create_database(self, prefix: str = "t") -> str:
        """Create a fresh, uniquely named database and return its SQLAlchemy async URL."""
        import psycopg

        name = f"{prefix}_{next(self._counter)}_{secrets.token_hex(4)}"
        with self._lock:
            if self._admin is None or self._admin.closed:
                self._admin = psycopg.connect(self.dsn("postgres"), autocommit=True)
            # FILE_COPY: a small template is copied in a few ms; WAL_LOG (the PG15 default)
            # writes every page into the WAL first and is several times slower here.
            self._admin.execute(f'CREATE DATABASE "{name}" STRATEGY = FILE_COPY')
        return self.url(name)


# --------------------------------------------------------------------------------------------------
# Redis


class RedisServer:
    """``redis-server`` in the foreground on a free port, with persistence off."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceUnavailable(
                "redis-server is not installed; run scripts/ensure-system-deps.sh "
                "(apt-get install redis-server)"
            )
        self.binary = binary
        self.port = 0
        self.dir = ""
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        import redis

        self.dir = tempfile.mkdtemp(prefix="stepguard-redis-")
        for _ in range(3):
            self.port = free_port()
            self.proc = subprocess.Popen(
                [
                    self.binary, "--bind", LOOPBACK, "--port", str(self.port),
                    "--save", "", "--appendonly", "no", "--dir", self.dir,
                    "--logfile", os.path.join(self.dir, "redis.log"),
                ],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            client = redis.Redis(host=LOOPBACK, port=self.port, socket_connect_timeout=0.5)
            deadline = time.monotonic() + timeout
            try:
                while time.monotonic() < deadline and self.proc.poll() is None:
                    try:
                        if client.ping():
                            return self
                    except redis.exceptions.ConnectionError:
                        time.sleep(0.01)
            finally:
                client.close()
            self._stop_proc()  # died (port taken) or never answered: try another port
        self.stop()
        raise RuntimeError("redis-server did not start")

    def _stop_proc(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        self._stop_proc()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = ""


# --------------------------------------------------------------------------------------------------
# SMTP sink

_CODE = re.compile(r"(?<![0-9])[0-9]{6,8}(?![0-9])")


class SmtpSink:
    """An aiosmtpd server collecting every message it receives.

    ``messages`` holds :class:`email.message.EmailMessage` objects in arrival order (a message is
    there by the time the client's ``send`` returns). ``url`` is ``smtp://127.0.0.1:PORT``.
    """

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.recipients: list[tuple[str, ...]] = []
        self.port = 0
        self._controller: Any = None
        self._cond = threading.Condition()

    # aiosmtpd handler hook (runs on the controller's own thread and loop).
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        with self._cond:
            self.messages.append(msg)
            self.recipients.append(tuple(str(r).lower() for r in envelope.rcpt_tos))
            self._cond.notify_all()
        return "250 OK"

    @property
    def url(self) -> str:
        return f"smtp://{LOOPBACK}:{self.port}"

    @property
    def host(self) -> str:
        return LOOPBACK

    def start(self) -> SmtpSink:
        from aiosmtpd.controller import Controller

        last: Exception | None = None
        for _ in range(3):
            self.port = free_port()
            controller = Controller(self, hostname=LOOPBACK, port=self.port)
            try:
                controller.start()
            except Exception as exc:  # port raced away: pick another
                last = exc
                continue
            self._controller = controller
            return self
        raise RuntimeError(f"SMTP sink did not start: {last}")

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()
            self.recipients.clear()

    def to(self, address: str) -> list[EmailMessage]:
        """Messages addressed to ``address`` (envelope or To/Cc header), oldest first."""
        wanted = address.strip().lower()
        with self._cond:
            pairs = list(zip(self.messages, self.recipients, strict=True))
        out = []
        for msg, rcpts in pairs:
            headers = [
                a.lower() for _, a in getaddresses(msg.get_all("to", []) + msg.get_all("cc", []))
            ]
            if wanted in rcpts or wanted in headers:
                out.append(msg)
        return out

    def wait_for(
        self, predicate: Callable[[EmailMessage], bool] | None = None, timeout: float = 5.0
    ) -> EmailMessage:
        """Block until a message matching ``predicate`` (any message if None) arrived; return it.

        This blocks the calling thread: use it when the sender runs elsewhere (a server in a
        thread or process). In an ``async`` test whose sender runs on the same loop, use
        :meth:`wait_for_async`.
        """
        pred: Callable[[EmailMessage], bool] = predicate or (lambda _m: True)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for msg in reversed(self.messages):
                    if pred(msg):
                        return msg
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"no matching email within {timeout}s ({len(self.messages)} received)"
                    )
                self._cond.wait(left)

    async def wait_for_async(
        self, predicate: Callable[[EmailMessage], bool] | None = None, timeout: float = 5.0
    ) -> EmailMessage:
        """Like :meth:`wait_for`, but yields to the event loop while waiting."""
        import asyncio

        pred: Callable[[EmailMessage], bool] = predicate or (lambda _m: True)
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                for msg in reversed(self.messages):
                    if pred(msg):
                        return msg
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"no matching email within {timeout}s ({len(self.messages)} received)"
                )
            await asyncio.sleep(0.01)

    @staticmethod
    def text_of(msg: EmailMessage) -> str:
        """The plain-text body (or the HTML one when there is no plain part)."""
        part = msg.get_body(preferencelist=("plain", "html"))
        if part is None:
            return ""
        content = part.get_content()
        return content if isinstance(content, str) else ""

    def last_code(self, *, to: str) -> str:
        """The 6–8 digit code in the last message to ``to`` (body first, then subject)."""
        msgs = self.to(to)
        if not msgs:
            raise LookupError(f"no email to {to} ({len(self.messages)} received)")
        msg = msgs[-1]
        for text in (self.text_of(msg), str(msg.get("subject", ""))):
            found = _CODE.search(text)
            if found:
                return found.group(0)
        raise LookupError(f"the last email to {to} has no 6-8 digit code")


# --------------------------------------------------------------------------------------------------
# uvicorn in a thread


@dataclass(frozen=True, slots=True)
class RunningServer:
    """A live uvicorn server. ``url`` uses 127.0.0.1; browsers need ``localhost_url`` (WebAuthn)."""

    port: int
    server: Any
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def localhost_url(self) -> str:
        return f"http://localhost:{self.port}"


@contextlib.contextmanager
def run_uvicorn_in_thread(
    app: Any, port: int | None = None, *, startup_timeout: float = 10.0, **config: Any
) -> Iterator[RunningServer]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a daemon thread for the ``with`` block.

    Waits until uvicorn reports it started (lifespan startup included), and on exit asks it to
    shut down and joins the thread. Extra keyword arguments go to :class:`uvicorn.Config`.
    """
    import uvicorn

    port = port or free_port()
    options: dict[str, Any] = {"log_level": "warning", "ws": "none", "lifespan": "auto"}
    options.update(config)
    server = uvicorn.Server(uvicorn.Config(app, host=LOOPBACK, port=port, **options))
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            server.run()
        except BaseException as exc:  # surfaced to the test below, not lost in the thread
            failure.append(exc)

    thread = threading.Thread(target=serve, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if failure or not thread.is_alive():
            thread.join(1)
            raise RuntimeError(f"uvicorn did not start on port {port}: {failure[:1]!r}")
        if time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            raise RuntimeError(f"uvicorn did not start on port {port} within {startup_timeout}s")
        time.sleep(0.005)
    try:
        yield RunningServer(port=port, server=server, thread=thread)
    finally:
        server.should_exit = True
        thread.join(10)
        if thread.is_alive():
            server.force_exit = True
            thread.join(5)
        _wait_port_closed(port, timeout=2)
