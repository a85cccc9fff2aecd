"""The event lane fed as the real Open edX producer feeds it, through the code location's own
definitions: ``KAFKA_TOPIC_PREFIX=dev`` and nothing else renamed, Avro keys and values in
Confluent framing with the producer's headers, a schema registry that requires basic auth, a
real local course-discovery server that files a run under another course. And no secret in any
output or storage on every error path."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from catalog_assets import cli
from catalog_assets.definitions import defs
from catalog_assets.defs.partition_status import CONTENT_ITEM
from catalog_assets.defs.resources import build_resources
from catalog_assets.devtools.broker import ensure_topics
from catalog_assets.devtools.sample_data import generate_catalog_queries, generate_content
from catalog_assets.settings import Settings
from catalog_assets.store import open_store
from catalog_assets_tests.sensors.test_failed_runs import fast_retrying_batch_job
from catalog_assets_tests.support.fake_discovery import FakeDiscovery
from catalog_assets_tests.support.schema_registry import LocalSchemaRegistry
from sensors.content_events import SENSOR_NAME
from sensors.failed_runs import FAILED_RUNS_SENSOR

REGISTRY_KEY = "e2e-registry-key-Hq4"
REGISTRY_SECRET = "e2e-registry-secret-Zq81x"
TOPICS = ["dev-course-catalog-info-changed", "dev-content-metadata-changed"]


class Lane:
    """A code location configured by environment variables, as a deployment configures it."""

    def __init__(self, tmp_path: Path, monkeypatch, bootstrap: str, discovery: FakeDiscovery):
        self.tmp_path, self.monkeypatch, self.discovery = tmp_path, monkeypatch, discovery
        self.store_url = f"duckdb:///{tmp_path}/catalog.duckdb"
        queries = generate_catalog_queries(10, discovery.documents(), seed=6)
        (tmp_path / "queries.json").write_text(json.dumps(queries))
        home = tmp_path / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        self.home = home
        self.env(
            CATALOG_STORE_URL=self.store_url,
            CATALOG_QUERIES_PATH=str(tmp_path / "queries.json"),
            CONTENT_SOURCE="discovery",
            DISCOVERY_API_URL=discovery.api_url,
            LMS_OAUTH2_URL=discovery.oauth2_url,
            LMS_OAUTH2_CLIENT_ID=discovery.client_id,
            LMS_OAUTH2_CLIENT_SECRET=discovery.client_secret,
            KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            KAFKA_TOPIC_PREFIX="dev",
            KAFKA_CONSUMER_GROUP=f"e2e-{tmp_path.name}",
            DAGSTER_HOME=str(home),
        )
        self.instance = dg.DagsterInstance.from_config(str(home))

    def env(self, **values: str) -> None:
        for name, value in values.items():
            self.monkeypatch.setenv(name, value)

    def definitions(self) -> dg.Definitions:
        return defs()

    def tick(self, definitions: dg.Definitions, cursor: str | None = None):
        sensor = definitions.resolve_sensor_def(SENSOR_NAME)
        context = dg.build_sensor_context(
            instance=self.instance, cursor=cursor, resources=definitions.resources
        )
        return sensor(context)

    def execute(self, definitions: dg.Definitions, result: dg.SensorResult) -> list:
        for request in result.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        outcomes = []
        for run in result.run_requests:
            job = definitions.resolve_job_def(run.job_name)
            outcomes.append(
                job.execute_in_process(
                    run_config=run.run_config,
                    instance=self.instance,
                    partition_key=run.partition_key,
                    tags=run.tags,
                    raise_on_error=False,
                )
            )
        return outcomes


@pytest.fixture
def discovery() -> Iterator[FakeDiscovery]:
    with FakeDiscovery(generate_content(80, seed=12)) as fake:
        yield fake


@pytest.fixture
def event_bus_topics(kafka_bootstrap) -> Iterator[list[str]]:
    """The devstack's topics, prefixed `dev-`; deleted afterwards (they are not per test)."""
    ensure_topics(kafka_bootstrap, TOPICS)
    yield TOPICS
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_topics(TOPICS, operation_timeout=5).values():
        with contextlib.suppress(Exception):
            future.result(timeout=10)


def moved_run(fake: FakeDiscovery) -> tuple[dict, dict, dict]:
    """A run, the course its key names (home), and another course (new home)."""
    documents = fake.documents()
    courses = {d["key"]: d for d in documents if d["content_type"] == "course"}
    run = next(
        d
        for d in documents
        if d["content_type"] == "courserun"
        and d["aggregation_key"].removeprefix("courserun:") in courses
    )
    home = courses[run["aggregation_key"].removeprefix("courserun:")]
    new_home = next(c for key, c in courses.items() if key != home["key"])
    return run, home, new_home


def test_open_edx_events_with_a_prefix_and_an_authenticated_registry_are_applied(
    tmp_path, monkeypatch, kafka_bootstrap, event_bus_topics, discovery
):
    with LocalSchemaRegistry(credentials=(REGISTRY_KEY, REGISTRY_SECRET)) as registry:
        lane = Lane(tmp_path, monkeypatch, kafka_bootstrap, discovery)
        lane.env(
            KAFKA_SCHEMA_REGISTRY_URL=registry.url,
            KAFKA_SCHEMA_REGISTRY_API_KEY=REGISTRY_KEY,
            KAFKA_SCHEMA_REGISTRY_API_SECRET=REGISTRY_SECRET,
        )
        definitions = lane.definitions()
        refresh = definitions.resolve_job_def("full_refresh").execute_in_process(
            instance=lane.instance
        )
        assert refresh.success

        # course-discovery files the run under another course now; both courses changed.
        run, home, new_home = moved_run(discovery)
        newer = "2041-01-01T00:00:00Z"
        discovery.upsert_documents(
            [
                {**run, "aggregation_key": f"courserun:{new_home['key']}", "modified": newer},
                {**home, "title": "Home, one run fewer", "modified": newer},
                {**new_home, "title": "New home, one run more", "modified": newer},
            ]
        )
        # As Studio's producer sends it (publish: Avro key and value, registered schemas).
        assert cli.main(["publish", run["key"], "--format", "openedx"]) == 0
        assert set(registry.subjects()) == {
            f"{TOPICS[0]}-string",
            f"{TOPICS[0]}-org.openedx.content_authoring.course.catalog_info.changed.v1.CloudEvent",
        }

        result = lane.tick(definitions)
        assert isinstance(result, dg.SensorResult), result
        assert [r.partition_key for r in result.run_requests] == [run["key"]]
        outcomes = lane.execute(definitions, result)
        assert all(outcome.success for outcome in outcomes)

    with open_store(lane.store_url) as store:
        assert store.dead_letters() == []
        assert store.get_content(run["key"]).parent_content_key == new_home["key"]
        assert store.get_content(home["key"]).metadata["title"] == "Home, one run fewer"
        assert store.get_content(new_home["key"]).metadata["title"] == "New home, one run more"
    materialized = lane.instance.get_materialized_partitions(CONTENT_ITEM)
    assert {run["key"], home["key"], new_home["key"]} <= materialized
    lane.instance.dispose()


# --- no secret is ever printed or stored --------------------------------------------------------

SECRETS = {
    "KAFKA_SCHEMA_REGISTRY_API_KEY": "grep-regkey-Mm27p",
    "KAFKA_SCHEMA_REGISTRY_API_SECRET": "grep-regsecret-Zq81x",
    "KAFKA_SASL_PASSWORD": "grep-saslpw-Kk55t",
    "LMS_OAUTH2_CLIENT_SECRET": "grep-lmssecret-Pp93w",
}


def _files_holding(folder: Path, secret: bytes) -> list[str]:
    return [
        str(path) for path in folder.rglob("*") if path.is_file() and secret in path.read_bytes()
    ]


def test_no_secret_appears_in_output_or_storage_on_any_error_path(
    tmp_path, monkeypatch, kafka_bootstrap, kafka_topic, discovery, capfd, caplog
):
    caplog.set_level(logging.DEBUG)
    lane = Lane(tmp_path, monkeypatch, kafka_bootstrap, discovery)
    said: list[str] = []  # what the sensors return for the daemon to store and show
    topic = kafka_topic()
    lane.env(KAFKA_CONTENT_TOPICS=topic, KAFKA_TOPIC_PREFIX="")
    run, _, _ = moved_run(discovery)
    assert cli.main(["publish", run["key"], "--format", "openedx", "--topic", topic]) == 0

    with LocalSchemaRegistry(credentials=("the-real-key", "the-real-secret-0")) as registry:
        # The registry refuses the credentials.
        lane.env(
            KAFKA_SCHEMA_REGISTRY_URL=registry.url,
            KAFKA_SCHEMA_REGISTRY_API_KEY=SECRETS["KAFKA_SCHEMA_REGISTRY_API_KEY"],
            KAFKA_SCHEMA_REGISTRY_API_SECRET=SECRETS["KAFKA_SCHEMA_REGISTRY_API_SECRET"],
        )
        refused = lane.tick(lane.definitions())
        assert "refused the credentials" in refused.skip_message
        said.append(refused.skip_message)
        assert cli.main(["dead-letters", "replay"]) in (0, 1)  # reads the registry settings
        url = registry.url
    # The registry is down.
    down = lane.tick(lane.definitions())
    assert "unreachable" in down.skip_message and url.split("//")[1] in down.skip_message
    said.append(down.skip_message)

    # The broker is down (SASL settings with a password).
    lane.env(
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
        KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        KAFKA_SASL_MECHANISM="PLAIN",
        KAFKA_SASL_USERNAME="catalog",
        KAFKA_SASL_PASSWORD=SECRETS["KAFKA_SASL_PASSWORD"],
    )
    broker_down = lane.tick(lane.definitions())
    assert "could not be read" in broker_down.skip_message
    said.append(broker_down.skip_message)
    assert cli.main(["replay", "--since", "1h", "--dry-run"]) == 0

    # course-discovery refuses the token: the full refresh fails, and an event run fails on
    # every retry and is dead-lettered with its reason by the failure sensor.
    lane.env(LMS_OAUTH2_CLIENT_SECRET=SECRETS["LMS_OAUTH2_CLIENT_SECRET"])
    definitions = lane.definitions()
    refresh = definitions.resolve_job_def("full_refresh").execute_in_process(
        instance=lane.instance, raise_on_error=False
    )
    assert not refresh.success
    resources = build_resources(Settings.from_env())  # dg.EnvVar references, as deployed
    update = {
        "content_key": run["key"],
        "content_type": "courserun",
        "event_ids": ["grep-1"],
        "topic": topic,
        "partition": 0,
        "offset": 0,
    }
    failed = fast_retrying_batch_job.execute_in_process(
        run_config={"ops": {"apply_content_updates": {"config": {"updates": [update]}}}},
        resources={k: resources[k] for k in ("content_source", "catalog_store")},
        instance=lane.instance,
        raise_on_error=False,
    )
    assert not failed.success
    (failure,) = [e for e in failed.all_events if e.event_type_value == "PIPELINE_FAILURE"]
    sensor = definitions.resolve_sensor_def(FAILED_RUNS_SENSOR)
    context = dg.build_run_status_sensor_context(
        sensor_name=FAILED_RUNS_SENSOR,
        dagster_event=failure,
        dagster_instance=lane.instance,
        dagster_run=lane.instance.get_run_by_id(failed.run_id),
        resources={"catalog_store": resources["catalog_store"]},
    ).for_run_failure()
    assert sensor(context) is None
    with open_store(lane.store_url) as store:
        (letter,) = store.dead_letters()
    assert "HTTP 401" in letter.error
    said.append(letter.error)

    captured = capfd.readouterr()
    lane.instance.dispose()
    text = "\n".join([*said, captured.out, captured.err, caplog.text])
    for name, secret in SECRETS.items():
        assert secret not in text, f"{name} printed"
        assert not _files_holding(lane.home, secret.encode()), f"{name} in Dagster storage"
        assert not _files_holding(tmp_path, secret.encode()), f"{name} stored"
