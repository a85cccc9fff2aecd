"""DiscoveryClient against a real local course-discovery server (FakeDiscovery)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from catalog_assets.discovery import DiscoveryClient, DiscoveryError, content_key_of
from catalog_assets_tests.fake_discovery import (
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
