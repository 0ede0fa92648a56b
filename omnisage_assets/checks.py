"""Shared helpers that turn Great Expectations results into Dagster check results."""

from __future__ import annotations

import dagster as dg
import great_expectations as gx
import pandas as pd

from omnisage_assets.lib.gx_checks import run_expectations, summary_markdown


def gx_check_result(
    frame: pd.DataFrame,
    expectations: list[gx.expectations.Expectation],
    extra_problems: list[str] | None = None,
    metadata: dict | None = None,
) -> dg.AssetCheckResult:
    """Pass when every expectation holds and no extra problem was found; say why otherwise."""
    passed, summaries = run_expectations(frame, expectations)
    problems = list(extra_problems or [])
    problems += [
        f"{s['expectation']}({s['column']}): {s['unexpected_count']} unexpected, e.g. {s['sample']}"
        for s in summaries
        if not s["success"]
    ]
    md = summary_markdown(summaries)
    if extra_problems:
        md += "\n\n" + "\n".join(f"- {p}" for p in extra_problems)
    return dg.AssetCheckResult(
        passed=passed and not extra_problems,
        description="; ".join(problems)[:2000] if problems else "all expectations met",
        metadata={"expectations": dg.MetadataValue.md(md), "rows": len(frame), **(metadata or {})},
    )
