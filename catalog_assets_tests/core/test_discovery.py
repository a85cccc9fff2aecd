"""DiscoveryClient against a real local course-discovery server (FakeDiscovery)."""

from __future__ import annotations

import email.utils
import json
import random
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from catalog_assets.core.content import MAX_DOCUMENT_DEPTH, document_depth
from catalog_assets.core.discovery import (
    DiscoveryClient,
    DiscoveryError,
    UnusableDocument,
    content_key_of,
)
from catalog_assets.core.redaction import redact
from catalog_assets_tests.support.fake_discovery import (
    COURSES_PATH,
    PROGRAMS_PATH,
    SEARCH_PATH,
    TOKEN_PATH,
    FakeDiscovery,
)

ORGS = ("edX", "MITx", "HarvardX", "DelftX")


def _uuid(n: int, kind: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://discovery.example.com/{kind}/{n}"))


def course_doc(n: int) -> dict[str, Any]:
    org = ORGS[n % len(ORGS)]
    key = f"{org}+Course{n:04d}x"
    return {
        "aggregation_key": f"course:{key}",
        "content_type": "course",
        "key": key,
        "uuid": _uuid(n, "course"),
        "title": f"Course {n}",
        "partner": "edx",
        "org": org,
        "course_runs": [{"key": f"course-v1:{key}+1T2025", "availability": "Current"}],
        "modified": f"2025-01-{1 + n % 28:02d}T10:00:00Z",
    }


def courserun_doc(n: int) -> dict[str, Any]:
    org = ORGS[n % len(ORGS)]
    course_key = f"{org}+Course{n:04d}x"
    return {
        "aggregation_key": f"courserun:{course_key}",
        "content_type": "courserun",
        "key": f"course-v1:{course_key}+1T2025",
        "uuid": _uuid(n, "courserun"),
        "title": f"Course {n}",
        "partner": "edx",
        "org": org,
        "availability": "Current",
        "start": "2025-02-01T00:00:00Z",
        "modified": "2025-01-15T10:00:00Z",
    }


def program_doc(n: int) -> dict[str, Any]:
    program_uuid = _uuid(n, "program")
    return {
        "aggregation_key": f"program:{program_uuid}",
        "content_type": "program",
        "uuid": program_uuid,
        "title": f"Program {n}",
        "type": "MicroMasters",
        "partner": "edx",
        "authoring_organizations": [{"key": "MITx"}],
        "modified": "2025-01-20T10:00:00Z",
    }


def pathway_doc(n: int) -> dict[str, Any]:
    pathway_uuid = _uuid(n, "pathway")
    return {
        "aggregation_key": f"learnerpathway:{pathway_uuid}",
        "content_type": "learnerpathway",
        "uuid": pathway_uuid,
        "title": f"Pathway {n}",
        "partner": "edx",
        "status": "active",
        "modified": "2025-01-21T10:00:00Z",
    }


def full_course(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": doc["key"],
        "uuid": doc["uuid"],
        "title": doc["title"] + " (full)",  # conflicts with the search document on purpose
        "short_description": f"About {doc['key']}",
        "owners": [{"key": doc["org"]}],
    }


def full_program(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "uuid": doc["uuid"],
        "title": doc["title"] + " (full)",
        "courses": [{"key": "edX+Course0000x"}],
        "status": "active",
    }


def catalog(
    courses: int, programs: int = 0, runs: int = 0, pathways: int = 0
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Search documents of every content type and the full records behind them."""
    docs = [course_doc(n) for n in range(courses)]
    docs += [program_doc(n) for n in range(programs)]
    docs += [courserun_doc(n) for n in range(runs)]
    docs += [pathway_doc(n) for n in range(pathways)]
    full = {d["key"]: full_course(d) for d in docs if d["content_type"] == "course"}
    full |= {d["uuid"]: full_program(d) for d in docs if d["content_type"] == "program"}
    return docs, full


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def upper_bound(low: float, high: float) -> float:
    """A ``rand`` without jitter, so a test can predict each backoff delay."""
    return high


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_client(fake: FakeDiscovery, **kwargs: Any) -> DiscoveryClient:
    options: dict[str, Any] = {
        "timeout": 5.0,
        "max_retries": 3,
        "backoff_base": 0.001,
        "max_backoff": 0.01,
        "page_size": 10,
        "sleep": SleepRecorder(),
        "rand": upper_bound,
    }
    options.update(kwargs)
    return DiscoveryClient(
        fake.api_url, fake.oauth2_url, fake.client_id, fake.client_secret, **options
    )


@pytest.fixture
def fake() -> Iterator[FakeDiscovery]:
    docs, full = catalog(courses=12, programs=5, runs=6, pathways=2)  # 25 documents
    with FakeDiscovery(docs, full) as server:
        yield server


def keys(documents: list[dict[str, Any]]) -> list[str]:
    return [content_key_of(d) for d in documents]


# -- crawl and pagination ---------------------------------------------------------------------


def test_crawl_follows_next_across_pages(fake: FakeDiscovery) -> None:
    with make_client(fake, page_size=10) as client:
        documents = client.crawl()
    assert keys(documents) == keys(fake.documents())
    assert len(documents) == 25
    assert fake.count("GET", SEARCH_PATH) == 3  # 10 + 10 + 5
    pages = [e.query["page"] for e in fake.request_log if e.path == SEARCH_PATH]
    assert pages == [["1"], ["2"], ["3"]]
    assert all(e.query["page_size"] == ["10"] for e in fake.request_log if e.path == SEARCH_PATH)
    assert client.last_crawl_duplicates == []


def test_api_url_is_normalised(fake: FakeDiscovery) -> None:
    client = DiscoveryClient(
        fake.api_url.rstrip("/"), fake.oauth2_url + "/", fake.client_id, fake.client_secret
    )
    assert client.api_url == fake.api_url
    assert len(client.crawl()) == 25


def test_duplicates_across_shifting_pages_are_deduped_and_reported(fake: FakeDiscovery) -> None:
    fake.duplicate_on_page(2, 3)
    expected = keys(fake.documents())
    with make_client(fake, page_size=10) as client:
        documents = client.crawl()
    assert keys(documents) == expected
    # Page 2 started with the last three items of page 1.
    assert client.last_crawl_duplicates == expected[7:10]
    assert fake.count("GET", SEARCH_PATH) == 3


def test_duplicate_keeps_last_occurrence(fake: FakeDiscovery) -> None:
    docs = fake.documents()
    updated = {**docs[2], "title": "Renamed while crawling"}
    fake.set_documents([*docs[:15], updated, *docs[15:]])  # same key again, on page 2
    with make_client(fake, page_size=10) as client:
        documents = client.crawl()
    assert len(documents) == 25
    by_key = {content_key_of(d): d for d in documents}
    assert by_key[docs[2]["key"]]["title"] == "Renamed while crawling"
    assert client.last_crawl_duplicates == [docs[2]["key"]]


def test_crawl_sees_source_changes_between_runs(fake: FakeDiscovery) -> None:
    docs = fake.documents()
    with make_client(fake) as client:
        assert len(client.crawl()) == 25
        fake.remove_documents([docs[0]["key"]])
        fake.upsert_documents([{**docs[1], "title": "New title"}, course_doc(99)])
        second = client.crawl()
    assert docs[0]["key"] not in keys(second)
    assert keys(second)[-1] == course_doc(99)["key"]
    assert next(d for d in second if d["key"] == docs[1]["key"])["title"] == "New title"


# -- auth -------------------------------------------------------------------------------------


def test_token_is_reused_for_whole_crawl_and_across_calls(fake: FakeDiscovery) -> None:
    with make_client(fake, page_size=5) as client:
        client.crawl()
        client.crawl_records()
    assert fake.count("POST", TOKEN_PATH) == 1
    assert client.token_fetches == 1
    tokens = {e.token for e in fake.request_log if e.path.startswith("/api/")}
    assert len(tokens) == 1 and None not in tokens
    assert fake.request_log[0].path == TOKEN_PATH  # fetched before the first discovery call


def test_token_is_refreshed_shortly_before_expiry() -> None:
    docs, full = catalog(courses=3)
    clock = FakeClock()
    with FakeDiscovery(docs, full, token_ttl=100) as fake, make_client(fake, clock=clock) as client:
        client.crawl()
        clock.now += 89  # 11 s left: more than the 10 s margin (10% of 100 s)
        client.crawl()
        assert client.token_fetches == 1
        clock.now += 2  # 9 s left: refresh before use rather than risk a 401
        client.crawl()
        assert client.token_fetches == 2
    assert fake.count("POST", TOKEN_PATH) == 2
    assert all(e.status == 200 for e in fake.request_log)


def test_expired_token_mid_crawl_refreshes_once_and_completes(fake: FakeDiscovery) -> None:
    session = requests.Session()
    search_pages = 0

    def expire_after_first_page(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        nonlocal search_pages
        if SEARCH_PATH in response.url and response.status_code == 200:
            search_pages += 1
            if search_pages == 1:
                fake.expire_tokens()

    session.hooks["response"].append(expire_after_first_page)
    with make_client(fake, page_size=10, session=session) as client:
        documents = client.crawl()
    assert len(documents) == 25
    assert client.token_fetches == 2
    assert fake.count("POST", TOKEN_PATH) == 2
    statuses = [(e.path, e.status) for e in fake.request_log]
    assert statuses.count((SEARCH_PATH, 401)) == 1
    assert statuses == [
        (TOKEN_PATH, 200),
        (SEARCH_PATH, 200),
        (SEARCH_PATH, 401),
        (TOKEN_PATH, 200),
        (SEARCH_PATH, 200),
        (SEARCH_PATH, 200),
    ]
    session.close()


def test_expired_tokens_between_runs_cost_one_refresh(fake: FakeDiscovery) -> None:
    with make_client(fake) as client:
        client.crawl()
        fake.expire_tokens()
        assert len(client.crawl()) == 25
    assert client.token_fetches == 2
    assert sum(1 for e in fake.request_log if e.status == 401) == 1


def test_401_persisting_after_refresh_raises(fake: FakeDiscovery) -> None:
    fake.fail_next(SEARCH_PATH, 401, times=2)
    with make_client(fake) as client, pytest.raises(DiscoveryError) as info:
        client.crawl()
    assert "401" in str(info.value)
    assert fake.api_url + "search/all/" in str(info.value)
    assert client.token_fetches == 2
    assert fake.count("GET", SEARCH_PATH) == 2  # no third attempt


def test_wrong_credentials_fail_at_once(fake: FakeDiscovery) -> None:
    client = DiscoveryClient(fake.api_url, fake.oauth2_url, fake.client_id, "wrong", max_retries=3)
    with pytest.raises(DiscoveryError, match=r"access_token.*HTTP 401"):
        client.crawl()
    assert fake.requests == [("POST", TOKEN_PATH)]


# -- retries and faults -----------------------------------------------------------------------


def test_429_honours_retry_after(fake: FakeDiscovery) -> None:
    sleep = SleepRecorder()
    fake.fail_next(SEARCH_PATH, 429, retry_after=7)
    fake.fail_next(SEARCH_PATH, 503)
    with make_client(fake, sleep=sleep, backoff_base=0.25, max_backoff=10) as client:
        assert len(client.crawl()) == 25
    # Retry-After wins over the computed 0.25 s; the 503 after it gets the second backoff step.
    assert sleep.delays == [7.0, 0.5]
    assert fake.count("GET", SEARCH_PATH) == 5  # 2 failures + 3 pages


def test_5xx_then_success_backs_off_exponentially(fake: FakeDiscovery) -> None:
    sleep = SleepRecorder()
    fake.fail_next(SEARCH_PATH, 502, times=3)
    with make_client(fake, sleep=sleep, max_retries=3, backoff_base=0.5, max_backoff=1.5) as client:
        assert len(client.crawl()) == 25
    assert sleep.delays == [0.5, 1.0, 1.5]  # capped at max_backoff


def test_5xx_forever_raises_after_max_retries(fake: FakeDiscovery) -> None:
    sleep = SleepRecorder()
    fake.fail_next(SEARCH_PATH, 503, times=100)
    with (
        make_client(fake, sleep=sleep, max_retries=4) as client,
        pytest.raises(DiscoveryError) as info,
    ):
        client.crawl()
    message = str(info.value)
    assert fake.api_url + "search/all/?page=1&page_size=10" in message
    assert "503" in message
    assert "5 attempts" in message
    assert fake.count("GET", SEARCH_PATH) == 5
    assert len(sleep.delays) == 4


def test_token_endpoint_5xx_is_retried(fake: FakeDiscovery) -> None:
    fake.fail_next(TOKEN_PATH, 500, times=2)
    with make_client(fake) as client:
        assert len(client.crawl()) == 25
    assert fake.count("POST", TOKEN_PATH) == 3
    assert client.token_fetches == 1


def test_connection_drop_and_timeout_are_retried(fake: FakeDiscovery) -> None:
    fake.disconnect_next(SEARCH_PATH)
    fake.delay_next(SEARCH_PATH, 0.5)
    sleep = SleepRecorder()
    with make_client(fake, timeout=0.1, sleep=sleep) as client:
        assert len(client.crawl()) == 25
    assert len(sleep.delays) == 2
    assert next(e.status for e in fake.request_log if e.path == SEARCH_PATH) is None


def test_other_4xx_raises_at_once(fake: FakeDiscovery) -> None:
    fake.fail_next(SEARCH_PATH, 403)
    with make_client(fake) as client, pytest.raises(DiscoveryError, match="HTTP 403"):
        client.crawl()
    assert fake.count("GET", SEARCH_PATH) == 1


@pytest.mark.parametrize(
    "body", ["<html>Bad gateway page</html>", '{"detail": "no results key"}', "[1, 2]"]
)
def test_malformed_reply_raises_naming_url(fake: FakeDiscovery, body: str) -> None:
    fake.malformed_next(SEARCH_PATH, body)
    with make_client(fake) as client, pytest.raises(DiscoveryError, match="malformed") as info:
        client.crawl()
    assert fake.api_url + "search/all/" in str(info.value)


def test_crawl_failing_midway_raises_and_returns_nothing(fake: FakeDiscovery) -> None:
    fake.fail_from_page(2, 500)
    with make_client(fake, page_size=10, max_retries=2) as client:
        with pytest.raises(DiscoveryError, match="page=2"):
            client.crawl()
        with pytest.raises(DiscoveryError):
            client.crawl_records()
        assert client.last_crawl_duplicates == []
    statuses = [e.status for e in fake.request_log if e.path == SEARCH_PATH]
    assert statuses[:4] == [200, 500, 500, 500]  # page 1 fine, page 2 retried then given up
    assert fake.count("GET", COURSES_PATH) == 0  # no full records fetched for a partial crawl


# -- full records -----------------------------------------------------------------------------


def test_full_records_are_batched_and_paged() -> None:
    docs, full = catalog(courses=120, programs=3, runs=4, pathways=2)
    with FakeDiscovery(docs, full) as fake, make_client(fake) as client:
        records = client.fetch_full_records(docs)
        log = list(fake.request_log)
    assert set(records) == set(full)
    assert records[docs[0]["key"]] == full[docs[0]["key"]]

    course_calls = [e for e in log if e.path == COURSES_PATH]
    batches = [e.query["keys"][0].split(",") for e in course_calls]
    assert all(len(batch) <= 50 for batch in batches)
    distinct = list(dict.fromkeys(tuple(b) for b in batches))
    assert [len(b) for b in distinct] == [50, 50, 20]
    # 50 keys at the server's default limit of 20 take offsets 0, 20, 40.
    offsets = [e.query.get("offset", ["0"])[0] for e in course_calls]
    assert offsets == ["0", "20", "40", "0", "20", "40", "0"]
    program_calls = [e for e in log if e.path == PROGRAMS_PATH]
    assert len(program_calls) == 1
    assert sorted(program_calls[0].query["uuids"][0].split(",")) == sorted(
        d["uuid"] for d in docs if d["content_type"] == "program"
    )


def test_batch_size_over_server_limit_is_rejected() -> None:
    docs, full = catalog(courses=60)
    with FakeDiscovery(docs, full) as fake, make_client(fake, batch_size=60) as client:
        with pytest.raises(DiscoveryError, match="HTTP 400"):
            client.fetch_full_records(docs)
        assert fake.count("GET", COURSES_PATH) == 1


def test_crawl_records_merges_full_record_over_search_document(fake: FakeDiscovery) -> None:
    docs = fake.documents()
    missing = docs[1]["key"]
    fake.remove_full_records([missing])  # unpublished between search and full-record calls
    with make_client(fake) as client:
        records = client.crawl_records()
    assert keys(records) == keys(docs)
    by_key = {content_key_of(r): r for r in records}
    course = by_key[docs[0]["key"]]
    assert course["title"] == "Course 0 (full)"  # full record wins on conflicts
    assert course["aggregation_key"] == docs[0]["aggregation_key"]  # search fields kept
    assert course["short_description"] == f"About {docs[0]['key']}"
    assert by_key[missing] == docs[1]
    program = next(d for d in docs if d["content_type"] == "program")
    assert by_key[program["uuid"]]["title"] == program["title"] + " (full)"
    for doc in docs:
        if doc["content_type"] in ("courserun", "learnerpathway"):
            assert by_key[content_key_of(doc)] == doc


# -- lookup -----------------------------------------------------------------------------------


def test_lookup_course_by_key(fake: FakeDiscovery) -> None:
    doc = course_doc(3)
    with make_client(fake) as client:
        record = client.lookup(doc["key"], "course")
    assert record == {**doc, **full_course(doc)}
    posts = [e for e in fake.request_log if e.method == "POST" and e.path == SEARCH_PATH]
    assert len(posts) == 1
    assert fake.count("GET", SEARCH_PATH) == 0  # no crawl
    courses = [e for e in fake.request_log if e.path == COURSES_PATH]
    assert [e.query["keys"] for e in courses] == [[doc["key"]]]


def test_lookup_program_by_uuid(fake: FakeDiscovery) -> None:
    doc = program_doc(2)
    with make_client(fake) as client:
        record = client.lookup(doc["uuid"], "program")
    assert record == {**doc, **full_program(doc)}
    assert fake.count("GET", PROGRAMS_PATH) == 1


def test_lookup_courserun_and_pathway_need_no_full_record(fake: FakeDiscovery) -> None:
    with make_client(fake) as client:
        assert client.lookup(courserun_doc(1)["key"], "courserun") == courserun_doc(1)
        assert client.lookup(pathway_doc(0)["uuid"], "learnerpathway") == pathway_doc(0)
    assert fake.count("GET", COURSES_PATH) == fake.count("GET", PROGRAMS_PATH) == 0


def test_lookup_not_found_returns_none(fake: FakeDiscovery) -> None:
    with make_client(fake) as client:
        assert client.lookup("edX+Gone101x", "course") is None
        assert client.lookup(str(uuid.uuid4()), "program") is None
        fake.remove_documents([course_doc(3)["key"]])
        assert client.lookup(course_doc(3)["key"], "course") is None
        # A course key is not a course run: the content type must match too.
        assert client.lookup(course_doc(4)["key"], "courserun") is None
        with pytest.raises(ValueError, match="content_type"):
            client.lookup("x", "video")
    assert fake.count("GET", COURSES_PATH) == 0


# -- counters ---------------------------------------------------------------------------------


def test_request_count_matches_requests_served(fake: FakeDiscovery) -> None:
    fake.fail_next(SEARCH_PATH, 503)
    fake.disconnect_next(COURSES_PATH)
    with make_client(fake, page_size=10) as client:
        client.crawl_records()
        fake.expire_tokens()
        client.lookup(course_doc(0)["key"], "course")
        client.lookup("edX+Gone101x", "course")
    # token, 503 + 3 pages, 1 course batch (12 keys, 1 page) + its dropped attempt, 1 program
    # batch; then 401, new token, lookup search, course record; then one more lookup search.
    assert client.request_count == len(fake.requests) == 1 + 4 + 2 + 1 + 2 + 1 + 1 + 1
    assert client.token_fetches == fake.count("POST", TOKEN_PATH) == 2


def test_fake_serves_a_large_catalog_quickly() -> None:
    docs, full = catalog(courses=15_000, programs=1_000, runs=4_000)
    with FakeDiscovery(docs, full) as fake, make_client(fake, page_size=100) as client:
        records = client.crawl_records()
    assert len(records) == 20_000
    assert fake.count("GET", SEARCH_PATH) == 200
    assert fake.count("GET", COURSES_PATH) == 300 * 3  # 300 batches of 50, limit 20


# -- bad documents are rejected one by one ----------------------------------------------------


def nested_doc(depth: int, key: str, **fields: Any) -> dict[str, Any]:
    """A course run document nesting exactly ``depth`` levels (the document itself is 1)."""
    value: Any = []
    for level in range(depth - 2):
        value = {"child": value} if level % 2 else [value]
    return {
        "aggregation_key": f"courserun:{key}",
        "content_type": "courserun",
        "key": key,
        "title": f"Nested {depth}",
        "extra": value,
        **fields,
    }


def test_document_depth_is_exact_and_iterative() -> None:
    assert document_depth("text") == 0
    assert document_depth({}) == document_depth([]) == 1
    assert document_depth(course_doc(1)) == 3  # course_runs: [{...}]
    assert document_depth(nested_doc(MAX_DOCUMENT_DEPTH, "k")) == MAX_DOCUMENT_DEPTH
    deep = nested_doc(100_000, "k")  # a recursive walk would overflow the stack
    assert document_depth(deep, limit=10**6) == 100_000
    assert document_depth(deep) == MAX_DOCUMENT_DEPTH + 1  # stops counting past the limit


def test_unusable_documents_are_rejected_and_the_crawl_goes_on(fake: FakeDiscovery) -> None:
    good = fake.documents()
    limit = sys.getrecursionlimit()
    bad = {
        2: {"aggregation_key": "course:Nothing", "title": "Keyless", "content_type": "course"},
        7: {**course_doc(50), "key": 12345, "uuid": None, "title": "Integer key"},
        13: {**courserun_doc(50), "key": "course-v1:edX+Bad\x00+1T2025", "title": "NUL key"},
        17: nested_doc(MAX_DOCUMENT_DEPTH + 1, "course-v1:edX+Deep+1T2025"),
        21: nested_doc(3000, "course-v1:edX+Deeper+1T2025"),  # too deep for json's default
        24: {**course_doc(51), "key": None, "title": "Course without key"},
    }
    served = list(good)
    for position, document in sorted(bad.items()):
        served.insert(position, document)
    at_limit = nested_doc(MAX_DOCUMENT_DEPTH, "course-v1:edX+AtLimit+1T2025")
    served.append(at_limit)
    fake.set_documents(served)
    with make_client(fake, page_size=10) as client:
        records = client.crawl_records()
        rejected = client.last_crawl_rejected
    assert keys(records) == [*keys(good), at_limit["key"]]
    assert sys.getrecursionlimit() == limit

    assert [r.content_key for r in rejected] == [
        None,
        None,
        None,
        "course-v1:edX+Deep+1T2025",
        "course-v1:edX+Deeper+1T2025",
        course_doc(51)["uuid"],  # no key for its full record, but its uuid is its content key
    ]
    reasons = [r.reason for r in rejected]
    assert "neither a key nor a uuid" in reasons[0]
    assert "item 3 (page 1)" in reasons[0]  # the crawl position, 1-based
    assert "'course:Nothing'" in reasons[0] and "'Keyless'" in reasons[0]
    assert "key is 12345, not a non-empty string" in reasons[1] and "'Integer key'" in reasons[1]
    assert "NUL character" in reasons[2] and "item 14 (page 2)" in reasons[2]
    assert all(f"deeper than {MAX_DOCUMENT_DEPTH} levels" in r for r in reasons[3:5])
    assert "'Nested 3000'" in reasons[4] and "item 22 (page 3)" in reasons[4]
    assert "course document without a string key" in reasons[5]


def test_a_full_record_too_deep_rejects_its_item_under_its_key(fake: FakeDiscovery) -> None:
    doc = course_doc(0)
    fake.upsert_full_records({doc["key"]: {**full_course(doc), **nested_doc(200, doc["key"])}})
    with make_client(fake) as client:
        records = client.crawl_records()
    assert doc["key"] not in keys(records) and len(records) == 24
    assert [r.content_key for r in client.last_crawl_rejected] == [doc["key"]]
    assert "with its full record" in client.last_crawl_rejected[0].reason


def test_a_page_too_deep_even_to_parse_raises_clearly(fake: FakeDiscovery) -> None:
    depth = 30_000  # beyond the raised parse limit: nothing can be read from this page
    deep = '{"key": "edX+Abyss", "extra": ' + "[" * depth + "]" * depth + "}"
    fake.malformed_next(SEARCH_PATH, '{"count": 1, "next": null, "results": [' + deep + "]}")
    limit = sys.getrecursionlimit()
    with make_client(fake) as client, pytest.raises(DiscoveryError) as info:
        client.crawl()
    assert not isinstance(info.value, RecursionError)
    assert "too deep to parse" in str(info.value)
    assert fake.api_url + "search/all/" in str(info.value)
    assert sys.getrecursionlimit() == limit


# -- lookup_many ------------------------------------------------------------------------------


def test_lookup_many_batches_by_field_and_matches_field_and_type() -> None:
    docs, full = catalog(courses=120, programs=3, runs=4, pathways=2)
    by_type = {t: [d for d in docs if d["content_type"] == t] for t in LOOKUP_TYPES}
    asked = {content_key_of(d): d["content_type"] for d in docs}
    gone = {"edX+Gone1x": "course", str(uuid.uuid4()): "program"}
    wrong_type = {by_type["courserun"][0]["key"]: "course"}  # a run's key is not a course
    with FakeDiscovery(docs, full) as fake, make_client(fake, batch_size=50) as client:
        found = client.lookup_many({**asked, **gone, **wrong_type})
        log = list(fake.request_log)
    merged = {content_key_of(d): {**d, **full.get(content_key_of(d), {})} for d in docs}
    assert found == {key: merged[key] for key in asked if key not in wrong_type}

    posts = [json.loads(e.body) for e in log if e.method == "POST" and e.path == SEARCH_PATH]
    assert all(len(body) == 1 and len(next(iter(body.values()))) <= 50 for body in posts)
    key_batches = [body["key"] for body in posts if "key" in body]
    uuid_batches = [body["uuid"] for body in posts if "uuid" in body]
    assert [len(b) for b in key_batches] == [50, 50, 25]  # 120 courses, 4 runs, 1 gone
    assert [len(b) for b in uuid_batches] == [6]  # 3 programs, 2 pathways, 1 gone
    sent = [key for batch in key_batches for key in batch]
    assert sent == [k for k, t in {**asked, **gone}.items() if t in KEYED]
    assert fake.count("GET", SEARCH_PATH) == 0  # no crawl


LOOKUP_TYPES = ("course", "courserun", "program", "learnerpathway")
KEYED = ("course", "courserun")


def test_lookup_many_follows_paging_when_the_server_caps_the_page_size() -> None:
    docs, full = catalog(courses=45)
    with (
        FakeDiscovery(docs, full, max_page_size=20) as fake,
        make_client(fake, batch_size=50) as client,
    ):
        found = client.lookup_many({d["key"]: "course" for d in docs})
        pages = [e.query.get("page") for e in fake.request_log if e.path == SEARCH_PATH]
    assert set(found) == {d["key"] for d in docs}
    assert pages == [None, ["2"], ["3"]]


def test_lookup_many_raises_when_the_index_changes_between_its_pages() -> None:
    docs, full = catalog(courses=45)
    session = requests.Session()

    def delete_after_first_page(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        first = "page" not in parse_qs(urlsplit(response.url).query)
        if response.request.method == "POST" and SEARCH_PATH in response.url and first:
            fake.remove_documents([docs[0]["key"]])  # page 2 now starts one item later

    session.hooks["response"].append(delete_after_first_page)
    with (
        FakeDiscovery(docs, full, max_page_size=20) as fake,
        make_client(fake, session=session) as client,
        pytest.raises(DiscoveryError, match="changed while a lookup"),
    ):
        client.lookup_many({d["key"]: "course" for d in docs})
    session.close()


def test_lookup_many_of_nothing_or_an_unknown_type_sends_nothing(fake: FakeDiscovery) -> None:
    with make_client(fake) as client:
        assert client.lookup_many({}) == {}
        with pytest.raises(ValueError, match="'video'"):
            client.lookup_many({course_doc(0)["key"]: "course", "x": "video"})
    assert fake.requests == []


def test_lookup_many_never_calls_an_unusable_document_gone(fake: FakeDiscovery) -> None:
    deep = nested_doc(MAX_DOCUMENT_DEPTH + 1, "course-v1:edX+Deep+1T2025")
    fake.upsert_documents([deep])
    with make_client(fake) as client, pytest.raises(UnusableDocument, match="not gone") as info:
        client.lookup_many({deep["key"]: "courserun", course_doc(0)["key"]: "course"})
    assert isinstance(info.value, ValueError)  # the event lane rejects that update alone


# -- polite retries ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "max_retry_after", "slept"),
    [
        (3600, None, 60.0),  # the default cap, not an hour
        (3600, 5.0, 5.0),
        (2, 5.0, 2.0),
        (email.utils.formatdate(time.time() + 3600, usegmt=True), 5.0, 5.0),
        (email.utils.formatdate(time.time() - 3600, usegmt=True), 5.0, 0.0),
    ],
)
def test_retry_after_is_honoured_up_to_a_cap(
    fake: FakeDiscovery, retry_after: float | str, max_retry_after: float | None, slept: float
) -> None:
    sleep = SleepRecorder()
    fake.fail_next(SEARCH_PATH, 429, retry_after=retry_after)
    options = {} if max_retry_after is None else {"max_retry_after": max_retry_after}
    with make_client(fake, sleep=sleep, **options) as client:
        assert len(client.crawl()) == 25
    assert sleep.delays == [slept]


def test_backoff_without_retry_after_uses_full_jitter(fake: FakeDiscovery) -> None:
    sleep, bounds = SleepRecorder(), []
    draw = random.Random(20250101).uniform

    def rand(low: float, high: float) -> float:
        bounds.append((low, high))
        return draw(low, high)

    fake.fail_next(SEARCH_PATH, 502, times=5)
    with make_client(
        fake, sleep=sleep, rand=rand, max_retries=5, backoff_base=0.5, max_backoff=3.0
    ) as client:
        assert len(client.crawl()) == 25
    assert bounds == [(0.0, 0.5), (0.0, 1.0), (0.0, 2.0), (0.0, 3.0), (0.0, 3.0)]
    assert all(0.0 <= delay <= high for delay, (_, high) in zip(sleep.delays, bounds, strict=True))
    assert len(set(sleep.delays)) == 5  # jittered, not the same schedule for every client


def test_default_backoff_is_jittered(fake: FakeDiscovery) -> None:
    sleep = SleepRecorder()
    fake.fail_next(SEARCH_PATH, 502, times=3)
    client = DiscoveryClient(
        fake.api_url, fake.oauth2_url, fake.client_id, fake.client_secret, sleep=sleep
    )
    with client:
        assert len(client.crawl()) == 25
    assert all(0.0 <= d <= high for d, high in zip(sleep.delays, [0.5, 1.0, 2.0], strict=True))
    assert sleep.delays != [0.5, 1.0, 2.0]


# -- no secrets in errors ---------------------------------------------------------------------


def secret_client(fake: FakeDiscovery, **kwargs: Any) -> tuple[DiscoveryClient, str]:
    """A client whose secret is new to this process, so only the client can have registered it."""
    fake.client_secret = f"s3cr3t-{uuid.uuid4().hex}"
    return make_client(fake, **kwargs), fake.client_secret


@pytest.mark.parametrize("status", [400, 401])
@pytest.mark.parametrize("echo", ["request", "bare"])
def test_token_errors_do_not_leak_the_client_secret(
    fake: FakeDiscovery, status: int, echo: str
) -> None:
    client, secret = secret_client(fake)
    if echo == "request":  # the form, echoed: client_id=...&client_secret=...
        fake.fail_next(TOKEN_PATH, status, echo_request=True)
    else:  # the value alone, in no shape a pattern would know
        fake.fail_next(TOKEN_PATH, status, body=f"rejected {fake.client_id} / {secret} here")
    with client, pytest.raises(DiscoveryError) as info:
        client.crawl()
    message = str(info.value)
    assert secret not in message and secret[:12] not in message
    assert f"POST {fake.oauth2_url}/access_token: HTTP {status}" in message
    assert "***" in message  # the echo is in the message, masked
    if echo == "request":
        assert secret.encode() in fake.request_log[0].body  # the echo really carried it


@pytest.mark.parametrize(("status", "times"), [(500, 2), (401, 2)])
def test_search_errors_echoing_the_token_do_not_leak_it(
    fake: FakeDiscovery, status: int, times: int
) -> None:
    client, _ = secret_client(fake, max_retries=1)
    fake.fail_next(SEARCH_PATH, status, times=times, echo_request=True)
    with client, pytest.raises(DiscoveryError) as info:
        client.crawl()
    tokens = {e.token for e in fake.request_log if e.token}
    assert tokens
    message = str(info.value)
    for token in tokens:
        assert token[:5] not in message  # not even the part a cut snippet would keep
        assert redact(f"seen {token}.") == "seen ***."  # registered: masked in any text
    assert f"GET {fake.api_url}search/all/?page=1&page_size=10" in message
    assert f"HTTP {status}" in message
    assert "Authorization: JWT ***" in message


def test_client_secret_is_registered_on_construction() -> None:
    secret = f"only-{uuid.uuid4().hex}"
    assert redact(secret) == secret
    DiscoveryClient("http://127.0.0.1:9/api/v1/", "http://127.0.0.1:9/oauth2", "id", secret)
    assert redact(f"x {secret} y") == "x *** y"


# -- what enterprise-catalog asks of search/all, and forced courses ---------------------------


def test_crawls_and_lookups_ask_for_pathways_and_no_expired_runs(fake: FakeDiscovery) -> None:
    """enterprise-catalog's two search/all parameters, on every page and every lookup."""
    pathways = [d for d in fake.documents() if d["content_type"] == "learnerpathway"]
    with make_client(fake, page_size=10) as client:
        crawled = client.crawl()
        looked_up = client.lookup_many({content_key_of(pathways[0]): "learnerpathway"})
    assert {content_key_of(p) for p in pathways} <= set(keys(crawled))
    assert list(looked_up) == [content_key_of(pathways[0])]
    searches = [e for e in fake.request_log if e.path == SEARCH_PATH]
    assert {e.method for e in searches} == {"GET", "POST"} and len(searches) == 4
    for entry in searches:
        assert entry.query["exclude_expired_course_run"] == ["True"]
        assert entry.query["include_learner_pathways"] == ["True"]


def test_the_fake_leaves_pathways_out_unless_asked(fake: FakeDiscovery) -> None:
    """The contract the parameter exists for: course-discovery omits pathways by default."""
    with make_client(fake) as client:
        plain = client._call("GET", f"{fake.api_url}search/all/?page_size=100")
    types = {d["content_type"] for d in plain["results"]}
    assert "learnerpathway" not in types and plain["count"] == 23


def test_an_expired_run_vanishes_from_the_crawl_and_its_lookup(fake: FakeDiscovery) -> None:
    runs = [d for d in fake.documents() if d["content_type"] == "courserun"]
    expired = {**runs[0], "end": "2025-01-01T00:00:00Z"}
    running = {**runs[1], "end": "2026-06-01T00:00:00Z"}
    fake.upsert_documents([expired, running])
    fake.now = datetime(2026, 1, 1)
    with make_client(fake, page_size=10) as client:
        crawled = set(keys(client.crawl()))
        found = client.lookup_many({expired["key"]: "courserun", running["key"]: "courserun"})
    assert expired["key"] not in crawled and running["key"] in crawled
    assert list(found) == [running["key"]]  # confirmed gone: the refresh may tombstone it
    with make_client(fake) as client:  # without the parameter, the run is still there
        plain = client._call("GET", f"{fake.api_url}search/all/?page_size=100")
    assert expired["key"] in keys(plain["results"])


def test_forced_courses_are_fetched_by_key_even_when_unlisted(fake: FakeDiscovery) -> None:
    unlisted = [{**full_course(course_doc(100 + n)), "course_type": "verified"} for n in range(60)]
    fake.upsert_full_records({record["key"]: record for record in unlisted})
    wanted = [record["key"] for record in unlisted] + ["edX+Gone", course_doc(0)["key"]]
    with make_client(fake, batch_size=50) as client:
        found = client.fetch_courses(wanted)
    assert set(found) == {record["key"] for record in unlisted} | {course_doc(0)["key"]}
    assert found[unlisted[0]["key"]] == unlisted[0]
    calls = [e for e in fake.request_log if e.path == COURSES_PATH]
    batches = {len(e.query["keys"][0].split(",")) for e in calls if "offset" not in e.query}
    assert batches == {50, 12}  # at most 50 keys a request, as enterprise-catalog batches them
    assert not [e for e in fake.request_log if e.path == SEARCH_PATH]  # never via search/all
