"""What a catalog contains beyond its filter's matches, as enterprise-catalog decides it.

enterprise-catalog stores and associates only content its allow-lists admit
(``_should_allow_metadata``), adds the courses a query forces in
(``enterprise_force_include_aggregation_keys``), links related content
(``associated_content_metadata``) and answers "is this key in that catalog" with three rules
(``get_matching_content``). This module holds those rules as plain functions over documents,
so that both lanes, the lookups and ``explain`` apply the very same ones.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from catalog_assets.core.content import content_type_of

# --- Allow-lists ----------------------------------------------------------------------------

DEFAULT_PRODUCT_SOURCES: tuple[str, ...] = ("edx", "2u")
"""enterprise-catalog's product sources: content from other platforms is not stored."""

DEFAULT_COURSE_TYPES: tuple[str, ...] = (
    "audit",
    "professional",
    "verified-audit",
    "credit-verified-audit",
    "masters",
    "masters-verified-audit",
    "verified",
    "spoc-verified-audit",
    "honor",
    "verified-honor",
    "credit-verified-honor",
    "executive-education-2u",
)
"""enterprise-catalog's course types; ``bootcamp-2u`` and ``empty`` are left out on purpose."""


class Exclusion(StrEnum):
    """Why the allow-lists keep a document out of every catalog."""

    PRODUCT_SOURCE = "product_source"
    COURSE_TYPE = "course_type"


@dataclass(frozen=True)
class Excluded:
    """A document the allow-lists keep out: its key (when it has one), why, and the value."""

    content_key: str | None
    reason: Exclusion
    value: str


@dataclass(frozen=True)
class AllowLists:
    """The product sources (compared lower-cased) and course types (exact) a catalog admits.

    A product source is a string or an object's ``slug``; a course type is tested on courses
    only. A missing (null) value passes either test; any other value not listed fails it.
    """

    product_sources: frozenset[str] = frozenset(DEFAULT_PRODUCT_SOURCES)
    course_types: frozenset[str] = frozenset(DEFAULT_COURSE_TYPES)

    def __post_init__(self) -> None:
        lowered = frozenset(source.lower() for source in self.product_sources)
        object.__setattr__(self, "product_sources", lowered)
        object.__setattr__(self, "course_types", frozenset(self.course_types))

    @classmethod
    def from_text(cls, product_sources: str, course_types: str) -> AllowLists:
        """From comma-separated lists (the settings' form); raises ValueError for an empty
        entry, naming the list."""
        return cls(
            split_names(product_sources, "product source"),
            split_names(course_types, "course type"),
        )

    def exclusion(self, document: Mapping[str, Any]) -> tuple[Exclusion, str] | None:
        """Why ``document`` is kept out of every catalog, with the offending value as text;
        None when it is admitted."""
        source = document.get("product_source")
        if isinstance(source, Mapping):
            source = source.get("slug")
        if source is not None and (
            not isinstance(source, str) or source.lower() not in self.product_sources
        ):
            return Exclusion.PRODUCT_SOURCE, _text(source)
        if content_type_of(document) != "course":
            return None
        course_type = document.get("course_type")
        if course_type is not None and (
            not isinstance(course_type, str) or course_type not in self.course_types
        ):
            return Exclusion.COURSE_TYPE, _text(course_type)
        return None

    def explain(self, document: Mapping[str, Any]) -> str:
        """The verdict on ``document`` in words, for ``explain``."""
        found = self.exclusion(document)
        if found is None:
            return "admitted by the allow-lists"
        reason, value = found
        listed = self.product_sources if reason is Exclusion.PRODUCT_SOURCE else self.course_types
        return f"excluded: {reason} {value} is not one of {', '.join(sorted(listed))}"


def split_names(text: str, what: str) -> frozenset[str]:
    """The names of a comma-separated list; an empty entry is a mistake worth naming."""
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise ValueError(f"the {what} allow-list {text!r} has an empty entry")
    return frozenset(names)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


# --- Forced courses ---------------------------------------------------------------------------

FORCE_INCLUDE_KEY = "enterprise_force_include_aggregation_keys"
"""The filter key whose courses enterprise-catalog adds to the query's results."""
FORCE_INCLUDED_TAG = "enterprise_force_included"
"""What a force-included course record is marked with."""
_COURSE_PREFIX = "course:"


def forced_course_keys(content_filter: Mapping[str, Any]) -> list[str]:
    """The course keys a filter forces in, in order, each once.

    The value is a list of course keys (a single string counts as one); an aggregation key
    ``course:KEY`` names the course ``KEY``. Anything else in the list is ignored."""
    value = content_filter.get(FORCE_INCLUDE_KEY) if isinstance(content_filter, Mapping) else None
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    keys = [item.removeprefix(_COURSE_PREFIX) for item in items if isinstance(item, str)]
    return list(dict.fromkeys(key for key in keys if key and "\x00" not in key))


def forcing_queries(filters: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Course key -> the (valid) queries that force it in, from ``{query uuid: filter}``."""
    forced: dict[str, list[str]] = {}
    for uuid, content_filter in filters.items():
        for key in forced_course_keys(content_filter):
            forced.setdefault(key, []).append(uuid)
    return forced


def force_included(course: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a course record as enterprise-catalog stores a forced course: marked
    ``enterprise_force_included``, every nested run published and Current, and the runs'
    statuses listed in ``course_run_statuses``. Idempotent."""
    record = copy.deepcopy(dict(course))
    record[FORCE_INCLUDED_TAG] = True
    runs = record.get("course_runs")
    statuses = []
    for run in runs if isinstance(runs, list) else []:
        if isinstance(run, dict):
            run["status"], run["availability"] = "published", "Current"
            statuses.append(run["status"])
    record["course_run_statuses"] = statuses
    return record


def marked_if_forced(record: Mapping[str, Any], forced_keys: Collection[str]) -> Mapping[str, Any]:
    """``force_included(record)`` when it is a course that ``forced_keys`` names; otherwise the
    record as it is. Both lanes mark forced courses this way."""
    key = record.get("key")
    if isinstance(key, str) and key in forced_keys and content_type_of(record) == "course":
        return force_included(record)
    return record


def as_course_document(key: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """A course's full record (``courses/?keys=``, which has no search fields) as a document
    the store can keep: its type and aggregation key are added when it lacks them."""
    return {"aggregation_key": f"{_COURSE_PREFIX}{key}", "content_type": "course", **record}


# --- Related content ------------------------------------------------------------------------


class RelationKind(StrEnum):
    """What a record says about another: ``<its type>_<the other's type>``."""

    COURSE_PROGRAM = "course_program"  # a course's full record lists the program
    PROGRAM_COURSE = "program_course"  # a program lists the course
    PATHWAY_PROGRAM = "pathway_program"  # a visible, active pathway's step lists the program
    PATHWAY_COURSE = "pathway_course"  # ... or the course


@dataclass(frozen=True, order=True)
class ContentRelation:
    """One ``content_relation`` row: ``content_key``'s record names ``related_key``."""

    content_key: str
    related_key: str
    relation: RelationKind


def _identifiers(items: Any, field: str) -> list[str]:
    """The ``field`` of each object in a list (a plain string counts as the value itself)."""
    found = []
    for item in items if isinstance(items, list) else []:
        value = item.get(field) if isinstance(item, Mapping) else item
        if isinstance(value, str) and value and "\x00" not in value:
            found.append(value)
    return found


def _links(items: Any, field: str, kind: RelationKind) -> list[tuple[str, RelationKind]]:
    return [(identifier, kind) for identifier in _identifiers(items, field)]


def pathway_is_visible(metadata: Mapping[str, Any]) -> bool:
    """enterprise-catalog links a pathway only while it is visible via association and active."""
    return metadata.get("visible_via_association") is True and metadata.get("status") == "active"


def relations_of(
    content_key: str, content_type: str, metadata: Mapping[str, Any]
) -> list[ContentRelation]:
    """The links a live record declares, each once: a course's programs, a program's courses,
    a visible active pathway's programs and courses (an invisible or inactive one has none)."""
    pairs: list[tuple[str, RelationKind]] = []
    if content_type == "course":
        pairs = _links(metadata.get("programs"), "uuid", RelationKind.COURSE_PROGRAM)
    elif content_type == "program":
        pairs = _links(metadata.get("courses"), "key", RelationKind.PROGRAM_COURSE)
    elif content_type == "learnerpathway" and pathway_is_visible(metadata):
        steps = metadata.get("steps")
        for step in steps if isinstance(steps, list) else []:
            if isinstance(step, Mapping):
                pairs += _links(step.get("programs"), "uuid", RelationKind.PATHWAY_PROGRAM)
                pairs += _links(step.get("courses"), "key", RelationKind.PATHWAY_COURSE)
    return [
        ContentRelation(content_key, related, kind)
        for related, kind in dict.fromkeys(pairs)
        if related != content_key
    ]


def declared_relations(live: Mapping[str, Mapping[str, Any]]) -> list[ContentRelation]:
    """Every link the live records ``{content_key: metadata}`` declare, sorted (the type is
    read from the metadata as the store derives it)."""
    return sorted(
        relation
        for key, metadata in live.items()
        for relation in relations_of(key, content_type_of(metadata), metadata)
    )


# --- Membership -----------------------------------------------------------------------------


class MembershipRule(StrEnum):
    """Why a key is in a catalog (enterprise-catalog's ``get_matching_content``), best first."""

    ASSOCIATED = "associated"  # the key's own record is associated with the catalog's query
    COURSE_OF_ASSOCIATED_RUN = "course_of_associated_run"  # a catalog of runs holds their course
    RUN_OF_ASSOCIATED_COURSE = "run_of_associated_course"  # a catalog of courses holds their runs


RULE_ORDER: tuple[MembershipRule, ...] = tuple(MembershipRule)


@dataclass(frozen=True)
class Membership:
    """``content_key`` is in the catalogs of ``catalog_query_uuid`` by ``rule``, through the
    associated record ``via_key`` (the key itself for ``associated``)."""

    catalog_query_uuid: str
    rule: MembershipRule
    via_key: str


def best_memberships(memberships: Iterable[Membership]) -> dict[str, Membership]:
    """The strongest reason per catalog query (``RULE_ORDER``, then the smallest via key)."""
    best: dict[str, Membership] = {}
    for found in sorted(memberships, key=lambda m: (RULE_ORDER.index(m.rule), m.via_key)):
        best.setdefault(found.catalog_query_uuid, found)
    return best


def contained_keys(memberships: Mapping[str, Collection[Membership]], query_uuid: str) -> set[str]:
    """The keys of ``{content_key: its memberships}`` that are in ``query_uuid``'s catalogs."""
    return {
        key
        for key, found in memberships.items()
        if any(m.catalog_query_uuid == query_uuid for m in found)
    }
