"""Benchmark: the graph stage as a user runs it, through Dagster's CLI, on the 1M-Pin world.

Materializes pins and boards, seven days of engagements, then ``graph_edges`` and
``sampled_neighborhoods`` for the seventh day (each with its blocking check), every step a
``dagster asset materialize`` process of its own, and prints one JSON object with each
step's wall time and peak memory (of that process alone) against the targets.

    python benchmarks/graph_assets.py [--scale large]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from report import emit

from omnisage_assets.lib.world import PRESETS


def materialize(select: str, partition: str | None, env: dict[str, str]) -> dict:
    """One ``dagster asset materialize`` run: wall seconds and the peak RSS of that process."""
    cmd = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "dagster_defs.definitions"]
    cmd += ["--select", select] + (["--partition", partition] if partition else [])
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0 or "RUN_SUCCESS" not in stderr:
        raise RuntimeError(f"materializing {select} {partition or ''} failed:\n{stderr[-3000:]}")
    checks = stderr.count("ASSET_CHECK_EVALUATION")
    return {"seconds": round(seconds, 1), "peak_rss_gb": round(usage.ru_maxrss / 1024**2, 2), "checks_run": checks}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="large")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("OMNISAGE_HOME", ".omnisage")) / "bench")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    home = (args.cache / f"dagster-{args.scale}").resolve()
    shutil.rmtree(home, ignore_errors=True)
    (home / "dagster_home").mkdir(parents=True)
    env = {
        **os.environ,
        "OMNISAGE_WORLD": args.scale,
        "OMNISAGE_HOME": str(home / "omnisage"),
        "DAGSTER_HOME": str(home / "dagster_home"),
    }
    days = PRESETS[args.scale].days[:7]
    steps = {"pins,boards": materialize("pins,boards", None, env)}
    ingest = [materialize("engagements", day, env) for day in days]
    steps["engagements x7"] = {
        "seconds": round(sum(s["seconds"] for s in ingest), 1),
        "peak_rss_gb": max(s["peak_rss_gb"] for s in ingest),
    }
    for asset in ("graph_edges", "sampled_neighborhoods"):
        steps[asset] = materialize(asset, days[-1], env)
    graph_seconds = steps["graph_edges"]["seconds"] + steps["sampled_neighborhoods"]["seconds"]
    graph_peak = max(steps["graph_edges"]["peak_rss_gb"], steps["sampled_neighborhoods"]["peak_rss_gb"])
    result = {
        "benchmark": "graph_edges + sampled_neighborhoods through `dagster asset materialize`, checks included",
        "world": args.scale,
        "day": days[-1],
        "window_days": 7,
        "steps": steps,
        "graph_stage": {
            "seconds": round(graph_seconds, 1),
            "target_seconds_at_most": 300,
            "peak_rss_gb": graph_peak,
            "target_gb_at_most": 8,
        },
        "meets_targets": graph_seconds <= 300 and graph_peak <= 8,
    }
    return emit(result, args.out)


if __name__ == "__main__":
    main()
