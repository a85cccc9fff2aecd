"""The production topology on one machine: PostgreSQL, a gRPC code server, the webserver and the
daemon, on ``deploy/dagster.yaml`` and ``deploy/workspace.yaml``, wired as the Helm chart wires
them. ``make deploy-local`` runs it (``python -m catalog_assets_tests.support.topology``); the
production-topology test drives it through the webserver's GraphQL API.

Each service is its own process group, started with the environment an operator would give it
(``DAGSTER_PG_*`` for the instance, ``CATALOG_*``/``KAFKA_*`` for the code), and can be killed
and restarted on its own. Every wait is bounded; ``stop`` kills whatever is left.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg2
import requests
from psycopg2 import sql as pgsql

from catalog_assets_tests.support.postgres_cluster import free_port, running_cluster

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
LOCATION = "catalog_assets"
REPOSITORY = "__repository__"
DAGSTER_DATABASE = "dagster"


class TopologyError(RuntimeError):
    """A service did not come up in time; the message holds the end of its log."""


def wait_for(condition: Callable[[], Any], timeout: float, what: str, step: float = 0.5) -> Any:
    """``condition()``'s first truthy value, polled until ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


class GraphQL:
    """The webserver's GraphQL endpoint; every request is bounded by a timeout."""

    def __init__(self, url: str, timeout: float = 30) -> None:
        self.url = url.rstrip("/") + "/graphql"
        self.timeout = timeout

    def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        reply = requests.post(
            self.url, json={"query": query, "variables": variables}, timeout=self.timeout
        )
        reply.raise_for_status()
        body = reply.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]


class Topology:
    """The services, their environment and logs under one temporary folder."""

    def __init__(self, root: Path, env: Mapping[str, str]) -> None:
        self.root = root
        self.env = dict(env)
        self.processes: dict[str, subprocess.Popen] = {}
        self.web_port = free_port()
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.graphql = GraphQL(self.url)

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def _start(self, name: str, command: list[str]) -> None:
        with self.log(name).open("a") as log:
            self.processes[name] = subprocess.Popen(
                command,
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killed with its children
            )

    def tail(self, name: str, chars: int = 4000) -> str:
        path = self.log(name)
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def start_code_server(self) -> None:
        """``dagster code-server start``, as the image's command (the Dockerfile)."""
        self._start(
            "code-server",
            [
                str(BIN / "dagster"), "code-server", "start",
                "-m", "catalog_assets.definitions",
                "-h", self.env["DAGSTER_CODE_SERVER_HOST"],
                "-p", self.env["DAGSTER_CODE_SERVER_PORT"],
                "--location-name", LOCATION,
            ],
        )  # fmt: skip

    def start_webserver(self) -> None:
        self._start(
            "webserver",
            [
                str(BIN / "dagster-webserver"),
                "-w", str(DEPLOY / "workspace.yaml"),
                "-h", "127.0.0.1", "-p", str(self.web_port),
            ],
        )  # fmt: skip

    def start_daemon(self) -> None:
        self._start(
            "daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(DEPLOY / "workspace.yaml")]
        )

    def kill(self, name: str, sig: int = signal.SIGKILL, timeout: float = 30) -> None:
        """Signal the service's whole process group (its run workers too) and reap it."""
        process = self.processes.pop(name, None)
        if process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

        def group_gone() -> bool:  # the leader's children (run workers) go with it
            try:
                os.killpg(process.pid, signal.SIGKILL if sig == signal.SIGKILL else 0)
            except ProcessLookupError:
                return True
            return False

        try:
            wait_for(group_gone, timeout, f"the {name} process group to exit", step=0.2)
        except TimeoutError:
            os.killpg(process.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop every service: politely first, then for good."""
        for name in list(self.processes):
            self.kill(name, signal.SIGTERM, timeout=20)

    def wait_until_serving(self, timeout: float = 120) -> None:
        """Until the webserver answers and shows the code location loaded from the code server."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise TopologyError(f"{name} exited ({process.returncode}):\n{self.tail(name)}")

        def loaded() -> bool:
            try:
                data = self.graphql(
                    "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus"
                    " locationOrLoadError { __typename } } } } }"
                )
            except (requests.RequestException, ValueError):
                return False
            entries = data["workspaceOrError"].get("locationEntries") or []
            return any(
                entry["name"] == LOCATION
                and entry["loadStatus"] == "LOADED"
                and entry["locationOrLoadError"]["__typename"] == "RepositoryLocation"
                for entry in entries
            )

        try:
            wait_for(loaded, timeout, "the webserver to load the code location")
        except TimeoutError as error:
            logs = "\n".join(f"--- {n}\n{self.tail(n)}" for n in self.processes)
            raise TopologyError(f"{error}\n{logs}") from None

    def reload_location(self) -> None:
        """What an operator does after restarting a code server: reload it in the webserver."""
        self.graphql(
            "mutation($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name)"
            " { __typename } }",
            name=LOCATION,
        )


def _create_database(url: str, name: str) -> str:
    admin = psycopg2.connect(url)
    try:
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    finally:
        admin.close()
    return url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def running_topology(
    code_env: Mapping[str, str] | None = None, start_daemon: bool = True
) -> Iterator[Topology]:
    """PostgreSQL (one database for Dagster, one for the catalog store), the code server, the
    webserver and (unless ``start_daemon`` is false) the daemon; all stopped afterwards.

    ``code_env`` is the code's configuration (``CONTENT_SOURCE``, ``KAFKA_*``, ...);
    ``CATALOG_STORE_URL`` defaults to the cluster's catalog database.
    """
    with ExitStack() as stack:
        root = Path(tempfile.mkdtemp(prefix="catalog-topology-"))
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        store_url = stack.enter_context(running_cluster("catalog"))
        host_port = store_url.split("@", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1)
        _create_database(store_url, DAGSTER_DATABASE)
        home = root / "dagster_home"
        home.mkdir()
        shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": host,
            "DAGSTER_PG_PORT": port,
            "DAGSTER_PG_USER": "postgres",
            # The throwaway cluster trusts local connections; production passes a real secret.
            "DAGSTER_PG_PASSWORD": "unused-by-trust-auth",
            "DAGSTER_PG_DB": DAGSTER_DATABASE,
            "DAGSTER_CODE_SERVER_HOST": "127.0.0.1",
            "DAGSTER_CODE_SERVER_PORT": str(free_port()),
            "CATALOG_STORE_URL": store_url,
            **(code_env or {}),
        }
        topology = Topology(root, env)
        stack.callback(topology.stop)
        topology.start_code_server()
        topology.start_webserver()
        if start_daemon:
            topology.start_daemon()
        topology.wait_until_serving()
        yield topology


def main() -> None:
    """``make deploy-local``: the topology on the bundled sample, until interrupted."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.parse_args()
    from catalog_assets.devtools.broker import LocalBroker, ensure_topics
    from catalog_assets.settings import BY_NAME

    with ExitStack() as stack:
        code_env: dict[str, str] = {}
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        if not bootstrap:
            bootstrap = stack.enter_context(LocalBroker()).bootstrap_servers
            code_env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
            topics = (
                os.environ.get("KAFKA_CONTENT_TOPICS") or BY_NAME["KAFKA_CONTENT_TOPICS"].default
            )
            ensure_topics(bootstrap, [t.strip() for t in topics.split(",") if t.strip()])
        print("starting PostgreSQL, the code server, the webserver and the daemon ...", flush=True)
        topology = stack.enter_context(running_topology(code_env))
        print(
            f"Dagster UI (production topology): {topology.url}\n"
            f"logs: {topology.root}/*.log; KAFKA_BOOTSTRAP_SERVERS={bootstrap}\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        try:
            while all(p.poll() is None for p in topology.processes.values()):
                time.sleep(1)
            stopped = [n for n, p in topology.processes.items() if p.poll() is not None]
            print(f"stopped unexpectedly: {', '.join(stopped)}", file=sys.stderr)
            for name in stopped:
                print(topology.tail(name), file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print("stopping ...", flush=True)


if __name__ == "__main__":
    main()
