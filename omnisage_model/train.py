"""Multi-task contrastive training of OmniSage.

Each step embeds, in one pass, every node the step needs (pair queries and positives,
feature-task nodes, sequence Pins, random negatives) and adds three tasks' losses:
entity-entity (a query node retrieves its engaged or neighbouring Pin), entity-feature (an
MLP encoding of a node's and its neighbours' raw features retrieves the node), and
user-entity (the sequence output at step t retrieves the next Pin and a Pin from a future
window). All backpropagate into the entity embedders.

Standalone: ``python -m omnisage_model.train --data DIR --out DIR [--steps N] ...``
where DIR holds the Parquet tables named in ``omnisage_model.data.BUNDLE_TABLES``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from omnisage_model.checkpoint import (
    STATE_JSON,
    load_training_state,
    load_weights,
    recover_training_state,
    save_checkpoint,
    save_training_state,
)
from omnisage_model.config import ModelConfig, TrainConfig
from omnisage_model.data import (
    FeatureStore,
    TaskData,
    build_feature_store,
    build_task_data,
    feature_dims,
    history_windows,
    read_bundle,
)
from omnisage_model.losses import CountMinSketch, candidate_log_q, capped_user_scale, sampled_softmax_loss
from omnisage_model.model import OmniSage, feature_widths


@dataclasses.dataclass
class TrainResult:
    model: OmniSage
    history: list[dict[str, float]]
    seconds: float
    resumed_from_step: int = 0  # 0: started from scratch (or from ``init_from``)
    # ``evaluate``'s scores during training, each with its step: a learning curve in held-out terms.
    evaluations: list[dict[str, float]] = dataclasses.field(default_factory=list)
    # The moving average of the weights (``TrainConfig.ema_decay``), or None.
    averaged: torch.nn.Module | None = None


def lr_lambda(config: TrainConfig) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to zero (or, with ``lr_schedule="constant"``, flat)."""

    def f(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.lr_schedule == "constant":
            return 1.0
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return f


def _training_sequences(
    tasks: TaskData, users: torch.Tensor, max_len: int, config: TrainConfig, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """This step's sequence (B, T) and length (B,) for each user in ``users``: the most recent
    ``max_len`` actions ("recent", what inference embeds), or ``max_len`` consecutive actions at
    a uniformly random place in the whole history ("random"), so that the actions older than
    the most recent window train the user task too."""
    if config.sequence_windows == "recent":
        return tasks.sequences[users], tasks.sequence_length[users]
    where = torch.rand(len(users), generator=g)
    return history_windows(tasks.history, tasks.history_offsets, users, max_len, where)


def _user_queries(
    lengths: torch.Tensor, config: TrainConfig, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(batch row, step, next position, future position) for the user-entity task over sequences
    of ``lengths``: a sample of ``config.user_positions`` steps per sequence, or every step that
    has a next action (None)."""
    if config.user_positions is None:
        n_steps = (lengths - 1).clamp_min(0)
        batch_row = torch.arange(len(lengths)).repeat_interleave(n_steps)
        # Position within each user's run of rows: 0 .. n_steps - 1.
        step = torch.arange(len(batch_row)) - (n_steps.cumsum(0) - n_steps).repeat_interleave(n_steps)
    else:
        batch_row = torch.arange(len(lengths)).repeat_interleave(config.user_positions)
        n_steps = (lengths - 1).clamp_min(1)[batch_row]
        step = (torch.rand(len(batch_row), generator=g) * n_steps).long()
    ahead = 1 + (torch.rand(len(batch_row), generator=g) * config.future_window).long()
    last = lengths[batch_row] - 1
    return batch_row, step, step + 1, torch.minimum(step + ahead, last)


@dataclasses.dataclass
class StepBatch:
    """What one step samples: node ids per task, all embedded in a single pass."""

    random: torch.Tensor
    pair_query: torch.Tensor | None = None
    pair_positive: torch.Tensor | None = None
    feature_nodes: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    sequences: torch.Tensor | None = None  # (B, T) Pin index, -1 = padding
    sequence_length: torch.Tensor | None = None
    user_queries: tuple[torch.Tensor, ...] | None = None

    def nodes(self) -> list[torch.Tensor]:
        parts = [self.random]
        if self.pair_query is not None:
            parts += [self.pair_query, self.pair_positive]
        parts += list(self.feature_nodes.values())
        if self.sequences is not None:
            parts.append(self.sequences[self.sequences >= 0])
        return parts


def _log_q(sketch: CountMinSketch, positives: torch.Tensor, random: torch.Tensor, n_pins: int) -> torch.Tensor:
    sketch.update(positives)
    return candidate_log_q(positives, random, n_pins, sketch)


def train(
    store: FeatureStore,
    tasks: TaskData,
    model_config: ModelConfig,
    config: TrainConfig,
    init_from: Path | None = None,
    device: str = "cpu",
    log: Callable[[dict[str, float]], None] | None = None,
    state_dir: Path | None = None,
    build_model: Callable[[ModelConfig], torch.nn.Module] = OmniSage,
    evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
    evaluate_every: int = 0,
) -> TrainResult:
    """Train for ``config.steps`` steps: L = l_p L_pair + l_f L_feature + l_s (L_next + L_future).

    With ``state_dir``, a resumable state is written there every ``config.checkpoint_every``
    steps, and a run that finds one there continues from it (a killed run resumes).
    ``build_model`` swaps the architecture (a baseline with ``embed`` only trains the
    entity-entity task).

    ``evaluate`` scores the model (in eval mode, no gradients) every ``evaluate_every`` steps
    before the last; its records go to ``log`` too and land in ``TrainResult.evaluations`` and
    in the resumable state, so a resumed run's curve is whole. It must not draw random
    numbers, so that a scored run trains exactly as an unscored one; its time is left out of
    ``seconds``.
    """
    with _deterministic_algorithms(config.deterministic):
        return _train(
            store, tasks, model_config, config, init_from, device, log, state_dir, build_model, evaluate, evaluate_every
        )


@contextlib.contextmanager
def _deterministic_algorithms(enabled: bool):
    previous = torch.are_deterministic_algorithms_enabled()
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what cuBLAS needs for it
    # warn_only: an op without a deterministic kernel (on some GPUs) warns rather than fails.
    torch.use_deterministic_algorithms(enabled or previous, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def _train(
    store: FeatureStore,
    tasks: TaskData,
    model_config: ModelConfig,
    config: TrainConfig,
    init_from: Path | None,
    device: str,
    log: Callable[[dict[str, float]], None] | None,
    state_dir: Path | None,
    build_model: Callable[[ModelConfig], torch.nn.Module],
    evaluate: Callable[[torch.nn.Module], dict[str, float]] | None,
    evaluate_every: int,
) -> TrainResult:
    torch.manual_seed(config.seed)
    g = torch.Generator().manual_seed(config.seed)
    model = build_model(model_config)
    if init_from is not None:
        load_weights(model, init_from)
    model.to(device)
    store = store.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ema = (
        None
        if config.ema_decay is None
        else torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(config.ema_decay), use_buffers=True
        )
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(config))
    n_pins = store.n_pins
    eligible_users = (tasks.sequence_length >= 2).nonzero().squeeze(1)
    use_users = config.user_weight > 0 and len(eligible_users) > 0
    use_pairs = config.pair_weight > 0 and len(tasks.pair_query) > 0
    with_feature = {
        name: store.raw_feature(name)[1].cpu().nonzero().squeeze(1) for name in feature_widths(model_config)
    }
    with_feature = {k: v for k, v in with_feature.items() if config.feature_weight > 0 and len(v) > 0}
    if not (use_users or use_pairs or with_feature):
        raise ValueError("no training signal: no pairs, no raw features and no user sequences of length >= 2")
    # One frequency stream per task: each task's in-batch candidates are its own positives.
    sketches = {
        name: CountMinSketch(seed=config.seed + i)
        for i, name in enumerate(["pair", "user", *(f"feature_{k}" for k in with_feature)])
    }
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if str(device).startswith("cuda") else torch.autocast("cpu", enabled=False)
    chunk = config.loss_chunk_size
    all_pins = config.pin_candidates == "all"
    no_correction = torch.zeros(n_pins, device=device)

    history: list[dict[str, float]] = []
    evaluations: list[dict[str, float]] = []
    first_step, elapsed = 0, 0.0
    configs = {"model_config": dataclasses.asdict(model_config), "train_config": dataclasses.asdict(config)}
    if state_dir is not None:
        recover_training_state(state_dir)
    if state_dir is not None and _same_configs(Path(state_dir), configs):
        extra, meta = load_training_state(state_dir, model, opt, sched)
        first_step, history, evaluations, elapsed = meta["step"], meta["history"], meta["evaluations"], meta["seconds"]
        g.set_state(extra["generator"])
        torch.set_rng_state(extra["torch_rng"])
        for name, sketch in sketches.items():
            sketch.counts.copy_(extra[f"sketch_{name}"])
            sketch.total = meta["sketch_totals"][name]
        if ema is not None:
            ema.load_state_dict({k.removeprefix("ema."): v for k, v in extra.items() if k.startswith("ema.")})
    start = time.perf_counter() - elapsed
    for step in range(first_step, config.steps):
        model.train()
        random = torch.arange(n_pins) if all_pins else torch.randint(0, n_pins, (config.random_negatives,), generator=g)
        batch = StepBatch(random=random)
        if use_pairs:
            b = torch.randint(0, len(tasks.pair_query), (config.pair_batch_size,), generator=g)
            batch.pair_query, batch.pair_positive = tasks.pair_query[b], tasks.pair_positive[b]
        for name, nodes in with_feature.items():
            batch.feature_nodes[name] = nodes[torch.randint(0, len(nodes), (config.feature_batch_size,), generator=g)]
        if use_users:
            users = eligible_users[torch.randint(0, len(eligible_users), (config.user_batch_size,), generator=g)]
            batch.sequences, batch.sequence_length = _training_sequences(tasks, users, model_config.seq_max_len, config, g)
            batch.user_queries = _user_queries(batch.sequence_length, config, g)
        parts = batch.nodes()
        nodes, inverse = torch.unique(torch.cat(parts), return_inverse=True)
        slices = dict(zip(range(len(parts)), torch.split(inverse.to(device), [len(p) for p in parts])))
        with autocast:
            emb = model.embed(store, nodes.to(device))
            rand_emb = emb[slices[0]]
            rand_ids = batch.random.to(device)
            losses: dict[str, torch.Tensor] = {}
            part = 1

            def contrastive(queries: torch.Tensor, positive_emb: torch.Tensor, positives: torch.Tensor, sketch: str) -> torch.Tensor:
                if all_pins and sketch in ("pair", "user"):  # the feature task may retrieve boards
                    # Column i of the candidates is Pin i: the positives are their own targets.
                    return sampled_softmax_loss(queries, rand_emb, positives.to(device), rand_ids, no_correction, config.temperature, chunk)
                log_q = _log_q(sketches[sketch], positives, batch.random, n_pins).to(device)
                cand = torch.cat([positive_emb, rand_emb])
                cand_ids = torch.cat([positives.to(device), rand_ids])
                target = torch.arange(len(positives), device=device)
                return sampled_softmax_loss(queries, cand, target, cand_ids, log_q, config.temperature, chunk)

            if use_pairs:
                losses["pair"] = contrastive(emb[slices[1]], emb[slices[2]], batch.pair_positive, "pair")
                part = 3
            for name, feature_nodes in batch.feature_nodes.items():
                queries = model.feature_encoders(store, feature_nodes.to(device), name)
                losses[f"feature_{name}"] = contrastive(queries, emb[slices[part]], feature_nodes, f"feature_{name}")
                part += 1
            if use_users:
                seq = batch.sequences
                seq_emb = torch.zeros(*seq.shape, emb.shape[1], device=device, dtype=emb.dtype)
                seq_emb[(seq >= 0).to(device)] = emb[slices[part]]
                capped = config.user_scale == "capped"
                out = model.embed_sequence(seq_emb, batch.sequence_length.to(device), unit=not capped)
                brow, ustep, next_pos, future_pos = (t.to(device) for t in batch.user_queries)
                queries = capped_user_scale(out[brow, ustep], config.temperature) if capped else out[brow, ustep]
                for name, pos in (("user_next", next_pos), ("user_future", future_pos)):
                    if name == "user_future" and config.future_window == 1:
                        # A window of one action: the future target is the next one, the same
                        # loss, counted again rather than computed again (a seventh of a CPU step).
                        losses[name] = losses["user_next"]
                        break
                    targets = seq.to(device)[brow, pos]
                    losses[name] = contrastive(queries, seq_emb[brow, pos], targets.cpu(), "user")
            feature_losses = [v for k, v in losses.items() if k.startswith("feature_")]
            loss = (
                config.pair_weight * losses.get("pair", 0.0)
                + config.feature_weight * (sum(feature_losses) / len(feature_losses) if feature_losses else 0.0)
                + config.user_weight * (losses.get("user_next", 0.0) + losses.get("user_future", 0.0))
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        sched.step()
        if ema is not None:
            ema.update_parameters(model)
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
        done = step + 1
        if evaluate is not None and evaluate_every and done % evaluate_every == 0 and done < config.steps:
            began = time.perf_counter()
            model.eval()
            with torch.no_grad():
                scores = evaluate(model)
                if ema is not None:
                    scores |= {f"ema_{k}": v for k, v in evaluate(ema.module.eval()).items()}
                evaluations.append({"step": done, **scores})
            if log is not None:
                log(evaluations[-1])
            start += time.perf_counter() - began  # ``seconds`` counts training only
        if state_dir is not None and config.checkpoint_every and done % config.checkpoint_every == 0 and done < config.steps:
            save_training_state(
                state_dir,
                model,
                opt,
                sched,
                {
                    "generator": g.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    **{f"sketch_{k}": v.counts for k, v in sketches.items()},
                    **({f"ema.{k}": v for k, v in ema.state_dict().items()} if ema is not None else {}),
                },
                {
                    **configs,
                    "step": done,
                    "history": history,
                    "evaluations": evaluations,
                    "seconds": time.perf_counter() - start,
                    "sketch_totals": {k: v.total for k, v in sketches.items()},
                },
            )
    averaged = None if ema is None else ema.module.cpu()
    return TrainResult(model.cpu(), history, time.perf_counter() - start, first_step, evaluations, averaged)


def _same_configs(state_dir: Path, configs: dict[str, Any]) -> bool:
    """Whether ``state_dir`` holds a state this very configuration wrote (else: start afresh)."""
    try:
        meta = json.loads((state_dir / STATE_JSON).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return all(meta.get(k) == v for k, v in json.loads(json.dumps(configs)).items())


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


def _pipes_session() -> contextlib.AbstractContextManager:
    """Dagster Pipes when Dagster launched this process (it sets the context variable), else
    nothing: on a bare GPU box the trainer needs neither dagster nor dagster-pipes."""
    if "DAGSTER_PIPES_CONTEXT" not in os.environ:
        return contextlib.nullcontext(None)
    from dagster_pipes import open_dagster_pipes

    return open_dagster_pipes()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train OmniSage on a folder of Parquet tables.")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model-config", type=json.loads, default="{}", help="JSON of ModelConfig fields")
    parser.add_argument("--train-config", type=json.loads, default="{}", help="JSON of TrainConfig fields")
    parser.add_argument("--init-from", type=Path, default=None, help="warm start from this checkpoint")
    parser.add_argument("--state-dir", type=Path, default=None, help="resumable state: written every checkpoint_every steps, resumed if present")
    parser.add_argument("--meta", type=json.loads, default="{}", help="JSON stored in the checkpoint's config")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    with _pipes_session() as pipes:
        tables = read_bundle(args.data)
        model_config = ModelConfig.from_dict({**feature_dims(tables["pin_features"]), **args.model_config})
        config = TrainConfig.from_dict(args.train_config)
        store, tasks = load_training_inputs(tables, model_config)
        if pipes:
            pipes.log.info(f"training on {args.device}: {store.n_nodes} nodes, {len(tasks.pair_query)} pairs, {len(tasks.user_ids)} users")

        def log(record: dict[str, float]) -> None:
            print(json.dumps(record), flush=True)
            if pipes:
                pipes.log.info(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))

        result = train(
            store, tasks, model_config, config, init_from=args.init_from, device=args.device, log=log, state_dir=args.state_dir
        )
        meta = {**args.meta, "train_config": dataclasses.asdict(config), "history": result.history, "seconds": result.seconds}
        save_checkpoint(args.out, result.model if result.averaged is None else result.averaged, meta)
        summary = {
            "path": str(args.out),
            "device": args.device,
            "train_seconds": result.seconds,
            "first_loss": result.history[0]["loss"],
            "final_loss": result.history[-1]["loss"],
            "parameters": sum(p.numel() for p in result.model.parameters()),
            "resumed_from_step": result.resumed_from_step,
        }
        if pipes:
            pipes.report_asset_materialization(metadata=summary)
        print(json.dumps({"checkpoint": str(args.out), **summary, "final": result.history[-1]}))


if __name__ == "__main__":
    main()
