"""The code location: definitions load, resources follow the environment, the CLI works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from catalog_assets import cli
from catalog_assets.core import lookup
from catalog_assets.definitions import defs
from catalog_assets.defs.resources import (
    DiscoveryContentSource,
    SampleContentSource,
    build_resources,
)
from catalog_assets.settings import DEFAULT_STORE_URL, Settings

REPO = Path(__file__).resolve().parents[1]


def test_definitions_hold_both_lanes_job_schedule_sensor_and_checks(monkeypatch):
    monkeypatch.setenv("FULL_REFRESH_CRON", "15 2 * * *")
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    definitions = defs()
    assert isinstance(definitions, dg.Definitions)
    dg.Definitions.validate_loadable(definitions)
    graph = definitions.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    bulk = {"catalog_queries", "content_metadata", "catalog_content_associations"}
    assert keys == {*bulk, "content_item"}
    assert {graph.get(dg.AssetKey(k)).group_name for k in bulk} == {"catalog"}
    assert graph.get(dg.AssetKey("content_item")).partitions_def.name == "content_keys"
    sensor = definitions.resolve_sensor_def("content_events_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED  # no Kafka configured here
    job = definitions.resolve_job_def("full_refresh")
    assert {n.name for n in job.nodes} >= bulk
    schedule = definitions.resolve_schedule_def("full_refresh_schedule")
    assert schedule.cron_schedule == "15 2 * * *"
    check_names = {key.name for key in graph.asset_check_keys}
    assert check_names == {
        "valid_filters",
        "catalogs_reference_known_queries",
        "no_duplicate_source_keys",
        "no_rejected_documents",
        "no_held_changes",
        "every_query_matches",
        "associations_reference_live_content",
    }


def test_default_resources_are_embedded():
    resources = build_resources(Settings.from_env({}))
    assert isinstance(resources["content_source"], SampleContentSource)
    assert resources["catalog_store"].url == DEFAULT_STORE_URL
    assert resources["catalog_query_source"].path == ""


def test_discovery_resources_read_settings_through_env_vars(monkeypatch):
    env = {
        "CONTENT_SOURCE": "discovery",
        "DISCOVERY_API_URL": "http://127.0.0.1:9/api/v1/",
        "LMS_OAUTH2_URL": "http://127.0.0.1:9/oauth2",
        "LMS_OAUTH2_CLIENT_ID": "id",
        "LMS_OAUTH2_CLIENT_SECRET": "secret",
        "CATALOG_STORE_URL": "duckdb:///elsewhere.duckdb",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    resources = build_resources(Settings.from_env(env))
    source = resources["content_source"]
    assert isinstance(source, DiscoveryContentSource)
    # Settings stay EnvVar references, resolved by Dagster at run time (secrets never inlined).
    assert source.client_secret == dg.EnvVar("LMS_OAUTH2_CLIENT_SECRET")
    assert resources["catalog_store"].url == dg.EnvVar("CATALOG_STORE_URL")
    resolved = source.process_config_and_initialize()
    assert resolved.client_secret == "secret"


def test_unknown_content_source_is_a_clear_error():
    with pytest.raises(ValueError, match="CONTENT_SOURCE='s3' is not one of sample, discovery"):
        build_resources(Settings.from_env({"CONTENT_SOURCE": "s3"}))


OUR_SETTINGS = (
    "CONTENT_SOURCE",
    "SAMPLE_CONTENT_PATH",
    "CATALOG_QUERIES_PATH",
    "CATALOG_STORE_URL",
    "DISCOVERY_API_URL",
    "LMS_OAUTH2_URL",
    "LMS_OAUTH2_CLIENT_ID",
    "LMS_OAUTH2_CLIENT_SECRET",
    "FULL_REFRESH_CRON",
)


def test_importing_the_code_location_reads_none_of_our_settings():
    """Settings are read when definitions load (``defs()``), never at import time."""
    code = (
        "import os\n"
        f"WATCHED = {OUR_SETTINGS!r}\n"
        "class Spy(dict):\n"
        "    def get(self, key, *default):\n"
        "        if key in WATCHED: raise SystemExit('read ' + key)\n"
        "        return super().get(key, *default)\n"
        "    def __getitem__(self, key):\n"
        "        if key in WATCHED: raise SystemExit('read ' + key)\n"
        "        return super().__getitem__(key)\n"
        "os.environ = Spy(os.environ)\n"
        "import catalog_assets.definitions, sensors\n"
        "print('imported')\n"
        "catalog_assets.definitions.defs()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "imported", out.stderr[-2000:]
    assert "read " in out.stderr  # and the spy does see the read once definitions load


def test_refresh_command_then_lookups(tmp_path, monkeypatch, capsys):
    store = f"duckdb:///{tmp_path}/catalog.duckdb"
    monkeypatch.setenv("CATALOG_STORE_URL", store)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    assert cli.main(["refresh"]) == 0
    summary = capsys.readouterr().out
    assert "succeeded" in summary and "inserted=400" in summary
    assert "check no_held_changes: passed" in summary

    pairs = lookup.contents_of  # the same functions downstream code imports
    rows = lookup.catalogs_for("course-v1:does-not-exist")
    assert rows == []
    some_query = json.loads(
        (REPO / "catalog_assets" / "data" / "sample_catalog_queries.json").read_text()
    )["catalog_queries"][1]["uuid"]
    contents = pairs(some_query)
    assert contents and all(row["deleted"] is False for row in contents)
    key = contents[0]["content_key"]
    assert some_query in {row["catalog_query_uuid"] for row in lookup.catalogs_for(key)}

    assert cli.main(["catalogs-for", key, "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert some_query in {row["catalog_query_uuid"] for row in as_json}
    assert cli.main(["catalogs-for", key]) == 0
    human = capsys.readouterr().out
    assert "catalog_query_uuid" in human.splitlines()[0] and some_query in human
    assert cli.main(["contents-of", some_query]) == 0
    assert key in capsys.readouterr().out
    assert cli.main(["catalogs-for", "nothing-here"]) == 0
    assert "Nothing found for 'nothing-here'" in capsys.readouterr().out
