"""The store's schema, as numbered migrations: each version's statements run once, in order, in
one transaction with its row in ``catalog_schema_version``. Code refuses a store whose version
is newer than ``SCHEMA_VERSION``; ``catalog-assets migrate`` (or any run) upgrades an older one.
"""

from __future__ import annotations

CREATE_SCHEMA_VERSION = """
CREATE TABLE IF NOT EXISTS catalog_schema_version (
    version INTEGER PRIMARY KEY,
    applied_at TIMESTAMP NOT NULL
)"""
SELECT_SCHEMA_VERSIONS = "SELECT version FROM catalog_schema_version"
SCHEMA_VERSION_TABLE_EXISTS = """
SELECT count(*) FROM information_schema.tables
WHERE table_name = 'catalog_schema_version' AND table_schema = current_schema()"""
INSERT_SCHEMA_VERSION = "INSERT INTO catalog_schema_version (version, applied_at) VALUES (?, ?)"

# Each version's statements run once, in order, in one transaction with its version row.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """
        CREATE TABLE IF NOT EXISTS content_metadata (
            content_key TEXT PRIMARY KEY,
            content_type TEXT NOT NULL,
            parent_content_key TEXT,
            content_uuid TEXT,
            json_metadata TEXT NOT NULL,
            source_modified TIMESTAMP,
            content_hash TEXT NOT NULL,
            updated_at TIMESTAMP NOT NULL,
            deleted_at TIMESTAMP
        )""",
        """
        CREATE TABLE IF NOT EXISTS catalog_query (
            uuid TEXT PRIMARY KEY,
            title TEXT,
            content_filter TEXT NOT NULL,
            filter_hash TEXT NOT NULL,
            is_valid BOOLEAN NOT NULL,
            error TEXT,
            warnings TEXT NOT NULL,
            updated_at TIMESTAMP NOT NULL
        )""",
        """
        CREATE TABLE IF NOT EXISTS enterprise_catalog (
            uuid TEXT PRIMARY KEY,
            title TEXT,
            enterprise_uuid TEXT,
            catalog_query_uuid TEXT
        )""",
        """
        CREATE TABLE IF NOT EXISTS catalog_query_content (
            catalog_query_uuid TEXT,
            content_key TEXT,
            added_at TIMESTAMP NOT NULL,
            PRIMARY KEY (catalog_query_uuid, content_key)
        )""",
        "CREATE SEQUENCE IF NOT EXISTS event_dead_letter_id_seq",
        """
        CREATE TABLE IF NOT EXISTS event_dead_letter (
            id BIGINT PRIMARY KEY DEFAULT nextval('event_dead_letter_id_seq'),
            topic TEXT,
            partition INTEGER,
            "offset" BIGINT,
            key BYTEA,
            headers TEXT,
            value BYTEA,
            error TEXT NOT NULL,
            received_at TIMESTAMP NOT NULL,
            replayed_at TIMESTAMP
        )""",
    ),
    # The filter each query's associations were last computed with, for the swing guardrail
    # ("its filter has not changed since the last refresh").
    2: (
        """
        CREATE TABLE IF NOT EXISTS catalog_query_applied_filter (
            catalog_query_uuid TEXT PRIMARY KEY,
            filter_hash TEXT NOT NULL,
            applied_at TIMESTAMP NOT NULL
        )""",
    ),
    # Dead letters are stored once per message (a tick that fails and runs again must not store
    # them twice); `dedupe_key` is set for letters that know their topic, partition and offset.
    # Event records too large for run config wait here for their run (`event_payload`).
    3: (
        "ALTER TABLE event_dead_letter ADD COLUMN IF NOT EXISTS dedupe_key TEXT",
        "CREATE UNIQUE INDEX IF NOT EXISTS event_dead_letter_dedupe "
        "ON event_dead_letter (dedupe_key)",
        """
        CREATE TABLE IF NOT EXISTS event_payload (
            ref TEXT PRIMARY KEY,
            content_key TEXT NOT NULL,
            json_metadata TEXT NOT NULL,
            received_at TIMESTAMP NOT NULL
        )""",
    ),
    # The links between content that records declare (a course's programs, a program's
    # courses, a visible active pathway's steps), as enterprise-catalog's
    # `associated_content_metadata` keeps them; one row per declaring record and link.
    4: (
        """
        CREATE TABLE IF NOT EXISTS content_relation (
            content_key TEXT NOT NULL,
            related_key TEXT NOT NULL,
            relation TEXT NOT NULL,
            PRIMARY KEY (content_key, related_key, relation)
        )""",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)
"""The schema version this code writes and reads; a store at a newer version is refused."""


# Statements that only PostgreSQL runs, per schema version: DuckDB scans a million rows faster
# than it maintains a second index on them.
PG_EXTRA_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE INDEX IF NOT EXISTS catalog_query_content_content_key "
        "ON catalog_query_content (content_key)",
    ),
    # Membership lookups find a course's runs, and `related` the records naming a key.
    4: (
        "CREATE INDEX IF NOT EXISTS content_metadata_parent_content_key "
        "ON content_metadata (parent_content_key)",
        "CREATE INDEX IF NOT EXISTS content_relation_related_key ON content_relation (related_key)",
    ),
}
