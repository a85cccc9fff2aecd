"""The catalog rules as plain functions: allow-lists, forced courses, declared links and the
order of membership reasons (enterprise-catalog's ``_should_allow_metadata``,
``transform_course_metadata_to_visible``, ``associated_content_metadata`` and
``get_matching_content``)."""

from __future__ import annotations

import copy

import pytest

from catalog_assets.core.catalog_contents import (
    DEFAULT_COURSE_TYPES,
    AllowLists,
    ContentRelation,
    Exclusion,
    Membership,
    MembershipRule,
    RelationKind,
    best_memberships,
    force_included,
    forced_course_keys,
    forcing_queries,
    relations_of,
)
from catalog_assets.settings import SettingError, Settings

ALLOW = AllowLists()


def course(**fields: object) -> dict:
    return {"key": "edX+C1", "aggregation_key": "course:edX+C1", "content_type": "course", **fields}


# --- Allow-lists ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("product_source", "excluded"),
    [
        (None, None),  # a missing value passes
        ("edx", None),
        ("2U", None),  # compared lower-cased
        ({"slug": "edx", "name": "edX"}, None),  # an object's slug
        ({"name": "no slug"}, None),  # an object without a slug reads as missing
        ("emeritus", "emeritus"),
        ({"slug": "external"}, "external"),
        ("", ""),  # set, and not listed
        (7, "7"),  # not a string: never listed
    ],
)
def test_the_product_source_must_be_listed_when_it_is_set(product_source, excluded):
    for document in (
        course(product_source=product_source),
        {"uuid": "p", "content_type": "program", "product_source": product_source},
    ):
        found = ALLOW.exclusion(document)
        assert found == (None if excluded is None else (Exclusion.PRODUCT_SOURCE, excluded))


@pytest.mark.parametrize("course_type", [None, *DEFAULT_COURSE_TYPES])
def test_listed_or_missing_course_types_are_admitted(course_type):
    assert ALLOW.exclusion(course(course_type=course_type)) is None


@pytest.mark.parametrize("course_type", ["bootcamp-2u", "empty", "Verified", "", "emeritus"])
def test_other_course_types_of_courses_are_excluded(course_type):
    assert ALLOW.exclusion(course(course_type=course_type)) == (Exclusion.COURSE_TYPE, course_type)


def test_the_course_type_test_is_for_courses_only():
    run = {
        "key": "course-v1:edX+C1+1",
        "aggregation_key": "courserun:edX+C1",
        "course_type": "bootcamp-2u",
    }
    program = {"uuid": "p", "content_type": "program", "course_type": "bootcamp-2u"}
    assert ALLOW.exclusion(run) is None and ALLOW.exclusion(program) is None
    # The type is the aggregation key's prefix first, as the store derives it.
    typed = {
        "key": "k",
        "aggregation_key": "course:k",
        "content_type": "program",
        "course_type": "x",
    }
    assert ALLOW.exclusion(typed) == (Exclusion.COURSE_TYPE, "x")


def test_the_product_source_is_tested_before_the_course_type():
    document = course(product_source="external", course_type="bootcamp-2u")
    assert ALLOW.exclusion(document) == (Exclusion.PRODUCT_SOURCE, "external")


def test_allow_lists_come_from_the_settings_and_say_why():
    settings = Settings.from_env(
        {
            "CONTENT_PRODUCT_SOURCE_ALLOW_LIST": "edX, external",
            "CONTENT_COURSE_TYPE_ALLOW_LIST": "bootcamp-2u",
        }
    )
    allow = settings.allow_lists
    assert allow.product_sources == {"edx", "external"}
    assert allow.exclusion(course(product_source="External", course_type="bootcamp-2u")) is None
    assert allow.exclusion(course(course_type="verified")) == (Exclusion.COURSE_TYPE, "verified")
    assert "course_type verified is not one of bootcamp-2u" in allow.explain(
        course(course_type="verified")
    )
    assert allow.explain(course()) == "admitted by the allow-lists"
    assert Settings.from_env({}).allow_lists == ALLOW
    with pytest.raises(SettingError, match="CONTENT_COURSE_TYPE_ALLOW_LIST='audit,,verified'"):
        Settings.from_env({"CONTENT_COURSE_TYPE_ALLOW_LIST": "audit,,verified"})
    with pytest.raises(ValueError, match="product source allow-list"):
        AllowLists.from_text("edx,", "audit")


# --- Forced courses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "keys"),
    [
        (["edX+A", "edX+B", "edX+A"], ["edX+A", "edX+B"]),
        ("edX+A", ["edX+A"]),
        (["course:edX+A", "edX+B"], ["edX+A", "edX+B"]),  # an aggregation key names its course
        (["edX+A", 3, None, "", ["edX+C"]], ["edX+A"]),
        ({"key": "edX+A"}, []),
        (None, []),
    ],
)
def test_forced_course_keys_of_a_filter(value, keys):
    content_filter = {"content_type": "course", "enterprise_force_include_aggregation_keys": value}
    assert forced_course_keys(content_filter) == keys


def test_forcing_queries_maps_each_course_to_the_queries_forcing_it():
    filters = {
        "q1": {"enterprise_force_include_aggregation_keys": ["edX+A", "edX+B"]},
        "q2": {"enterprise_force_include_aggregation_keys": ["edX+B"]},
        "q3": {"partner": "edx"},
    }
    assert forcing_queries(filters) == {"edX+A": ["q1"], "edX+B": ["q1", "q2"]}


def test_a_forced_course_is_marked_with_every_run_published_and_current():
    original = course(
        course_runs=[
            {"key": "r1", "status": "unpublished", "availability": "Archived"},
            {"key": "r2", "status": "published", "availability": "Upcoming"},
        ]
    )
    kept = copy.deepcopy(original)
    forced = force_included(original)
    assert forced["enterprise_force_included"] is True
    assert [(r["status"], r["availability"]) for r in forced["course_runs"]] == [
        ("published", "Current"),
        ("published", "Current"),
    ]
    assert forced["course_run_statuses"] == ["published", "published"]
    assert original == kept  # a copy
    assert force_included(forced) == forced  # idempotent
    assert force_included(course())["course_run_statuses"] == []


# --- Declared links ---------------------------------------------------------------------------


def test_a_course_names_its_programs_and_a_program_its_courses():
    full_course = {"programs": [{"uuid": "p1"}, {"uuid": "p2"}, {"uuid": "p1"}, {"title": "x"}]}
    assert relations_of("edX+C1", "course", full_course) == [
        ContentRelation("edX+C1", "p1", RelationKind.COURSE_PROGRAM),
        ContentRelation("edX+C1", "p2", RelationKind.COURSE_PROGRAM),
    ]
    program = {"courses": [{"key": "edX+C1"}, "edX+C2", {"key": None}, 5]}
    assert relations_of("p1", "program", program) == [
        ContentRelation("p1", "edX+C1", RelationKind.PROGRAM_COURSE),
        ContentRelation("p1", "edX+C2", RelationKind.PROGRAM_COURSE),
    ]
    assert relations_of("edX+C1", "courserun", full_course) == []  # runs declare nothing


@pytest.mark.parametrize(
    ("visible", "status", "linked"),
    [
        (True, "active", True),
        (False, "active", False),
        (True, "inactive", False),
        (None, "active", False),
    ],
)
def test_a_pathway_is_linked_only_while_visible_and_active(visible, status, linked):
    pathway = {
        "visible_via_association": visible,
        "status": status,
        "steps": [
            {"programs": [{"uuid": "p1"}], "courses": [{"key": "edX+C1"}]},
            {"programs": ["p2"], "courses": ["edX+C1", "lp"]},  # itself: never a link
        ],
    }
    expected = [
        ContentRelation("lp", "p1", RelationKind.PATHWAY_PROGRAM),
        ContentRelation("lp", "edX+C1", RelationKind.PATHWAY_COURSE),
        ContentRelation("lp", "p2", RelationKind.PATHWAY_PROGRAM),
    ]
    assert relations_of("lp", "learnerpathway", pathway) == (expected if linked else [])


# --- Membership -------------------------------------------------------------------------------


def test_the_strongest_membership_reason_wins_per_query():
    found = [
        Membership("q1", MembershipRule.RUN_OF_ASSOCIATED_COURSE, "edX+C1"),
        Membership("q1", MembershipRule.ASSOCIATED, "k"),
        Membership("q2", MembershipRule.COURSE_OF_ASSOCIATED_RUN, "r2"),
        Membership("q2", MembershipRule.COURSE_OF_ASSOCIATED_RUN, "r1"),
    ]
    best = best_memberships(found)
    assert best == {"q1": found[1], "q2": found[3]}
