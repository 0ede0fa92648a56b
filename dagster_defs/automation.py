"""What starts runs without a person: a daily schedule, a sensor on the input folder, and the
evaluation that follows each day's pipeline."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg

from dagster_defs.jobs import daily_pipeline_job, evaluation_job
from dagster_defs.partitions import daily_partitions
from dagster_defs.resources import WorldResource
from omnisage_assets.lib.world import day_files

# Each day's pipeline runs once the day is over: 02:00 UTC, for the day that just ended.
daily_pipeline_schedule = dg.build_schedule_from_partitioned_job(
    daily_pipeline_job, hour_of_day=2, default_status=dg.DefaultScheduleStatus.STOPPED
)


def new_day_files(files: dict[str, int], seen: dict[str, int], days: set[str]) -> tuple[list[tuple[str, int]], list[str]]:
    """Of ``files`` ({name: mtime_ns}), the day files new or changed since ``seen``
    ({day: mtime_ns}): ``([(day, mtime_ns)], [names that are not a day of the partitions])``,
    oldest day first."""
    found, ignored = [], []
    for name, mtime in sorted(files.items()):
        day = name.removesuffix(".parquet")
        if day not in days:
            ignored.append(name)
        elif seen.get(day) != mtime:
            found.append((day, mtime))
    return found, ignored


@dg.sensor(job=daily_pipeline_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def engagements_folder_sensor(context: dg.SensorEvaluationContext, world: WorldResource) -> dg.SensorResult | dg.SkipReason:
    """Starts a day's pipeline when ``<world path>/engagements/<day>.parquet`` lands in the
    folder or bucket (or is replaced: the run key carries the file's modification time). The
    day's blocking checks stop a malformed file before it reaches the graph, the model or the
    published tables."""
    if not world.path:
        return dg.SkipReason("the world is not a folder of day files (set OMNISAGE_WORLD_PATH)")
    folder = f"{world.path.rstrip('/')}/engagements"
    seen: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    found, ignored = new_day_files(day_files(folder), seen, set(daily_partitions.get_partition_keys()))
    if ignored:
        context.log.warning(f"{folder}: not a day of the partitions, ignored: {ignored[:5]}")
    if not found:
        return dg.SkipReason(f"no new day files in {folder}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"{day}:{mtime}", partition_key=day) for day, mtime in found],
        cursor=json.dumps({**seen, **dict(found)}),
    )


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[daily_pipeline_job],
    request_job=evaluation_job,
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def evaluate_previous_day(context: dg.RunStatusSensorContext) -> dg.RunRequest | dg.SkipReason:
    """Day D's engagements are the held-out data for day D - 1's model: once D's pipeline
    succeeds, score D - 1."""
    day = context.dagster_run.tags.get("dagster/partition")
    if day is None:
        return dg.SkipReason("the run had no partition")
    previous = (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()
    if previous not in daily_partitions.get_partition_keys():
        return dg.SkipReason(f"{day} is the first day: no earlier model to evaluate")
    return dg.RunRequest(run_key=f"evaluate:{previous}:{context.dagster_run.run_id}", partition_key=previous)


schedules = [daily_pipeline_schedule]
sensors = [engagements_folder_sensor, evaluate_previous_day]
