"""Jobs users launch (and the demo runs): the catalog, a day's ingest, a day's model."""

from __future__ import annotations

import dagster as dg

from dagster_defs.partitions import daily_partitions

catalog_job = dg.define_asset_job(
    "catalog_job",
    selection=dg.AssetSelection.assets("pins", "boards", "content_features"),
    description="Pins, boards and their content features (not partitioned).",
)

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.assets("engagements"),
    partitions_def=daily_partitions,
    description="One day of engagements.",
)

DAILY_MODEL_ASSETS = dg.AssetSelection.assets(
    "graph_edges",
    "sampled_neighborhoods",
    "training_examples",
    "omnisage_checkpoint",
    "entity_embeddings",
    "embedding_index",
    "published_embeddings",
)

daily_model_job = dg.define_asset_job(
    "daily_model_job",
    selection=DAILY_MODEL_ASSETS,
    partitions_def=daily_partitions,
    description="Graph, neighbourhoods, examples, training and published embeddings for one day.",
)

daily_pipeline_job = dg.define_asset_job(
    "daily_pipeline_job",
    selection=dg.AssetSelection.assets("engagements") | DAILY_MODEL_ASSETS,
    partitions_def=daily_partitions,
    description="A new day end to end: its engagements, then its graph, model and published embeddings "
    "(what the schedule and the input-folder sensor launch).",
)

evaluation_job = dg.define_asset_job(
    "evaluation_job",
    selection=dg.AssetSelection.assets("offline_evaluation"),
    partitions_def=daily_partitions,
    description="Day D's embeddings scored on day D + 1 (runs once D + 1 is ingested).",
)
