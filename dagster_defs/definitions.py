"""The Dagster code location: every OmniSage asset, check, job and resource.

Where things live is set by environment variables, so the UI, the demo and the tests
share one configuration: ``OMNISAGE_HOME`` (storage root: a folder, default ``./.omnisage``,
or ``s3://bucket/prefix`` for the AWS deployment, with ``OMNISAGE_WORK`` a local work
folder, default ``./.omnisage_work``), ``OMNISAGE_TRAINING`` (subprocess or ecs, see
``training_launchers``), ``OMNISAGE_WORLD`` (synthetic world scale: tiny, demo, large; default demo),
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
from dagster_defs.resources import LanceDBResource, StorageResource, WorldResource, join_uri
from dagster_defs.training_launchers import training_launcher_from_env
from omnisage_assets import content, embeddings, evaluation, graph, ingest, sampling, study, training
from omnisage_assets.lib.filesystems import is_remote

ASSET_MODULES = [ingest, content, graph, sampling, training, embeddings, evaluation, study]


def storage_root() -> str:
    """``OMNISAGE_HOME``: a local folder (made absolute) or a remote URI (kept as is)."""
    root = os.environ.get("OMNISAGE_HOME", ".omnisage")
    return root if is_remote(root) else str(Path(root).resolve())


def build_definitions(root: Path | str | None = None, world: WorldResource | None = None) -> dg.Definitions:
    root = str(root or storage_root())
    # Local files the remote storage needs (trainer output, scratch, caches); None: the root.
    work = str(Path(os.environ.get("OMNISAGE_WORK", ".omnisage_work")).resolve()) if is_remote(root) else None
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
            "io_manager": ParquetIOManager(
                root=join_uri(root, "assets"), local_copies=join_uri(work, "asset_copies") if work else None
            ),
            "storage": StorageResource(root=root, work=work),
            "world": world,
            "lancedb": LanceDBResource(uri=join_uri(root, "lancedb")),
            # Training runs in its own process (or ECS GPU task) and reports back through Dagster Pipes.
            "training_launcher": training_launcher_from_env(dict(os.environ)),
        },
    )


defs = build_definitions()
