"""Content sources while course-discovery changes under a crawl, and with documents it cannot use.

A deletion behind the crawl position shifts every later page, so a crawl skips live items and
its counts still add up; only ``lookup_many`` can tell a skipped item from a deleted one. These
tests change a real local discovery (FakeDiscovery) between the pages of one crawl.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from catalog_assets.core import content, sources
from catalog_assets.core.content import MAX_DOCUMENT_DEPTH, content_key_of, utcnow
from catalog_assets.core.refresh import refresh_content
from catalog_assets.defs.resources import DiscoveryContentSource, SampleContentSource
from catalog_assets.store import CatalogStore, open_store
from catalog_assets_tests.core.test_discovery import catalog, course_doc, nested_doc
from catalog_assets_tests.support.fake_discovery import SEARCH_PATH, FakeDiscovery

PAGE = 100  # DiscoveryContentSource's page size: page 2 starts at item 100


@pytest.fixture
def world() -> Iterator[tuple[FakeDiscovery, list[dict[str, Any]], dict[str, dict[str, Any]]]]:
    docs, full = catalog(courses=200, programs=30, runs=20)  # 250 items: 3 pages
    with FakeDiscovery(docs, full) as fake:
        yield fake, docs, full


def source_for(fake: FakeDiscovery) -> DiscoveryContentSource:
    return DiscoveryContentSource(
        api_url=fake.api_url,
        oauth2_url=fake.oauth2_url,
        client_id=fake.client_id,
        client_secret=fake.client_secret,
        max_retries=1,
    )


def stored(documents: list[dict[str, Any]]) -> dict[str, str]:
    """``{content_key: content_type}``, as the bulk lane asks ``lookup_many``."""
    return {content_key_of(d): d["content_type"] for d in documents}


def crawled(snapshot: content.ContentSnapshot) -> set[str]:
    return {content_key_of(d) for d in snapshot.documents}


def test_content_snapshot_is_the_one_from_content() -> None:
    assert sources.ContentSnapshot is content.ContentSnapshot


def test_deletions_after_page_one_skip_live_items_that_lookup_many_still_finds(world) -> None:
    fake, docs, full = world
    deleted = [docs[10]["key"], docs[11]["key"], docs[12]["key"], content_key_of(docs[240])]
    fake.after_page(1, lambda: fake.remove_documents(deleted))
    source = source_for(fake)

    snapshot = source.fetch_all()

    missed = set(stored(docs)) - crawled(snapshot)
    skipped_live = {content_key_of(d) for d in docs[PAGE : PAGE + 3]}  # shifted onto page 1
    assert missed == skipped_live | {deleted[3]}
    # Nothing in the crawl shows it: no repeats, and the items read match the count reported
    # (the three deleted from page 1 were read before they went). Counting cannot catch this.
    assert snapshot.complete and snapshot.incomplete_reason is None
    assert snapshot.duplicate_keys == []

    found = source.lookup_many({key: stored(docs)[key] for key in missed})
    assert set(found) == skipped_live  # only docs[240] would be tombstoned
    by_key = {content_key_of(d): d for d in docs}
    assert found == {key: {**by_key[key], **full[key]} for key in skipped_live}


@pytest.mark.parametrize(
    ("deleted_on_page_1", "inserted_on_page_1", "deleted_later"),
    [(3, 0, 0), (3, 0, 2), (0, 2, 0), (3, 1, 1), (1, 3, 2), (5, 5, 0), (40, 0, 3)],
)
def test_lookup_many_confirms_exactly_the_deleted_among_the_missed(
    world, deleted_on_page_1: int, inserted_on_page_1: int, deleted_later: int
) -> None:
    fake, docs, _ = world
    gone = [content_key_of(d) for d in docs[20 : 20 + deleted_on_page_1]]
    gone += [content_key_of(d) for d in docs[230 : 230 + deleted_later]]
    new = [course_doc(1000 + n) for n in range(inserted_on_page_1)]

    def churn() -> None:
        fake.remove_documents(gone)
        fake.insert_documents(5, new)

    fake.after_page(1, churn)
    source = source_for(fake)
    snapshot = source.fetch_all()
    now_there = set(stored(fake.documents()))

    missed = set(stored(docs)) - crawled(snapshot)
    found = source.lookup_many({key: stored(docs)[key] for key in missed})
    assert set(found) == missed & now_there
    assert missed - set(found) == set(gone) - crawled(snapshot)
    shift = deleted_on_page_1 - inserted_on_page_1
    assert len(missed & now_there) == max(0, shift)  # live items the crawl skipped
    if shift < 0:  # pages moved forward: repeats, and the new items were not reached
        assert snapshot.duplicate_keys and not snapshot.complete
        assert "repeated" in (snapshot.incomplete_reason or "")


def test_insertions_after_page_one_repeat_items_and_mark_the_crawl_incomplete(world) -> None:
    fake, docs, _ = world
    new = [course_doc(1000), course_doc(1001)]
    fake.after_page(1, lambda: fake.insert_documents(0, new))

    snapshot = source_for(fake).fetch_all()

    assert crawled(snapshot) == set(stored(docs))  # nothing stored was missed
    assert snapshot.duplicate_keys == sorted(d["key"] for d in docs[PAGE - 2 : PAGE])
    assert not snapshot.complete
    reason = snapshot.incomplete_reason or ""
    assert "2 content key(s) repeated" in reason
    assert "250 items read but the source reported 252" in reason
    assert source_for(fake).lookup_many(stored(new)).keys() == stored(new).keys()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CatalogStore]:
    with open_store(f"duckdb:///{tmp_path / 'catalog.duckdb'}") as opened:
        opened.ensure_schema()
        yield opened


def test_refresh_tombstones_only_what_discovery_confirms_gone(world, store) -> None:
    fake, docs, _ = world
    source = source_for(fake)
    refresh_content(source.fetch_all(), store, utcnow(), lookup=source)
    read_then_deleted = [docs[10]["key"], docs[11]["key"]]
    deleted_later = [content_key_of(docs[240])]
    fake.after_page(1, lambda: fake.remove_documents(read_then_deleted + deleted_later))

    refresh_content(source.fetch_all(), store, utcnow(), lookup=source)

    state = store.content_state()
    skipped_live = [content_key_of(d) for d in docs[PAGE : PAGE + 2]]
    assert [state[key].deleted for key in skipped_live] == [False, False]
    assert [state[key].deleted for key in deleted_later] == [True]
    assert sum(s.deleted for s in state.values()) == 1
    # Read on page 1 before they went: live until the next crawl confirms them gone.
    assert not any(state[key].deleted for key in read_then_deleted)
    refresh_content(source.fetch_all(), store, utcnow(), lookup=source)
    state = store.content_state()
    assert {k for k, s in state.items() if s.deleted} == {*read_then_deleted, *deleted_later}


# -- documents a source cannot use ------------------------------------------------------------


def test_discovery_source_rejects_bad_documents_without_aborting(world) -> None:
    fake, docs, _ = world
    keyless = {"aggregation_key": "course:Keyless", "title": "No key", "content_type": "course"}
    deep = nested_doc(MAX_DOCUMENT_DEPTH + 1, "course-v1:edX+Deep+1T2025")
    fake.set_documents([*docs[:5], keyless, *docs[5:150], deep, *docs[150:]])

    snapshot = source_for(fake).fetch_all()

    assert crawled(snapshot) == set(stored(docs))
    assert [r.content_key for r in snapshot.rejected] == [None, deep["key"]]
    assert "neither a key nor a uuid" in snapshot.rejected[0].reason
    assert "'course:Keyless'" in snapshot.rejected[0].reason
    assert "item 152 (page 2)" in snapshot.rejected[1].reason
    assert snapshot.complete  # rejected items still count as read


def test_sample_source_rejects_bad_documents_and_answers_lookup_many(tmp_path: Path) -> None:
    docs, _ = catalog(courses=4, programs=1)
    deep = nested_doc(MAX_DOCUMENT_DEPTH + 1, "course-v1:edX+Deep+1T2025")
    path = tmp_path / "content.json"
    served = [docs[0], {"title": "No key"}, docs[1], {**docs[2], "key": 7, "uuid": None}]
    path.write_text(json.dumps([*served, deep, *docs[3:], docs[0]]), encoding="utf-8")
    source = SampleContentSource(path=str(path))

    snapshot = source.fetch_all()

    assert [content_key_of(d) for d in snapshot.documents] == [
        content_key_of(d) for d in [docs[0], docs[1], *docs[3:]]
    ]
    assert [r.content_key for r in snapshot.rejected] == [None, None, deep["key"]]
    assert f"content file {str(path)!r} [1]" in snapshot.rejected[0].reason
    assert "key is 7, not a non-empty string" in snapshot.rejected[1].reason
    assert snapshot.duplicate_keys == [docs[0]["key"]] and not snapshot.complete
    assert "repeated" in (snapshot.incomplete_reason or "")

    program = content_key_of(docs[4])
    found = source.lookup_many({docs[1]["key"]: "course", program: "program", "gone": "course"})
    assert found == {docs[1]["key"]: docs[1], program: docs[4]}
    assert source.lookup(docs[3]["key"], "course") == docs[3]
    assert source.lookup("gone", "course") is None
    with pytest.raises(ValueError, match="not gone"):
        source.lookup_many({deep["key"]: "courserun"})


def test_discovery_source_lookup_many_never_calls_an_unusable_item_gone(world) -> None:
    fake = world[0]
    deep = nested_doc(MAX_DOCUMENT_DEPTH + 1, "course-v1:edX+Deep+1T2025")
    fake.upsert_documents([deep])
    with pytest.raises(ValueError, match="not gone"):
        source_for(fake).lookup_many({deep["key"]: "courserun"})
    assert fake.count("POST", SEARCH_PATH) == 1
