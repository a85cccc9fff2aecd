"""A private, throwaway PostgreSQL cluster from the machine's PostgreSQL binaries.

Used by the test suite (``conftest.postgres_url``) and the benchmarks. ``initdb`` refuses to run
as root, so as root the cluster belongs to the ``postgres`` OS user (``runuser``); it listens on
127.0.0.1 and a free port, with durability switched off (it is thrown away afterwards).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
from psycopg2 import sql as pgsql


class PostgresUnavailable(RuntimeError):
    """The cluster could not be started; the message says why."""


def postgres_bindir() -> Path:
    """The folder holding initdb and pg_ctl: `pg_config --bindir`, else /usr/lib/postgresql."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.strip():
            candidates.append(Path(found.stdout.strip()))
    newest_first = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda path: [int(p) if p.isdigit() else 0 for p in Path(path).parent.name.split(".")],
        reverse=True,
    )
    candidates.extend(Path(path) for path in newest_first)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found via `pg_config --bindir` or "
        "in /usr/lib/postgresql/*/bin. Install them (Debian: apt-get install postgresql) or set "
        "CATALOG_TEST_POSTGRES_URL to a server the tests may use."
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresCluster:
    """A throwaway cluster in a temporary folder, run as `postgres` when the tests run as root."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="catalog-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.sockets.mkdir()
        if self.as_root:
            # initdb refuses to run as root: the cluster belongs to the postgres OS user.
            for path in (self.root, self.sockets):
                shutil.chown(path, "postgres", "postgres")

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise PostgresUnavailable(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n"
                f"{log}"
            )

    def start(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


@contextmanager
def running_cluster(database: str) -> Iterator[str]:
    """Start a cluster with an empty ``database``; yields its URL; stops and removes it after."""
    cluster = PostgresCluster(postgres_bindir())
    try:
        cluster.start()
        admin = psycopg2.connect(cluster.admin_url)
        try:
            admin.autocommit = True
            with admin.cursor() as cursor:
                cursor.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(database)))
        finally:
            admin.close()
        yield cluster.url(database)
    finally:
        cluster.stop()
