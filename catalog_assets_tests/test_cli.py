"""The command line: a failed step says its cause, errors are one redacted line, and migrate."""

from __future__ import annotations

import dagster as dg
import psycopg2
import pytest

from catalog_assets import cli
from catalog_assets.core.discovery import DiscoveryError
from catalog_assets.devtools.broker import BrokerError
from catalog_assets.store import StoreSchemaMismatch, open_store
from catalog_assets.store.migrations import SCHEMA_VERSION

SECRET_URL = "postgresql://user:hunter2pass@127.0.0.1:1/db"
"""A store URL with a password, on a port where nothing listens."""


@pytest.fixture
def local_env(tmp_path, monkeypatch):
    """The sample content, a DuckDB store and a Dagster home, all in ``tmp_path``."""
    for name in ("CONTENT_SOURCE", "SAMPLE_CONTENT_PATH", "CATALOG_QUERIES_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("CATALOG_STORE_URL", f"duckdb:///{tmp_path}/c.duckdb")
    return tmp_path


def test_a_failed_refresh_prints_the_cause_of_each_failed_step(local_env, monkeypatch, capsys):
    queries = local_env / "queries.json"
    queries.write_text('{"catalog_queries": [\n', encoding="utf-8")
    monkeypatch.setenv("CATALOG_QUERIES_PATH", str(queries))
    assert cli.main(["refresh"]) == 1
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if "failed:" in line]
    assert line == (
        f"  step catalog_queries failed: ValueError: catalog query file '{queries}' is not valid "
        "JSON: Expecting value: line 2 column 1 (char 22)"
    )


def test_a_failure_description_is_the_cause_first_line_only_and_redacted():
    @dg.op
    def refuses():
        raise dg.Failure(description=f"refusing: {SECRET_URL} is read-only\nmore detail")

    @dg.op
    def breaks():
        raise KeyError("uuid")

    @dg.job
    def failing():
        refuses()
        breaks()

    result = failing.execute_in_process(raise_on_error=False)
    causes = {
        event.step_key: cli._one_line(cli._failure_cause(event.step_failure_data), first=True)
        for event in result.all_events
        if event.is_step_failure
    }
    assert causes == {
        "refuses": "refusing: postgresql://user:***@127.0.0.1:1/db is read-only",
        "breaks": "KeyError: 'uuid'",
    }


def test_migrate_creates_the_schema_and_prints_its_version(local_env, capsys):
    url = f"duckdb:///{local_env}/c.duckdb"
    for _ in range(2):  # idempotent
        assert cli.main(["migrate"]) == 0
        assert capsys.readouterr().out == f"catalog store {url}: schema version {SCHEMA_VERSION}\n"
    with open_store(url) as store:
        assert store.schema_version() == SCHEMA_VERSION


def test_migrate_on_an_unreachable_store_prints_one_line_without_the_password(
    local_env, monkeypatch, capsys
):
    monkeypatch.setenv("CATALOG_STORE_URL", SECRET_URL)
    assert cli.main(["migrate"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("catalog-assets migrate: ")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert "127.0.0.1" in captured.err and "hunter2pass" not in captured.err


def test_an_error_naming_the_store_url_is_redacted_on_one_line(local_env, monkeypatch, capsys):
    def unreachable(url: str):
        raise psycopg2.OperationalError(f"could not reach {url}\n\tIs the server running?\n")

    monkeypatch.setenv("CATALOG_STORE_URL", SECRET_URL)
    monkeypatch.setattr("catalog_assets.store.open_store", unreachable)
    assert cli.main(["migrate"]) == 2
    assert capsys.readouterr().err == (
        "catalog-assets migrate: could not reach postgresql://user:***@127.0.0.1:1/db "
        "Is the server running?\n"
    )


@pytest.mark.parametrize(
    "error",
    [
        DiscoveryError("course-discovery answered 401 for client_secret=s3cr3t-value"),
        BrokerError("tansu not found on PATH"),
        StoreSchemaMismatch("the store is at schema version 99; upgrade catalog-assets"),
        FileNotFoundError(2, "No such file or directory", "queries.json"),
        ValueError("bad token=abcdefgh1234 in the URL"),
    ],
)
def test_setup_errors_are_one_redacted_line_not_a_traceback(error, monkeypatch, capsys):
    def fails(args):
        raise error

    monkeypatch.setattr(cli, "migrate", fails)
    assert cli.main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("catalog-assets migrate: ") and err.count("\n") == 1
    assert not any(s in err for s in ("s3cr3t-value", "abcdefgh1234")), err


def test_unexpected_errors_keep_their_traceback(monkeypatch):
    def fails(args):
        raise KeyError("a bug")

    monkeypatch.setattr(cli, "migrate", fails)
    with pytest.raises(KeyError, match="a bug"):
        cli.main(["migrate"])
