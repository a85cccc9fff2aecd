"""The code location: definitions load, resources follow the environment, the CLI works."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from catalog_assets import cli
from catalog_assets.core import lookup
from catalog_assets.definitions import defs
from catalog_assets.defs.bulk_assets import bulk_assets
from catalog_assets.defs.jobs import full_refresh_schedule, refresh_deadline
from catalog_assets.defs.metadata import (
    GROUP_PURPOSES,
    OWNERS,
    TABLES,
    GitRemote,
    git_web_url,
    read_git_remote,
    with_code_references,
)
from catalog_assets.defs.parity import REPORT_SCHEMA
from catalog_assets.defs.resources import (
    DiscoveryContentSource,
    SampleContentSource,
    build_resources,
)
from catalog_assets.settings import DEFAULT_STORE_URL, Settings
from catalog_assets.store import open_store
from catalog_assets_tests.support.expected import admitted
from sensors.content_events import build_content_events_sensor

REPO = Path(__file__).resolve().parents[2]


def test_definitions_hold_both_lanes_job_schedule_sensor_and_checks(monkeypatch):
    monkeypatch.setenv("FULL_REFRESH_CRON", "15 2 * * *")
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    definitions = defs()
    assert isinstance(definitions, dg.Definitions)
    dg.Definitions.validate_loadable(definitions)
    graph = definitions.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    bulk = {"catalog_queries", "content_metadata", "catalog_content_associations"}
    assert keys == {*bulk, "content_item", "discovery_parity"}
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


def specs(definitions: dg.Definitions) -> dict[str, dg.AssetSpec]:
    return {spec.key.to_user_string(): spec for spec in definitions.resolve_all_asset_specs()}


def test_every_asset_follows_the_conventions(monkeypatch):
    monkeypatch.setenv("FULL_REFRESH_CRON", "15 2 * * *")
    monkeypatch.delenv("CATALOG_STORE_URL", raising=False)
    for key, spec in specs(defs()).items():
        assert spec.owners == OWNERS, key
        assert "duckdb" in spec.kinds and "postgres" not in spec.kinds, key  # the default store
        assert spec.tags["catalog/lane"] == ("events" if key == "content_item" else "bulk"), key
        assert spec.description.endswith(GROUP_PURPOSES[spec.group_name]), key
        if key == "discovery_parity":  # writes no table: its schema is its report's
            assert "dagster/table_name" not in spec.metadata, key
            assert spec.metadata["dagster/column_schema"] == REPORT_SCHEMA, key
        else:
            table = spec.metadata["dagster/table_name"]
            assert spec.metadata["dagster/column_schema"] == TABLES[table], key
        for label, schema in spec.metadata.items():
            if label.startswith("column_schema/"):
                assert schema == TABLES[label.removeprefix("column_schema/")], key
        (reference,) = spec.metadata["dagster/code_references"].code_references
        assert isinstance(reference, dg.LocalFileCodeReference | dg.UrlCodeReference), key
        if spec.group_name == "catalog":
            # The daily refresh is late two hours after its scheduled time (02:15 here).
            assert spec.freshness_policy == dg.FreshnessPolicy.cron(
                deadline_cron="15 4 * * *", lower_bound_delta=timedelta(hours=2)
            ), key
        else:
            assert spec.freshness_policy is None, key  # event-driven: nothing is due at a time
    assert specs(defs())["content_item"].kinds == {"kafka", "polars", "duckdb"}


def test_the_store_kind_follows_the_configured_store(monkeypatch):
    monkeypatch.setenv("CATALOG_STORE_URL", "postgresql://catalog@127.0.0.1:9/catalog")
    for key, spec in specs(defs()).items():
        assert "postgres" in spec.kinds and "duckdb" not in spec.kinds, key


def test_loading_definitions_warns_of_nothing(monkeypatch):
    """``make dev`` shows what loading prints: no warnings about what we do not use."""
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        definitions = defs()
        definitions.resolve_asset_graph()
        definitions.resolve_sensor_def("content_events_sensor")
        definitions.resolve_job_def("apply_content_events")
    assert [str(w.message) for w in caught] == []


# DuckDB's names for the types the migrations declare.
DUCKDB_TYPES = {"text": "VARCHAR", "bytea": "BLOB"}


def test_table_schemas_are_the_stores_tables(tmp_path):
    """The column schemas shown in the UI are the tables the migrations create."""
    path = tmp_path / "catalog.duckdb"
    with open_store(f"duckdb:///{path}") as store:
        store.ensure_schema()
    connection = duckdb.connect(str(path), read_only=True)
    try:
        rows = connection.execute(
            "SELECT table_name, column_name, data_type, is_nullable "
            "FROM information_schema.columns ORDER BY table_name, ordinal_position"
        ).fetchall()
    finally:
        connection.close()
    actual: dict[str, list[tuple[str, str, bool]]] = {}
    for table, column, data_type, nullable in rows:
        actual.setdefault(table, []).append((column, data_type, nullable == "YES"))
    assert set(actual) - {"catalog_schema_version"} == set(TABLES)
    for table, schema in TABLES.items():
        declared = [
            (c.name, DUCKDB_TYPES.get(c.type, c.type.upper()), c.constraints.nullable)
            for c in schema.columns
        ]
        assert declared == actual[table], table
        assert all(c.description for c in schema.columns), table


@pytest.mark.parametrize(
    ("cron", "deadline", "lower_bound_hours"),
    [
        ("0 4 * * *", "0 6 * * *", 2),
        ("15 2 * * 1", "15 4 * * 1", 2),  # weekly
        ("30 23 * * *", "30 1 * * *", 2),  # past midnight, every day
        ("0 4,5 * * *", "0 6,7 * * *", 1),  # runs closer together than the grace
        ("0 */6 * * *", "0 2,8,14,20 * * *", 2),
        ("0 23 * * 1-5", None, None),  # the deadline would fall on another weekday
        ("*/15 * * * *", None, None),  # no fixed minute
    ],
)
def test_the_refresh_deadline_follows_the_schedule(cron, deadline, lower_bound_hours):
    expected = deadline and (deadline, timedelta(hours=lower_bound_hours))
    assert refresh_deadline(cron) == expected
    if deadline:  # and Dagster accepts it
        dg.FreshnessPolicy.cron(deadline_cron=deadline, lower_bound_delta=expected[1])


def test_schedule_and_sensor_say_whether_they_run_without_a_tick():
    schedule = full_refresh_schedule("0 4 * * *")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert "On by default" in schedule.description and "`0 6 * * *`" in schedule.description
    off = build_content_events_sensor(enabled=False)
    assert "Off by default: KAFKA_BOOTSTRAP_SERVERS is not set" in off.description
    on = build_content_events_sensor(enabled=True)
    assert "On by default" in on.description


@pytest.mark.parametrize(
    ("remote", "url"),
    [
        ("git@github.com:openedx/catalog-assets.git", "https://github.com/openedx/catalog-assets"),
        ("https://github.com/openedx/catalog-assets", "https://github.com/openedx/catalog-assets"),
        ("https://user:t0ken@gitlab.example.com/a/b.git", "https://gitlab.example.com/a/b"),
        (
            "ssh://git@github.com/openedx/catalog-assets.git",
            "https://github.com/openedx/catalog-assets",
        ),
        ("https://git.example.com/a/b.git", None),  # Dagster links GitHub and GitLab only
        ("/srv/git/catalog-assets.git", None),
    ],
)
def test_git_remotes_become_web_urls_without_credentials(remote, url):
    assert git_web_url(remote) == url


def test_code_references_link_to_the_repository_when_it_has_a_remote(tmp_path):
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-b", "main")
    assert read_git_remote(tmp_path) is None  # no remote: local file references
    git("remote", "add", "origin", "git@github.com:openedx/catalog-assets.git")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--allow-empty", "-m", "x")
    remote = read_git_remote(tmp_path)
    assert remote == GitRemote("https://github.com/openedx/catalog-assets", "main")

    (linked, *_) = with_code_references(bulk_assets, remote)
    (reference,) = linked.metadata_by_key[linked.key]["dagster/code_references"].code_references
    assert reference.url.startswith(
        "https://github.com/openedx/catalog-assets/tree/main/catalog_assets/defs/bulk_assets.py#L"
    )
    (local, *_) = with_code_references(bulk_assets, None)
    (reference,) = local.metadata_by_key[local.key]["dagster/code_references"].code_references
    assert Path(reference.file_path).name == "bulk_assets.py" and reference.line_number


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
    bundled = json.loads((REPO / "catalog_assets" / "data" / "sample_content.json").read_text())
    stored = len(admitted(bundled))  # the allow-lists keep the bundled boot camps out
    assert stored < len(bundled) == 400
    assert "succeeded" in summary and f"inserted={stored}," in summary
    assert f"excluded_course_type={len(bundled) - stored}," in summary
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
    assert cli.main(["catalogs-for", "nothing-here"]) == 3  # an unknown key, said so
    assert "no content with the key 'nothing-here'" in capsys.readouterr().err
