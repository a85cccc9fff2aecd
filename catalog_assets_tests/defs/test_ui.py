"""What the UI shows, through the webserver's GraphQL API as the UI asks for it: a real
``dagster-webserver`` on the project's workspace and instance file, queried over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from catalog_assets.defs.metadata import OWNERS, TABLES
from catalog_assets.settings import SETTINGS

REPO = Path(__file__).resolve().parents[2]
WEBSERVER = Path(sys.executable).parent / "dagster-webserver"
START_TIMEOUT = 120  # seconds: the webserver, then its code server, on a busy 2-core machine

ASSET_NODES = """
query AssetNodes {
  assetNodes {
    assetKey { path }
    groupName
    description
    kinds
    owners {
      __typename
      ... on TeamAssetOwner { team }
      ... on UserAssetOwner { email }
    }
    tags { key value }
    internalFreshnessPolicy {
      __typename
      ... on CronFreshnessPolicy { deadlineCron lowerBoundDeltaSeconds timezone }
    }
    metadataEntries {
      __typename
      label
      ... on TextMetadataEntry { text }
      ... on TableSchemaMetadataEntry { schema { columns { name type description } } }
      ... on CodeReferencesMetadataEntry {
        codeReferences {
          __typename
          ... on LocalFileCodeReference { filePath lineNumber }
          ... on UrlCodeReference { url }
        }
      }
    }
  }
}
"""

INSTIGATORS = """
query Instigators {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes {
        schedules { name description defaultStatus cronSchedule }
        sensors { name description defaultStatus }
      }
    }
  }
}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(url: str, query: str, timeout: float = 30) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    assert not answer.get("errors"), answer["errors"]
    return answer["data"]


def stop(process: subprocess.Popen) -> None:
    """The webserver and its code server (its own process group), politely, then not."""
    for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A webserver on the project's workspace and dagster.yaml, on the embedded defaults (no
    Kafka); yields its URL and its log file."""
    tmp = tmp_path_factory.mktemp("ui")
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if k not in {s.name for s in SETTINGS}}
    env.update(DAGSTER_HOME=str(home), CATALOG_STORE_URL=f"duckdb:///{tmp / 'catalog.duckdb'}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp / "webserver.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(WEBSERVER), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, f"webserver exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"webserver not up:\n{log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                    break
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        # The code location loads in its own process after the server is up.
        while not post(f"{url}/graphql", ASSET_NODES)["assetNodes"]:
            assert time.monotonic() < deadline, f"no assets loaded:\n{log.read_text()[-3000:]}"
            time.sleep(1)
        yield url, log
    finally:
        stop(process)


@pytest.fixture(scope="module")
def asset_nodes(webserver) -> dict[str, dict[str, Any]]:
    url, _ = webserver
    nodes = post(f"{url}/graphql", ASSET_NODES)["assetNodes"]
    return {"/".join(node["assetKey"]["path"]): node for node in nodes}


def entries(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["label"]: entry for entry in node["metadataEntries"]}


def test_every_asset_has_kinds_owners_tags_and_a_description(asset_nodes):
    assert set(asset_nodes) == {
        "catalog_queries",
        "content_metadata",
        "catalog_content_associations",
        "content_item",
        "discovery_parity",
    }
    for key, node in asset_nodes.items():
        assert "duckdb" in node["kinds"], key  # the configured store, and only that one
        assert "postgres" not in node["kinds"], key
        assert len(node["kinds"]) >= 2, key
        owners = [
            f"team:{o['team']}" for o in node["owners"] if o["__typename"] == "TeamAssetOwner"
        ]
        assert owners == OWNERS, key
        assert {"key": "catalog/lane", "value": "events" if key == "content_item" else "bulk"} in (
            node["tags"]
        ), key
        # No group descriptions in Dagster 1.13: each description ends with its group's purpose.
        assert f"Group `{node['groupName']}`" in node["description"], key
    assert "kafka" in asset_nodes["content_item"]["kinds"]
    assert "polars" in asset_nodes["catalog_content_associations"]["kinds"]


def test_every_asset_names_its_table_and_column_schema(asset_nodes):
    for key, node in asset_nodes.items():
        metadata = entries(node)
        if key == "discovery_parity":  # writes no table; its column schema is its report's
            assert "dagster/table_name" not in metadata, key
            assert metadata["dagster/column_schema"]["schema"]["columns"], key
            continue
        table = metadata["dagster/table_name"]["text"]
        assert table in TABLES, key
        schema = metadata["dagster/column_schema"]["schema"]["columns"]
        assert [c["name"] for c in schema] == [c.name for c in TABLES[table].columns], key
        assert all(c["type"] and c["description"] for c in schema), key
        also = [
            label.removeprefix("column_schema/") for label in metadata if "column_schema/" in label
        ]
        assert all(other in TABLES and other != table for other in also), key
        assert f"`{table}`" in node["description"], key
    assert entries(asset_nodes["catalog_queries"])["dagster/table_name"]["text"] == "catalog_query"
    assert "column_schema/enterprise_catalog" in entries(asset_nodes["catalog_queries"])


def test_every_asset_links_to_its_source_code(asset_nodes):
    for key, node in asset_nodes.items():
        (reference,) = entries(node)["dagster/code_references"]["codeReferences"]
        if reference["__typename"] == "UrlCodeReference":  # a checkout with a GitHub/GitLab remote
            assert "/catalog_assets/defs/" in reference["url"] and "#L" in reference["url"], key
        else:
            path = Path(reference["filePath"])
            assert path.is_file() and path.parent == REPO / "catalog_assets" / "defs", key
            source = path.read_text().splitlines()
            window = source[reference["lineNumber"] - 1 : reference["lineNumber"] + 40]
            assert f"def {key}(" in "\n".join(window), key


def test_catalog_assets_are_late_two_hours_after_the_scheduled_refresh(asset_nodes):
    for key, node in asset_nodes.items():
        policy = node["internalFreshnessPolicy"]
        if node["groupName"] != "catalog":
            assert policy is None, key  # event-driven: nothing is due at any time
            continue
        assert policy == {
            "__typename": "CronFreshnessPolicy",
            "deadlineCron": "0 6 * * *",  # FULL_REFRESH_CRON's default 0 4 * * *, two hours on
            "lowerBoundDeltaSeconds": 2 * 3600,
            "timezone": "UTC",
        }, key


def test_schedule_and_sensor_say_whether_they_run_without_a_tick(webserver):
    url, _ = webserver
    answer = post(f"{url}/graphql", INSTIGATORS)["repositoriesOrError"]
    (repository,) = answer["nodes"]
    schedules = {schedule["name"]: schedule for schedule in repository["schedules"]}
    assert set(schedules) == {"full_refresh_schedule", "parity_report_schedule"}
    assert schedules["parity_report_schedule"]["defaultStatus"] == "STOPPED"
    assert "Off by default" in schedules["parity_report_schedule"]["description"]
    schedule = schedules["full_refresh_schedule"]
    assert schedule["defaultStatus"] == "RUNNING"
    assert "On by default" in schedule["description"]
    assert "`0 6 * * *`" in schedule["description"]
    sensors = {sensor["name"]: sensor for sensor in repository["sensors"]}
    assert set(sensors) == {
        "content_events_sensor",
        "failed_event_runs_sensor",
        "catalog_queries_sensor",
    }
    sensor = sensors["content_events_sensor"]
    assert sensor["defaultStatus"] == "STOPPED"
    assert "KAFKA_BOOTSTRAP_SERVERS is not set" in sensor["description"]
    # Keeping the events of failed event runs costs nothing when there are none: always on.
    assert sensors["failed_event_runs_sensor"]["defaultStatus"] == "RUNNING"
    # The query listing is always configured: edits reach the store without waiting a day.
    queries_sensor = sensors["catalog_queries_sensor"]
    assert queries_sensor["defaultStatus"] == "RUNNING"
    assert "On by default" in queries_sensor["description"]
    assert "CATALOG_QUERIES_POLL_SECONDS" in queries_sensor["description"]


def test_loading_the_code_location_logs_no_warnings(webserver):
    _, log = webserver
    text = log.read_text()
    assert "Warning" not in text and "WARNING" not in text, text[-3000:]
