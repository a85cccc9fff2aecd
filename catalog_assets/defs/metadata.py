"""What the Dagster UI shows about each asset, in one place: owners, kinds, tags, group
purposes, the store tables each asset writes (name and column schema), and links from each
asset to its source code.

Attributes that hold everywhere are set where each asset is defined. Those that depend on the
environment (the configured store's kind, the repository the code came from) are added by
``for_environment`` when definitions load, never at import.
"""

from __future__ import annotations

import subprocess
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg

import catalog_assets

OWNERS = ["team:data-platform"]

CATALOG_GROUP = "catalog"
EVENTS_GROUP = "content_events"
PARITY_GROUP = "parity"

# Dagster 1.13 has no group descriptions (its GraphQL ``AssetGroup`` carries a name and keys
# only), so each asset's description ends with its group's purpose.
GROUP_PURPOSES: Mapping[str, str] = {
    CATALOG_GROUP: (
        "Group `catalog`, the bulk lane: the daily `full_refresh` re-reads all content and "
        "catalog queries, writes only what changed and repairs whatever the event lane missed."
    ),
    EVENTS_GROUP: (
        "Group `content_events`, the event lane: content changes from Kafka reach every "
        "catalog within seconds, one partition per content key; the bulk lane later verifies."
    ),
    PARITY_GROUP: (
        "Group `parity`, migration evidence: whether the store gives each catalog query what "
        "course-discovery's search gives enterprise-catalog's per-query sync (job "
        "`parity_report`; its weekly schedule is off by default)."
    ),
}


def describe(group: str, what: str, tables: Sequence[str]) -> str:
    """An asset's UI description: what it does, the tables it writes, its group's purpose."""
    written = ", ".join(f"`{table}`" for table in tables)
    return f"{what}\n\nWrites {written} in the catalog store.\n\n{GROUP_PURPOSES[group]}"


def lane_tags(lane: str) -> dict[str, str]:
    """Tags to filter the asset catalog by lane (the event jobs carry the same tag)."""
    return {"catalog/lane": lane}


# --------------------------------------------------------------------------------------------
# The store's tables, as ``catalog_assets.store.migrations`` creates them (a test compares)
# --------------------------------------------------------------------------------------------


def _column(
    name: str, type_: str, description: str, *, nullable: bool = True, unique: bool = False
) -> dg.TableColumn:
    return dg.TableColumn(
        name,
        type_,
        description=description,
        constraints=dg.TableColumnConstraints(nullable=nullable, unique=unique),
    )


def _key(name: str, description: str) -> dg.TableColumn:
    return _column(name, "text", description, nullable=False, unique=True)


TABLES: Mapping[str, dg.TableSchema] = {
    "content_metadata": dg.TableSchema(
        columns=[
            _key("content_key", "The document's `key`, or its `uuid` for programs and pathways."),
            _column(
                "content_type",
                "text",
                "The `aggregation_key` prefix: course, courserun, program, learnerpathway.",
                nullable=False,
            ),
            _column("parent_content_key", "text", "A course run's course key."),
            _column("content_uuid", "text", "The content's uuid."),
            _column(
                "json_metadata",
                "text",
                "The search document updated with its full record (JSON text).",
                nullable=False,
            ),
            _column("source_modified", "timestamp", "The source's `modified` (UTC): stale guard."),
            _column(
                "content_hash",
                "text",
                "sha256 of the canonical record: a new hash is an update.",
                nullable=False,
            ),
            _column(
                "updated_at", "timestamp", "When the row was last written (UTC).", nullable=False
            ),
            _column("deleted_at", "timestamp", "Tombstone time (UTC); rows are never dropped."),
        ]
    ),
    "catalog_query": dg.TableSchema(
        columns=[
            _key("uuid", "The catalog query's uuid."),
            _column("title", "text", "Its title."),
            _column(
                "content_filter",
                "text",
                "The filter, JSON text in its original key order.",
                nullable=False,
            ),
            _column("filter_hash", "text", "sha256 of the filter text.", nullable=False),
            _column("is_valid", "boolean", "Whether the filter engine accepts it.", nullable=False),
            _column("error", "text", "Why the filter is invalid (invalid filters are skipped)."),
            _column(
                "warnings",
                "text",
                "JSON array: legal but suspicious parts of the filter.",
                nullable=False,
            ),
            _column(
                "updated_at", "timestamp", "When the row was last written (UTC).", nullable=False
            ),
        ]
    ),
    "enterprise_catalog": dg.TableSchema(
        columns=[
            _key("uuid", "The enterprise catalog's uuid."),
            _column("title", "text", "Its title."),
            _column("enterprise_uuid", "text", "The enterprise customer it belongs to."),
            _column("catalog_query_uuid", "text", "The catalog query that defines its content."),
        ]
    ),
    "catalog_query_content": dg.TableSchema(
        columns=[
            _column("catalog_query_uuid", "text", "A valid catalog query.", nullable=False),
            _column("content_key", "text", "A live record its filter matches.", nullable=False),
            _column("added_at", "timestamp", "When the pair was added (UTC).", nullable=False),
        ],
        constraints=dg.TableConstraints(other=["primary key (catalog_query_uuid, content_key)"]),
    ),
    "catalog_query_applied_filter": dg.TableSchema(
        columns=[
            _key("catalog_query_uuid", "A catalog query whose associations were computed."),
            _column(
                "filter_hash",
                "text",
                "The filter they were computed with (the swing guardrail compares it).",
                nullable=False,
            ),
            _column("applied_at", "timestamp", "When (UTC).", nullable=False),
        ]
    ),
    "content_relation": dg.TableSchema(
        columns=[
            _column("content_key", "text", "The record that declares the link.", nullable=False),
            _column("related_key", "text", "The content it names.", nullable=False),
            _column(
                "relation",
                "text",
                "course_program, program_course, pathway_program or pathway_course.",
                nullable=False,
            ),
        ],
        constraints=dg.TableConstraints(other=["primary key (content_key, related_key, relation)"]),
    ),
    "event_dead_letter": dg.TableSchema(
        columns=[
            _column("id", "bigint", "Row id.", nullable=False, unique=True),
            _column("topic", "text", "Kafka topic of the message."),
            _column("partition", "integer", "Its partition."),
            _column("offset", "bigint", "Its offset."),
            _column("key", "bytea", "The message key, raw bytes."),
            _column("headers", "text", "The message headers (JSON text)."),
            _column("value", "bytea", "The message value, raw bytes."),
            _column("error", "text", "Why the event could not be used.", nullable=False),
            _column("received_at", "timestamp", "When it was stored (UTC).", nullable=False),
            _column("replayed_at", "timestamp", "When a replay applied it (UTC)."),
            _column(
                "dedupe_key",
                "text",
                "One letter per message and key (sha256 of its coordinates).",
                unique=True,
            ),
        ]
    ),
    "event_payload": dg.TableSchema(
        columns=[
            _key("ref", "The reference a run's config carries instead of the record."),
            _column("content_key", "text", "The record's content key.", nullable=False),
            _column("json_metadata", "text", "The event's record (JSON text).", nullable=False),
            _column("received_at", "timestamp", "When it was stored (UTC).", nullable=False),
        ]
    ),
}


def table_metadata(table: str, *also: str) -> dict[str, Any]:
    """The table an asset stands for (``dagster/table_name``, ``dagster/column_schema``), and
    the schema of each other table it writes (``column_schema/<table>``)."""
    return {
        "dagster/table_name": table,
        "dagster/column_schema": TABLES[table],
        **{f"column_schema/{other}": TABLES[other] for other in also},
    }


def store_kind(store_url: str) -> str:
    """The kind (UI icon) of the configured catalog store."""
    return "postgres" if store_url.startswith(("postgresql://", "postgres://")) else "duckdb"


# --------------------------------------------------------------------------------------------
# Source code references
# --------------------------------------------------------------------------------------------

PACKAGE_DIR = Path(catalog_assets.__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent


@dataclass(frozen=True)
class GitRemote:
    """Where the code is hosted: a GitHub or GitLab web URL, and the branch (or commit)."""

    url: str
    branch: str


def git_web_url(remote: str) -> str | None:
    """The web URL of a GitHub or GitLab remote (ssh or https), without credentials or
    ``.git``; None for other hosts, which Dagster cannot link to."""
    remote = remote.strip()
    if "://" not in remote and ":" in remote:  # scp-like: git@github.com:org/repo.git
        user_host, _, path = remote.partition(":")
        host = user_host.rpartition("@")[2]
    else:
        parts = urlsplit(remote)
        host, path = parts.hostname or "", parts.path
    path = path.strip("/").removesuffix(".git")
    if not host or not path or ("github" not in host and "gitlab" not in host):
        return None
    return f"https://{host}/{path}"


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def read_git_remote(root: Path = REPO_ROOT) -> GitRemote | None:
    """The repository's ``origin`` (else its only remote) and current branch (else commit),
    read from the local checkout when definitions load; None outside a checkout of this
    repository (an installed package) or without a GitHub/GitLab remote."""
    toplevel = _git(root, "rev-parse", "--show-toplevel")
    if toplevel is None or Path(toplevel).resolve() != root.resolve():
        return None
    remote = _git(root, "config", "--get", "remote.origin.url")
    if remote is None:
        remotes = (_git(root, "remote") or "").split()
        remote = (
            _git(root, "config", "--get", f"remote.{remotes[0]}.url") if len(remotes) == 1 else None
        )
    url = git_web_url(remote) if remote else None
    if url is None:
        return None
    branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
    if branch in (None, "HEAD"):  # detached: link the commit
        branch = _git(root, "rev-parse", "HEAD")
    return GitRemote(url, branch) if branch else None


def with_code_references(
    assets: Sequence[dg.AssetsDefinition], remote: GitRemote | None
) -> list[dg.AssetsDefinition]:
    """Each asset linked to the function that defines it: on the hosted repository when the
    remote is known, else as a local file and line."""
    # Both helpers are beta in Dagster 1.13 and warn on every load; we chose them knowingly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        linked = dg.with_source_code_references(assets)
        if remote is not None:
            linked = dg.link_code_references_to_git(
                linked,
                git_url=remote.url,
                git_branch=remote.branch,
                file_path_mapping=dg.AnchorBasedFilePathMapping(
                    local_file_anchor=PACKAGE_DIR / "__init__.py",
                    file_anchor_path_in_repository="catalog_assets/__init__.py",
                ),
            )
    return list(linked)  # type: ignore[arg-type]


def for_environment(
    assets: Sequence[dg.AssetsDefinition],
    *,
    store_url: str,
    freshness: Mapping[str, dg.FreshnessPolicy | None],
    remote: GitRemote | None,
) -> list[dg.AssetsDefinition]:
    """The assets with what depends on the environment: the configured store's kind, each
    group's freshness policy, and source code references."""

    def attach(spec: dg.AssetSpec) -> dg.AssetSpec:
        spec = spec.merge_attributes(kinds={store_kind(store_url)})
        policy = freshness.get(spec.group_name or "")
        return spec.replace_attributes(freshness_policy=policy) if policy else spec

    return with_code_references(dg.map_asset_specs(attach, assets), remote)
