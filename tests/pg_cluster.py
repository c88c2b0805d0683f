"""A throwaway PostgreSQL cluster for the test suite: loopback only, a free port.

PostgreSQL refuses to run as root, so as root the cluster runs as the
``postgres`` user (``runuser``), in a data directory that user owns.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")


def pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in PG_BIN_DIRS:
        candidate = Path(directory, name)
        if candidate.exists():
            return str(candidate)
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """initdb + pg_ctl start on 127.0.0.1:<free port>; stop() removes it all.

    For the test suite the cluster trades durability for speed (``fsync``, ``synchronous_commit``
    and ``full_page_writes`` off): a test checks what a commit does, not that the disk kept it.
    ``durable=True`` keeps PostgreSQL's defaults, as a deployment has them: what a benchmark
    must run on, since the service's 2xx means the events are on disk."""

    def __init__(self, durable: bool = False) -> None:
        self.durable = durable
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="tasks-pg-"))
        self.datadir = self.root / "data"
        self.log = self.root / "postgres.log"
        self._names = itertools.count(1)
        self._as_postgres = os.geteuid() == 0
        self.options = ""

    def _run(self, *args: str) -> None:
        command = list(args)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def start(self) -> PgCluster:
        initdb, pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
        if not initdb or not pg_ctl:
            raise FileNotFoundError("initdb/pg_ctl not found: install PostgreSQL server binaries")
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(initdb, "-D", str(self.datadir), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        self.options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -k {self.root} "
                        "-c max_connections=300")
        if not self.durable:
            self.options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self.pg_ctl("start")
        return self

    def pg_ctl(self, action: str) -> None:
        """stop (fast) or start the server again, for fault tests."""
        pg_ctl = pg_binary("pg_ctl")
        assert pg_ctl is not None
        if action == "stop":
            self._run(pg_ctl, "-D", str(self.datadir), "-m", "fast", "-w", "stop")
        else:
            self._run(pg_ctl, "-D", str(self.datadir), "-o", self.options, "-l", str(self.log), "-w", "-t", "60",
                      "start")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres:postgres@127.0.0.1:{self.port}/{dbname}"

    def new_database(self) -> str:
        """A fresh empty database, so that every test starts clean."""
        import psycopg

        name = f"test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def stop(self) -> None:
        try:
            self.pg_ctl("stop")
        except subprocess.CalledProcessError:
            pass
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def started_or_skipped(cluster: PgCluster | None = None) -> PgCluster:
    """``cluster`` (by default the suite's) started; where none can start, skip the test — or,
    under CI=true, fail it."""
    import pytest

    cluster = cluster or PgCluster()
    try:
        return cluster.start()
    except Exception as error:  # noqa: BLE001 - reported as a skip or, in CI, a failure
        cluster.stop()
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL test cluster did not start: {error}")
        pytest.skip(f"PostgreSQL test cluster did not start: {error}")
