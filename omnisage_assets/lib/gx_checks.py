"""Great Expectations 1.x run on an in-memory dataframe, summarised for a Dagster check.

``dagster-ge`` pins GX < 1.0, so checks call GX 1.x directly through an ephemeral context.
"""

from __future__ import annotations

import functools
import itertools
import logging
from typing import Any

import great_expectations as gx
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

_suite_names = itertools.count()


@functools.lru_cache(maxsize=1)
def _batch_definition() -> tuple[Any, Any]:
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("omnisage").add_dataframe_asset("frame")
    return context, asset.add_batch_definition_whole_dataframe("whole")


def run_expectations(
    frame: pd.DataFrame, expectations: list[gx.expectations.Expectation]
) -> tuple[bool, list[dict[str, Any]]]:
    """(all passed, one summary per expectation: type, column, success, sample of failures)."""
    context, batch_definition = _batch_definition()
    suite = context.suites.add(gx.ExpectationSuite(name=f"check-{next(_suite_names)}"))
    try:
        for expectation in expectations:
            suite.add_expectation(expectation)
        result = batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    finally:
        context.suites.delete(suite.name)
    summaries = []
    for r in result.results:
        kwargs = r.expectation_config.kwargs
        summaries.append(
            {
                "expectation": r.expectation_config.type,
                "column": kwargs.get("column", kwargs.get("column_A", "")),
                "success": bool(r.success),
                "unexpected_count": r.result.get("unexpected_count"),
                "observed_value": r.result.get("observed_value"),
                "sample": [str(v) for v in (r.result.get("partial_unexpected_list") or [])[:5]],
            }
        )
    return bool(result.success), summaries


def summary_markdown(summaries: list[dict[str, Any]]) -> str:
    lines = ["| expectation | column | ok | unexpected | observed | sample |", "|---|---|---|---|---|---|"]
    for s in summaries:
        lines.append(
            f"| {s['expectation']} | {s['column']} | {'yes' if s['success'] else 'NO'} | "
            f"{s['unexpected_count'] if s['unexpected_count'] is not None else ''} | "
            f"{s['observed_value'] if s['observed_value'] is not None else ''} | {', '.join(s['sample'])} |"
        )
    return "\n".join(lines)
