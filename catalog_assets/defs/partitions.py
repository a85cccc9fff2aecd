"""Partitions: one ``content_item`` partition per content key, added as content appears."""

import dagster as dg

CONTENT_KEYS = dg.DynamicPartitionsDefinition(name="content_keys")
