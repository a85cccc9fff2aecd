"""The query lane end to end: a real dagster-daemon (Dagster's instance and the catalog store on
PostgreSQL) runs ``catalog_queries_sensor``; after a full refresh, an enterprise catalog's query
is edited in the listing file and the catalog's content changes in the store without another
full refresh."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from psycopg2 import sql as pgsql

from catalog_assets.core.content import content_key_of
from catalog_assets.devtools.sample_data import generate_catalog_queries, generate_content
from catalog_assets.store import open_store
from catalog_assets_tests.support.expected import storable_sample
from catalog_assets_tests.support.topology import wait_for

BIN = Path(sys.executable).parent


@pytest.fixture
def dagster_postgres_url(postgres_url: str):
    """A new database for Dagster's instance on the session's PostgreSQL, dropped afterwards."""
    name = f"dagster_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(postgres_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
        yield postgres_url.split("?", 1)[0].rsplit("/", 1)[0] + f"/{name}"
        with admin.cursor() as cursor:
            cursor.execute(
                pgsql.SQL("DROP DATABASE {} WITH (FORCE)").format(pgsql.Identifier(name))
            )
    finally:
        admin.close()


def test_an_edited_catalog_reaches_the_store_without_a_full_refresh(
    tmp_path, postgres_schema_url, dagster_postgres_url
):
    content = storable_sample(generate_content(150, seed=53))
    queries = generate_catalog_queries(10, content, seed=53)
    (tmp_path / "content.json").write_text(json.dumps(content))
    queries_path = tmp_path / "queries.json"
    queries_path.write_text(json.dumps(queries))
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nstorage:\n  postgres:\n"
        f"    postgres_url: {json.dumps(dagster_postgres_url)}\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "CATALOG_"))},
        "DAGSTER_HOME": str(home),
        "CONTENT_SOURCE": "sample",
        "SAMPLE_CONTENT_PATH": str(tmp_path / "content.json"),
        "CATALOG_QUERIES_PATH": str(queries_path),
        "CATALOG_STORE_URL": postgres_schema_url,
        "CATALOG_QUERIES_POLL_SECONDS": "1",
    }
    refresh = subprocess.run(
        [str(BIN / "catalog-assets"), "refresh"], env=env, capture_output=True, text=True
    )
    assert refresh.returncode == 0, refresh.stdout + refresh.stderr

    catalog = queries["enterprise_catalogs"][0]
    programs = {content_key_of(d) for d in content if d["content_type"] == "program"}
    with open_store(postgres_schema_url) as store:
        before = {row["content_key"] for row in store.contents_of(catalog["uuid"])}
    assert before != programs

    daemon_log = tmp_path / "daemon.log"
    with daemon_log.open("w") as log:
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-m", "catalog_assets.definitions"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        for query in queries["catalog_queries"]:
            if query["uuid"] == catalog["catalog_query_uuid"]:
                query["content_filter"] = {"content_type": "program"}
        queries_path.write_text(json.dumps(queries))

        def landed() -> bool:
            with open_store(postgres_schema_url) as store:
                keys = {row["content_key"] for row in store.contents_of(catalog["uuid"])}
            return keys == programs

        wait_for(landed, 180, "the edited catalog's content in the store", step=1)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            runs = instance.get_runs()
            by_job: dict[str, list[dg.DagsterRun]] = {}
            for run in runs:
                by_job.setdefault(run.job_name, []).append(run)
            (lane_run,) = by_job["catalog_query_changes"]
            assert len(by_job["full_refresh"]) == 1  # the first refresh only
            wait_for(lambda: instance.get_run_by_id(lane_run.run_id).is_finished, 60, "the run")
            assert instance.get_run_by_id(lane_run.run_id).status == dg.DagsterRunStatus.SUCCESS
            assert lane_run.tags["catalog/queries_evaluated"] == "1"
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
        print(daemon_log.read_text()[-5000:])
