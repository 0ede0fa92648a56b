"""Partitions, backfills, the schedule and the sensors: what runs without a person."""

import datetime as dt
import os

import dagster as dg
import pyarrow.parquet as pq
import pytest
from conftest import TINY

from dagster_defs.automation import daily_pipeline_schedule, engagements_folder_sensor, evaluate_previous_day
from dagster_defs.definitions import build_definitions
from dagster_defs.resources import WorldResource
from omnisage_assets.lib.world import write_world

RANGE = TINY.days[:3]


@pytest.fixture
def world_folder(tiny_world, tmp_path):
    """The tiny world as a folder of day files, the way a deployment receives data."""
    return write_world(tiny_world, TINY.days[:8], tmp_path / "inbox")


def test_a_single_run_backfill_stores_each_day_as_its_own_partition(tmp_path, tiny_world, dagster_instance):
    defs = build_definitions(root=tmp_path, world=WorldResource(scale="tiny"))
    result = defs.resolve_job_def("ingest_job").execute_in_process(
        instance=dagster_instance,
        tags={"dagster/asset_partition_range_start": RANGE[0], "dagster/asset_partition_range_end": RANGE[-1]},
    )
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.passed  # the blocking check saw the whole range
    for day in RANGE:
        stored = pq.read_table(tmp_path / "assets" / "engagements" / f"{day}.parquet")
        assert stored.equals(tiny_world.engagements(day))
    # Downstream, a day's trailing window reads those partitions back one by one.
    assert len(list((tmp_path / "assets" / "engagements").glob("*.parquet"))) == len(RANGE)


def test_backfill_policies_say_how_a_range_of_days_runs():
    graph = build_definitions().resolve_asset_graph()
    assert graph.get(dg.AssetKey("engagements")).backfill_policy == dg.BackfillPolicy.single_run()
    checkpoint = graph.get(dg.AssetKey("omnisage_checkpoint"))
    assert checkpoint.backfill_policy == dg.BackfillPolicy.multi_run(1)
    # Day D warm-starts from D - 1: a self-dependency orders a backfill's training runs.
    assert dg.AssetKey("omnisage_checkpoint") in checkpoint.parent_keys


def test_the_sensor_starts_each_new_or_replaced_day_once(world_folder, dagster_instance):
    world = WorldResource(path=str(world_folder))
    (world_folder / "engagements" / "notes.parquet").write_bytes(b"")  # not a day: ignored
    first = engagements_folder_sensor(dg.build_sensor_context(instance=dagster_instance, resources={"world": world}))
    assert [r.partition_key for r in first.run_requests] == TINY.days[:8]
    again = engagements_folder_sensor(
        dg.build_sensor_context(instance=dagster_instance, cursor=first.cursor, resources={"world": world})
    )
    assert isinstance(again, dg.SkipReason)
    replaced = world_folder / "engagements" / f"{TINY.days[2]}.parquet"
    os.utime(replaced, ns=(replaced.stat().st_atime_ns, replaced.stat().st_mtime_ns + 1_000_000_000))
    third = engagements_folder_sensor(
        dg.build_sensor_context(instance=dagster_instance, cursor=first.cursor, resources={"world": world})
    )
    assert [r.partition_key for r in third.run_requests] == [TINY.days[2]]
    assert third.run_requests[0].run_key != first.run_requests[2].run_key
    not_a_folder = engagements_folder_sensor(
        dg.build_sensor_context(instance=dagster_instance, resources={"world": WorldResource(scale="tiny")})
    )
    assert isinstance(not_a_folder, dg.SkipReason)


def test_the_schedule_runs_the_day_that_just_ended(dagster_instance):
    context = dg.build_schedule_context(
        instance=dagster_instance, scheduled_execution_time=dt.datetime(2026, 1, 5, 2, tzinfo=dt.timezone.utc)
    )
    (request,) = daily_pipeline_schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2026-01-04"


def test_a_days_success_starts_the_previous_days_evaluation(dagster_instance):
    run = dagster_instance.create_run_for_job(
        build_definitions().resolve_job_def("daily_pipeline_job"), tags={"dagster/partition": "2026-01-05"}
    )
    context = dg.build_run_status_sensor_context(
        sensor_name="evaluate_previous_day",
        dagster_instance=dagster_instance,
        dagster_run=run,
        dagster_event=dg.DagsterEvent("PIPELINE_SUCCESS", "daily_pipeline_job"),
    )
    request = evaluate_previous_day(context)
    assert request.partition_key == "2026-01-04"
