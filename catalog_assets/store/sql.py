"""The SQL text of the catalog store's operations (the schema is in ``migrations.py``).

Shared statements use `?` placeholders, which the PostgreSQL backend turns into psycopg2's `%s`,
so none of them may contain a `%`. Every value is bound; nothing here is ever formatted.
"""

from __future__ import annotations

import polars as pl

# Staging tables: filled by the backend's bulk load, read by one set-based statement, dropped
# before the transaction ends. Each frame's columns are in the order of its table's columns.
STAGE_DDL = {
    "stage_content": """
        CREATE TEMP TABLE stage_content (
            content_key TEXT, content_type TEXT, parent_content_key TEXT, content_uuid TEXT,
            json_metadata TEXT, source_modified TIMESTAMP, content_hash TEXT
        )""",
    "stage_keys": "CREATE TEMP TABLE stage_keys (content_key TEXT)",
    "stage_query_uuids": "CREATE TEMP TABLE stage_query_uuids (uuid TEXT)",
    "stage_adds": "CREATE TEMP TABLE stage_adds (catalog_query_uuid TEXT, content_key TEXT)",
    "stage_removes": "CREATE TEMP TABLE stage_removes (catalog_query_uuid TEXT, content_key TEXT)",
    "stage_queries": """
        CREATE TEMP TABLE stage_queries (
            uuid TEXT, title TEXT, content_filter TEXT, filter_hash TEXT, is_valid BOOLEAN,
            error TEXT, warnings TEXT
        )""",
    "stage_catalogs": """
        CREATE TEMP TABLE stage_catalogs (
            uuid TEXT, title TEXT, enterprise_uuid TEXT, catalog_query_uuid TEXT
        )""",
    "stage_relations": """
        CREATE TEMP TABLE stage_relations (content_key TEXT, related_key TEXT, relation TEXT)""",
}
STAGE_DROP = {
    "stage_content": "DROP TABLE IF EXISTS stage_content",
    "stage_keys": "DROP TABLE IF EXISTS stage_keys",
    "stage_query_uuids": "DROP TABLE IF EXISTS stage_query_uuids",
    "stage_adds": "DROP TABLE IF EXISTS stage_adds",
    "stage_removes": "DROP TABLE IF EXISTS stage_removes",
    "stage_queries": "DROP TABLE IF EXISTS stage_queries",
    "stage_catalogs": "DROP TABLE IF EXISTS stage_catalogs",
    "stage_relations": "DROP TABLE IF EXISTS stage_relations",
}
CONTENT_FRAME = {
    "content_key": pl.String,
    "content_type": pl.String,
    "parent_content_key": pl.String,
    "content_uuid": pl.String,
    "json_metadata": pl.String,
    "source_modified": pl.Datetime("us"),
    "content_hash": pl.String,
}
KEYS_FRAME = {"content_key": pl.String}
QUERY_UUIDS_FRAME = {"uuid": pl.String}
PAIRS_FRAME = {"catalog_query_uuid": pl.String, "content_key": pl.String}
QUERIES_FRAME = {
    "uuid": pl.String,
    "title": pl.String,
    "content_filter": pl.String,
    "filter_hash": pl.String,
    "is_valid": pl.Boolean,
    "error": pl.String,
    "warnings": pl.String,
}
CATALOGS_FRAME = {
    "uuid": pl.String,
    "title": pl.String,
    "enterprise_uuid": pl.String,
    "catalog_query_uuid": pl.String,
}
RELATIONS_FRAME = {"content_key": pl.String, "related_key": pl.String, "relation": pl.String}

# Content ----------------------------------------------------------------------------------

SELECT_CONTENT_STATE = """
SELECT content_key, content_hash, source_modified, deleted_at IS NOT NULL, content_type
FROM content_metadata"""
SELECT_LIVE_CONTENT = """
SELECT content_key, json_metadata FROM content_metadata WHERE deleted_at IS NULL"""
SELECT_LIVE_FIELDS = """
SELECT content_key, NULL{columns} FROM content_metadata WHERE deleted_at IS NULL"""
"""Each live row's key, NULL (its whole record is not needed) and ``columns``: the backend's
constant field expression once per field (the paths are bound)."""
PG_SELECT_LIVE_FIELDS = """
SELECT content_key, NULL{columns}
FROM (SELECT content_key, json_metadata::json AS m FROM content_metadata
      WHERE deleted_at IS NULL AND strpos(json_metadata, ?) = 0 OFFSET 0) live
UNION ALL
SELECT content_key, json_metadata{nulls} FROM content_metadata
WHERE deleted_at IS NULL AND strpos(json_metadata, ?) > 0"""
"""Each record validated once (``OFFSET 0`` keeps the subquery from being inlined into every
field's expression). PostgreSQL's JSON functions refuse a string holding ``\\u0000``: such a
record (the bound text) comes whole, for Python to read its fields."""
SELECT_CONTENT = """
SELECT content_key, content_type, parent_content_key, content_uuid, json_metadata,
       source_modified, content_hash, updated_at, deleted_at
FROM content_metadata WHERE content_key = ?"""
SELECT_STAGED_EXISTING = """
SELECT c.content_key
FROM content_metadata c JOIN stage_content s ON s.content_key = c.content_key"""
SELECT_STAGED_STORED_MODIFIED = """
SELECT c.content_key, c.source_modified
FROM content_metadata c JOIN stage_content s ON s.content_key = c.content_key"""
# The stale guard and the unchanged check live in the WHERE of the conflict update, so they hold
# against whatever another writer committed in the meantime; RETURNING names the rows written.
UPSERT_STAGED_CONTENT = """
INSERT INTO content_metadata (
    content_key, content_type, parent_content_key, content_uuid, json_metadata,
    source_modified, content_hash, updated_at, deleted_at
)
SELECT content_key, content_type, parent_content_key, content_uuid, json_metadata,
       source_modified, content_hash, CAST(? AS TIMESTAMP), NULL
FROM stage_content
ON CONFLICT (content_key) DO UPDATE SET
    content_type = excluded.content_type,
    parent_content_key = excluded.parent_content_key,
    content_uuid = excluded.content_uuid,
    json_metadata = excluded.json_metadata,
    source_modified = excluded.source_modified,
    content_hash = excluded.content_hash,
    updated_at = excluded.updated_at,
    deleted_at = NULL
WHERE (
        content_metadata.source_modified IS NULL
        OR excluded.source_modified IS NULL
        OR excluded.source_modified >= content_metadata.source_modified
    )
    AND (
        content_metadata.content_hash <> excluded.content_hash
        OR content_metadata.deleted_at IS NOT NULL
    )
RETURNING content_key"""
TOMBSTONE_STAGED_KEYS = """
UPDATE content_metadata SET deleted_at = ?, updated_at = ?
WHERE deleted_at IS NULL AND updated_at < ?
  AND content_key IN (SELECT content_key FROM stage_keys)
RETURNING content_key"""
# Tombstoned content belongs to no catalog: its pairs go in the same transaction, so that no
# reader (or a crash before the association step) ever sees a pair pointing at a tombstone.
DELETE_PAIRS_OF_STAGED_TOMBSTONES = """
DELETE FROM catalog_query_content
WHERE content_key IN (SELECT content_key FROM stage_keys)
  AND content_key IN (SELECT content_key FROM content_metadata WHERE deleted_at IS NOT NULL)"""
DELETE_PAIRS_OF_CONTENT = "DELETE FROM catalog_query_content WHERE content_key = ?"
TOMBSTONE_ONE = """
UPDATE content_metadata
SET deleted_at = ?, updated_at = ?,
    source_modified = COALESCE(CAST(? AS TIMESTAMP), source_modified)
WHERE content_key = ? AND deleted_at IS NULL
  AND (
      source_modified IS NULL
      OR CAST(? AS TIMESTAMP) IS NULL
      OR CAST(? AS TIMESTAMP) >= source_modified
  )"""

# Catalog queries --------------------------------------------------------------------------

SELECT_QUERIES = """
SELECT uuid, title, content_filter, filter_hash, is_valid, error, warnings, updated_at
FROM catalog_query ORDER BY uuid"""
DELETE_CONTENT_OF_UNSTAGED_QUERIES = """
DELETE FROM catalog_query_content
WHERE catalog_query_uuid IN (
    SELECT q.uuid FROM catalog_query q
    WHERE NOT EXISTS (SELECT 1 FROM stage_queries s WHERE s.uuid = q.uuid)
)"""
DELETE_UNSTAGED_QUERIES = """
DELETE FROM catalog_query
WHERE NOT EXISTS (SELECT 1 FROM stage_queries s WHERE s.uuid = catalog_query.uuid)"""
UPSERT_STAGED_QUERIES = """
INSERT INTO catalog_query (
    uuid, title, content_filter, filter_hash, is_valid, error, warnings, updated_at
)
SELECT uuid, title, content_filter, filter_hash, is_valid, error, warnings, CAST(? AS TIMESTAMP)
FROM stage_queries
ON CONFLICT (uuid) DO UPDATE SET
    title = excluded.title,
    content_filter = excluded.content_filter,
    filter_hash = excluded.filter_hash,
    is_valid = excluded.is_valid,
    error = excluded.error,
    warnings = excluded.warnings,
    updated_at = excluded.updated_at
WHERE catalog_query.title IS DISTINCT FROM excluded.title
   OR catalog_query.content_filter <> excluded.content_filter
   OR catalog_query.filter_hash <> excluded.filter_hash
   OR catalog_query.is_valid <> excluded.is_valid
   OR catalog_query.error IS DISTINCT FROM excluded.error
   OR catalog_query.warnings <> excluded.warnings"""
SELECT_CATALOGS = """
SELECT uuid, title, enterprise_uuid, catalog_query_uuid FROM enterprise_catalog ORDER BY uuid"""
DELETE_UNSTAGED_CATALOGS = """
DELETE FROM enterprise_catalog
WHERE NOT EXISTS (SELECT 1 FROM stage_catalogs s WHERE s.uuid = enterprise_catalog.uuid)"""
UPSERT_STAGED_CATALOGS = """
INSERT INTO enterprise_catalog (uuid, title, enterprise_uuid, catalog_query_uuid)
SELECT uuid, title, enterprise_uuid, catalog_query_uuid FROM stage_catalogs
ON CONFLICT (uuid) DO UPDATE SET
    title = excluded.title,
    enterprise_uuid = excluded.enterprise_uuid,
    catalog_query_uuid = excluded.catalog_query_uuid
WHERE enterprise_catalog.title IS DISTINCT FROM excluded.title
   OR enterprise_catalog.enterprise_uuid IS DISTINCT FROM excluded.enterprise_uuid
   OR enterprise_catalog.catalog_query_uuid IS DISTINCT FROM excluded.catalog_query_uuid"""

# Associations -----------------------------------------------------------------------------

SELECT_ASSOCIATIONS = "SELECT catalog_query_uuid, content_key FROM catalog_query_content"
SELECT_ASSOCIATIONS_OF_STAGED_QUERIES = """
SELECT c.catalog_query_uuid, c.content_key
FROM catalog_query_content c JOIN stage_query_uuids s ON s.uuid = c.catalog_query_uuid"""
DELETE_STAGED_REMOVES = """
DELETE FROM catalog_query_content
USING stage_removes s
WHERE catalog_query_content.catalog_query_uuid = s.catalog_query_uuid
  AND catalog_query_content.content_key = s.content_key"""
# The anti-join skips pairs already there without a conflict check each (re-applying a full set
# of adds is then cheap), the order makes the index inserts local, and ON CONFLICT covers pairs
# another writer adds meanwhile.
INSERT_STAGED_ADDS = """
INSERT INTO catalog_query_content (catalog_query_uuid, content_key, added_at)
SELECT s.catalog_query_uuid, s.content_key, CAST(? AS TIMESTAMP)
FROM stage_adds s
WHERE NOT EXISTS (
    SELECT 1 FROM catalog_query_content c
    WHERE c.catalog_query_uuid = s.catalog_query_uuid AND c.content_key = s.content_key
)
AND EXISTS (
    SELECT 1 FROM content_metadata m WHERE m.content_key = s.content_key AND m.deleted_at IS NULL
)
ORDER BY s.catalog_query_uuid, s.content_key
ON CONFLICT DO NOTHING"""
SELECT_QUERIES_OF_CONTENT = """
SELECT catalog_query_uuid, added_at FROM catalog_query_content WHERE content_key = ?"""
DELETE_PAIR = """
DELETE FROM catalog_query_content WHERE catalog_query_uuid = ? AND content_key = ?"""
INSERT_PAIR = """
INSERT INTO catalog_query_content (catalog_query_uuid, content_key, added_at)
VALUES (?, ?, ?) ON CONFLICT DO NOTHING"""

# Lookups ----------------------------------------------------------------------------------

# Why a key is in a query's catalogs (``core.catalog_contents.MembershipRule``): its own record
# is associated; or it is the course of an associated live run; or it is a live run whose course
# is associated. One row per (query, rule, associated key); bind the key three times.
SELECT_MEMBERSHIPS = """
SELECT catalog_query_uuid, 'associated' AS rule, content_key AS via_key
FROM catalog_query_content WHERE content_key = ?
UNION ALL
SELECT a.catalog_query_uuid, 'course_of_associated_run', a.content_key
FROM content_metadata run
JOIN catalog_query_content a ON a.content_key = run.content_key
WHERE run.parent_content_key = ? AND run.deleted_at IS NULL
UNION ALL
SELECT a.catalog_query_uuid, 'run_of_associated_course', a.content_key
FROM content_metadata run
JOIN catalog_query_content a ON a.content_key = run.parent_content_key
WHERE run.content_key = ? AND run.deleted_at IS NULL"""
SELECT_CATALOGS_FOR = (
    """
SELECT ec.uuid, ec.title, ec.enterprise_uuid, m.catalog_query_uuid, q.title, m.rule, m.via_key
FROM ("""
    + SELECT_MEMBERSHIPS
    + """
) m
LEFT JOIN catalog_query q ON q.uuid = m.catalog_query_uuid
LEFT JOIN enterprise_catalog ec ON ec.catalog_query_uuid = m.catalog_query_uuid
ORDER BY m.catalog_query_uuid, ec.uuid"""
)
SELECT_CONTENTS_OF = """
SELECT a.content_key, c.content_type, c.json_metadata, c.deleted_at IS NOT NULL
FROM catalog_query_content a
LEFT JOIN content_metadata c ON c.content_key = a.content_key
WHERE a.catalog_query_uuid = ?
   OR a.catalog_query_uuid IN (SELECT catalog_query_uuid FROM enterprise_catalog WHERE uuid = ?)"""

# Related content (``content_relation``) ---------------------------------------------------

SELECT_RELATIONS = "SELECT content_key, related_key, relation FROM content_relation"
# The staged rows become the table (every row), or the rows of the staged keys.
DELETE_UNSTAGED_RELATIONS = """
DELETE FROM content_relation
WHERE NOT EXISTS (
    SELECT 1 FROM stage_relations s
    WHERE s.content_key = content_relation.content_key
      AND s.related_key = content_relation.related_key
      AND s.relation = content_relation.relation
)"""
DELETE_UNSTAGED_RELATIONS_OF_STAGED_KEYS = """
DELETE FROM content_relation
WHERE content_relation.content_key IN (SELECT content_key FROM stage_keys)
  AND NOT EXISTS (
    SELECT 1 FROM stage_relations s
    WHERE s.content_key = content_relation.content_key
      AND s.related_key = content_relation.related_key
      AND s.relation = content_relation.relation
)"""
INSERT_STAGED_RELATIONS = """
INSERT INTO content_relation (content_key, related_key, relation)
SELECT s.content_key, s.related_key, s.relation FROM stage_relations s
WHERE NOT EXISTS (
    SELECT 1 FROM content_relation r
    WHERE r.content_key = s.content_key AND r.related_key = s.related_key
      AND r.relation = s.relation
)
ON CONFLICT DO NOTHING"""
# Both directions of a key's links, each with the other record (NULL columns: not stored).
SELECT_RELATED = """
SELECT 'declares' AS direction, r.related_key, r.relation, c.content_type, c.json_metadata,
       c.deleted_at IS NOT NULL
FROM content_relation r LEFT JOIN content_metadata c ON c.content_key = r.related_key
WHERE r.content_key = ?
UNION ALL
SELECT 'declared_by', r.content_key, r.relation, c.content_type, c.json_metadata,
       c.deleted_at IS NOT NULL
FROM content_relation r LEFT JOIN content_metadata c ON c.content_key = r.content_key
WHERE r.related_key = ?"""

# Dead letters -----------------------------------------------------------------------------

INSERT_DEAD_LETTER = """
INSERT INTO event_dead_letter (
    topic, partition, "offset", key, headers, value, error, received_at, replayed_at, dedupe_key
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING"""
DEAD_LETTER_EXISTS = "SELECT count(*) FROM event_dead_letter WHERE dedupe_key = ?"
# A message that fails again after its letter was replayed (a sensor replay, say) is open again.
REOPEN_DEAD_LETTER = """
UPDATE event_dead_letter SET replayed_at = NULL, error = ?, received_at = ?
WHERE dedupe_key = ? AND replayed_at IS NOT NULL"""
SELECT_DEAD_LETTER_IDS = "SELECT id, replayed_at FROM event_dead_letter"

# Event records waiting for their run ------------------------------------------------------

INSERT_EVENT_PAYLOAD = """
INSERT INTO event_payload (ref, content_key, json_metadata, received_at) VALUES (?, ?, ?, ?)
ON CONFLICT DO NOTHING"""
SELECT_EVENT_PAYLOAD = "SELECT json_metadata FROM event_payload WHERE ref = ?"
DELETE_EVENT_PAYLOAD = "DELETE FROM event_payload WHERE ref = ?"
COUNT_ASSOCIATIONS = "SELECT count(*) FROM catalog_query_content"
_DANGLING = """ FROM catalog_query_content a WHERE NOT EXISTS (SELECT 1 FROM content_metadata c
WHERE c.content_key = a.content_key AND c.deleted_at IS NULL)"""
COUNT_DANGLING_ASSOCIATIONS = "SELECT count(*)" + _DANGLING
SELECT_DANGLING_ASSOCIATIONS = (
    f"SELECT a.catalog_query_uuid, a.content_key{_DANGLING} ORDER BY 1, 2 LIMIT ?"
)
SELECT_DEAD_LETTERS = """
SELECT topic, partition, "offset", key, headers, value, error, received_at, replayed_at, id
FROM event_dead_letter
WHERE replayed_at IS NULL OR CAST(? AS BOOLEAN)
ORDER BY id"""
MARK_DEAD_LETTER_REPLAYED = """
UPDATE event_dead_letter SET replayed_at = ? WHERE id = ? AND replayed_at IS NULL"""


# DuckDB only -----------------------------------------------------------------------------

DUCK_COUNT_PAIRS = "SELECT count(*) FROM catalog_query_content"
DUCK_PAIRS_TABLE_DDL = """
SELECT sql FROM duckdb_tables()
WHERE table_name = 'catalog_query_content'
  AND database_name = current_database() AND schema_name = current_schema()"""
DUCK_PAIRS_INDEX_DDL = """
SELECT sql FROM duckdb_indexes()
WHERE table_name = 'catalog_query_content' AND sql IS NOT NULL
  AND database_name = current_database() AND schema_name = current_schema()"""
DUCK_KEEP_PAIRS = """
CREATE TEMP TABLE keep_pairs AS
SELECT c.* FROM catalog_query_content c
WHERE NOT EXISTS (
    SELECT 1 FROM stage_removes s
    WHERE s.catalog_query_uuid = c.catalog_query_uuid AND s.content_key = c.content_key
)"""
DUCK_COUNT_KEEP_PAIRS = "SELECT count(*) FROM keep_pairs"
DUCK_DROP_PAIRS = "DROP TABLE catalog_query_content"
DUCK_RESTORE_PAIRS = """
INSERT INTO catalog_query_content
SELECT * FROM keep_pairs ORDER BY catalog_query_uuid, content_key"""
DUCK_DROP_KEEP_PAIRS = "DROP TABLE IF EXISTS keep_pairs"

# PostgreSQL only -------------------------------------------------------------------------

PG_BULK_WORK_MEM = "SET LOCAL work_mem = '256MB'"
PG_ADVISORY_XACT_LOCK = "SELECT pg_advisory_xact_lock(?)"
PG_COPY_ASSOCIATIONS_OUT = (
    "COPY (SELECT catalog_query_uuid, content_key FROM catalog_query_content) "
    "TO STDOUT WITH (FORMAT csv)"
)
PG_COPY_ASSOCIATIONS_OF_STAGED_QUERIES_OUT = (
    "COPY (" + SELECT_ASSOCIATIONS_OF_STAGED_QUERIES + ") TO STDOUT WITH (FORMAT csv)"
)

# The filters associations were computed with (swing guardrail) ----------------------------

SELECT_APPLIED_FILTERS = "SELECT catalog_query_uuid, filter_hash FROM catalog_query_applied_filter"
DELETE_APPLIED_FILTER = "DELETE FROM catalog_query_applied_filter WHERE catalog_query_uuid = ?"
INSERT_APPLIED_FILTER = """
INSERT INTO catalog_query_applied_filter (catalog_query_uuid, filter_hash, applied_at)
VALUES (?, ?, ?)"""
