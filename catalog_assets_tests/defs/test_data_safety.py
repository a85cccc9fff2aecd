"""Data safety: no catalog loses content to empty inputs, a poison query, a crash between steps,
bad documents or a concurrent writer. Each test reproduces a way real catalogs were emptied or
corrupted, on both store backends where both apply."""

from __future__ import annotations

import json
import random
import threading
from datetime import timedelta

import dagster as dg
import pytest

from catalog_assets.core import content_updates as event_lane
from catalog_assets.core.content import ContentSnapshot, content_key_of, content_record, utcnow
from catalog_assets.core.content_updates import ContentUpdate, apply_updates
from catalog_assets.core.refresh import (
    GuardrailTripped,
    catalog_query_row,
    refresh_associations,
    refresh_content,
    sync_catalog_queries,
)
from catalog_assets.defs.event_assets import content_item
from catalog_assets.defs.resources import (
    CatalogQueryFile,
    CatalogStoreResource,
    SampleContentSource,
)
from catalog_assets.devtools.sample_data import generate_catalog_queries, generate_content
from catalog_assets.store import CatalogStore, open_store
from catalog_assets_tests.support.expected import expected_pairs, valid_filters
from catalog_assets_tests.support.fake_discovery import TOKEN_PATH, FakeDiscovery
from catalog_assets_tests.support.lanes import check, metadata

DEEP = 500  # what broke every refresh: a filter value nested this deeply


def nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture
def sample_seed() -> int:
    """The data these tests were written against (conftest's `content`, `queries`, `lane`)."""
    return 13


def failure_messages(result: dg.ExecuteInProcessResult) -> str:
    return " ".join(
        str(event.step_failure_data.user_failure_data.description or "")
        + str(event.step_failure_data.error.message)
        for event in result.all_events
        if event.is_step_failure
    )


# --- Empty or truncated query listings --------------------------------------------------------


def test_an_empty_query_listing_is_refused_and_writes_nothing(lane):
    assert lane.refresh().success
    before = lane.tables()
    assert before["associations"]
    lane.write(queries={"catalog_queries": [], "enterprise_catalogs": []})
    result = lane.refresh(raise_on_error=False)
    assert not result.success
    assert "confirm_mass_removal" in failure_messages(result)
    assert lane.tables() == before  # no query, catalog or association was removed

    confirm = {"ops": {"catalog_queries": {"config": {"confirm_mass_removal": True}}}}
    assert lane.refresh(run_config=confirm).success
    after = lane.tables()
    assert after["queries"] == after["catalogs"] == after["associations"] == []


def test_a_listing_that_drops_too_many_queries_is_refused(lane, queries):
    assert lane.refresh().success
    before = lane.tables()
    kept = queries["catalog_queries"][:14]  # 30% of the queries gone
    lane.write(queries={**queries, "catalog_queries": kept})
    assert not lane.refresh(raise_on_error=False).success
    assert lane.tables() == before

    kept = queries["catalog_queries"][:18]  # 10% gone: an ordinary edit
    lane.write(queries={**queries, "catalog_queries": kept})
    result = lane.refresh()
    assert metadata(result, "catalog_queries")["removed"] == 2
    gone = {q["uuid"] for q in queries["catalog_queries"][18:]}
    assert not {uuid for uuid, _ in lane.tables()["associations"]} & gone


def test_catalogs_naming_unknown_queries_are_reported(lane, queries):
    catalogs = [
        *queries["enterprise_catalogs"],
        {"uuid": "orphan", "title": "Orphan", "enterprise_uuid": "e", "catalog_query_uuid": "nope"},
    ]
    lane.write(queries={**queries, "enterprise_catalogs": catalogs})
    result = lane.refresh()
    evaluation = check(result, "catalogs_reference_known_queries")
    assert not evaluation.passed
    assert evaluation.metadata["catalogs_with_unknown_query"].value == 1
    assert "orphan" in evaluation.metadata["preview"].value


def test_a_listing_entry_without_a_uuid_is_an_error_naming_it(store):
    loaded = CatalogQueryFile([{"uuid": None, "content_filter": {}}], [])
    with pytest.raises(ValueError, match=r"catalog_queries\[0\]: uuid None"):
        sync_catalog_queries(loaded, store, utcnow())
    assert store.catalog_queries() == []


def test_nul_titles_and_non_json_numbers_are_stored_the_same_on_both_backends(store):
    rows = [
        catalog_query_row({"uuid": "nul", "title": "a\x00b", "content_filter": {}}),
        catalog_query_row({"uuid": "nan", "content_filter": {"price__gte": float("nan")}}),
    ]
    store.sync_catalog_queries(rows, [], utcnow())
    stored = {q.uuid: q for q in store.catalog_queries()}
    assert stored["nul"].title == "a\ufffdb" and stored["nul"].is_valid
    assert any("NUL" in warning for warning in stored["nul"].warnings)
    assert not stored["nan"].is_valid and "JSON number" in stored["nan"].error
    assert json.loads(stored["nan"].content_filter) == {"price__gte": "NaN"}


# --- Poison queries -----------------------------------------------------------------------------


def test_a_poison_query_is_stored_invalid_and_blocks_no_other_query(lane, queries):
    poison = {"uuid": "poison", "title": "Deep", "content_filter": {"org": nested(DEEP)}}
    listing = {**queries, "catalog_queries": [*queries["catalog_queries"], poison]}
    lane.queries_path.write_text(json.dumps(listing))  # (Lane.write deep-copies: too deep)
    result = lane.refresh()
    assert result.success
    stored = {q.uuid: q for q in lane.tables()["queries"]}
    assert not stored["poison"].is_valid and "deep" in stored["poison"].error
    assert lane.tables()["associations"] == lane.expected_associations()
    assert not check(result, "valid_filters").passed


def test_a_poison_filter_stored_as_valid_by_older_code_is_skipped(store, content, queries):
    """Rows written before the depth rule still say is_valid: both lanes re-check them."""
    rows = [catalog_query_row(q) for q in queries["catalog_queries"]]
    text = json.dumps({"org": nested(DEEP)})
    old = catalog_query_row({"uuid": "poison", "content_filter": {}})
    rows.append(type(old)(old.uuid, None, text, "h", is_valid=True))
    store.sync_catalog_queries(rows, [], utcnow())
    snapshot = ContentSnapshot(content)
    refresh_content(snapshot, store, utcnow())
    refresh_associations(store, utcnow())
    records = [{**d, "_key": content_key_of(d)} for d in content]
    expected = expected_pairs(valid_filters(queries["catalog_queries"]), records)
    assert sorted(store.associations().iter_rows()) == expected

    changed = {**content[0], "title": "Changed", "modified": "2030-01-01T00:00:00Z"}
    (applied,) = apply_updates(
        [ContentUpdate(content_key_of(changed), metadata=changed)],
        SampleContentSource(),
        store,
        utcnow(),
    )
    assert applied.outcome == "updated"


def test_an_event_whose_associations_cannot_be_computed_writes_nothing(
    tmp_path, store_url, content, queries, monkeypatch
):
    """The record must not end live without associations: the event becomes a dead letter."""
    with open_store(store_url) as store:
        store.ensure_schema()
        sync_catalog_queries(CatalogQueryFile(**queries), store, utcnow())
    real_matching_queries = event_lane._matching_queries

    def matching_queries(usable, live):  # whichever engine judges the keys
        if any(record.get("title") == "poison" for record in live.values()):
            raise RecursionError("maximum recursion depth exceeded")
        return real_matching_queries(usable, live)

    monkeypatch.setattr(event_lane, "_matching_queries", matching_queries)
    good, bad = dict(content[0]), {**content[1], "title": "poison"}
    with open_store(store_url) as store:
        results = apply_updates(
            [
                ContentUpdate(content_key_of(good), metadata=good),
                ContentUpdate(content_key_of(bad), metadata=bad),
            ],
            SampleContentSource(),
            store,
            utcnow(),
        )
        outcomes = {r.content_key: r for r in results}
        assert outcomes[content_key_of(good)].outcome == "inserted"
        assert outcomes[content_key_of(bad)].outcome == "rejected"
        assert "associations could not be computed" in outcomes[content_key_of(bad)].error
        assert store.get_content(content_key_of(bad)) is None  # nothing written for it
        assert store.get_content(content_key_of(good)) is not None

    # Through Dagster, the rejected update is kept as a dead letter.
    update = ContentUpdate(content_key_of(bad), content_type="course", metadata=bad)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("content_keys", [update.content_key])
    result = dg.materialize(
        [content_item],
        partition_key=update.content_key,
        instance=instance,
        resources={
            "content_source": SampleContentSource(),
            "catalog_store": CatalogStoreResource(url=store_url),
        },
        run_config={"ops": {"content_item": {"config": {"update": update.to_config()}}}},
    )
    assert result.success
    with open_store(store_url) as store:
        letters = store.dead_letters()
        assert len(letters) == 1 and "associations could not be computed" in letters[0].error
        assert store.get_content(update.content_key) is None


# --- Crashes between steps ---------------------------------------------------------------------


def test_no_pair_points_at_tombstoned_content_between_the_steps(lane):
    """The content step alone (a crash before the association step) leaves no dangling pair."""
    assert lane.refresh().success
    associated = {key for _, key in lane.tables()["associations"]}
    gone = [d for d in lane.content if content_key_of(d) in associated][:3]
    lane.write(content=[d for d in lane.content if d not in gone])
    result = lane.refresh(selection=["content_metadata"])
    assert metadata(result, "content_metadata")["tombstoned"] == 3
    assert metadata(result, "content_metadata")["associations_removed_with_tombstones"] > 0
    tables = lane.tables()
    dead = {key for key, row in tables["content"].items() if row.deleted_at is not None}
    assert {content_key_of(d) for d in gone} == dead
    assert not [pair for pair in tables["associations"] if pair[1] in dead]


# --- Bad documents -----------------------------------------------------------------------------


def test_bad_documents_are_rejected_one_by_one(store, content):
    refresh_content(ContentSnapshot(content), store, utcnow())
    kept = content[5]
    broken_kept = {k: v for k, v in kept.items() if k not in ("aggregation_key", "content_type")}
    deep: dict = {"key": "deep", "aggregation_key": "course:deep", "nested": nested(1000)}
    documents = [
        *content[:5],
        *content[6:],
        {"title": "no identity at all"},
        {"key": 123, "aggregation_key": "course:123", "title": "integer key"},
        deep,
        broken_kept,
    ]
    report = refresh_content(ContentSnapshot(documents), store, utcnow())
    reasons = " | ".join(r.reason for r in report.rejected)
    assert len(report.rejected) == 4, reasons
    assert "deep" in reasons and "123" in reasons
    assert report.written.tombstoned == []  # the rejected key is not taken for deleted
    assert store.get_content(content_key_of(kept)).deleted_at is None
    assert report.source_records == len(content) - 1


# --- Concurrent writers (PostgreSQL: several processes write one store) ------------------------


def _mutated(document: dict, rng: random.Random, modified: str) -> dict:
    """The same content key with other values in the fields the filters look at."""
    return {
        **document,
        "org": rng.choice(["MITx", "HarvardX", "edX", "DelftX", "IBM"]),
        "partner": rng.choice(["edx", "2u"]),
        "level_type": rng.choice(["Introductory", "Intermediate", "Advanced"]),
        "modified": modified,
    }


def _recomputed(store: CatalogStore, queries: dict) -> list[tuple]:
    records = [{**metadata, "_key": key} for key, metadata in store.live_content()]
    return expected_pairs(valid_filters(queries["catalog_queries"]), records)


def test_refresh_and_event_applies_race_to_a_correct_state(postgres_schema_url):
    """The refresh's content step has written new records (their pairs not yet recomputed)
    when its association step and the event lane's applies for the same keys run together."""
    content = generate_content(1500, seed=5)
    queries = generate_catalog_queries(60, content, seed=5)
    courses = [d for d in content if d.get("content_type") == "course"]
    with open_store(postgres_schema_url) as store:
        store.ensure_schema()
        sync_catalog_queries(CatalogQueryFile(**queries), store, utcnow())
        refresh_content(ContentSnapshot(content), store, utcnow())
        refresh_associations(store, utcnow())
    rng = random.Random(7)
    base = utcnow()
    errors: list[BaseException] = []

    def refresh() -> None:
        try:
            with open_store(postgres_schema_url) as own:
                refresh_associations(own, utcnow(), confirm_all=True)
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    def events(picks: list[dict], stamp: str) -> None:
        try:
            with open_store(postgres_schema_url) as own:
                for document in picks:
                    changed = _mutated(document, random.Random(stamp + document["key"]), stamp)
                    update = ContentUpdate(document["key"], "course", metadata=changed)
                    apply_updates([update], SampleContentSource(), own, utcnow())
        except BaseException as error:
            errors.append(error)

    for round_number in range(8):
        picks = rng.sample(courses, 40)
        step = (base + timedelta(minutes=2 * round_number)).isoformat() + "Z"
        event = (base + timedelta(minutes=2 * round_number + 1)).isoformat() + "Z"
        with open_store(postgres_schema_url) as store:  # the content step of a refresh
            changed = [_mutated(d, random.Random(step + d["key"]), step) for d in picks]
            store.apply_content_changes([content_record(d) for d in changed], [], utcnow())
        threads = [
            threading.Thread(target=refresh),
            threading.Thread(target=events, args=(picks[:20], event)),
            threading.Thread(target=events, args=(picks[20:], event)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors
        with open_store(postgres_schema_url) as store:
            assert sorted(store.associations().iter_rows()) == _recomputed(store, queries), (
                f"round {round_number}"
            )


def test_concurrent_refreshes_both_report_the_true_total(postgres_schema_url, content, queries):
    with open_store(postgres_schema_url) as store:
        store.ensure_schema()
        sync_catalog_queries(CatalogQueryFile(**queries), store, utcnow())
        refresh_content(ContentSnapshot(content), store, utcnow())
    reports = []
    start = threading.Barrier(2)

    def refresh() -> None:
        with open_store(postgres_schema_url) as own:
            start.wait()
            reports.append(refresh_associations(own, utcnow()))

    threads = [threading.Thread(target=refresh) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    with open_store(postgres_schema_url) as store:
        total = store.association_count()
    assert total > 0
    assert sorted(r.added for r in reports) == [0, total]
    assert [r.total for r in reports] == [total, total]


def test_a_store_guardrail_message_names_the_override(store, content):
    refresh_content(ContentSnapshot(content), store, utcnow())
    with pytest.raises(GuardrailTripped, match="confirm_mass_tombstone"):
        refresh_content(ContentSnapshot(content[:10]), store, utcnow())


# --- Secrets -------------------------------------------------------------------------------------


def test_secrets_never_reach_run_storage_logs_or_cli_output(tmp_path, monkeypatch, capsys):
    """Planted secrets, driven through the failure paths that used to echo them: a token
    endpoint whose error echoes the request, a store URL that cannot be used or reached."""
    from catalog_assets.cli import main

    client_secret, password = "planted-client-secret-7f3a", "planted-db-password-91c2"
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with FakeDiscovery(generate_content(20, seed=3)) as fake:
        echo = f"client_id={fake.client_id}&client_secret={client_secret}&grant_type=x"
        fake.fail_next(TOKEN_PATH, 401, times=50, body=echo)
        monkeypatch.setenv("CONTENT_SOURCE", "discovery")
        monkeypatch.setenv("DISCOVERY_API_URL", fake.api_url)
        monkeypatch.setenv("LMS_OAUTH2_URL", fake.oauth2_url)
        monkeypatch.setenv("LMS_OAUTH2_CLIENT_ID", fake.client_id)
        monkeypatch.setenv("LMS_OAUTH2_CLIENT_SECRET", client_secret)
        monkeypatch.setenv("CATALOG_STORE_URL", f"duckdb:///{tmp_path / 'catalog.duckdb'}")
        assert main(["refresh"]) == 1
    for url in (
        f"postgresql://admin:{password}@127.0.0.1:1/catalog",  # unreachable
        f"mysql://admin:{password}@127.0.0.1/catalog",  # unsupported
    ):
        monkeypatch.setenv("CATALOG_STORE_URL", url)
        monkeypatch.setenv("CONTENT_SOURCE", "sample")
        assert main(["refresh"]) != 0
        assert main(["catalogs-for", "some-key"]) != 0
    printed = capsys.readouterr()
    assert "401" in printed.out + printed.err  # the failures are explained...
    stored = [path.read_bytes() for path in home.rglob("*") if path.is_file()]
    assert stored  # run storage, event logs
    for text in (printed.out.encode(), printed.err.encode(), *stored):
        assert client_secret.encode() not in text  # ...without the secrets
        assert password.encode() not in text
