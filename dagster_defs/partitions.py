"""Daily partitions and the mappings that give each day its window of history."""

from __future__ import annotations

import datetime as dt
import os
import warnings

import dagster as dg

from omnisage_assets.lib.world import PRESETS

_WORLD = PRESETS["demo"]
_WORLD_END = (dt.date.fromisoformat(_WORLD.days[-1]) + dt.timedelta(days=1)).isoformat()

# Defaults cover the embedded world's days; a deployment on live data sets
# OMNISAGE_START_DATE and OMNISAGE_END_DATE="" so partitions run up to today.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=os.environ.get("OMNISAGE_START_DATE", _WORLD.start_date),
    end_date=os.environ.get("OMNISAGE_END_DATE", _WORLD_END) or None,
)

GRAPH_WINDOW_DAYS = int(os.environ.get("OMNISAGE_WINDOW_DAYS", "7"))

# The graph, examples and model for day D see the trailing window [D - W + 1, D]; the
# first days of the world simply have shorter windows.
# (allow_nonexistent_upstream_partitions is flagged beta; it is what the first days need.)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    trailing_window = dg.TimeWindowPartitionMapping(
        start_offset=-(GRAPH_WINDOW_DAYS - 1), end_offset=0, allow_nonexistent_upstream_partitions=True
    )

# Day D's checkpoint warm-starts from day D - 1's: a self-dependency, so a backfill trains
# the days in order (the first day has no previous one and starts from scratch).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    previous_day = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1, allow_nonexistent_upstream_partitions=True)

# Day D's model is scored on day D + 1, which it never saw.
next_day = dg.TimeWindowPartitionMapping(start_offset=1, end_offset=1)
