"""Benchmark: texts per second of the content stage's text encoder (all-MiniLM-L6-v2).

Encodes short texts (Pin titles of the demo world, about 11 tokens) and full Pin texts
(title + description, about 35 tokens) in the batches ``content_features`` uses, on the
CPU and, when one is present, on a CUDA GPU (bf16 autocast), and prints one JSON object
with texts/s beside the target (300 short texts/s on the CPU).

    python benchmarks/text_encoder.py [--texts 3000] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from report import emit

from omnisage_assets.lib.text_encoder import DEFAULT_MODEL, TextEncoder
from omnisage_assets.lib.world import PRESETS, SyntheticWorld


def texts_per_second(encoder: TextEncoder, texts: list[str], repeats: int = 2) -> float:
    encoder.encode(texts[: encoder.batch_size])  # warm-up: kernels, allocator
    best = 0.0
    for _ in range(repeats):
        if encoder.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        encoder.encode(texts)
        if encoder.device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, len(texts) / (time.perf_counter() - start))
    return round(best, 1)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--texts", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    pins = SyntheticWorld(PRESETS["demo"]).pins().slice(0, args.texts)
    workloads = {
        "short (Pin titles)": pins["title"].to_pylist(),
        "Pin title + description": [f"{t} {d}" for t, d in zip(pins["title"].to_pylist(), pins["description"].to_pylist())],
    }
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    result: dict = {
        "benchmark": "text encoder texts/s",
        "model": args.model,
        "batch_size": args.batch_size,
        "texts": len(pins),
        "cpu_threads": torch.get_num_threads(),
        "results": [],
    }
    for device in devices:
        encoder = TextEncoder.load(args.model, device, batch_size=args.batch_size)
        name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
        for workload, texts in workloads.items():
            result["results"].append(
                {
                    "device": name,
                    "workload": workload,
                    "mean_tokens": round(float(np.mean(encoder.token_counts(texts))), 1),
                    "texts_per_s": texts_per_second(encoder, texts),
                }
            )
    short_cpu = next(r["texts_per_s"] for r in result["results"] if r["device"] == "cpu" and r["workload"].startswith("short"))
    result["target"] = {"short_texts_per_s_on_cpu_at_least": 300, "met": short_cpu >= 300}
    if "cuda" not in devices:
        result["cuda"] = "no CUDA device here: GPU figures not measured"
    return emit(result, args.out)


if __name__ == "__main__":
    main()
