"""Deterministic sample content and catalog queries, shaped like the real services' data.

Content records look like course-discovery ``search/all`` documents (courses with their runs
nested, course runs, programs with their course lists, learner pathways); catalog queries look
like enterprise-catalog's, with the filter shapes real catalogs use. The same seed always gives
the same data, so the bundled default dataset, tests and benchmarks are reproducible.

The bundled dataset lives in ``catalog_assets/data/`` and is regenerated with
``python -m catalog_assets.devtools.sample_data``. ``generate_scale_queries`` makes the
production-scale query mix (``SCALE_MIX``: broad, exclusion, narrow) for ``bench/bench_scale.py``.

Longer than most modules, on purpose: it is mostly a table of filter shapes, one short method
each, and the production-scale shapes extend the same maker and the same document model; split
apart, each half would import the other's private distributions.
"""

from __future__ import annotations

import argparse
import json
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from catalog_assets.core.sources import BUNDLED_CONTENT_FILE, BUNDLED_QUERIES_FILE

BUNDLED_SEED = 2026
BUNDLED_RECORDS = 400
BUNDLED_QUERIES = 36

PARTNERS = ("edx", "edx", "edx", "2u")
ORGS = ("MITx", "HarvardX", "edX", "StellenboschX", "DelftX", "UQx", "IBM", "Microsoft", "UCx")
LEVELS = ("Introductory", "Intermediate", "Advanced")
COURSE_TYPES = (
    "verified-audit",
    "verified-audit",
    "verified-audit",
    "audit",
    "professional",
    "executive-education-2u",
    "bootcamp-2u",
)
SUBJECTS = (
    "Computer Science",
    "Data Analysis & Statistics",
    "Business & Management",
    "Engineering",
    "Humanities",
    "Medicine",
    "Economics & Finance",
    "Language",
)
LANGUAGES = ("English", "English", "English", "Spanish", "French", "Chinese - Mandarin")
SEAT_TYPES = ("audit", "verified", "professional", "credit")
AVAILABILITY = ("Current", "Upcoming", "Archived", "Starting Soon")
PROGRAM_TYPES = ("MicroMasters", "Professional Certificate", "XSeries", "MicroBachelors")
TOPICS = (
    "Data Science",
    "Machine Learning",
    "Circuits",
    "Finance",
    "Leadership",
    "Python",
    "Statistics",
    "Media Policy",
    "Climate",
    "Supply Chain",
)
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _price(rng: random.Random, course_type: str) -> Any:
    """Seat prices as real documents carry them: mostly numbers, sometimes null or a string."""
    roll = rng.random()
    if course_type == "audit" or roll < 0.08:
        return None
    base = {"executive-education-2u": 2500, "bootcamp-2u": 12000, "professional": 300}
    price = base.get(course_type, rng.choice((49, 99, 149, 199, 249)))
    if roll < 0.12:
        return f"{price}.00"
    return float(price) if roll < 0.3 else price


def _course_run(rng: random.Random, course: dict[str, Any], index: int) -> dict[str, Any]:
    start = EPOCH + timedelta(days=rng.randint(-400, 500))
    run_key = f"course-v1:{course['key']}+{start.year}_T{index + 1}"
    availability = rng.choice(AVAILABILITY)
    return {
        "aggregation_key": f"courserun:{course['key']}",
        "content_type": "courserun",
        "key": run_key,
        "uuid": _uuid(rng),
        "title": course["title"],
        "partner": course["partner"],
        "org": course["org"],
        "level_type": course["level_type"],
        "status": rng.choice(("published", "published", "published", "unpublished")),
        "availability": availability,
        "pacing_type": rng.choice(("self_paced", "instructor_paced")),
        "course_type": course["course_type"],
        "first_enrollable_paid_seat_price": _price(rng, course["course_type"]),
        "seat_types": sorted(rng.sample(SEAT_TYPES, rng.randint(1, 3))),
        "languages": course["languages"],
        "start": _iso(start),
        "end": _iso(start + timedelta(days=rng.choice((42, 70, 90, 120)))),
        "modified": _iso(EPOCH + timedelta(seconds=rng.randint(0, 60_000_000))),
    }


def _course(rng: random.Random, number: int) -> dict[str, Any]:
    org = rng.choice(ORGS)
    key = f"{org}+{rng.choice(('CS', 'DS', 'BUS', 'ENG', 'HUM'))}{number:05d}x"
    course_type = rng.choice(COURSE_TYPES)
    course = {
        "aggregation_key": f"course:{key}",
        "content_type": "course",
        "key": key,
        "uuid": _uuid(rng),
        "title": f"{rng.choice(TOPICS)} {rng.choice(('Fundamentals', 'in Practice', 'II'))}",
        "partner": "2u" if course_type.endswith("-2u") else rng.choice(PARTNERS),
        "org": org,
        "level_type": rng.choice(LEVELS),
        "course_type": course_type,
        "subjects": sorted(rng.sample(SUBJECTS, rng.randint(1, 2))),
        "languages": [rng.choice(LANGUAGES)],
        "card_image_url": f"https://prod-discovery.edx-cdn.org/media/course/image/{number}.png",
        "modified": _iso(EPOCH + timedelta(seconds=rng.randint(0, 60_000_000))),
    }
    return course


def _program(rng: random.Random, courses: list[dict[str, Any]]) -> dict[str, Any]:
    members = rng.sample(courses, min(len(courses), rng.randint(2, 6)))
    return {
        "aggregation_key": "",  # set below from the uuid
        "content_type": "program",
        "uuid": _uuid(rng),
        "title": f"{rng.choice(TOPICS)} {rng.choice(PROGRAM_TYPES)}",
        "type": rng.choice(PROGRAM_TYPES),
        "partner": members[0]["partner"],
        "status": rng.choice(("active", "active", "active", "retired")),
        "authoring_organizations": sorted({m["org"] for m in members}),
        "subjects": sorted({s for m in members for s in m["subjects"]}),
        "courses": [{"key": m["key"], "title": m["title"]} for m in members],
        "modified": _iso(EPOCH + timedelta(seconds=rng.randint(0, 60_000_000))),
    }


def _pathway(rng: random.Random, courses: list[dict], programs: list[dict]) -> dict[str, Any]:
    steps = [
        {
            "min_requirement": 1,
            "courses": [c["key"] for c in rng.sample(courses, min(len(courses), 2))],
            "programs": [p["uuid"] for p in rng.sample(programs, min(len(programs), 1))],
        }
        for _ in range(rng.randint(1, 3))
    ]
    return {
        "aggregation_key": "",
        "content_type": "learnerpathway",
        "uuid": _uuid(rng),
        "title": f"Pathway to {rng.choice(TOPICS)}",
        "partner": "edx",
        "status": rng.choice(("active", "active", "inactive")),
        "steps": steps,
        "modified": _iso(EPOCH + timedelta(seconds=rng.randint(0, 60_000_000))),
    }


def generate_content(n_records: int, seed: int = BUNDLED_SEED) -> list[dict[str, Any]]:
    """``n_records`` search documents: about 30% courses, 60% runs, 7% programs, 3% pathways."""
    rng = random.Random(seed)
    n_pathways = max(1, n_records * 3 // 100)
    n_programs = max(1, n_records * 7 // 100)
    budget = max(1, n_records - n_pathways - n_programs)
    courses: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    while len(courses) + len(runs) < budget:
        course = _course(rng, len(courses))
        course_runs = [_course_run(rng, course, i) for i in range(rng.randint(1, 3))]
        course_runs = course_runs[: budget - len(courses) - len(runs) - 1]
        course["course_runs"] = [
            {k: run[k] for k in ("key", "status", "availability", "start", "end")}
            for run in course_runs
        ]
        course["availability"] = sorted({run["availability"] for run in course_runs})
        course["seat_types"] = sorted({s for run in course_runs for s in run["seat_types"]})
        prices = [run["first_enrollable_paid_seat_price"] for run in course_runs]
        course["first_enrollable_paid_seat_price"] = next((p for p in prices if p), None)
        if course_runs:
            course["start"] = min(run["start"] for run in course_runs)
            course["end"] = max(run["end"] for run in course_runs)
        courses.append(course)
        runs.extend(course_runs)
    programs = [_program(rng, courses) for _ in range(n_programs)]
    pathways = [_pathway(rng, courses, programs) for _ in range(n_pathways)]
    for document in (*programs, *pathways):
        document["aggregation_key"] = f"{document['content_type']}:{document['uuid']}"
    return [*courses, *runs, *programs, *pathways][:n_records]


class _FilterMaker:
    """Builds one random filter in one of the shapes real catalog queries use."""

    def __init__(self, rng: random.Random, content: list[dict[str, Any]]):
        self.rng = rng
        self.by_type: dict[str, list[dict[str, Any]]] = {}
        for document in content:
            self.by_type.setdefault(document["content_type"], []).append(document)
        self.shapes = [getattr(self, name) for name in dir(self) if name.startswith("shape_")]

    def some(self, content_type: str, low: int, high: int, field: str) -> list[str]:
        documents = self.by_type.get(content_type, [])
        picked = self.rng.sample(documents, min(len(documents), self.rng.randint(low, high)))
        return [d[field] for d in picked]

    def make(self) -> tuple[str, dict[str, Any]]:
        """A random filter and a title that says what it selects (the shape's docstring)."""
        shape = self.rng.choice(self.shapes)
        return shape.__doc__ or shape.__name__, shape()

    def shape_partner_level(self) -> dict[str, Any]:
        """edX courses by level"""
        levels = sorted(self.rng.sample(LEVELS, self.rng.randint(1, 2)))
        return {"content_type": "course", "partner": "edx", "level_type": levels}

    def shape_course_keys(self) -> dict[str, Any]:
        """Curated course list"""
        return {"content_type": "course", "key": self.some("course", 3, 40, "key")}

    def shape_bare_keys(self) -> dict[str, Any]:
        """Hand-picked content keys"""
        return {"key": self.some("course", 1, 15, "key")}

    def shape_exclude_aggregation_keys(self) -> dict[str, Any]:
        """edX courses and programs, with exclusions"""
        return {
            "content_type": ["course", "program"],
            "partner": "edx",
            "aggregation_key__exclude": self.some("course", 1, 10, "aggregation_key"),
        }

    def shape_exclude_course_types(self) -> dict[str, Any]:
        """edX courses without Executive Education or Boot Camps"""
        return {
            "content_type": "course",
            "partner": "edx",
            "course_type__exclude": ["executive-education-2u", "bootcamp-2u"],
        }

    def shape_run_price_cap(self) -> dict[str, Any]:
        """Affordable published course runs"""
        return {
            "content_type": "courserun",
            "status": "published",
            "first_enrollable_paid_seat_price__lte": self.rng.choice(("50", "100", "200")),
        }

    def shape_course_price_band(self) -> dict[str, Any]:
        """Paid courses in a price band"""
        return {
            "content_type": "course",
            "first_enrollable_paid_seat_price__gte": "1",
            "first_enrollable_paid_seat_price__lt": self.rng.choice(("100", "150", "500")),
        }

    def shape_program_type(self) -> dict[str, Any]:
        """Active programs of one type"""
        return {
            "content_type": "program",
            "type": self.rng.choice(PROGRAM_TYPES),
            "status": "active",
        }

    def shape_program_keys(self) -> dict[str, Any]:
        """Selected programs"""
        return {"aggregation_key": [f"program:{u}" for u in self.some("program", 1, 5, "uuid")]}

    def shape_pathways_and_courses(self) -> dict[str, Any]:
        """Learner pathways and courses"""
        return {
            "content_type": ["learnerpathway", "course"],
            "partner": "edx",
            "include_learner_pathways": "True",
            "aggregation_key": self.some("learnerpathway", 1, 4, "aggregation_key")
            + self.some("course", 1, 8, "aggregation_key"),
        }

    def shape_orgs(self) -> dict[str, Any]:
        """Courses from partner organizations"""
        return {
            "org": sorted(self.rng.sample(ORGS, self.rng.randint(1, 3))),
            "content_type": "course",
        }

    def shape_run_availability(self) -> dict[str, Any]:
        """Course runs open now"""
        return {"content_type": "courserun", "availability": ["Current", "Starting Soon"]}

    def shape_org_exempt_typo(self) -> dict[str, Any]:
        """Courses except two organizations (legacy typo key)"""
        return {"content_type": "course", "org__exempt": sorted(self.rng.sample(ORGS, 2))}

    def shape_null_status_exclude_keys(self) -> dict[str, Any]:
        """Courses minus a few keys"""
        return {
            "content_type": "course",
            "status": None,
            "key__exclude": self.some("course", 1, 5, "key"),
        }

    def shape_subject(self) -> dict[str, Any]:
        """edX courses in one subject"""
        return {"content_type": "course", "subjects": [self.rng.choice(SUBJECTS)], "partner": "edx"}


def generate_catalog_queries(
    n_queries: int, content: list[dict[str, Any]], seed: int = BUNDLED_SEED, invalid: int = 0
) -> dict[str, list[dict[str, Any]]]:
    """Catalog queries drawn from real filter shapes, and enterprise catalogs that use them.

    ``invalid`` of them carry filters that enterprise-catalog accepts but that are invalid here
    (Django lookups the reference never supported), to exercise error reporting.
    """
    rng = random.Random(seed + 1)
    broken = (
        {"content_type": "course", "title__icontains": "python"},
        {"org__in": ["MITx", "HarvardX"]},
        {"first_enrollable_paid_seat_price__lte": "cheap"},
    )
    maker = _FilterMaker(rng, content)

    def make(index: int) -> tuple[str, dict[str, Any]]:
        if index < invalid:
            return "Legacy query using a Django lookup", broken[index % 3]
        return maker.make()

    return _queries_payload(rng, n_queries, make)


def _queries_payload(
    rng: random.Random, n_queries: int, make: Callable[[int], tuple[str, dict[str, Any]]]
) -> dict[str, list[dict[str, Any]]]:
    """``n_queries`` catalog queries (``make(index)`` gives each one's title and filter) and
    enterprise catalogs that use them, in the catalog-query file's shape."""
    queries = []
    for index in range(n_queries):
        title, content_filter = make(index)
        queries.append(
            {
                "uuid": _uuid(rng),
                "title": f"{title} #{index + 1}",
                "content_filter": content_filter,
            }
        )
    enterprises = [_uuid(rng) for _ in range(max(1, n_queries // 3))]
    catalogs = []
    for query in queries:
        for _ in range(rng.choice((1, 1, 1, 2))):
            enterprise = rng.choice(enterprises)
            catalogs.append(
                {
                    "uuid": _uuid(rng),
                    "title": f"{query['title']} for enterprise {enterprise[:8]}",
                    "enterprise_uuid": enterprise,
                    "catalog_query_uuid": query["uuid"],
                }
            )
    return {"catalog_queries": queries, "enterprise_catalogs": catalogs}


class QueryKind(StrEnum):
    """The breadth classes of the production-scale query mix (``generate_scale_queries``)."""

    BROAD = "broad"  # partner/type filters, each matching 10-20% of the content
    EXCLUSION = "exclusion"  # broad filters with exclusions, also 10-20%
    NARROW = "narrow"  # curated key lists: a few to a few dozen records
    OTHER = "other"  # the other real shapes (price bands, availability, program types, ...)


SCALE_MIX = {QueryKind.BROAD: 15, QueryKind.EXCLUSION: 7, QueryKind.OTHER: 8, QueryKind.NARROW: 70}
"""Percent of the queries of each kind. At 200,000 records x 5,000 queries this gives about
40 million associations (enterprise-catalog's production order of magnitude: thousands of
queries, many of them broad, over more than 100,000 records)."""
BROAD_SHARE = (0.10, 0.20)
"""The share of all records each broad or exclusion query is built to match (in expectation,
from the generator's distributions: e.g. edX courses are 16% of the records)."""


class _ScaleFilterMaker(_FilterMaker):
    """The real shapes (``_FilterMaker``) plus the broad ones production is full of ("all
    courses of these partners"), with and without exclusions, each matching 10-20% of the
    records generate_content makes."""

    def __init__(self, rng: random.Random, content: list[dict[str, Any]]):
        super().__init__(rng, content)
        self.by_kind = {
            QueryKind.BROAD: [getattr(self, n) for n in dir(self) if n.startswith("broad_")],
            QueryKind.EXCLUSION: [getattr(self, n) for n in dir(self) if n.startswith("minus_")],
            QueryKind.NARROW: [
                self.shape_course_keys,
                self.shape_bare_keys,
                self.shape_program_keys,
                self.shape_pathways_and_courses,
            ],
        }

    def make_kind(self, kind: QueryKind) -> tuple[str, dict[str, Any]]:
        if kind is QueryKind.OTHER:
            return self.make()
        shape = self.rng.choice(self.by_kind[kind])
        return shape.__doc__ or shape.__name__, shape()

    def orgs(self, low: int, high: int) -> list[str]:
        return sorted(self.rng.sample(ORGS, self.rng.randint(low, high)))

    def broad_partner_courses(self) -> dict[str, Any]:
        """All edX courses"""  # 16% of the records
        return {"content_type": "course", "partner": "edx"}

    def broad_partner_org_runs(self) -> dict[str, Any]:
        """edX course runs of partner organizations"""  # 4-5 of 9 orgs: 14-18%
        return {"content_type": "courserun", "partner": "edx", "org": self.orgs(4, 5)}

    def broad_partner_level(self) -> dict[str, Any]:
        """edX courses and runs at one level"""  # 16%
        return {
            "content_type": ["course", "courserun"],
            "partner": "edx",
            "level_type": self.rng.choice(LEVELS),
        }

    def broad_published_verified_runs(self) -> dict[str, Any]:
        """Published edX verified-audit course runs"""  # 14%
        return {
            "content_type": "courserun",
            "partner": "edx",
            "course_type": "verified-audit",
            "status": "published",
        }

    def broad_partner_courses_programs(self) -> dict[str, Any]:
        """All 2U courses and programs"""  # 18%
        return {"content_type": ["course", "program"], "partner": "2u"}

    def minus_course_keys(self) -> dict[str, Any]:
        """edX courses without Executive Education or Boot Camps, minus some keys"""  # 16%
        return {
            "content_type": "course",
            "partner": "edx",
            "course_type__exclude": ["executive-education-2u", "bootcamp-2u"],
            "key__exclude": self.some("course", 1, 20, "key"),
        }

    def minus_orgs(self) -> dict[str, Any]:
        """Courses except some organizations"""  # 4-5 of 9 orgs left out: 13-17%
        return {"content_type": "course", "org__exclude": self.orgs(4, 5)}

    def minus_run_courses(self) -> dict[str, Any]:
        """edX course runs of partner organizations, minus some courses"""  # 18%
        return {
            "content_type": "courserun",
            "partner": "edx",
            "org": self.orgs(5, 5),
            "aggregation_key__exclude": self.some("courserun", 1, 10, "aggregation_key"),
        }


def scale_query_kinds(n_queries: int, seed: int) -> list[QueryKind]:
    """The kind of each of ``n_queries`` queries: ``SCALE_MIX`` exactly, in a seeded order."""
    kinds = [kind for kind, percent in SCALE_MIX.items() for _ in range(n_queries * percent // 100)]
    kinds += [QueryKind.NARROW] * (n_queries - len(kinds))
    random.Random(seed + 2).shuffle(kinds)
    return kinds


def generate_scale_queries(
    n_queries: int, content: list[dict[str, Any]], seed: int = BUNDLED_SEED
) -> dict[str, list[dict[str, Any]]]:
    """Catalog queries with production's breadth (``SCALE_MIX``), and enterprise catalogs that
    use them; the kind of query ``i`` is ``scale_query_kinds(n_queries, seed)[i]``."""
    rng = random.Random(seed + 1)
    maker = _ScaleFilterMaker(rng, content)
    kinds = scale_query_kinds(n_queries, seed)
    return _queries_payload(rng, n_queries, lambda index: maker.make_kind(kinds[index]))


def bundled_dataset() -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The small default dataset, exactly as ``catalog_assets/data/`` holds it."""
    content = generate_content(BUNDLED_RECORDS, BUNDLED_SEED)
    return content, generate_catalog_queries(BUNDLED_QUERIES, content, BUNDLED_SEED, invalid=1)


def write_bundled(folder: Path) -> None:
    content, queries = bundled_dataset()
    folder.mkdir(parents=True, exist_ok=True)
    for name, payload in ((BUNDLED_CONTENT_FILE, content), (BUNDLED_QUERIES_FILE, queries)):
        text = json.dumps(payload, indent=1, ensure_ascii=False) + "\n"
        (folder / name).write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the bundled sample dataset.")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    write_bundled(parser.parse_args().out)


if __name__ == "__main__":
    main()
