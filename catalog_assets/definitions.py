"""The Dagster code location: assembles the project's assets, checks, jobs and resources."""

import dagster as dg

defs = dg.Definitions()
