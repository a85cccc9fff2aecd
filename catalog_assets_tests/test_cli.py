"""The command line: help, refresh (overrides, summary, failed checks explained), errors as one
redacted line, and migrate."""

from __future__ import annotations

import json
import re

import dagster as dg
import psycopg2
import pytest

from catalog_assets import cli
from catalog_assets.cli.common import one_line
from catalog_assets.cli.refresh import (
    PREVIEW_ROWS,
    explain_check,
    failure_cause,
    refresh_run_config,
    refresh_summary,
)
from catalog_assets.core.content import RejectedDocument
from catalog_assets.core.discovery import DiscoveryError
from catalog_assets.core.refresh import QueryChange
from catalog_assets.defs import checks
from catalog_assets.devtools.broker import BrokerError
from catalog_assets.store import StoreSchemaMismatch, open_store
from catalog_assets.store.migrations import SCHEMA_VERSION

SECRET_URL = "postgresql://user:hunter2pass@127.0.0.1:1/db"
"""A store URL with a password, on a port where nothing listens."""

EDX_QUERY = "11111111-1111-4111-8111-111111111111"


@pytest.fixture
def local_env(tmp_path, monkeypatch):
    """The sample content, a DuckDB store and a Dagster home, all in ``tmp_path``."""
    for name in ("CONTENT_SOURCE", "SAMPLE_CONTENT_PATH", "CATALOG_QUERIES_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("CATALOG_STORE_URL", f"duckdb:///{tmp_path}/c.duckdb")
    return tmp_path


def _courses(count: int, other_partner: int = 0) -> list[dict]:
    """``count`` course documents; the first ``other_partner`` are not edX's."""
    return [
        {
            "key": f"edX+C{i}",
            "aggregation_key": f"course:edX+C{i}",
            "content_type": "course",
            "title": f"Course {i}",
            "partner": "other" if i < other_partner else "edx",
            "modified": "2026-01-01T00:00:00Z",
        }
        for i in range(count)
    ]


def _queries(count: int) -> dict:
    """An edX query (``EDX_QUERY``) and ``count - 1`` queries matching every course."""
    queries = [{"uuid": EDX_QUERY, "title": "edX courses", "content_filter": {"partner": "edx"}}]
    queries += [
        {"uuid": f"{i:08d}-0000-4000-8000-000000000000", "title": f"All #{i}", "content_filter": {}}
        for i in range(1, count)
    ]
    return {"catalog_queries": queries, "enterprise_catalogs": []}


@pytest.fixture
def own_files(local_env, monkeypatch):
    """``write(content, queries)``: the content and catalog query files the refresh reads."""
    content, queries = local_env / "content.json", local_env / "queries.json"
    monkeypatch.setenv("SAMPLE_CONTENT_PATH", str(content))
    monkeypatch.setenv("CATALOG_QUERIES_PATH", str(queries))

    def write(documents: list[dict], listing: dict) -> None:
        content.write_text(json.dumps(documents), encoding="utf-8")
        queries.write_text(json.dumps(listing), encoding="utf-8")

    return write


def _refresh(capsys, *flags: str) -> tuple[int, str]:
    status = cli.main(["refresh", *flags])
    return status, capsys.readouterr().out


# --- Help ----------------------------------------------------------------------------------------


def _commands(commands=cli.COMMANDS, path=()):
    for command in commands:
        yield (*path, command.name), command
        yield from _commands(command.actions, (*path, command.name))


COMMAND_PATHS = list(_commands())


@pytest.mark.parametrize(
    ("path", "command"), COMMAND_PATHS, ids=[" ".join(path) for path, _ in COMMAND_PATHS]
)
def test_every_command_help_describes_the_command_and_each_argument(path, command, capsys):
    assert cli.main([*path, "--help"]) == 0
    out = capsys.readouterr().out
    flat = " ".join(out.split())
    assert "``" not in out
    assert out.startswith(f"usage: catalog-assets {' '.join(path)}")
    assert command.summary and " ".join(command.description.split()) in flat
    for argument in command.args:
        assert argument.help.strip(), argument.names
        described = " ".join(argument.help.split("%")[0].split())  # before %(default)s, 20%%
        assert described in flat, (argument.names, described)
        shown = argument.options.get("metavar") or argument.names[0]
        assert shown in out
    for action in command.actions:
        assert re.search(rf"^  {action.name} +{re.escape(action.summary)}$", out, re.M)


def test_the_top_level_help_lists_every_command_with_its_summary(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "``" not in out
    for command in cli.COMMANDS:
        assert re.search(rf"^  {command.name} +{re.escape(command.summary)}$", out, re.M)


def test_no_command_prints_the_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("usage: catalog-assets [-h] COMMAND")
    assert "refresh " in captured.err and "replay " in captured.err


# --- refresh: overrides ------------------------------------------------------------------------


def test_refresh_flags_become_the_run_config_of_the_ops_they_override():
    args = cli.build_parser().parse_args(
        [
            "refresh",
            "--confirm-mass-tombstone",
            "--confirm-mass-removal",
            "--confirm-held",
            "q-1",
            "--confirm-held",
            "q-2",
            "--confirm-all-held",
        ]
    )
    run_config = refresh_run_config(args)
    assert run_config["ops"] == {
        "content_metadata": {"config": {"confirm_mass_tombstone": True}},
        "catalog_queries": {"config": {"confirm_mass_removal": True}},
        "catalog_content_associations": {
            "config": {"confirm_held_queries": ["q-1", "q-2"], "confirm_all_held": True}
        },
    }
    from catalog_assets.definitions import defs

    job = defs().resolve_job_def("full_refresh")
    assert dg.validate_run_config(job, run_config)  # the fields exist on the config classes
    plain = refresh_run_config(cli.build_parser().parse_args(["refresh"]))
    assert "ops" not in plain and dg.validate_run_config(job, plain)


def test_refused_removals_name_the_flag_and_apply_with_it(own_files, capsys, local_env):
    own_files(_courses(20), _queries(5))
    assert _refresh(capsys)[0] == 0

    own_files(_courses(5), _queries(1))  # 75% of the content gone, 80% of the queries
    status, out = _refresh(capsys)
    assert status == 1
    lines = out.splitlines()
    failures = {
        line.split(" failed: ")[0].strip(): (line, lines[i + 1])
        for i, line in enumerate(lines)
        if " failed: " in line
    }
    assert set(failures) == {"step catalog_queries", "step content_metadata"}
    cause, hint = failures["step catalog_queries"]
    assert "refusing the catalog query listing" in cause and "remove 4 of 5" in cause
    assert hint == "    to apply it anyway: catalog-assets refresh --confirm-mass-removal"
    cause, hint = failures["step content_metadata"]
    assert "refusing to tombstone 15 of 20 live records" in cause
    assert hint == "    to apply it anyway: catalog-assets refresh --confirm-mass-tombstone"

    status, out = _refresh(capsys, "--confirm-mass-removal", "--confirm-mass-tombstone")
    assert status == 0, out
    assert "succeeded" in out and "removed=4" in out and "tombstoned=15" in out
    with open_store(f"duckdb:///{local_env}/c.duckdb") as store:
        assert len(store.catalog_queries()) == 1
        assert sum(not state.deleted for state in store.content_state().values()) == 5


def test_a_held_change_is_explained_and_applies_with_confirm_held(own_files, capsys, local_env):
    own_files(_courses(60), _queries(1))
    assert _refresh(capsys)[0] == 0

    own_files(_courses(60, other_partner=54), _queries(1))  # edX courses: 60 -> 6
    status, out = _refresh(capsys)
    assert status == 1  # an error check that did not pass: exit 1, and the summary says why
    lines = out.splitlines()
    start = lines.index("  check no_held_changes: did not pass (ERROR)")
    explained = lines[start + 1 : start + 6]
    assert explained[0] == "    held_queries=1"
    assert explained[1] == f"    held_uuids: {EDX_QUERY}"
    assert explained[2].split() == ["catalog", "query", "title", "stored", "proposed", "+", "-"]
    assert explained[3].split() == [EDX_QUERY, "edX", "courses", "60", "6", "0", "54"]
    assert explained[4] == (
        "    to apply it anyway: catalog-assets refresh --confirm-held QUERY_UUID "
        "or --confirm-all-held"
    )
    assert not any("`" in line or "|" in line for line in explained)

    status, out = _refresh(capsys, "--confirm-held", EDX_QUERY)
    assert status == 0
    assert "removed=54" in out and "check no_held_changes: passed" in out
    with open_store(f"duckdb:///{local_env}/c.duckdb") as store:
        assert store.association_count() == 6


# --- refresh: the summary ----------------------------------------------------------------------


@dg.asset(check_specs=[dg.AssetCheckSpec("looks_fine", asset="measured")])
def measured() -> dg.MaterializeResult:
    held = [QueryChange(f"q-{i}", f"Query {i}", 100, 1, 0, 99) for i in range(8)]
    return dg.MaterializeResult(
        metadata={
            "rows": 5,
            "seconds_fetch": 1.23456,
            "seconds_write": 2,
            "complete": True,
            "note": "not a number",
            "per_field": {"price": 3},
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="looks_fine",
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                description="some rows look wrong",
                metadata=checks.held_changes_result(held).metadata,
            )
        ],
    )


def test_the_summary_prints_every_numeric_entry_and_explains_a_failed_check():
    result = dg.materialize([measured], raise_on_error=False)
    lines = refresh_summary(result)
    assert lines[1] == "  measured: rows=5, seconds_fetch=1.235, seconds_write=2"
    assert lines[2] == "  check looks_fine: did not pass (WARN)"
    assert lines[3] == "    some rows look wrong"
    assert lines[4] == "    held_queries=8"
    assert lines[5] == "    held_uuids: q-0, q-1, q-2, q-3, q-4 (and 3 more)"
    table = lines[6 : 6 + 1 + PREVIEW_ROWS]
    assert table[0].split() == ["catalog", "query", "title", "stored", "proposed", "+", "-"]
    assert [row.split()[:2] for row in table[1:]] == [[f"q-{i}", "Query"] for i in range(5)]
    assert lines[12] == "    ... 3 more rows in the run's check result"
    assert lines[13].startswith("    to apply it anyway: catalog-assets refresh --confirm-held")
    assert len(lines) == 14


def test_a_check_preview_table_is_aligned_with_escaped_pipes_and_long_cells_cut():
    long_reason = "nested deeper than 64 levels " * 4
    rejected = [RejectedDocument("key holds a | pipe", "a|b"), RejectedDocument(long_reason)]
    metadata = checks.rejected_documents_result(rejected).metadata
    lines = explain_check(metadata)
    assert lines[0] == "    rejected_documents=2"
    header, first, second = lines[1:]
    assert header.index("reason") == first.index("key holds") == second.index("nested")
    assert first.startswith("    a|b ")
    assert second.rstrip().endswith(long_reason.strip())  # the last column is never cut


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
        event.step_key: one_line(failure_cause(event.step_failure_data), first=True)
        for event in result.all_events
        if event.is_step_failure
    }
    assert causes == {
        "refuses": "refusing: postgresql://user:***@127.0.0.1:1/db is read-only",
        "breaks": "KeyError: 'uuid'",
    }


# --- migrate and errors ------------------------------------------------------------------------


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
def test_setup_errors_are_one_redacted_line_not_a_traceback(error, local_env, monkeypatch, capsys):
    def fails(url: str):
        raise error

    monkeypatch.setattr("catalog_assets.store.open_store", fails)
    assert cli.main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("catalog-assets migrate: ") and err.count("\n") == 1
    assert not any(s in err for s in ("s3cr3t-value", "abcdefgh1234")), err


def test_unexpected_errors_keep_their_traceback(local_env, monkeypatch):
    def fails(url: str):
        raise KeyError("a bug")

    monkeypatch.setattr("catalog_assets.store.open_store", fails)
    with pytest.raises(KeyError, match="a bug"):
        cli.main(["migrate"])
