"""Benchmark: train one day's bundle from scratch on a device, then recall@10 on the next day.

Correctness on a GPU means the bf16 CUDA path learns what the fp32 CPU path learns: this
trains the configuration a checkpoint records (``--config-from``, e.g. the demo's day) on
its training bundle, embeds every Pin, board and user, and scores full-ranking recall@10
on the next day's engagements beside popularity. Run it with ``--device cpu`` and
``--device cuda`` and compare. Needs only torch, numpy and pyarrow: runs on a bare GPU box.

    python benchmarks/training_recall.py --bundle DIR --next-day FILE --config-from CKPT [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from report import emit

from omnisage_assets.lib.retrieval_eval import evaluate, pin_popularity
from omnisage_model.config import ModelConfig, TrainConfig
from omnisage_model.data import read_bundle
from omnisage_model.inference import embed_nodes, embed_users
from omnisage_model.train import load_training_inputs, train


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True, help="training_examples folder of day D")
    parser.add_argument("--next-day", type=Path, required=True, help="engagements Parquet of day D + 1")
    parser.add_argument("--config-from", type=Path, required=True, help="checkpoint whose model and train config to use")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=None, help="override the recorded number of steps")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    recorded = json.loads((args.config_from / "config.json").read_text())
    model_config = ModelConfig.from_dict(recorded["model_config"])
    train_config = TrainConfig.from_dict(
        {**recorded["train_config"], "checkpoint_every": 0, **({"steps": args.steps} if args.steps else {})}
    )
    tables = read_bundle(args.bundle)
    store, tasks = load_training_inputs(tables, model_config)
    start = time.perf_counter()
    result = train(store, tasks, model_config, train_config, device=args.device)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    nodes = embed_nodes(result.model, store, device=args.device)
    pins = nodes[: store.n_pins]
    users = embed_users(result.model, pins, tasks, device=args.device)
    embed_seconds = time.perf_counter() - start
    vectors = {"pin": pins, "board": nodes[store.n_pins :], "user": users}
    ids = {"pin": store.pin_ids, "board": store.board_ids, "user": tasks.user_ids}
    history = pa.table({"pin_id": pc.list_flatten(tables["sequences"]["pin_ids"])})
    recall = evaluate(vectors, ids, pq.read_table(args.next_day), pin_popularity(history, ids["pin"])).to_pylist()
    table: dict[str, dict[str, float]] = {}
    for r in recall:
        table.setdefault(r["task"], {})[r["model"]] = round(r["recall_at_10"], 4)
    first, last = result.history[0], result.history[-1]
    return emit(
        {
            "benchmark": "train from scratch, recall@10 on the next day",
            "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)",
            "precision": "bf16 autocast" if args.device.startswith("cuda") else "fp32",
            "bundle": str(args.bundle),
            "nodes": store.n_nodes,
            "users": len(tasks.user_ids),
            "steps": train_config.steps,
            "train_seconds": round(train_seconds, 1),
            "embed_seconds": round(embed_seconds, 1),
            "loss": {k: [round(first[k], 3), round(last[k], 3)] for k in first if k.startswith("loss")},
            "recall_at_10": table,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
