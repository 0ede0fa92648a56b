"""Benchmark: peak memory of the sampled softmax, one block vs chunked, as negatives grow.

For 512 queries of width 256 and 1k, 10k and 100k candidates, each configuration runs
forward and backward in a fresh process and reports the peak memory it added: CUDA's
``max_memory_allocated`` on a GPU, the growth of the peak RSS on the CPU. Any loss must
hold the candidates' gradient (as large as their embeddings); beyond that, the chunked
loss keeps one bounded block of logits while the one-block loss grows with queries x
candidates.

    python benchmarks/chunked_loss_memory.py [--device cuda]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
from pathlib import Path

import torch
from report import emit

QUERIES, WIDTH, CHUNK = 512, 256, 64


def measure(device: str, negatives: int, chunk: int | None) -> float:
    """MB added at peak by one forward + backward (run inside a fresh process)."""
    from omnisage_model.losses import sampled_softmax_loss

    g = torch.Generator().manual_seed(0)
    queries = torch.randn(QUERIES, WIDTH, generator=g).to(device).requires_grad_(True)
    candidates = torch.randn(QUERIES + negatives, WIDTH, generator=g).to(device).requires_grad_(True)
    ids = torch.arange(QUERIES + negatives, device=device)
    log_q = torch.zeros(QUERIES + negatives, device=device)
    target = torch.arange(QUERIES, device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sampled_softmax_loss(queries, candidates, target, ids, log_q, 0.05, chunk_size=chunk).backward()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return (peak - base) / 2**20


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--negatives", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # child mode: NEGATIVES CHUNK
    args = parser.parse_args(argv)
    if args.one:
        negatives, chunk = int(args.one[0]), (None if args.one[1] == "none" else int(args.one[1]))
        print(measure(args.device, negatives, chunk))
        return {}
    rows = []
    for negatives in args.negatives:
        row = {"candidates": QUERIES + negatives, "embeddings_mb": round((QUERIES + negatives) * WIDTH * 4 / 2**20, 1)}
        for name, chunk in (("one_block_mb", "none"), ("chunked_mb", str(CHUNK))):
            out = subprocess.run(
                [sys.executable, __file__, "--device", args.device, "--one", str(negatives), chunk],
                capture_output=True, text=True, check=True,
            ).stdout
            row[name] = round(float(out.strip().splitlines()[-1]), 1)
        # Beyond the candidates' gradient and the copy handed to autograd: what chunking bounds.
        row["chunked_beyond_gradients_mb"] = round(row["chunked_mb"] - 2 * row["embeddings_mb"], 1)
        rows.append(row)
    result = {
        "benchmark": "sampled softmax peak memory, forward + backward",
        "device": args.device,
        "queries": QUERIES,
        "width": WIDTH,
        "chunk": CHUNK,
        "rows": rows,
        "growth_1k_to_max": {
            "one_block": round(rows[-1]["one_block_mb"] / max(rows[0]["one_block_mb"], 1.0), 1),
            "chunked": round(rows[-1]["chunked_mb"] / max(rows[0]["chunked_mb"], 1.0), 1),
            "chunked_beyond_gradients": round(
                rows[-1]["chunked_beyond_gradients_mb"] / max(rows[0]["chunked_beyond_gradients_mb"], 1.0), 1
            ),
        },
    }
    return emit(result, args.out)


if __name__ == "__main__":
    main()
