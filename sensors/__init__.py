"""Dagster sensors for catalog-assets (the Kafka content-event sensor lives here)."""
