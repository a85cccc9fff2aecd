"""Commands that answer questions about catalogs: what holds a key, what a catalog holds,
whether it contains keys, what a key is linked with, and why a key is (not) in a catalog.

Each says what it found, with an exit status per outcome (``EXIT``), so that a script can tell
a miss from an unknown key or uuid and from a catalog query whose filter is invalid.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict
from enum import IntEnum
from typing import Any

from catalog_assets.cli.common import aligned, print_error, print_rows


class Exit(IntEnum):
    """The lookups' exit statuses (``contains``: 0 contained, 1 not, 2 unknown catalog)."""

    FOUND = 0
    NOTHING = 1  # known, but in no catalog / contains nothing / not contained / no links
    UNKNOWN_UUID = 2  # no catalog query or enterprise catalog has it (also: bad usage)
    UNKNOWN_CONTENT = 3  # no record has the key
    INVALID_QUERY = 4  # the catalog query's filter is invalid
    INVALID_CATALOG_QUERY = 5  # the enterprise catalog's query's filter is invalid


EXIT_HELP = (
    "exit status: 0 found; 1 known but nothing (in no catalog, contains nothing, not "
    "contained, no links); 2 unknown catalog uuid, bad usage or setup; 3 unknown content key; "
    "4 the catalog query's filter is invalid; 5 the enterprise catalog's query's filter is "
    "invalid."
)


def _exit(found: Any) -> int:
    return int(Exit[found.name])


def _for_people(rows: list[dict[str, Any]], yes_no: str) -> list[dict[str, Any]]:
    """``yes_no`` as yes/no, and an unknown value (a key without a content row) as ``-``;
    JSON keeps true/false and null."""
    people = [
        {name: "-" if value is None else value for name, value in row.items()} for row in rows
    ]
    if yes_no:
        people = [{**row, yes_no: "yes" if row[yes_no] else "no"} for row in people]
    return people


def _report(args: argparse.Namespace, result: Any, columns: Sequence[str], yes_no: str = "") -> int:
    """Rows as a table or JSON on stdout; anything but a plain find says why on stderr."""
    rows = result.rows
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print_rows(_for_people(rows, yes_no), columns)
    if result.found.name != "FOUND":
        print_error(args.command, result.message)
    return _exit(result.found)


def catalogs_for(args: argparse.Namespace) -> int:
    from catalog_assets.core import lookup

    columns = (
        "catalog_query_uuid",
        "catalog_query_title",
        "catalog_uuid",
        "catalog_title",
        "rule",
        "via_key",
    )
    return _report(args, lookup.find_catalogs(args.content_key), columns)


def contents_of(args: argparse.Namespace) -> int:
    from catalog_assets.core import lookup

    columns = ("content_key", "content_type", "title", "deleted")
    return _report(args, lookup.find_contents(args.uuid), columns, yes_no="deleted")


def related(args: argparse.Namespace) -> int:
    from catalog_assets.core import lookup

    columns = ("related_key", "direction", "relation", "content_type", "title", "deleted")
    return _report(args, lookup.find_related(args.content_key), columns, yes_no="deleted")


def contains(args: argparse.Namespace) -> int:
    """enterprise-catalog's ``contains_content_items``: any of the keys, by the membership
    rules; one line per key for people, the API's answer last (alone with ``--json``)."""
    from catalog_assets.core import lookup

    try:
        check = lookup.check_membership(args.catalog_uuid, args.content_keys)
    except lookup.UnknownCatalog as unknown:
        print_error(args.command, unknown)
        return Exit.UNKNOWN_UUID
    if problem := check.target.problem():
        print_error(args.command, problem[1])
    if not args.json:
        rows = [
            {
                "content_key": key,
                "contained": "yes" if found else "no",
                "rule": found.rule if found else "",
                "via_key": found.via_key if found else "",
            }
            for key, found in check.memberships.items()
        ]
        print_rows(rows, ("content_key", "contained", "rule", "via_key"))
    print(json.dumps({"contains_content_items": bool(check.contained)}))
    return Exit.FOUND if check.contained else Exit.NOTHING


def explain(args: argparse.Namespace) -> int:
    from catalog_assets.core import lookup

    found, explained, message = lookup.find_explanation(args.uuid, args.content_key)
    if explained is None:
        print_error(args.command, message)
        return _exit(found)
    if args.json:
        print(json.dumps(_as_json(explained), indent=2, default=str))
    else:
        for line in explanation_lines(explained):
            print(line)
    return Exit.FOUND if explained.in_catalog else Exit.NOTHING


def _as_json(explained: Any) -> dict[str, Any]:
    data = asdict(explained)
    data["in_catalog"] = explained.in_catalog
    data["rules_say"] = explained.rules_say
    data["store_agrees"] = explained.store_agrees
    return data


def _value(value: Any, present: bool = True) -> str:
    return json.dumps(value, ensure_ascii=False) if present else "missing"


def explanation_lines(explained: Any) -> list[str]:
    """The explanation for people: the filter's keys, then each verdict, then the answer."""
    where = f"catalog query {explained.query_uuid} ({explained.query_title})"
    if explained.catalog_uuid:
        where = f"enterprise catalog {explained.catalog_uuid} ({explained.catalog_title}), {where}"
    state = "tombstoned" if explained.deleted else "live"
    lines = [where, f"content {explained.content_key} ({explained.content_type}, {state})", ""]
    if explained.filter_error is not None:
        lines.append(f"filter: invalid: {explained.filter_error}")
    else:
        lines.append("filter, key by key in the order the engine evaluates them:")
        rows: list[list[Any]] = [["key", "operator", "filter value", "record value", "result"]]
        for key in explained.keys:
            if key.passed is None:
                rows.append([key.key, "", _value(key.filter_value), "", "ignored: a later key"])
                continue
            result = "pass" if key.passed else "fail"
            record_value = _value(key.record_value, key.present)
            rows.append([key.key, key.operator, _value(key.filter_value), record_value, result])
        lines += [f"  {line}" for line in aligned(rows)]
        lines.append(f"filter: {'match' if explained.filter_matches else 'no match'}")
    lines.append(f"allow-lists: {explained.allow_list}")
    forced = "forced in by this query" if explained.forced else "not forced in by this query"
    lines.append(f"forced course: {forced}")
    membership = "its own record is associated" if explained.associated else "not associated"
    for found in explained.memberships:
        membership += f"; {found.rule} via {found.via_key}"
    lines.append(f"membership in the store: {membership}")
    lines += [f"note: {note}" for note in explained.notes]
    verdict = "in the catalog" if explained.in_catalog else "not in the catalog"
    agrees = "the rules agree" if explained.store_agrees else "the rules DISAGREE"
    lines.append(f"answer: {verdict} (as the store holds it; {agrees})")
    return lines
