"""Shared fixtures.

PostgreSQL: `postgres_url` starts a private PostgreSQL cluster for the test session (or uses the
server named by CATALOG_TEST_POSTGRES_URL). `store` runs a test against both backends.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql as pgsql

from catalog_assets.store import CatalogStore, open_store

# --------------------------------------------------------------------------------------------
# A private PostgreSQL cluster
# --------------------------------------------------------------------------------------------

POSTGRES_URL_ENV = "CATALOG_TEST_POSTGRES_URL"
_TEST_DATABASE = "catalog_test"


def _postgres_bindir() -> Path:
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
    pytest.fail(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found via `pg_config --bindir` or "
        "in /usr/lib/postgresql/*/bin. Install them (Debian: apt-get install postgresql) or set "
        f"{POSTGRES_URL_ENV} to a server the tests may use.",
        pytrace=False,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Cluster:
    """A throwaway cluster in a temporary folder, run as `postgres` when the tests run as root."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="catalog-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "server.log"
        self.port = _free_port()
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
            pytest.fail(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n"
                f"{log}",
                pytrace=False,
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


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database for the session: CATALOG_TEST_POSTGRES_URL, or a private cluster."""
    given = os.environ.get(POSTGRES_URL_ENV)
    if given:
        yield given
        return
    cluster = _Cluster(_postgres_bindir())
    try:
        cluster.start()
        admin = psycopg2.connect(cluster.admin_url)
        try:
            admin.autocommit = True
            with admin.cursor() as cursor:
                cursor.execute(
                    pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(_TEST_DATABASE))
                )
        finally:
            admin.close()
        yield cluster.url(_TEST_DATABASE)
    finally:
        cluster.stop()


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """`postgres_url` with a fresh, empty schema first on the search path; dropped afterwards."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(postgres_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier(schema)))
        separator = "&" if "?" in postgres_url else "?"
        yield f"{postgres_url}{separator}options=-csearch_path%3D{schema}"
        with admin.cursor() as cursor:
            cursor.execute(pgsql.SQL("DROP SCHEMA {} CASCADE").format(pgsql.Identifier(schema)))
    finally:
        admin.close()


# --------------------------------------------------------------------------------------------
# The store, on both backends
# --------------------------------------------------------------------------------------------


@pytest.fixture(params=["duckdb", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store: a new DuckDB file, or a new PostgreSQL schema, per test."""
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'catalog.duckdb'}"
    return request.getfixturevalue("postgres_schema_url")


@pytest.fixture
def store(store_url: str) -> Iterator[CatalogStore]:
    """An open store on `store_url` (so on both backends) with its schema created."""
    with open_store(store_url) as opened:
        opened.ensure_schema()
        yield opened
