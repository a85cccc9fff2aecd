"""The event lane judges a few keys with the reference ``matches`` and a batch with the bulk
engine; either way a key's associations are the ones the bulk lane computes (both backends)."""

from __future__ import annotations

import pytest

from catalog_assets.core import content_updates
from catalog_assets.core.content_updates import ContentUpdate
from catalog_assets.core.refresh import refresh_associations
from catalog_assets_tests.core.test_content_updates import LATER, NEWER, T3, LoadedStore


@pytest.mark.parametrize("limit", [0, 10**9], ids=["bulk engine", "reference matches"])
def test_a_batch_gets_the_bulk_lanes_associations_from_either_engine(
    store, content, queries, tmp_path, monkeypatch, limit
):
    monkeypatch.setattr(content_updates, "REFERENCE_PAIRS_LIMIT", limit)
    loaded = LoadedStore(store, content, queries, tmp_path / "content.json")
    documents = [d for d in content if d["content_type"] in ("course", "courserun")][:30]
    # Move each record to another partner's catalogs, so that the memberships change.
    partners = sorted({o["key"] for d in content for o in d.get("owners") or [] if "key" in o})
    updates = []
    for index, document in enumerate(documents):
        record = dict(document, modified=NEWER, title=f"Changed {index}")
        if partners and document.get("owners"):
            record["owners"] = [{"key": partners[index % len(partners)]}]
        updates.append(
            ContentUpdate(document["key"], document["content_type"], metadata=record, time=LATER)
        )
    applied = loaded.apply(*updates)
    assert {result.outcome for result in applied.values()} <= {"updated", "unchanged"}
    for document in documents:
        assert applied[document["key"]].queries == loaded.associated(document["key"])
    # What the bulk lane computes from the same store is already there.
    report = refresh_associations(store, T3)
    assert (report.added, report.removed) == (0, 0)
