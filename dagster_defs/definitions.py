"""The Dagster code location: every OmniSage asset, check, job and resource.

Where things live is set by environment variables, so the UI, the demo and the tests
share one configuration: ``OMNISAGE_HOME`` (storage root, default ``./.omnisage``) and
``OMNISAGE_WORLD`` (synthetic world scale: tiny, demo, large; default demo),
``OMNISAGE_DATASET`` (a real dataset preset: ml-100k, ml-1m) or ``OMNISAGE_WORLD_PATH``
(a folder of Parquet files in the data contracts).
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from dagster_defs.automation import schedules, sensors
from dagster_defs.io_managers import ParquetIOManager
from dagster_defs.jobs import catalog_job, daily_model_job, daily_pipeline_job, evaluation_job, ingest_job
from dagster_defs.resources import LanceDBResource, StorageResource, WorldResource
from dagster_defs.training_launchers import training_launcher_from_env
from omnisage_assets import content, embeddings, evaluation, graph, ingest, sampling, study, training

ASSET_MODULES = [ingest, content, graph, sampling, training, embeddings, evaluation, study]


def storage_root() -> Path:
    return Path(os.environ.get("OMNISAGE_HOME", ".omnisage")).resolve()


def build_definitions(root: Path | None = None, world: WorldResource | None = None) -> dg.Definitions:
    root = root or storage_root()
    world = world or WorldResource(
        scale=os.environ.get("OMNISAGE_WORLD", "demo"),
        path=os.environ.get("OMNISAGE_WORLD_PATH") or None,
        dataset=os.environ.get("OMNISAGE_DATASET") or None,
    )
    return dg.Definitions(
        assets=dg.load_assets_from_modules(ASSET_MODULES),
        asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
        jobs=[catalog_job, ingest_job, daily_model_job, daily_pipeline_job, evaluation_job],
        schedules=schedules,
        sensors=sensors,
        resources={
            "io_manager": ParquetIOManager(root=str(root / "assets")),
            "storage": StorageResource(root=str(root)),
            "world": world,
            "lancedb": LanceDBResource(uri=str(root / "lancedb")),
            # Training runs in its own process (or ECS GPU task) and reports back through Dagster Pipes.
            "training_launcher": training_launcher_from_env(dict(os.environ)),
        },
    )


defs = build_definitions()
