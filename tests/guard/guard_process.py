"""A guarded app served by uvicorn in its OWN Python process, for the cross-process tests.

``python guard_process.py '<json config>'`` serves :func:`guardkit.make_app` on an already
listening socket inherited from the test (``fd``: no port race). The config holds the replay store
(an SQLite/PostgreSQL URL, or ``redis://…``), the public JWKS of the test's signing key and the
handler ``hold``. Each process builds its own guard, replay store and connections, as a second
server process of an app would. Every answer carries ``X-Server-Pid`` so the test can see both
processes answered. :func:`serve_processes` starts them from a test and stops them by their PIDs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _build_app(config: dict[str, Any]) -> Any:
    from guardkit import AUDIENCE, ISSUER, NOW, make_app, user_from_headers
    from starlette.types import Message, Receive, Scope, Send

    from stepguard.core.clock import FixedClock
    from stepguard.core.tokens import TokenKeySet
    from stepguard.guard import Guard, LocalKeys, RedisReplayStore, ReplayStore

    store_url: str = config["store"]
    store: ReplayStore | str = (
        RedisReplayStore(store_url) if store_url.startswith("redis://") else store_url
    )
    guard = Guard(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=LocalKeys(TokenKeySet.from_jwks(config["jwks"])),
        replay_store=store,
        current_user=user_from_headers,
        clock=FixedClock(NOW),
    )
    app = make_app(guard, hold=float(config.get("hold", 0.0)))
    pid = str(os.getpid()).encode()

    async def tagged(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-server-pid", pid)]
            await send(message)

        await app(scope, receive, send_tagged if scope["type"] == "http" else send)

    return tagged


def main() -> None:
    import uvicorn

    config = json.loads(sys.argv[1])
    parent = os.getppid()

    def exit_with_the_test() -> None:
        # If the test process is killed (e.g. by a timeout) this server must not outlive it.
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=exit_with_the_test, daemon=True).start()
    server = uvicorn.Server(
        uvicorn.Config(
            _build_app(config),
            fd=int(config["fd"]),
            log_level="warning",
            lifespan="on",
            ws="none",
        )
    )
    server.run()


@dataclass
class GuardProcess:
    """One server process: its PID, URL and log file."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def _start(config: dict[str, Any], log: Path) -> GuardProcess:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    with open(log, "wb") as out:
        proc = subprocess.Popen(  # noqa: S603 (our own interpreter and script)
            [sys.executable, str(HERE / "guard_process.py"), json.dumps({**config, "fd": fd})],
            pass_fds=(fd,),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=HERE,
        )
    # The child holds the socket now; closing ours makes a dead child refuse connections
    # instead of leaving them queued.
    listener.close()
    return GuardProcess(proc=proc, url=f"http://127.0.0.1:{port}", log=log)


def _wait_ready(server: GuardProcess, deadline: float) -> None:
    import httpx

    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"guard process exited early:\n{server.log_text()}")
        try:
            if httpx.get(server.url + "/plain", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"guard process not ready in time:\n{server.log_text()}")
        time.sleep(0.05)


def _stop(server: GuardProcess) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)  # uvicorn shuts down gracefully (lifespan)
        try:
            server.proc.wait(10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(5)


@contextlib.contextmanager
def serve_processes(
    count: int, *, store: str, jwks: dict[str, Any], hold: float = 0.0, timeout: float = 30.0
) -> Iterator[list[GuardProcess]]:
    """Start ``count`` server processes sharing ``store``; stop them (by PID) on exit."""
    logs = Path(tempfile.mkdtemp(prefix="stepguard-guard-proc-"))
    servers: list[GuardProcess] = []
    try:
        for i in range(count):
            servers.append(
                _start({"store": store, "jwks": jwks, "hold": hold}, logs / f"server-{i}.log")
            )
        deadline = time.monotonic() + timeout
        for server in servers:
            _wait_ready(server, deadline)
        yield servers
    finally:
        for server in servers:
            _stop(server)
        shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    main()
