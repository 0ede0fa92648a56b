"""Benchmark: OmniSage training triplets/s and inference nodes/s at the paper's configuration.

The aggregator is the paper's (1 layer, width 768, 12 heads, MLP 3072) over 1024-d image and
128-d hashed-text features with 25 + 75 Pin-Board and 50 Pin-Pin neighbour tokens, the
setting of the public reference's published figures (dependencies.md: on an H100 in bf16,
8,206 triplets/s training and 73,838 nodes/s inference; targets twice that). Features and
neighbourhoods are random: throughput does not depend on their values. A training
"triplet" is a query, its positive and one random negative; the step is ``train()``'s own
(entity-entity task only, as in the reference). Plain PyTorch: runs on a bare GPU box.

    python benchmarks/model_throughput.py [--device cuda] [--batch-size 512] [--profile FILE]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from report import emit

from omnisage_model.config import ModelConfig, TrainConfig
from omnisage_model.data import FeatureStore, TaskData
from omnisage_model.inference import embed_nodes
from omnisage_model.model import OmniSage
from omnisage_model.train import train

PAPER = ModelConfig(text_embedding_dim=0, image_dim=1024, text_dim=128, n_text_buckets=1 << 18)
REFERENCE_H100_BF16 = {"training_triplets_per_s": 8206, "inference_nodes_per_s": 73838}


def synthetic_store(
    n_pins: int, n_boards: int, config: ModelConfig, seed: int = 0, neighbours: tuple[int, int, int] = (25, 75, 50)
) -> FeatureStore:
    """Random features and full neighbourhoods: by default the paper's 25 Pins + 75 boards
    (Pin-Board) and 50 Pins (Pin-Pin)."""
    g = torch.Generator().manual_seed(seed)
    n = n_pins + n_boards
    pins = lambda k: torch.randint(0, n_pins, (n, k), generator=g)  # noqa: E731
    boards = lambda k: torch.randint(n_pins, n, (n, k), generator=g)  # noqa: E731
    pin_board_pins, pin_board_boards, pin_pin_pins = neighbours
    nbr_index = torch.cat([pins(pin_board_pins), boards(pin_board_boards), pins(pin_pin_pins)], dim=1)
    k = sum(neighbours)
    score = torch.sort(torch.rand(n, k, generator=g), dim=1, descending=True).values
    image = torch.randn(n, config.image_dim, generator=g)
    image[n_pins:] = 0
    return FeatureStore(
        pin_ids=np.arange(n_pins),
        board_ids=np.arange(n_boards),
        text=torch.randint(1, config.n_text_buckets + 1, (n, 16), generator=g),
        has_text=torch.ones(n, dtype=torch.bool),
        text_embedding=torch.zeros(n, config.text_embedding_dim),
        image=image,
        has_image=torch.arange(n) < n_pins,
        log_degree=torch.rand(n, generator=g) * 5,
        node_type=(torch.arange(n) >= n_pins).long(),
        nbr_index=nbr_index,
        nbr_score=score,
        nbr_subgraph=torch.cat([torch.zeros(n, k - pin_pin_pins), torch.ones(n, pin_pin_pins)], dim=1).long(),
        id_key=torch.arange(n),
    )


def pair_tasks(n_pins: int, n_pairs: int = 100_000, seed: int = 1) -> TaskData:
    g = torch.Generator().manual_seed(seed)
    return TaskData(
        pair_query=torch.randint(0, n_pins, (n_pairs,), generator=g),
        pair_positive=torch.randint(0, n_pins, (n_pairs,), generator=g),
        sequences=torch.full((0, 1), -1, dtype=torch.long),
        sequence_length=torch.zeros(0, dtype=torch.long),
        user_ids=np.zeros(0, dtype=np.int64),
        history=torch.zeros(0, dtype=torch.long),
        history_offsets=torch.zeros(1, dtype=torch.long),
    )


def training_triplets_per_s(store: FeatureStore, device: str, batch: int, steps: int) -> float:
    warm = 2
    config = TrainConfig(
        steps=warm + steps, pair_batch_size=batch, random_negatives=batch, feature_weight=0.0, user_weight=0.0,
        warmup_steps=1, log_every=1,
    )
    times = []
    train(store, pair_tasks(store.n_pins), PAPER, config, device=device, log=lambda r: times.append(_now(device)))
    return batch * steps / (times[-1] - times[warm - 1])


def profile_training(store: FeatureStore, device: str, batch: int, out: Path) -> None:
    """Operator tables (by self CUDA time, then by CPU time) of three training steps that
    follow one warm-up step: set-up and copies in and out of the device are left out."""
    from torch.profiler import ProfilerActivity, profile, schedule

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    config = TrainConfig(
        steps=5, pair_batch_size=batch, random_negatives=batch, feature_weight=0.0, user_weight=0.0, warmup_steps=1,
        log_every=1,
    )
    with profile(activities=activities, schedule=schedule(wait=0, warmup=1, active=3, repeat=1)) as prof:
        train(store, pair_tasks(store.n_pins), PAPER, config, device=device, log=lambda r: prof.step())
    averages = prof.key_averages()
    tables = [
        averages.table(sort_by=sort, row_limit=30)
        for sort in (["self_cuda_time_total"] if device.startswith("cuda") else []) + ["cpu_time_total"]
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n\n".join(tables) + "\n")


def inference_nodes_per_s(device: str, batch: int, nodes: int) -> float:
    """Every node of a store of ``nodes`` Pins and a quarter as many boards, through ``embed_nodes``."""
    store = synthetic_store(nodes, nodes // 4, PAPER, seed=2)
    torch.manual_seed(0)
    model = OmniSage(PAPER)
    embed_nodes(model, synthetic_store(batch, batch // 4, PAPER), batch_size=batch, device=device)  # warm-up
    start = _now(device)
    embed_nodes(model, store, batch_size=batch, device=device)
    return store.n_nodes / (_now(device) - start)


def _now(device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 512 on CUDA, 32 on the CPU")
    parser.add_argument("--inference-batch-size", type=int, default=None, help="default: 4096 (embed_nodes') on CUDA, 32 on the CPU")
    parser.add_argument("--train-steps", type=int, default=None, help="measured steps (default: 20 CUDA, 2 CPU)")
    parser.add_argument("--inference-nodes", type=int, default=None, help="Pins embedded (default: 200,000 CUDA, 256 CPU)")
    parser.add_argument("--pins", type=int, default=50_000)
    parser.add_argument("--boards", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--profile", type=Path, default=None, help="also write an operator profile of training here")
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    batch = args.batch_size or (512 if cuda else 32)
    steps = args.train_steps or (20 if cuda else 2)
    nodes = args.inference_nodes or (200_000 if cuda else 256)
    inference_batch = args.inference_batch_size or (4096 if cuda else 32)
    store = synthetic_store(args.pins, args.boards, PAPER)
    result = {
        "benchmark": "OmniSage training and inference throughput, paper configuration",
        "device": torch.cuda.get_device_name() if cuda else f"cpu ({torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "precision": "bf16 autocast" if cuda else "fp32",
        "model": {k: getattr(PAPER, k) for k in ("layers", "width", "heads", "mlp_dim", "image_dim", "text_dim")},
        "neighbour_tokens": "25 + 75 Pin-Board, 50 Pin-Pin",
        "batch_size": {"training_pairs": batch, "inference_nodes": inference_batch},
        "training_triplets_per_s": round(training_triplets_per_s(store, args.device, batch, steps), 1),
        "inference_nodes_per_s": round(inference_nodes_per_s(args.device, inference_batch, nodes), 1),
        "reference_h100_bf16": REFERENCE_H100_BF16,
        "targets_h100": {"training_triplets_per_s": 16_000, "inference_nodes_per_s": 150_000},
    }
    if args.profile:
        profile_training(store, args.device, batch, args.profile)
    return emit(result, args.out)


if __name__ == "__main__":
    main()
