"""The data logic of each pipeline stage: plain functions on Arrow tables, no Dagster."""
