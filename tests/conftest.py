"""Shared fixtures: one tiny world, one Dagster instance and one materialized pipeline."""

import os
from pathlib import Path

# Nothing in the suite may reach a model hub: the text encoder loads from its package.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import dagster as dg
import pytest

from omnisage_assets.lib.world import PRESETS, SyntheticWorld

TINY = PRESETS["tiny"]
MODEL_DAY = TINY.days[6]
EVAL_DAY = TINY.days[7]
# Small enough for CI, large enough to learn: the pipeline test asserts recall.
FAST_TRAINING = {"steps": 120, "warmup_steps": 15}


@pytest.fixture(scope="session")
def tiny_world() -> SyntheticWorld:
    return SyntheticWorld(TINY)


@pytest.fixture(scope="session")
def dagster_instance(tmp_path_factory: pytest.TempPathFactory) -> dg.DagsterInstance:
    with dg.instance_for_test(temp_dir=str(tmp_path_factory.mktemp("dagster_home"))) as instance:
        yield instance


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory, dagster_instance: dg.DagsterInstance):
    """Every asset of the tiny world materialized once: catalog, 8 days, model day, evaluation."""
    from dagster_defs.definitions import build_definitions
    from dagster_defs.resources import WorldResource

    root = tmp_path_factory.mktemp("omnisage")
    defs = build_definitions(root=root, world=WorldResource(scale="tiny"))
    results = {"catalog": defs.resolve_job_def("catalog_job").execute_in_process(instance=dagster_instance)}
    for day in TINY.days[:8]:
        results[day] = defs.resolve_job_def("ingest_job").execute_in_process(instance=dagster_instance, partition_key=day)
    results["model"] = defs.resolve_job_def("daily_model_job").execute_in_process(
        instance=dagster_instance,
        partition_key=MODEL_DAY,
        run_config={"ops": {"omnisage_checkpoint": {"config": FAST_TRAINING}}},
    )
    results["evaluation"] = defs.resolve_job_def("evaluation_job").execute_in_process(
        instance=dagster_instance, partition_key=MODEL_DAY
    )
    return {"root": Path(root), "defs": defs, "results": results}
