"""Ingest: Pins, boards and each day's engagements from the configured world."""

import dagster as dg
import great_expectations as gx
import pyarrow as pa
import pyarrow.compute as pc

from dagster_defs.partitions import daily_partitions
from dagster_defs.resources import WorldResource
from omnisage_assets.checks import gx_check_result
from omnisage_assets.lib import contracts


@dg.asset(group_name="ingest", kinds={"parquet"})
def pins(context: dg.AssetExecutionContext, world: WorldResource) -> pa.Table:
    """Every Pin: id, title, description and (when the world has one) an image vector."""
    table = world.load().pins()
    context.add_output_metadata({"pins": table.num_rows, "with_image": table.num_rows - table["image"].null_count})
    return table


@dg.asset(group_name="ingest", kinds={"parquet"})
def boards(world: WorldResource) -> pa.Table:
    """Every board: id, owner, name and description."""
    return world.load().boards()


@dg.asset(
    group_name="ingest",
    kinds={"parquet"},
    partitions_def=daily_partitions,
    # Copying days is cheap: a backfill ingests its whole range in one run.
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def engagements(context: dg.AssetExecutionContext, world: WorldResource) -> dict[str, pa.Table]:
    """Each day's user actions (saves, clicks; home, related, search surfaces), UTC timestamps,
    keyed by day: the IO manager stores each as its partition (one day, or a backfill's range)."""
    source = world.load()
    days, duplicates = {}, 0
    for day in context.partition_keys:
        days[day], dropped = contracts.drop_duplicate_rows(source.engagements(day))
        duplicates += dropped
    if duplicates:
        context.log.warning(f"dropped {duplicates:,} duplicate event(s) (identical rows)")
    table = pa.concat_tables(days.values())
    counts = pc.value_counts(table["surface"]).to_pylist()
    context.add_output_metadata(
        {
            "days": len(days),
            "engagements": table.num_rows,
            "duplicates_dropped": duplicates,
            "users": pc.count_distinct(table["user_id"]).as_py(),
            "saves": pc.sum(pc.equal(table["action"], "save")).as_py() or 0,
            **{f"surface_{c['values']}": c["counts"] for c in counts},
        }
    )
    return days


@dg.asset_check(asset=pins, blocking=True, description="Pin ids unique and present; titles present.")
def pins_check(pins: pa.Table) -> dg.AssetCheckResult:
    return gx_check_result(
        pins.select(["pin_id", "title"]).to_pandas(),
        [
            gx.expectations.ExpectColumnValuesToNotBeNull(column="pin_id"),
            gx.expectations.ExpectColumnValuesToBeUnique(column="pin_id"),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="title"),
        ],
    )


@dg.asset_check(asset=boards, blocking=True, description="Board ids unique and present; names present.")
def boards_check(boards: pa.Table) -> dg.AssetCheckResult:
    return gx_check_result(
        boards.select(["board_id", "owner_user_id", "name"]).to_pandas(),
        [
            gx.expectations.ExpectColumnValuesToNotBeNull(column="board_id"),
            gx.expectations.ExpectColumnValuesToBeUnique(column="board_id"),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="owner_user_id"),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="name"),
        ],
    )


@dg.asset_check(asset=engagements, partitions_def=daily_partitions, blocking=True, description="Ids present and not negative, known actions and surfaces, timestamps inside the day(s).")
def engagements_check(context: dg.AssetCheckExecutionContext, engagements: pa.Table) -> dg.AssetCheckResult:
    window = context.partition_time_window  # one day, or a backfill's range of days
    seconds = (window.end - window.start).total_seconds()
    frame = engagements.select(["user_id", "pin_id", "action", "surface"]).to_pandas()
    frame["seconds_into_window"] = (
        pc.divide(pc.subtract(pc.cast(engagements["ts"], pa.int64()), int(window.start.timestamp() * 1e6)), 1_000_000).to_numpy()
    )
    return gx_check_result(
        frame,
        [
            gx.expectations.ExpectTableRowCountToBeBetween(min_value=1),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="user_id"),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="pin_id"),
            gx.expectations.ExpectColumnValuesToBeBetween(column="user_id", min_value=0),
            gx.expectations.ExpectColumnValuesToBeBetween(column="pin_id", min_value=0),
            gx.expectations.ExpectColumnValuesToBeInSet(column="action", value_set=list(contracts.ACTIONS)),
            gx.expectations.ExpectColumnValuesToBeInSet(column="surface", value_set=list(contracts.SURFACES)),
            gx.expectations.ExpectColumnValuesToBeBetween(column="seconds_into_window", min_value=0, max_value=seconds, strict_max=True),
        ],
    )
