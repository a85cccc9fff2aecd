"""The catalog query sensor (the query lane): ticks against a real store on both backends and a
real Dagster instance, the runs it asks for executed in process, and the change set and cursor
on their own."""

from __future__ import annotations

import copy
import json

import dagster as dg
import pytest

from catalog_assets.core.refresh.queries import (
    catalog_query_row,
    change_digest,
    diff_catalog_queries,
    enterprise_catalog_row,
)
from catalog_assets.defs.bulk_assets import bulk_assets
from catalog_assets.defs.jobs import catalog_query_changes
from catalog_assets.defs.resources import CatalogQuerySource, CatalogStoreResource
from catalog_assets.store import open_store
from sensors.catalog_queries import (
    QueryCursor,
    build_catalog_queries_sensor,
    evaluate_tick,
    parse_cursor,
    run_key,
    serialize_cursor,
)

BOTH = {"catalog_queries", "catalog_content_associations"}
NARROW = {"content_type": "course", "partner": "no-such-partner"}


def tick(lane, cursor: str | None = None, source=None, instance=None):
    context = dg.build_sensor_context(instance=instance or lane.instance, cursor=cursor)
    return evaluate_tick(
        context,
        source or lane.resources()["catalog_query_source"],
        CatalogStoreResource(url=lane.store_url),
    )


def requests_of(result) -> list[dg.RunRequest]:
    return list(result.run_requests or []) if isinstance(result, dg.SensorResult) else []


def skip_text(result) -> str:
    if isinstance(result, dg.SkipReason):
        return result.skip_message or ""
    assert not requests_of(result), result
    return result.skip_reason.skip_message if result.skip_reason else ""


def selection(request: dg.RunRequest) -> set[str]:
    return {key.to_user_string() for key in request.asset_selection}


def execute(lane, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """What the daemon does with the request: the selected assets, with its run config."""
    result = dg.materialize(
        bulk_assets,
        selection=request.asset_selection,
        run_config=request.run_config,
        resources=lane.resources(),
        instance=lane.instance,
        tags=request.tags,
    )
    assert result.success
    return result


def edited(queries: dict, index: int, **fields) -> dict:
    out = copy.deepcopy(queries)
    out["catalog_queries"][index].update(fields)
    return out


def associations_by_query(lane) -> dict[str, set[str]]:
    with open_store(lane.store_url) as store:
        pairs = store.associations().iter_rows()
        out: dict[str, set[str]] = {}
        for uuid, key in pairs:
            out.setdefault(uuid, set()).add(key)
        return out


@pytest.fixture
def refreshed(lane):
    """The lane after a full refresh: the store in step with the listing."""
    assert lane.refresh().success
    return lane


def test_an_unchanged_listing_skips_and_keeps_its_cursor(refreshed):
    result = tick(refreshed)
    assert "in step" in skip_text(result)
    assert result.cursor is None  # nothing to remember


def test_an_edited_filter_asks_for_one_scoped_run_that_applies_it(refreshed):
    lane = refreshed
    before = associations_by_query(lane)
    target = lane.queries["catalog_queries"][0]["uuid"]
    lane.write(queries=edited(lane.queries, 0, content_filter={"content_type": "program"}))

    result = tick(lane)
    (request,) = requests_of(result)
    assert request.job_name == catalog_query_changes.name
    assert selection(request) == BOTH
    assert request.run_config == {
        "ops": {"catalog_content_associations": {"config": {"only_changed_queries": True}}}
    }
    assert {key.name for key in request.asset_check_keys} == {
        "valid_filters",
        "catalogs_reference_known_queries",
        "no_held_changes",
        "every_query_matches",
    }  # not the daily full refresh's re-read of every pair
    assert request.tags["catalog/queries_changed"] == "1"
    assert request.tags["catalog/queries_evaluated"] == "1"
    cursor = parse_cursor(result.cursor)
    assert cursor.runs == 1 and request.run_key == run_key(cursor.digest, 1)

    run = execute(lane, request)
    (materialization,) = [
        e
        for e in run.get_asset_materialization_events()
        if e.asset_key.path == ["catalog_content_associations"]
    ]
    assert materialization.materialization.metadata["queries_changed"].value == 1
    after = associations_by_query(lane)
    assert after == {uuid: keys for uuid, keys in before.items() if uuid != target} | (
        {target: after[target]}
    )
    assert (
        sorted((uuid, key) for uuid, keys in after.items() for key in keys)
        == lane.expected_associations()
    )
    assert after[target] != before.get(target)

    # The store is in step now: the next tick skips and clears the digest, keeping the count.
    settled = tick(lane, result.cursor)
    assert "in step" in skip_text(settled)
    assert parse_cursor(settled.cursor) == QueryCursor("", 1)


def test_a_tick_evaluated_again_asks_for_the_same_run(refreshed):
    lane = refreshed
    lane.write(queries=edited(lane.queries, 1, content_filter=NARROW))
    first, again = tick(lane, None), tick(lane, None)  # the first tick's cursor not committed
    assert [r.run_key for r in requests_of(first)] == [r.run_key for r in requests_of(again)]
    assert first.cursor == again.cursor
    # Committed: the run is asked for; later ticks wait for it rather than asking again.
    waiting = tick(lane, first.cursor)
    assert "already asked for" in skip_text(waiting)
    assert requests_of(first)[0].run_key in skip_text(waiting)


def test_run_keys_stay_new_when_an_edit_is_undone_and_done_again(refreshed):
    lane = refreshed
    original = copy.deepcopy(lane.queries)
    cursor, keys = None, []
    for queries in (edited(original, 2, content_filter=NARROW), original):  # X -> Y, Y -> X
        lane.write(queries=queries)
        result = tick(lane, cursor)
        (request,) = requests_of(result)
        keys.append(request.run_key)
        execute(lane, request)
        cursor = tick(lane, result.cursor).cursor
    lane.write(queries=edited(original, 2, content_filter=NARROW))  # X -> Y again
    (request,) = requests_of(tick(lane, cursor))
    assert request.run_key not in keys and len(set(keys)) == 2


def test_new_removed_and_title_only_changes(refreshed):
    lane = refreshed
    queries = copy.deepcopy(lane.queries)
    removed = queries["catalog_queries"].pop(3)["uuid"]
    queries["catalog_queries"][0]["title"] = "Renamed"
    new = {"uuid": "11111111-2222-3333-4444-555555555555", "title": "New", "content_filter": {}}
    queries["catalog_queries"].append(new)
    lane.write(queries=queries)
    (request,) = requests_of(tick(lane))
    assert request.tags["catalog/queries_new"] == "1"
    assert request.tags["catalog/queries_changed"] == "1"
    assert request.tags["catalog/queries_removed"] == "1"
    assert request.tags["catalog/queries_evaluated"] == "1"  # the new one; not the title edit
    execute(lane, request)
    after = associations_by_query(lane)
    assert removed not in after
    with open_store(lane.store_url) as store:
        assert len(after[new["uuid"]]) == len(store.live_content())  # {} matches everything
        assert {q.uuid: q.title for q in store.catalog_queries()}[
            queries["catalog_queries"][0]["uuid"]
        ] == "Renamed"
    assert sorted((u, k) for u, keys in after.items() for k in keys) == (
        lane.expected_associations()
    )


def test_removal_or_title_edit_alone_runs_catalog_queries_only(refreshed):
    lane = refreshed
    queries = copy.deepcopy(lane.queries)
    queries["catalog_queries"].pop(0)
    queries["catalog_queries"][0]["title"] = "Renamed"
    lane.write(queries=queries)
    (request,) = requests_of(tick(lane))
    assert selection(request) == {"catalog_queries"} and not request.run_config
    execute(lane, request)
    assert "in step" in skip_text(tick(lane))


def test_a_catalog_pointing_at_another_query_changes_its_content(refreshed):
    lane = refreshed
    queries = copy.deepcopy(lane.queries)
    catalog = queries["enterprise_catalogs"][0]
    other = next(
        q["uuid"]
        for q in queries["catalog_queries"]
        if q["uuid"] != catalog["catalog_query_uuid"]
        and associations_by_query(lane).get(q["uuid"])
        != associations_by_query(lane).get(catalog["catalog_query_uuid"])
    )
    catalog["catalog_query_uuid"] = other
    lane.write(queries=queries)
    (request,) = requests_of(tick(lane))
    assert request.tags["catalog/catalogs_changed"] == "1"
    assert selection(request) == {"catalog_queries"}  # memberships join the pointer when read
    execute(lane, request)
    with open_store(lane.store_url) as store:
        keys = {row["content_key"] for row in store.contents_of(catalog["uuid"])}
    assert keys == associations_by_query(lane).get(other, set())


def test_an_edit_to_an_invalid_filter_is_stored_and_keeps_its_content(refreshed):
    lane = refreshed
    target = lane.queries["catalog_queries"][0]["uuid"]
    before = associations_by_query(lane).get(target)
    lane.write(queries=edited(lane.queries, 0, content_filter={"org__in": ["x"]}))
    (request,) = requests_of(tick(lane))
    assert request.tags["catalog/queries_evaluated"] == "0"
    assert selection(request) == {"catalog_queries"}
    execute(lane, request)
    assert associations_by_query(lane).get(target) == before
    assert "in step" in skip_text(tick(lane))  # no run over and over for the invalid filter


def test_a_listing_that_trips_the_removal_guardrail_launches_nothing(refreshed):
    lane = refreshed
    queries = copy.deepcopy(lane.queries)
    queries["catalog_queries"] = queries["catalog_queries"][:5]
    lane.write(queries=queries)
    text = skip_text(tick(lane))
    assert "refusing the catalog query listing" in text and "max_removal_share" in text


class BrokenSource(CatalogQuerySource):
    def load(self):
        raise ConnectionError(
            "GET https://svc:hunter2-secret@catalog.example.com/api/v1/catalog-queries/ failed"
        )


def test_a_source_that_fails_is_a_skip_without_secrets(refreshed):
    text = skip_text(tick(refreshed, source=BrokenSource()))
    assert "could not be read" in text and "hunter2-secret" not in text
    refreshed.queries_path.write_text("{truncated")
    assert "could not be read" in skip_text(tick(refreshed))


def test_before_the_first_full_refresh_it_waits(lane):
    assert "no tables yet" in skip_text(tick(lane))  # a reader: the sensor runs no DDL
    with open_store(lane.store_url) as store:
        store.ensure_schema()
    assert "no catalog queries yet" in skip_text(tick(lane))


def test_a_full_refresh_in_progress_defers_the_tick(refreshed):
    lane = refreshed
    lane.write(queries=edited(lane.queries, 0, content_filter=NARROW))
    with dg.instance_for_test() as instance:
        job = dg.Definitions(
            assets=bulk_assets,
            jobs=[dg.define_asset_job("full_refresh", tags={"catalog/lane": "bulk"})],
            resources=lane.resources(),
        ).resolve_job_def("full_refresh")
        run = instance.create_run_for_job(job, tags={"catalog/lane": "bulk"})
        instance.report_run_canceling(run)  # in progress as far as the queue is concerned
        text = skip_text(tick(lane, instance=instance))
        assert run.run_id in text and "writing the catalog store" in text


def test_the_sensor_definition(tmp_path):
    sensor = build_catalog_queries_sensor(7)
    assert sensor.minimum_interval_seconds == 7
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert "CATALOG_QUERIES_POLL_SECONDS" in sensor.description


# --- pure: the change set, its digest and the cursor -------------------------------------------


def rows(*queries):
    return [catalog_query_row(q) for q in queries]


def test_the_digest_ignores_order_and_names_every_change():
    a = {"uuid": "a", "title": "A", "content_filter": {"org": "x"}}
    b = {"uuid": "b", "title": "B", "content_filter": {"org": "y"}}
    c = {"uuid": "c", "title": "C", "content_filter": {"org": "z"}}
    catalog = enterprise_catalog_row({"uuid": "k", "title": "K", "catalog_query_uuid": "a"})
    stored = rows(a, c)
    applied = {row.uuid: row.filter_hash for row in stored}
    changes = diff_catalog_queries(rows(b, a), [catalog], stored, [], applied)
    assert (changes.new, changes.changed, changes.removed) == (["b"], [], ["c"])
    assert changes.evaluate == ["b"] and changes.catalogs == ["k"]
    again = diff_catalog_queries(rows(a, b), [catalog], list(reversed(stored)), [], applied)
    assert again.digest == changes.digest == change_digest(list(reversed(changes.tokens)))
    # The same uuids with another filter or title make another digest.
    b2 = dict(b, title="B2")
    other = diff_catalog_queries(rows(a, b2), [catalog], stored, [], applied)
    assert other.digest != changes.digest


def test_a_stored_filter_never_evaluated_still_counts():
    a = {"uuid": "a", "title": "A", "content_filter": {"org": "x"}}
    stored = rows(a)
    changes = diff_catalog_queries(rows(a), [], stored, [], {"a": "older-hash"})
    assert changes.changed == ["a"] and changes.evaluate == ["a"]
    assert diff_catalog_queries(rows(a), [], stored, [], {"a": stored[0].filter_hash}).empty


def test_cursor_round_trip_is_small():
    cursor = QueryCursor("f" * 64, 12)
    text = serialize_cursor(cursor)
    assert parse_cursor(text) == cursor and len(text) < 120
    assert parse_cursor(None) == QueryCursor() and json.loads(text)["runs"] == 12


# --- the store's narrow read for a scoped evaluation -----------------------------------------


def test_live_content_fields_reads_just_those_fields(store):
    from datetime import datetime

    from catalog_assets.core.content import content_record

    odd = {"a/b": 1, "x~y": [1, {"k": None}], "": "empty", 'q"uote': True, "dot.ted": "n\x00l"}
    records = [
        {"key": "k1", "aggregation_key": "course:k1", "content_type": "course", "org": None, **odd},
        {"key": "k2", "aggregation_key": "course:k2", "content_type": "course", "org": "MITx"},
        {"key": "k3", "aggregation_key": "course:k3", "content_type": "course", "org": "gone"},
    ]
    now = datetime(2026, 11, 29, 7, 0)
    store.apply_content_changes([content_record(r) for r in records], [], now)
    assert store.tombstone_content("k3", datetime(2026, 11, 29, 8, 0))
    fields = ["org", "missing", *odd]
    narrow = store.live_content_fields(fields)
    whole = store.live_content()
    assert narrow == [(key, {f: m[f] for f in fields if f in m}) for key, m in whole]
    assert [key for key, _ in narrow] == ["k1", "k2"]
    assert narrow[0][1]["org"] is None and "missing" not in narrow[0][1]
    assert store.live_content_fields([]) == [("k1", {}), ("k2", {})]
