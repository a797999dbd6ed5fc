"""A terminal for tests: tmux on a private socket, read back as the rendered screen.

components.md §6: wait for each screen state before sending the next key; ``-f /dev/null``; a
private ``-L`` socket killed by name; the pane stays alive after the program exits so its last
screen can still be read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

APP = Path(__file__).with_name("_terminal_app.py")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WAIT = 60.0  # a loaded CI machine needs several seconds just to import the server


class Terminal:
    """One tmux session running one program."""

    def __init__(self, width: int = 100, height: int = 50) -> None:
        if shutil.which("tmux") is None:
            pytest.skip("tmux is not installed")
        self.socket = f"stepguard-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.width, self.height = width, height

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True
        )
        return done.stdout

    def start(self, command: str) -> None:
        self.tmux(
            "-f", "/dev/null", "new-session", "-d", "-s", "t",
            "-x", str(self.width), "-y", str(self.height),
            f"{command}; sleep 120",
        )  # fmt: skip

    def screen(self) -> str:
        """The visible screen, wrapped lines joined, trailing blanks trimmed."""
        return self.tmux("capture-pane", "-p", "-J", "-t", "t")

    def snapshot(self, name: str) -> None:
        """With ``STEPGUARD_SCREENSHOTS=1``, keep the screen as ``docs/screenshots/terminal-NAME.txt``
        (the terminal's counterpart of the browser screenshots)."""
        if os.environ.get("STEPGUARD_SCREENSHOTS") != "1":
            return
        text = "\n".join(line.rstrip() for line in self.screen().splitlines())
        text = re.sub(r"\n{3,}", "\n\n", text).strip("\n")  # the rows kept free for the toolbar
        (SCREENSHOTS / f"terminal-{name}.txt").write_text(text + "\n")

    def wait_for(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        """Poll the screen (every 50 ms) until ``pattern`` (a regex) shows."""
        deadline = time.monotonic() + timeout
        compiled = re.compile(pattern, re.MULTILINE)
        while True:
            screen = self.screen()
            found = compiled.search(screen)
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} never showed; the screen:\n{screen}")
            time.sleep(0.05)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "t", "-l", text)

    def key(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


class App:
    """``_terminal_app.py SCENARIO`` in a :class:`Terminal`, and the server it started."""

    def __init__(self, terminal: Terminal, tmp: Path, scenario: str) -> None:
        self.terminal = terminal
        info = tmp / "info.json"
        command = f"cd {tmp} && {sys.executable} {APP} {scenario} {info}"
        terminal.start(command)
        deadline = time.monotonic() + WAIT
        while not info.exists() or not info.read_text():
            if time.monotonic() > deadline:
                raise AssertionError(f"the app did not start:\n{terminal.screen()}")
            time.sleep(0.05)
        self.info: dict[str, Any] = json.loads(info.read_text())

    def codes(self) -> list[str]:
        """The codes the server sent so far (its dev outbox, over HTTP), oldest first."""
        url = f"{self.info['url']}/sdk/{self.info['environment_id']}/dev/outbox"
        messages = httpx.get(url, timeout=10).json()["messages"]
        return [str(m["code"]) for m in messages]

    def totp(self, index: int) -> str:
        import pyotp

        return str(pyotp.TOTP(self.info["totp"][index]["secret"]).at(self.info["now"]))

    def result(self) -> str:
        return self.terminal.wait_for(r"^RESULT (.*)$").group(1).strip()
