"""Benchmark: graph edges plus neighbourhoods for the 1M-Pin world, against PinSAGESampler.

Runs the same library functions the ``graph_edges`` and ``sampled_neighborhoods`` assets
run, on all engagements of the ``large`` synthetic world (1M Pins, 11.2M engagements),
and prints one JSON object: wall time and peak memory of each stage against the targets
(5 minutes, 8 GB), and anchors per second of our sampler beside DGL's bare
``PinSAGESampler`` on the same pruned Pin-Board graph, anchors and walk budget.

    python benchmarks/graph_sampling.py [--scale large] [--num-walks 100] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from report import emit

from omnisage_assets.lib import contracts
from omnisage_assets.lib.dgl_compat import dgl
from omnisage_assets.lib.edges import PruningConfig, adjacency_degrees, build_graph_edges, prune_edges
from omnisage_assets.lib.random_walks import (
    PIN,
    SamplingConfig,
    build_subgraphs,
    iter_neighborhoods,
    neighborhood_rows,
    top_visited,
)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux reports KiB


def world_dir(scale: str, cache: Path) -> tuple[Path, float]:
    """The world on disk (generated once, in a child process so its memory is not counted)."""
    root = cache / f"world-{scale}"
    if (root / "pins.parquet").exists():
        return root, 0.0
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "omnisage_assets.lib.world", "--scale", scale, "--out", str(root)], check=True
    )
    return root, time.perf_counter() - start


def compare_with_pinsage(edges: pa.Table, pins: pa.Array, boards: pa.Array, config: SamplingConfig, n_anchors: int) -> dict:
    """Pin anchors of the Pin-Board subgraph: our top-k (Pins and boards) vs PinSAGESampler (Pins).

    Same graph (pruned, integer weights as parallel arcs), same anchors, same number of walks
    and traversals; PinSAGESampler stops only between traversals, so it gets the same
    survival per traversal as our per-step restart, (1 - restart)^2.
    """
    sub = build_subgraphs(edges, pins, boards, config)[0]
    anchors = np.arange(min(n_anchors, len(pins)))
    ids = {PIN: pins.to_numpy(), "board": boards.to_numpy()}
    hops = len(sub.metapaths[PIN]) // 2
    sampler = dgl.sampling.PinSAGESampler(
        sub.graph, PIN, "board", hops, 1 - (1 - config.restart_prob) ** 2, config.num_walks, config.pin_board_pins
    )
    timings = {"ours": 0.0, "pinsage": 0.0}
    for start in range(0, len(anchors), config.chunk_size):
        chunk = anchors[start : start + config.chunk_size]
        t = time.perf_counter()
        visited = top_visited(sub, PIN, chunk, config.num_walks, config.restart_prob)
        neighborhood_rows(sub.name, PIN, chunk, visited, ids, config.num_walks)
        timings["ours"] += time.perf_counter() - t
        t = time.perf_counter()
        sampler(torch.from_numpy(chunk))
        timings["pinsage"] += time.perf_counter() - t
    ours, pinsage = len(anchors) / timings["ours"], len(anchors) / timings["pinsage"]
    return {
        "anchors": len(anchors),
        "walks_per_anchor": config.num_walks,
        "traversals": hops,
        "ours_anchors_per_s": round(ours),
        "ours_keeps": f"top {config.pin_board_pins} Pins + top {config.pin_board_boards} boards",
        "pinsage_anchors_per_s": round(pinsage),
        "pinsage_keeps": f"top {config.pin_board_pins} Pins",
        "ratio_ours_to_pinsage": round(ours / pinsage, 3),
        "target_ratio_at_least": 0.5,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="large")
    parser.add_argument("--num-walks", type=int, default=SamplingConfig.num_walks)
    parser.add_argument("--compare-anchors", type=int, default=200_000)
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("OMNISAGE_HOME", ".omnisage")) / "bench")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    root, generate_s = world_dir(args.scale, args.cache)

    t0 = time.perf_counter()
    engagements = pa.concat_tables(pq.read_table(p) for p in sorted((root / "engagements").glob("*.parquet")))
    pins = pq.read_table(root / "pins.parquet", columns=["pin_id"])["pin_id"].combine_chunks()
    boards = pq.read_table(root / "boards.parquet", columns=["board_id"])["board_id"].combine_chunks()
    read_s = time.perf_counter() - t0

    t = time.perf_counter()
    raw = build_graph_edges(engagements)
    del engagements
    edges = prune_edges(raw, PruningConfig())
    edges_s = time.perf_counter() - t
    before, after = adjacency_degrees(raw), adjacency_degrees(edges)
    del raw
    edges_rss = peak_rss_gb()

    config = SamplingConfig(num_walks=args.num_walks)
    out = args.cache / f"neighborhoods-{args.scale}.parquet"
    t = time.perf_counter()
    anchors = entries = 0
    with pq.ParquetWriter(out, contracts.NEIGHBORHOODS) as writer:
        for part in iter_neighborhoods(edges, pins, boards, config):
            anchors += part.num_rows
            entries += len(part["neighbor_id"].combine_chunks().values)
            writer.write_table(part)
    sampling_s = time.perf_counter() - t
    total_s = read_s + edges_s + sampling_s

    result = {
        "benchmark": "graph_edges + sampled_neighborhoods",
        "machine": {"cpus": torch.get_num_threads(), "torch": torch.__version__},
        "world": {
            "scale": args.scale,
            "pins": len(pins),
            "boards": len(boards),
            "engagements": int(sum(pq.ParquetFile(p).metadata.num_rows for p in (root / "engagements").glob("*.parquet"))),
            "generated_s": round(generate_s, 1),
        },
        "edges": {
            "rows_after_pruning": edges.num_rows,
            "adjacency_before": {k: int(v.sum()) for k, v in before.items()},
            "adjacency_after": {k: int(v.sum()) for k, v in after.items()},
            "max_degree_before": {k: int(v.max()) for k, v in before.items()},
            "max_degree_after": {k: int(v.max()) for k, v in after.items()},
        },
        "neighborhoods": {
            "anchors": anchors,
            "entries": entries,
            "walks_per_anchor": config.num_walks,
            "anchors_per_s": round(anchors / sampling_s),
            "parquet_mb": round(out.stat().st_size / 1e6, 1),
        },
        "seconds": {
            "read": round(read_s, 1),
            "edges_and_pruning": round(edges_s, 1),
            "sampling": round(sampling_s, 1),
            "total": round(total_s, 1),
            "target_total_at_most": 300,
        },
        "peak_rss_gb": {"after_edges": round(edges_rss, 2), "total": round(peak_rss_gb(), 2), "target_at_most": 8},
        "vs_pinsage_sampler": compare_with_pinsage(edges, pins, boards, config, args.compare_anchors),
    }
    result["meets_targets"] = (
        total_s <= 300 and peak_rss_gb() <= 8 and result["vs_pinsage_sampler"]["ratio_ours_to_pinsage"] >= 0.5
    )
    return emit(result, args.out)


if __name__ == "__main__":
    main()
