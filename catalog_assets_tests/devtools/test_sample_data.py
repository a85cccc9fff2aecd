"""Sample data: deterministic, shaped like course-discovery documents, bundled copy up to date."""

from collections import Counter

from catalog_assets.core.content import content_key_of, screen_document
from catalog_assets.core.filters import InvalidFilter, match_table, parse
from catalog_assets.core.sources import BUNDLED_CONTENT_FILE, BUNDLED_QUERIES_FILE, load_bundled
from catalog_assets.devtools.sample_data import (
    BROAD_SHARE,
    SCALE_MIX,
    QueryKind,
    bundled_dataset,
    generate_catalog_queries,
    generate_content,
    generate_scale_queries,
    scale_query_kinds,
)


def test_same_seed_same_data_and_other_seed_other_data():
    assert generate_content(300, seed=5) == generate_content(300, seed=5)
    assert generate_content(300, seed=5) != generate_content(300, seed=6)
    content = generate_content(300, seed=5)
    assert generate_catalog_queries(20, content, seed=5) == generate_catalog_queries(
        20, content, seed=5
    )


def test_bundled_files_are_what_the_generator_makes():
    content, queries = bundled_dataset()
    assert load_bundled(BUNDLED_CONTENT_FILE) == content
    assert load_bundled(BUNDLED_QUERIES_FILE) == queries
    assert 200 <= len(content) <= 1000
    assert 24 <= len(queries["catalog_queries"]) <= 60


def test_content_looks_like_search_all_documents():
    content = generate_content(2000, seed=11)
    assert len(content) == 2000
    keys = [content_key_of(document) for document in content]
    assert len(set(keys)) == len(keys)
    types = Counter(document["content_type"] for document in content)
    assert set(types) == {"course", "courserun", "program", "learnerpathway"}
    assert types["courserun"] > types["course"] > types["program"] > types["learnerpathway"]
    courses = {d["key"]: d for d in content if d["content_type"] == "course"}
    for document in content:
        prefix, _, suffix = document["aggregation_key"].partition(":")
        assert prefix == document["content_type"]
        if prefix == "courserun":
            assert suffix in courses  # a run's aggregation key names its parent course
            assert document["key"].startswith(f"course-v1:{suffix}+")
            assert document["key"] in {run["key"] for run in courses[suffix]["course_runs"]}
        elif prefix == "course":
            assert suffix == document["key"]
            assert {"partner", "level_type", "course_type", "subjects", "modified"} <= set(document)
        else:
            assert suffix == document["uuid"] and "key" not in document
    programs = [d for d in content if d["content_type"] == "program"]
    assert all(course["key"] in courses for p in programs for course in p["courses"])
    prices = {type(d.get("first_enrollable_paid_seat_price")) for d in content}
    assert {int, float, str, type(None)} <= prices  # real documents mix these


def test_queries_are_realistic_and_reference_real_catalogs():
    content = generate_content(3000, seed=3)
    payload = generate_catalog_queries(60, content, seed=3, invalid=2)
    queries = payload["catalog_queries"]
    invalid = []
    for query in queries:
        try:
            parse(query["content_filter"])
        except InvalidFilter:
            invalid.append(query["uuid"])
    assert len(invalid) == 2
    assert {c["catalog_query_uuid"] for c in payload["enterprise_catalogs"]} == {
        q["uuid"] for q in queries
    }
    records = [{**d, "content_key": content_key_of(d)} for d in content]
    valid = {q["uuid"]: q["content_filter"] for q in queries if q["uuid"] not in invalid}
    counts = match_table(valid, records).group_by("query_id").len()
    assert counts.height >= len(valid) * 3 // 4  # most queries select something


def test_generator_scales_to_benchmark_size():
    content = generate_content(200_000, seed=1)
    assert len(content) == 200_000
    assert len({content_key_of(d) for d in content}) == 200_000
    payload = generate_scale_queries(5_000, content, seed=1)
    assert len({q["uuid"] for q in payload["catalog_queries"]}) == 5_000


def test_scale_queries_are_deterministic_by_seed():
    content = generate_content(3_000, seed=4)
    assert generate_scale_queries(200, content, seed=4) == generate_scale_queries(
        200, content, seed=4
    )
    assert generate_scale_queries(200, content, seed=4) != generate_scale_queries(
        200, content, seed=5
    )
    assert scale_query_kinds(200, 4) == scale_query_kinds(200, 4)


def test_scale_queries_have_the_intended_breadth_mix():
    """Each broad or exclusion query matches 10-20% of the records, key lists a few dozen at
    most, and the whole mix about 4% of all pairs: 40 million at 200,000 x 5,000."""
    n_records, n_queries = 20_000, 400
    content = generate_content(n_records, seed=9)
    payload = generate_scale_queries(n_queries, content, seed=9)
    kinds = scale_query_kinds(n_queries, seed=9)
    assert Counter(kinds) == {kind: n_queries * share // 100 for kind, share in SCALE_MIX.items()}
    queries = payload["catalog_queries"]
    records = [{**d, "content_key": content_key_of(d)} for d in content]
    pairs = match_table({q["uuid"]: q["content_filter"] for q in queries}, records)
    counts = dict(pairs.group_by("query_id").len().iter_rows())
    shares = {kind: [] for kind in QueryKind}
    for kind, query in zip(kinds, queries, strict=True):
        shares[kind].append(counts.get(query["uuid"], 0) / n_records)
    low, high = BROAD_SHARE
    for kind in (QueryKind.BROAD, QueryKind.EXCLUSION):
        assert all(low <= share <= high for share in shares[kind]), (kind, shares[kind])
    assert max(shares[QueryKind.NARROW]) * n_records <= 60  # key lists of up to 40 courses
    assert 0.03 <= pairs.height / (n_records * n_queries) <= 0.06


def test_scale_queries_exclude_what_they_name():
    content = generate_content(5_000, seed=2)
    payload = generate_scale_queries(300, content, seed=2)
    records = [{**d, "content_key": content_key_of(d)} for d in content]
    excluding = [q for q in payload["catalog_queries"] if "key__exclude" in q["content_filter"]]
    assert excluding
    with_exclusions = {q["uuid"]: q["content_filter"] for q in excluding}
    without = {
        uuid: {k: v for k, v in content_filter.items() if k != "key__exclude"}
        for uuid, content_filter in with_exclusions.items()
    }
    kept = set(match_table(with_exclusions, records).iter_rows())
    broad = set(match_table(without, records).iter_rows())
    named = {(uuid, key) for uuid, f in with_exclusions.items() for key in f["key__exclude"]}
    assert broad - kept == named & broad and named & broad  # exactly the named keys go


def test_generated_documents_are_storable():
    content = generate_content(20_000, seed=6)
    assert [screen_document(d, f"generated[{i}]") for i, d in enumerate(content)] == [None] * len(
        content
    )
