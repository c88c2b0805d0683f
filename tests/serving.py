"""Run `tasks serve` as a real process for tests: start, wait until it answers, stop or kill."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx

TASKS = str(Path(sys.executable).with_name("tasks"))


def run_tasks(*args: str, database: str | None = None) -> subprocess.CompletedProcess[str]:
    """The installed `tasks` command in its own process, to its end (on ``database`` if given)."""
    env = {**os.environ, **({"TASKS_DATABASE": database} if database else {})}
    return subprocess.run([TASKS, *args], capture_output=True, text=True, timeout=300, check=False, env=env)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One `tasks serve` process on a free loopback port."""

    def __init__(self, database: str, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [TASKS, "serve", "--port", str(self.port), "--log-level", "warning"],
            cwd=workdir,
            env={**os.environ, "TASKS_DATABASE": database, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr = ""

    def wait_ready(self, timeout: float = 60) -> Server:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early: {self.process.communicate()[1]}")
            if time.monotonic() > deadline:
                raise RuntimeError("server did not come up")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.stderr = self.process.communicate(timeout=30)[1]
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """kill -9: no shutdown, no flush, nothing."""
        self.process.kill()
        self.stderr = self.process.communicate(timeout=30)[1]
