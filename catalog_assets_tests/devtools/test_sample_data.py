"""Sample data: deterministic, shaped like course-discovery documents, bundled copy up to date."""

from collections import Counter

from catalog_assets.core.content import content_key_of
from catalog_assets.core.filters import InvalidFilter, match_table, parse
from catalog_assets.core.sources import BUNDLED_CONTENT_FILE, BUNDLED_QUERIES_FILE, load_bundled
from catalog_assets.devtools.sample_data import (
    bundled_dataset,
    generate_catalog_queries,
    generate_content,
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
