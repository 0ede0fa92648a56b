"""Training: the example bundle for day D and the OmniSage checkpoint trained on it."""

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path

import dagster as dg
import great_expectations as gx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from dagster_defs.partitions import daily_partitions, previous_day, trailing_window
from dagster_defs.resources import StorageResource
from dagster_defs.training_launchers import TrainingLauncher
from omnisage_assets.checks import gx_check_result
from omnisage_assets.lib.examples import training_examples as build_training_examples
from omnisage_assets.plots import line_plot_md, table_md
from omnisage_model.checkpoint import CheckpointError, read_checkpoint_config, trained_with
from omnisage_model.config import ModelConfig, TrainConfig
from omnisage_model.data import feature_dims


@dg.asset(
    group_name="training",
    kinds={"parquet"},
    partitions_def=daily_partitions,
    ins={"engagements": dg.AssetIn(partition_mapping=trailing_window)},
)
def training_examples(
    context: dg.AssetExecutionContext,
    engagements: pa.Table,
    graph_edges: pa.Table,
    sampled_neighborhoods: pa.Table,
    content_features: pa.Table,
    pins: pa.Table,
    boards: pa.Table,
) -> dict[str, pa.Table]:
    """Node features (text, image, log degree), neighbourhoods, entity-entity pairs from
    engagements and neighbourhoods, and each user's chronological Pin sequence."""
    bundle = build_training_examples(
        engagements,
        graph_edges,
        sampled_neighborhoods,
        content_features,
        pins["pin_id"].combine_chunks(),
        boards["board_id"].combine_chunks(),
    )
    context.add_output_metadata({f"{name}_rows": t.num_rows for name, t in bundle.items()})
    return bundle


@dg.asset_check(asset=training_examples, partitions_def=daily_partitions, blocking=True, description="Pairs and sequences exist; pair positives are Pins.")
def training_examples_check(training_examples: dict[str, pa.Table]) -> dg.AssetCheckResult:
    pairs = training_examples["pairs"].to_pandas()
    return gx_check_result(
        pairs,
        [
            gx.expectations.ExpectTableRowCountToBeBetween(min_value=1),
            gx.expectations.ExpectColumnValuesToBeInSet(column="query_type", value_set=["pin", "board"]),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="pos_id"),
        ],
        extra_problems=[] if training_examples["sequences"].num_rows else ["no user sequences"],
    )


class TrainingRunConfig(dg.Config):
    """Model and optimisation settings. Defaults are sized for a CPU and the demo world;
    the paper's configuration is ``width=768, heads=12, mlp_dim=3072, seq_width=512,
    seq_layers=4, seq_max_len=256, max_neighbors_per_subgraph=None,
    feature_mlp_hidden=1024`` on a GPU."""

    width: int = 64
    heads: int = 4
    layers: int = 1
    mlp_dim: int = 256
    out_dim: int = 64
    text_dim: int = 64
    seq_width: int = 64
    seq_heads: int = 2
    seq_layers: int = 1
    seq_max_len: int = 32
    max_neighbors_per_subgraph: int | None = 12
    feature_mlp_layers: int = 4
    feature_mlp_hidden: int = 128
    dropout: float = 0.0  # on attention weights
    hidden_dropout: float = 0.0  # on attention and MLP outputs and the sequence model's inputs (SASRec's)
    id_buckets: int = 0  # a learned token per Pin id, hashed into this many buckets (not in the paper; 0: none)
    id_hashes: int = 1  # buckets per Pin id, tokens summed: 2 and more, Pins almost never share them all
    id_init_std: float = 1.0  # initial scale of those tokens (small: Pins start from content and neighbours)
    id_residual: bool = False  # a learned vector per Pin id bucket, zero at first, added to the Pin embedding
    steps: int = 300
    pair_batch_size: int = 256
    user_batch_size: int = 32
    feature_batch_size: int = 128
    random_negatives: int = 512
    pin_candidates: str = "sampled"  # or "all": every Pin, an exact softmax (catalogues of thousands)
    temperature: float = 0.05
    lr: float = 3e-3
    warmup_steps: int = 30
    pair_weight: float = 1.0
    feature_weight: float = 1.0
    user_weight: float = 1.0
    user_positions: int | None = 8  # sequence steps per user that query the user task; None: all
    future_window: int = 16  # actions ahead from which the user task's second target is drawn (1: the next)
    sequence_windows: str = "recent"  # or "random": windows anywhere in a history longer than seq_max_len
    loss_chunk_size: int | None = 256
    checkpoint_every: int = 50  # steps between resumable states: a killed run resumes
    warm_start: bool = True  # start from the previous day's checkpoint when it fits
    seed: int = 0
    deterministic: bool = False  # bit-identical reruns and resumes, at some cost in speed
    device: str = "auto"

    def to_model_config(self, data_dims: dict[str, int]) -> ModelConfig:
        """This run's settings on top of the widths the data dictates (see ``feature_dims``)."""
        fields = {f.name for f in dataclasses.fields(ModelConfig)}
        values = {k: v for k, v in self.model_dump().items() if k in fields}
        return ModelConfig(**values, **data_dims)

    def to_train_config(self) -> TrainConfig:
        return TrainConfig.from_dict({**self.model_dump(), "log_every": max(1, self.steps // 50)})

    def resolved_device(self) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device


@dg.asset(
    group_name="training",
    kinds={"pytorch", "safetensors"},
    partitions_def=daily_partitions,
    deps=[dg.AssetDep("omnisage_checkpoint", partition_mapping=previous_day)],
    # One day per run: each day warm-starts from the day before, so a backfill trains in order.
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    pool="gpu",
)
def omnisage_checkpoint(
    context: dg.AssetExecutionContext,
    config: TrainingRunConfig,
    storage: StorageResource,
    training_launcher: TrainingLauncher,
    training_examples: Path,
) -> dg.MaterializeResult:
    """OmniSage trained on the day's examples: entity-entity, entity-feature and user-entity
    tasks, one sampled softmax with in-batch and random negatives and logQ correction;
    warm-started from the previous day's checkpoint, saved as safetensors.

    Training runs as its own process through Dagster Pipes (``python -m
    omnisage_model.train``, the same entry point a bare GPU box runs): a subprocess here, a
    GPU task on ECS in the AWS deployment (``training_launcher``). It streams its logs and
    reports its metrics back; a killed run resumes from its last state."""
    # The image column and the schema metadata are all feature_dims reads.
    pin_features = pq.read_table(training_examples / "pin_features.parquet", columns=["image"])
    model_config = config.to_model_config(feature_dims(pin_features))
    train_config = config.to_train_config()
    init_from = _previous_checkpoint(context, storage, model_config) if config.warm_start else None
    out = storage.checkpoint_dir(context.partition_key)
    state_dir = storage.path("training_state", context.partition_key)
    meta = {"partition": context.partition_key, "warm_started_from": str(init_from) if init_from else None}
    args = [
        "-m", "omnisage_model.train",
        "--data", str(training_examples),
        "--out", str(out),
        "--model-config", json.dumps(dataclasses.asdict(model_config)),
        "--train-config", json.dumps(dataclasses.asdict(train_config)),
        "--state-dir", str(state_dir),
        "--meta", json.dumps(meta),
        "--device", config.resolved_device(),
    ] + (["--init-from", str(init_from)] if init_from else [])
    context.log.info(f"warm start: {init_from or 'none'}")
    # Two runs of one day would share the resumable state: the second is refused.
    with storage.exclusive("training_state", context.partition_key):
        reported = training_launcher.run(context, args).get_materialize_result()
        shutil.rmtree(state_dir, ignore_errors=True)  # done: a re-materialization starts afresh
    stored = storage.upload("omnisage_checkpoint", context.partition_key)
    history = read_checkpoint_config(out)["history"]
    steps = [r["step"] for r in history]
    curves = {k: [r[k] for r in history] for k in history[0] if k.startswith("loss")}
    final = [{"loss": k, "first": v[0], "last": v[-1]} for k, v in curves.items()]
    return dg.MaterializeResult(
        metadata={
            **reported.metadata,
            "checkpoint": stored,
            "warm_started_from": str(init_from) if init_from else "none",
            "losses": table_md(final, ["loss", "first", "last"]),
            "loss_curve": line_plot_md(steps, curves, "step", "training loss per task"),
        }
    )


def _previous_checkpoint(
    context: dg.AssetExecutionContext, storage: StorageResource, model_config: ModelConfig
) -> Path | None:
    """The previous day's checkpoint, if there is one and it was trained with this architecture."""
    previous = (dt.date.fromisoformat(context.partition_key) - dt.timedelta(days=1)).isoformat()
    directory = storage.download("omnisage_checkpoint", previous)
    if directory is None:
        return None
    try:
        meta = read_checkpoint_config(directory)
    except CheckpointError:
        return None
    if not trained_with(meta, model_config):
        context.log.warning(f"not warm-starting from {directory}: it was trained with another model configuration")
        return None
    return directory


@dg.asset_check(asset=omnisage_checkpoint, partitions_def=daily_partitions, blocking=True, description="Checkpoint loads; losses are finite and went down.")
def omnisage_checkpoint_check(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    meta = read_checkpoint_config(storage.download("omnisage_checkpoint", context.partition_key) or storage.checkpoint_dir(context.partition_key))
    history = pd.DataFrame(meta["history"])
    trend = loss_trend_problem(history["loss"].tolist(), warm_started=bool(meta.get("warm_started_from")))
    return gx_check_result(
        history,
        [
            gx.expectations.ExpectColumnValuesToNotBeNull(column="loss"),
            gx.expectations.ExpectColumnValuesToBeBetween(column="loss", min_value=0, max_value=1e6),
        ],
        extra_problems=[trend] if trend else [],
        metadata={"history": dg.MetadataValue.json(json.loads(history.tail(5).to_json(orient="records")))},
    )


def loss_trend_problem(losses: list[float], warm_started: bool, warm_tolerance: float = 0.1) -> str | None:
    """Why the logged loss curve says training went wrong, or None.

    Single logged losses are one sampled batch each, so the first and last quarters of the
    curve are compared, not the first and last points. A cold start must go down. A warm
    start begins near its floor, where a short day's training may stay level; it must only
    not climb by more than ``warm_tolerance`` (divergence, a bad learning rate)."""
    window = max(1, len(losses) // 4)
    start, end = float(np.mean(losses[:window])), float(np.mean(losses[-window:]))
    if warm_started:
        if end > start * (1 + warm_tolerance):
            return f"warm-started loss rose more than {warm_tolerance:.0%} (mean of first {window} logged: {start:.4f} -> last {window}: {end:.4f})"
        return None
    if end >= start:
        return f"loss did not decrease (mean of first {window} logged: {start:.4f} -> last {window}: {end:.4f})"
    return None
