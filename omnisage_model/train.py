"""Multi-task contrastive training of OmniSage.

Each step embeds, in one pass, every node the step needs (pair queries and positives,
sequence Pins, random negatives) and adds two losses: entity-entity (a query node
retrieves its engaged or neighbouring Pin) and user-entity (the sequence output at step t
retrieves the next Pin and a Pin from a future window). Both backpropagate into the
entity embedders.

Standalone: ``python -m omnisage_model.train --data DIR --out DIR [--steps N] ...``
where DIR holds the Parquet tables named in ``omnisage_model.data.BUNDLE_TABLES``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from omnisage_model.checkpoint import load_weights, save_checkpoint
from omnisage_model.config import ModelConfig, TrainConfig
from omnisage_model.data import FeatureStore, TaskData, build_feature_store, build_task_data, feature_dims, read_bundle
from omnisage_model.losses import CountMinSketch, candidate_log_q, sampled_softmax_loss
from omnisage_model.model import OmniSage

POSITIONS_PER_USER = 8


@dataclasses.dataclass
class TrainResult:
    model: OmniSage
    history: list[dict[str, float]]
    seconds: float


def lr_lambda(config: TrainConfig) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to zero."""

    def f(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return f


def _user_queries(
    tasks: TaskData, users: torch.Tensor, config: TrainConfig, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sampled (batch row, step, next position, future position) for the user-entity task."""
    lengths = tasks.sequence_length[users]
    rows = users.repeat_interleave(POSITIONS_PER_USER)
    batch_row = torch.arange(len(users)).repeat_interleave(POSITIONS_PER_USER)
    n_steps = (lengths - 1).clamp_min(1).repeat_interleave(POSITIONS_PER_USER)
    step = (torch.rand(len(rows), generator=g) * n_steps).long()
    ahead = 1 + (torch.rand(len(rows), generator=g) * config.future_window).long()
    last = tasks.sequence_length[rows] - 1
    return batch_row, step, step + 1, torch.minimum(step + ahead, last)


def train(
    store: FeatureStore,
    tasks: TaskData,
    model_config: ModelConfig,
    config: TrainConfig,
    init_from: Path | None = None,
    device: str = "cpu",
    log: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    torch.manual_seed(config.seed)
    g = torch.Generator().manual_seed(config.seed)
    model = OmniSage(model_config)
    if init_from is not None:
        load_weights(model, init_from)
    model.to(device)
    store = store.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(config))
    # One frequency stream per task: each task's in-batch candidates are its own positives.
    sketches = {"pair": CountMinSketch(seed=config.seed), "user": CountMinSketch(seed=config.seed + 1)}
    n_pins = store.n_pins
    eligible_users = (tasks.sequence_length >= 2).nonzero().squeeze(1)
    use_users = config.user_weight > 0 and len(eligible_users) > 0
    use_pairs = config.pair_weight > 0 and len(tasks.pair_query) > 0
    if not (use_users or use_pairs):
        raise ValueError("no training signal: no pairs and no user sequences of length >= 2")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if str(device).startswith("cuda") else torch.autocast("cpu", enabled=False)

    history: list[dict[str, float]] = []
    start = time.perf_counter()
    for step in range(config.steps):
        model.train()
        parts: list[torch.Tensor] = []
        rand = torch.randint(0, n_pins, (config.random_negatives,), generator=g)
        parts.append(rand)
        if use_pairs:
            b = torch.randint(0, len(tasks.pair_query), (config.pair_batch_size,), generator=g)
            pq, pp = tasks.pair_query[b], tasks.pair_positive[b]
            parts += [pq, pp]
        if use_users:
            users = eligible_users[torch.randint(0, len(eligible_users), (config.user_batch_size,), generator=g)]
            seq = tasks.sequences[users]
            brow, ustep, next_pos, future_pos = _user_queries(tasks, users, config, g)
            parts += [seq[seq >= 0]]
        nodes, inverse = torch.unique(torch.cat(parts), return_inverse=True)
        with autocast:
            emb = model.embed(store, nodes.to(device))
            inv = inverse.to(device)
            offset = config.random_negatives
            rand_emb = emb[inv[:offset]]
            losses: dict[str, torch.Tensor] = {}
            if use_pairs:
                n = len(pq)
                q_emb, p_emb = emb[inv[offset : offset + n]], emb[inv[offset + n : offset + 2 * n]]
                offset += 2 * n
                sketches["pair"].update(pp)
                cand = torch.cat([p_emb, rand_emb])
                cand_ids = torch.cat([pp, rand]).to(device)
                log_q = candidate_log_q(pp, n, len(rand), n_pins, sketches["pair"]).to(device)
                target = torch.arange(n, device=device)
                losses["pair"] = sampled_softmax_loss(q_emb, cand, target, cand_ids, log_q, config.temperature)
            if use_users:
                seq_emb = torch.zeros(*seq.shape, emb.shape[1], device=device, dtype=emb.dtype)
                seq_emb[(seq >= 0).to(device)] = emb[inv[offset:]]
                out = model.embed_sequence(seq_emb, tasks.sequence_length[users].to(device))
                queries = out[brow.to(device), ustep.to(device)]
                user_loss = torch.zeros((), device=device)
                for pos in (next_pos, future_pos):
                    targets = seq[brow, pos]
                    sketches["user"].update(targets)
                    t_emb = seq_emb[brow.to(device), pos.to(device)]
                    cand = torch.cat([t_emb, rand_emb])
                    cand_ids = torch.cat([targets, rand]).to(device)
                    log_q = candidate_log_q(targets, len(targets), len(rand), n_pins, sketches["user"]).to(device)
                    target = torch.arange(len(targets), device=device)
                    user_loss = user_loss + sampled_softmax_loss(queries, cand, target, cand_ids, log_q, config.temperature)
                losses["user"] = user_loss / 2
            loss = config.pair_weight * losses.get("pair", 0.0) + config.user_weight * losses.get("user", 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        sched.step()
        if step % config.log_every == 0 or step == config.steps - 1:
            record = {
                "step": step,
                "loss": loss.item(),
                **{f"loss_{k}": v.item() for k, v in losses.items()},
                "lr": sched.get_last_lr()[0],
                "grad_norm": float(grad_norm),
                "seconds": time.perf_counter() - start,
            }
            if not math.isfinite(record["loss"]):
                raise FloatingPointError(f"training diverged at step {step}: {record}")
            history.append(record)
            if log is not None:
                log(record)
    return TrainResult(model=model.cpu(), history=history, seconds=time.perf_counter() - start)


def load_training_inputs(
    tables: dict[str, Any], model_config: ModelConfig
) -> tuple[FeatureStore, TaskData]:
    store = build_feature_store(
        tables,
        image_dim=model_config.image_dim,
        n_text_buckets=model_config.n_text_buckets,
        text_embedding_dim=model_config.text_embedding_dim,
        max_neighbors_per_subgraph=model_config.max_neighbors_per_subgraph,
    )
    tasks = build_task_data(tables, store, max_len=model_config.seq_max_len)
    return store, tasks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train OmniSage on a folder of Parquet tables.")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model-config", type=json.loads, default="{}", help="JSON of ModelConfig fields")
    parser.add_argument("--train-config", type=json.loads, default="{}", help="JSON of TrainConfig fields")
    parser.add_argument("--init-from", type=Path, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    tables = read_bundle(args.data)
    model_config = ModelConfig.from_dict({**feature_dims(tables["pin_features"]), **args.model_config})
    config = TrainConfig.from_dict(args.train_config)
    store, tasks = load_training_inputs(tables, model_config)
    result = train(store, tasks, model_config, config, init_from=args.init_from, device=args.device, log=lambda r: print(json.dumps(r), flush=True))
    save_checkpoint(args.out, result.model, {"train_config": dataclasses.asdict(config), "history": result.history})
    print(json.dumps({"checkpoint": str(args.out), "seconds": result.seconds, "final": result.history[-1]}))


if __name__ == "__main__":
    main()
