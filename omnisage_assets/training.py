"""Training: the example bundle for day D and the OmniSage checkpoint trained on it."""

import dataclasses
import json

import dagster as dg
import great_expectations as gx
import pandas as pd
import pyarrow as pa
import torch

from dagster_defs.partitions import daily_partitions, trailing_window
from dagster_defs.resources import StorageResource
from omnisage_assets.checks import gx_check_result
from omnisage_assets.lib.examples import training_examples as build_training_examples
from omnisage_assets.plots import line_plot_md
from omnisage_model.checkpoint import read_checkpoint_config, save_checkpoint
from omnisage_model.config import ModelConfig, TrainConfig
from omnisage_model.data import feature_dims
from omnisage_model.train import load_training_inputs, train


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
    seq_layers=4, seq_max_len=256, max_neighbors_per_subgraph=None`` on a GPU."""

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
    steps: int = 300
    pair_batch_size: int = 256
    user_batch_size: int = 32
    random_negatives: int = 512
    temperature: float = 0.05
    lr: float = 3e-3
    warmup_steps: int = 30
    pair_weight: float = 1.0
    user_weight: float = 1.0
    seed: int = 0
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
    pool="gpu",
)
def omnisage_checkpoint(
    context: dg.AssetExecutionContext,
    config: TrainingRunConfig,
    storage: StorageResource,
    training_examples: dict[str, pa.Table],
) -> dg.MaterializeResult:
    """OmniSage trained on the day's examples (entity-entity and user-entity tasks, sampled
    softmax with in-batch and random negatives and logQ correction), saved as safetensors."""
    tables = training_examples
    model_config = config.to_model_config(feature_dims(tables["pin_features"]))
    train_config = config.to_train_config()
    store, tasks = load_training_inputs(tables, model_config)
    device = config.resolved_device()
    context.log.info(f"training on {device}: {store.n_nodes} nodes, {len(tasks.pair_query)} pairs, {len(tasks.user_ids)} users")

    def log(record: dict[str, float]) -> None:
        context.log.info(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))

    result = train(store, tasks, model_config, train_config, device=device, log=log)
    out = storage.checkpoint_dir(context.partition_key)
    save_checkpoint(
        out,
        result.model,
        {
            "partition": context.partition_key,
            "train_config": dataclasses.asdict(train_config),
            "history": result.history,
            "seconds": result.seconds,
        },
    )
    steps = [r["step"] for r in result.history]
    curves = {k: [r[k] for r in result.history] for k in ("loss", "loss_pair", "loss_user") if k in result.history[0]}
    return dg.MaterializeResult(
        metadata={
            "path": str(out),
            "device": device,
            "train_seconds": result.seconds,
            "final_loss": result.history[-1]["loss"],
            "first_loss": result.history[0]["loss"],
            "parameters": sum(p.numel() for p in result.model.parameters()),
            "loss_curve": line_plot_md(steps, curves, "step", "training loss"),
        }
    )


@dg.asset_check(asset=omnisage_checkpoint, partitions_def=daily_partitions, blocking=True, description="Checkpoint loads; losses are finite and went down.")
def omnisage_checkpoint_check(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    meta = read_checkpoint_config(storage.checkpoint_dir(context.partition_key))
    history = pd.DataFrame(meta["history"])
    first, last = history["loss"].iloc[0], history["loss"].iloc[-1]
    return gx_check_result(
        history,
        [
            gx.expectations.ExpectColumnValuesToNotBeNull(column="loss"),
            gx.expectations.ExpectColumnValuesToBeBetween(column="loss", min_value=0, max_value=1e6),
        ],
        extra_problems=[] if last < first else [f"loss did not decrease ({first:.4f} -> {last:.4f})"],
        metadata={"history": dg.MetadataValue.json(json.loads(history.tail(5).to_json(orient="records")))},
    )
