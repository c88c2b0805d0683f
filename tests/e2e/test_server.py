"""`tasks serve` as a user runs it: a real server process on a real port."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx

TASKS = str(Path(sys.executable).with_name("tasks"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(database: str, workdir: Path, env: dict[str, str] | None = None) -> Iterator[tuple[str, list[str]]]:
    """Run `tasks serve` until the block ends; yields its base URL and its stderr lines so far."""
    port = free_port()
    process = subprocess.Popen(
        [TASKS, "serve", "--port", str(port), "--log-level", "warning"],
        cwd=workdir,
        env={**os.environ, "TASKS_DATABASE": database, **(env or {})},
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "server exited early"
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.1)
        yield url, lines
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        lines.extend(stderr.splitlines())


def test_first_start_prints_a_key_once_and_a_restart_keeps_every_task(tmp_path: Path) -> None:
    database = "sqlite:///var/tasks.db"  # relative: under the working directory, as in the quick start

    with serve(database, tmp_path) as (url, lines):
        pass
    printed = [line.strip() for line in lines if line.strip().startswith("tk_")]
    assert len(printed) == 1, lines
    key = printed[0]
    assert (tmp_path / "var" / "tasks.db").exists()

    auth = {"Authorization": f"Bearer {key}"}
    with serve(database, tmp_path) as (url, lines):
        created = httpx.post(f"{url}/agents/tasks", json={"task": "survive a restart", "agentId": "amy"}, headers=auth)
        assert created.status_code == 201
        task_id = created.json()["data"]["taskId"]
        assert created.json()["data"]["trackingUrl"] == f"{url}/agents/tasks/{task_id}"
        assert httpx.post(f"{url}/agents/tasks/{task_id}/start", json={}, headers=auth).status_code == 200
    assert not any(re.search(r"tk_", line) for line in lines), "the key is printed only on the first start"

    with serve(database, tmp_path) as (url, _):
        task = httpx.get(f"{url}/agents/tasks/{task_id}", headers=auth).json()["data"]
        listed = httpx.get(f"{url}/agents/tasks", headers=auth).json()["data"]
        assert (task["status"], task["version"]) == ("in_progress", 2)
        assert [(t["taskId"], t["status"]) for t in listed["tasks"]] == [(task_id, "in_progress")]
        assert httpx.get(f"{url}/agents/tasks", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_bootstrap_key_from_the_environment(tmp_path: Path) -> None:
    with serve(f"sqlite:///{tmp_path}/t.db", tmp_path, {"TASKS_BOOTSTRAP_KEY": "chosen-key"}) as (url, _):
        response = httpx.get(f"{url}/agents/tasks", headers={"Authorization": "Bearer chosen-key"})
        assert response.status_code == 200


def test_a_client_that_hangs_up_mid_body_is_not_a_server_error(tmp_path: Path) -> None:
    """A client may close its connection before its body has arrived (a load generator
    stopping, a phone losing its signal): the request is counted as 499, as nginx logs it,
    and the server logs no error or traceback for it."""
    key = "hang-up-key"
    with serve(f"sqlite:///{tmp_path}/t.db", tmp_path, {"TASKS_BOOTSTRAP_KEY": key}) as (url, lines):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /agents/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode()
                         + b"\r\nIdempotency-Key: hung-up\r\nContent-Type: application/json"
                         + b"\r\nContent-Length: 100\r\n\r\n{\"task\": ")
            time.sleep(0.3)  # the server has read the headers and waits for the rest of the body
        deadline = time.monotonic() + 10
        while 'status="499"' not in (metrics := httpx.get(f"{url}/metrics").text):
            assert time.monotonic() < deadline, "the hang-up was never counted"
            time.sleep(0.1)
        assert 'status="500"' not in metrics
        # The hung-up request got no answer, so its retry with the same key runs the command.
        retried = httpx.post(f"{url}/agents/tasks", json={"task": "after"},
                             headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "hung-up"})
        assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers
        assert retried.json()["data"]["task"] == "after"
    assert not [line for line in lines if "Traceback" in line or '"level": "ERROR"' in line], lines
