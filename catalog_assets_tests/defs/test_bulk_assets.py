"""The bulk lane through Dagster: ``materialize()`` against real stores and sources."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from catalog_assets.core.content import content_key_of
from catalog_assets.defs.checks import associations_reference_live_content
from catalog_assets.defs.resources import (
    DiscoveryContentSource,
)
from catalog_assets.devtools.sample_data import generate_content
from catalog_assets.store import open_store
from catalog_assets_tests.support.fake_discovery import FakeDiscovery
from catalog_assets_tests.support.lanes import Lane, check, metadata


@pytest.fixture
def sample_seed() -> int:
    """The data these tests were written against (conftest's `content`, `queries`, `lane`)."""
    return 21


def test_first_load_writes_content_queries_and_exact_associations(lane, content):
    result = lane.refresh()
    assert result.success
    content_meta = metadata(result, "content_metadata")
    assert content_meta["inserted"] == len(content)
    assert content_meta["updated"] == content_meta["tombstoned"] == 0
    # One numeric entry per phase, so that the UI can plot each over runs.
    for phase in ("fetch", "diff", "write", "partitions"):
        assert isinstance(content_meta[f"seconds_{phase}"], float)
    assert "seconds" not in content_meta
    for phase in ("load", "match", "diff", "write"):
        assert isinstance(
            metadata(result, "catalog_content_associations")[f"seconds_{phase}"], float
        )
    assert {"seconds_load", "seconds_write"} <= set(metadata(result, "catalog_queries"))
    tables = lane.tables()
    assert len(tables["content"]) == len(content)
    assert tables["associations"] == lane.expected_associations()
    associations_meta = metadata(result, "catalog_content_associations")
    assert associations_meta["added"] == associations_meta["total"] == len(tables["associations"])
    assert associations_meta["removed"] == 0
    assert "catalog query" in associations_meta["top_changes"]
    assert check(result, "valid_filters").passed
    assert check(result, "no_held_changes").passed
    assert check(result, "associations_reference_live_content").passed
    assert metadata(result, "catalog_queries")["queries"] == 20


def test_the_dangling_check_fails_on_a_pair_naming_unknown_content(lane):
    lane.refresh()
    with open_store(lane.store_url) as store, store.transaction():  # a writer outside the store
        store._run(
            "INSERT INTO catalog_query_content (catalog_query_uuid, content_key, added_at) "
            "VALUES (?, ?, CURRENT_TIMESTAMP)",
            ("some-query", "no-such-key"),
        )
    evaluation = associations_reference_live_content(
        catalog_store=lane.resources()["catalog_store"]
    )
    assert not evaluation.passed
    assert evaluation.metadata["dangling_associations"].value == 1
    assert evaluation.metadata["examples"].value == [["some-query", "no-such-key"]]


def test_second_run_with_no_changes_writes_nothing(lane):
    lane.refresh()
    before = lane.tables()
    result = lane.refresh()
    content_meta = metadata(result, "content_metadata")
    assert (content_meta["inserted"], content_meta["updated"], content_meta["tombstoned"]) == (
        0,
        0,
        0,
    )
    assert content_meta["unchanged"] == len(lane.content)
    associations_meta = metadata(result, "catalog_content_associations")
    assert (associations_meta["added"], associations_meta["removed"]) == (0, 0)
    assert metadata(result, "catalog_queries")["changed"] == 0
    assert lane.tables() == before  # updated_at and added_at included


def test_changed_record_is_updated_and_its_associations_follow(lane):
    lane.refresh()
    course = next(d for d in lane.content if d["content_type"] == "course")
    key = course["key"]
    lane.write(
        queries={
            "catalog_queries": [
                {"uuid": "q-org", "title": "by org", "content_filter": {"org": course["org"]}}
            ],
            "enterprise_catalogs": [],
        }
    )
    # Every query replaced: the removal guardrail wants it confirmed.
    lane.refresh(
        run_config={"ops": {"catalog_queries": {"config": {"confirm_mass_removal": True}}}}
    )
    assert ("q-org", key) in lane.tables()["associations"]
    course["org"] = "SomewhereElseX"
    course["modified"] = "2030-01-01T00:00:00Z"
    lane.write(content=lane.content)
    result = lane.refresh()
    assert metadata(result, "content_metadata")["updated"] == 1
    tables = lane.tables()
    assert tables["content"][key].metadata["org"] == "SomewhereElseX"
    assert ("q-org", key) not in tables["associations"]
    assert tables["associations"] == lane.expected_associations()


def test_removed_record_is_tombstoned_and_loses_its_associations(lane):
    lane.refresh()
    associated = {key for _, key in lane.tables()["associations"]}
    victim = next(d for d in lane.content if content_key_of(d) in associated)
    key = content_key_of(victim)
    lane.write(content=[d for d in lane.content if d is not victim])
    result = lane.refresh()
    assert metadata(result, "content_metadata")["tombstoned"] == 1
    tables = lane.tables()
    assert tables["content"][key].deleted_at is not None  # kept as a tombstone
    assert key not in {k for _, k in tables["associations"]}
    assert tables["associations"] == lane.expected_associations()
    assert check(result, "associations_reference_live_content").passed


def test_stale_record_never_overwrites_a_newer_one(lane):
    lane.refresh()
    document = lane.content[0]
    key = content_key_of(document)
    with open_store(lane.store_url) as store:
        stored_modified = store.get_content(key).source_modified
    document["title"] = "An older edit"
    document["modified"] = "2000-01-01T00:00:00Z"
    lane.write(content=lane.content)
    result = lane.refresh()
    assert metadata(result, "content_metadata")["stale_skipped"] == 1
    stored = lane.tables()["content"][key]
    assert stored.metadata["title"] != "An older edit"
    assert stored.source_modified == stored_modified


def test_changed_filter_changes_associations_without_being_held(lane):
    lane.refresh()
    queries = lane.queries
    target = max(
        queries["catalog_queries"],
        key=lambda q: sum(1 for u, _ in lane.tables()["associations"] if u == q["uuid"]),
    )
    target["content_filter"] = {"content_type": "program"}
    lane.write(queries=queries)
    result = lane.refresh()
    assert check(result, "no_held_changes").passed
    tables = lane.tables()
    assert tables["associations"] == lane.expected_associations()
    query_row = next(q for q in tables["queries"] if q.uuid == target["uuid"])
    assert json.loads(query_row.content_filter) == {"content_type": "program"}


def test_only_changed_queries_refreshes_new_and_edited_queries_alone(lane):
    lane.refresh()
    before = lane.tables()["associations"]
    queries = lane.queries
    edited = queries["catalog_queries"][0]
    edited["content_filter"] = {"content_type": "program"}
    queries["catalog_queries"].append(
        {"uuid": "q-new", "title": "new", "content_filter": {"content_type": "courserun"}}
    )
    content = lane.content
    for document in content[1::4]:  # would move other queries in a full refresh
        if document["content_type"] == "course":
            document.update(org="Nowhere", modified="2031-01-01T00:00:00Z")
    lane.write(content=content, queries=queries)
    only_changed = {"only_changed_queries": True}
    result = lane.refresh(
        run_config={"ops": {"catalog_content_associations": {"config": only_changed}}}
    )
    scope = {edited["uuid"], "q-new"}
    after = lane.tables()["associations"]
    expected = lane.expected_associations()
    assert [p for p in after if p[0] in scope] == [p for p in expected if p[0] in scope]
    assert [p for p in after if p[0] not in scope] == [p for p in before if p[0] not in scope]
    assert [p for p in expected if p[0] not in scope] != [p for p in before if p[0] not in scope]
    assert metadata(result, "catalog_content_associations")["relations_total"] == 0
    with open_store(lane.store_url) as store:
        hashes = {q.uuid: q.filter_hash for q in store.catalog_queries()}
        assert store.applied_filters() == hashes  # the others' filters did not change
    # Nothing changed since: a second limited run evaluates nothing and writes nothing.
    again = lane.refresh(
        run_config={"ops": {"catalog_content_associations": {"config": only_changed}}}
    )
    assert metadata(again, "catalog_content_associations")["queries_changed"] == 0
    assert lane.tables()["associations"] == after
    lane.refresh()
    assert lane.tables()["associations"] == expected


def test_invalid_filter_is_stored_with_its_error_and_skipped(lane):
    queries = lane.queries
    queries["catalog_queries"].append(
        {"uuid": "q-bad", "title": "broken", "content_filter": {"org__in": ["MITx"], "a": 1}}
    )
    lane.write(queries=queries)
    result = lane.refresh()
    assert result.success
    evaluation = check(result, "valid_filters")
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["invalid_queries"].value == 1
    tables = lane.tables()
    bad = next(q for q in tables["queries"] if q.uuid == "q-bad")
    assert not bad.is_valid and "org__in" in bad.error and "unsupported operator" in bad.error
    assert bad.content_filter == '{"org__in": ["MITx"], "a": 1}'  # original key order
    assert "q-bad" not in {u for u, _ in tables["associations"]}
    assert tables["associations"] == lane.expected_associations()


def test_tombstone_guardrail_refuses_then_applies_when_confirmed(lane):
    lane.refresh()
    before = lane.tables()
    total = len(lane.content)
    lane.write(content=lane.content[: total // 2])
    result = lane.refresh(raise_on_error=False)
    assert not result.success
    failure = result.failure_data_for_node("content_metadata")
    assert "refusing to tombstone" in str(failure.error.message)
    assert lane.tables() == before  # nothing written
    confirmed = lane.refresh(
        run_config={"ops": {"content_metadata": {"config": {"confirm_mass_tombstone": True}}}}
    )
    assert metadata(confirmed, "content_metadata")["tombstoned"] == total - total // 2


def test_swing_guardrail_holds_a_big_query_until_confirmed(tmp_path, store_url):
    content = generate_content(400, seed=4)
    courses = [d for d in content if d["content_type"] == "course"]
    queries = {
        "catalog_queries": [
            {
                "uuid": "q-courses",
                "title": "all courses",
                "content_filter": {"content_type": "course"},
            },
            {
                "uuid": "q-runs",
                "title": "all runs",
                "content_filter": {"content_type": "courserun"},
            },
        ],
        "enterprise_catalogs": [],
    }
    lane = Lane(tmp_path, store_url, content, queries)
    lane.refresh()
    assert len(courses) > 50
    # A source glitch: almost every course comes back as a program. The filter did not change.
    for course in courses[5:]:
        course["content_type"] = "program"
    lane.write(content=content)
    before = lane.tables()["associations"]
    result = lane.refresh()
    held = check(result, "no_held_changes")
    assert not held.passed and held.severity == dg.AssetCheckSeverity.ERROR
    assert held.metadata["held_uuids"].value == ["q-courses"]
    after = lane.tables()["associations"]
    assert [p for p in after if p[0] == "q-courses"] == [p for p in before if p[0] == "q-courses"]
    confirmed = lane.refresh(
        run_config={
            "ops": {
                "catalog_content_associations": {"config": {"confirm_held_queries": ["q-courses"]}}
            }
        }
    )
    assert check(confirmed, "no_held_changes").passed
    assert lane.tables()["associations"] == lane.expected_associations()


def test_duplicate_source_keys_are_reported(lane):
    lane.write(content=[*lane.content, lane.content[0]])
    result = lane.refresh()
    evaluation = check(result, "no_duplicate_source_keys")
    assert not evaluation.passed
    assert evaluation.metadata["examples"].value == [content_key_of(lane.content[0])]


def test_discovery_source_end_to_end_and_a_failed_crawl_writes_nothing(lane):
    documents = [d for d in lane.content]
    with FakeDiscovery(documents, {}) as fake:
        source = DiscoveryContentSource(
            api_url=fake.api_url,
            oauth2_url=fake.oauth2_url,
            client_id=fake.client_id,
            client_secret=fake.client_secret,
            max_retries=1,
        )
        result = lane.refresh(content_source=source)
        content_meta = metadata(result, "content_metadata")
        assert content_meta["inserted"] == len(documents)
        assert content_meta["source_requests"] >= len(documents) // 100 + 1
        before = lane.tables()
        fake.remove_documents([content_key_of(documents[0])])
        fake.fail_from_page(2, status=500)
        failed = lane.refresh(content_source=source, raise_on_error=False)
        assert not failed.success
        assert lane.tables() == before


def test_a_crawl_that_skipped_live_items_tombstones_only_what_the_source_confirms(lane):
    """Deleting items mid-crawl shifts page boundaries: live items are skipped without a sign
    (no repeat, the count adds up), so absence alone never tombstones anything."""
    with FakeDiscovery(lane.content) as fake:
        source = DiscoveryContentSource(
            api_url=fake.api_url,
            oauth2_url=fake.oauth2_url,
            client_id=fake.client_id,
            client_secret=fake.client_secret,
        )
        assert lane.refresh(content_source=source).success
        deleted = [content_key_of(d) for d in lane.content[5:10]]  # all on page 1
        fake.after_page(1, lambda: fake.remove_documents(deleted))
        result = lane.refresh(content_source=source)
        content_meta = metadata(result, "content_metadata")
        assert content_meta["tombstoned"] == 0  # the deleted ones were read before they went
        assert content_meta["absent_but_still_in_source"] == 5  # page 2 started 5 items late
        assert not any(row.deleted_at for row in lane.tables()["content"].values())
        result = lane.refresh(content_source=source)  # the next crawl sees the deletions
    assert metadata(result, "content_metadata")["tombstoned"] == 5
    dead = {key for key, row in lane.tables()["content"].items() if row.deleted_at is not None}
    assert dead == set(deleted)


def test_a_document_that_cannot_be_used_is_not_tombstoned(lane):
    lane.refresh()
    broken = dict(lane.content[0], aggregation_key=None, content_type=None)
    lane.write(content=[broken, *lane.content[1:]])
    result = lane.refresh()
    assert metadata(result, "content_metadata")["rejected_documents"] == 1
    assert metadata(result, "content_metadata")["tombstoned"] == 0


def test_a_title_edit_does_not_switch_the_swing_guardrail_off(tmp_path, store_url):
    content = generate_content(400, seed=4)
    queries = {
        "catalog_queries": [
            {"uuid": "q", "title": "all courses", "content_filter": {"content_type": "course"}}
        ],
        "enterprise_catalogs": [],
    }
    lane = Lane(tmp_path, store_url, content, queries)
    lane.refresh()
    for document in content:
        if document["content_type"] == "course":
            document["content_type"] = "program"
    queries["catalog_queries"][0]["title"] = "renamed"
    lane.write(content=content, queries=queries)
    assert not check(lane.refresh(), "no_held_changes").passed


def test_each_phase_is_logged_as_it_ends(lane):
    result = lane.refresh()
    logged: dict[str, list[str]] = {}
    for entry in lane.instance.all_logs(result.run_id):
        if entry.step_key and entry.user_message and " done in " in entry.user_message:
            logged.setdefault(entry.step_key, []).append(entry.user_message.split(" done in ")[0])
    assert logged == {
        "catalog_queries": ["load", "write"],
        "content_metadata": ["fetch", "diff", "write", "partitions", "partition_status"],
        "catalog_content_associations": ["load", "match", "diff", "write"],
    }
