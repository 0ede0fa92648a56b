"""Benchmark: peak memory of batch inference, streamed to LanceDB and Parquet, as nodes grow.

What ``entity_embeddings`` does, at the demo model's size and with random features: embed
every node into a memory-mapped file (``embed_nodes(out=...)``), then stage the Pin table in
LanceDB and write the Parquet rows batch by batch from it. Each size runs in a fresh
process and reports its peak RSS beside the feature store it must hold (the model needs
random access to every node's features) and the outputs it writes (which it must not hold):
the growth over the store should stay flat while the outputs grow.

    python benchmarks/batch_inference_memory.py [--nodes 100000 400000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from report import emit

from omnisage_model.config import ModelConfig

# The CPU asset defaults (TrainingRunConfig): width 64, 64-d vectors.
DEMO = ModelConfig(text_embedding_dim=384, image_dim=32, text_dim=64, n_text_buckets=1 << 15, width=64, heads=4,
                   mlp_dim=256, out_dim=64, max_neighbors_per_subgraph=12)


def measure(nodes: int) -> dict:
    """Run inside a fresh process: the store's size, the outputs' size, and the peak RSS."""
    import lancedb
    import pyarrow as pa
    import pyarrow.parquet as pq
    from model_throughput import synthetic_store

    from omnisage_assets.lib.lance_release import stage_tables
    from omnisage_assets.lib.lance_tables import embedding_batches, lance_batches
    from omnisage_model.inference import embed_nodes
    from omnisage_model.model import OmniSage

    n_pins = nodes * 4 // 5
    # The demo keeps the 12 best neighbours per subgraph.
    store = synthetic_store(n_pins, nodes - n_pins, DEMO, neighbours=(6, 6, 12))
    store_mb = sum(t.nbytes for t in vars(store).values() if isinstance(t, (torch.Tensor, np.ndarray))) / 2**20
    torch.manual_seed(0)
    model = OmniSage(DEMO)
    base = _peak_rss_mb()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        vectors = np.lib.format.open_memmap(Path(tmp) / "nodes.npy", "w+", np.float32, (nodes, DEMO.out_dim))
        embed_nodes(model, store, out=vectors)
        ids = {"pin": store.pin_ids, "board": store.board_ids, "user": np.zeros(0, np.int64)}
        by_kind = {"pin": vectors[:n_pins], "board": vectors[n_pins:], "user": vectors[:0]}
        titles = pa.array([f"pin {i}: a title of a few words" for i in range(n_pins)])
        catalog = pa.table({"pin_id": ids["pin"], "title": titles, "description": titles})
        pins = lance_batches("pin", ids["pin"], by_kind["pin"], "v", "2026-01-07", catalog)
        stage_tables(lancedb.connect(tmp), {"pins": pins}, "2026-01-07")
        rows = embedding_batches(by_kind, ids, "v", "2026-01-07")
        with pq.ParquetWriter(Path(tmp) / "embeddings.parquet", rows.schema) as writer:
            for batch in rows:
                writer.write_batch(batch)
        outputs_mb = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file()) / 2**20
    return {
        "nodes": nodes,
        "feature_store_mb": round(store_mb, 1),
        "outputs_written_mb": round(outputs_mb, 1),
        "peak_rss_growth_mb": round(_peak_rss_mb() - base, 1),
        "seconds": round(time.perf_counter() - start, 1),
    }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[100_000, 400_000])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one)))
        return {}
    rows = []
    for nodes in args.nodes:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(nodes)], capture_output=True, text=True, check=True
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    result = {
        "benchmark": "batch inference peak memory, streamed to LanceDB and Parquet",
        "model": "demo CPU configuration (width 64, 64-d vectors)",
        "rows": rows,
        "growth_ratio_first_to_last": {
            "outputs": round(rows[-1]["outputs_written_mb"] / max(rows[0]["outputs_written_mb"], 1e-9), 2),
            "peak_rss_growth": round(rows[-1]["peak_rss_growth_mb"] / max(rows[0]["peak_rss_growth_mb"], 1e-9), 2),
        },
    }
    return emit(result, args.out)


if __name__ == "__main__":
    main()
