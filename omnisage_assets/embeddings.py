"""Embeddings: batch inference of every Pin, board and user, then a LanceDB release.

Three steps, so nothing half-done is ever served: ``entity_embeddings`` computes the
vectors (Parquet) and stages them in LanceDB under names of their own;
``embedding_index`` builds the ANN indexes there, and its blocking check measures their
recall against exact search; ``published_embeddings`` names them the current release.
"""

import dataclasses
import json
import shutil

import dagster as dg
import great_expectations as gx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from dagster_defs.partitions import daily_partitions
from dagster_defs.resources import LanceDBResource, StorageResource
from omnisage_assets.checks import gx_check_result
from omnisage_assets.lib.lance_release import (
    IndexConfig,
    build_indexes,
    cleanup,
    current_release,
    index_recall,
    publish_release,
    stage_tables,
)
from omnisage_assets.lib.lance_tables import LANCE_TABLES, embedding_batches, lance_batches, vector_matrix
from omnisage_assets.plots import table_md
from omnisage_model.checkpoint import load_checkpoint
from omnisage_model.inference import embed_nodes, embed_users
from omnisage_model.train import load_training_inputs

STAGED_KEY = b"lance_tables"  # schema metadata of entity_embeddings: {name: staged table}


def _seen_pin_ids(sequences: np.ndarray, pin_ids: np.ndarray) -> pa.Array:
    """Each user's engaged Pins (their training sequence), as a list column."""
    mask = sequences >= 0
    offsets = np.concatenate([[0], np.cumsum(mask.sum(1))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(pin_ids[sequences[mask]], pa.int64()))


@dg.asset(
    group_name="embeddings",
    kinds={"pytorch", "parquet"},
    partitions_def=daily_partitions,
    deps=["omnisage_checkpoint"],
)
def entity_embeddings(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    lancedb: LanceDBResource,
    training_examples: dict[str, pa.Table],
    pins: pa.Table,
    boards: pa.Table,
) -> pa.RecordBatchReader:
    """L2-normalised embeddings of all Pins, boards and users (a user's is the sequence
    model's output after their last action in the window), staged in LanceDB (not served yet)."""
    local_checkpoint = storage.download("omnisage_checkpoint", context.partition_key)
    checkpoint = storage.uri("omnisage_checkpoint", context.partition_key)
    if local_checkpoint is None:
        raise dg.Failure(f"no checkpoint at {checkpoint}: materialize omnisage_checkpoint {context.partition_key} first")
    model, _ = load_checkpoint(local_checkpoint)
    store, tasks = load_training_inputs(training_examples, model.config)
    # Vectors go to memory-mapped scratch files as they are computed, and every table below
    # is streamed from them batch by batch: memory holds the features, not the outputs.
    scratch = storage.path("embedding_vectors", context.partition_key)
    scratch.mkdir(parents=True, exist_ok=True)
    dim = model.config.out_dim
    nodes = np.lib.format.open_memmap(scratch / "nodes.npy", mode="w+", dtype=np.float32, shape=(store.n_nodes, dim))
    embed_nodes(model, store, out=nodes)
    users = np.lib.format.open_memmap(scratch / "users.npy", mode="w+", dtype=np.float32, shape=(len(tasks.user_ids), dim))
    embed_users(model, nodes[: store.n_pins], tasks, out=users)
    vectors = {"pin": nodes[: store.n_pins], "board": nodes[store.n_pins :], "user": users}
    ids = {"pin": store.pin_ids, "board": store.board_ids, "user": tasks.user_ids}
    version = f"omnisage-{context.partition_key}"
    seen = _seen_pin_ids(tasks.sequences.numpy(), store.pin_ids)
    catalogs = {"pin": pins, "board": boards, "user": None}
    staged = stage_tables(
        lancedb.connect(),
        {
            name: lance_batches(kind, ids[kind], vectors[kind], version, context.partition_key, catalogs[kind], seen)
            for kind, name in LANCE_TABLES.items()
        },
        context.partition_key,
    )
    context.add_output_metadata(
        {
            "pins": len(ids["pin"]),
            "boards": len(ids["board"]),
            "users": len(ids["user"]),
            "dim": dim,
            "model_version": version,
            "checkpoint": checkpoint,
            "staged_tables": dg.MetadataValue.json(staged),
        }
    )
    metadata = {STAGED_KEY: json.dumps(staged).encode(), b"checkpoint": checkpoint.encode()}
    rows = embedding_batches(vectors, ids, version, context.partition_key, metadata=metadata)

    def rows_then_drop_scratch():
        try:
            yield from rows
        finally:  # the IO manager has written every row (or given up)
            shutil.rmtree(scratch, ignore_errors=True)

    return pa.RecordBatchReader.from_batches(rows.schema, rows_then_drop_scratch())


@dg.asset_check(asset=entity_embeddings, partitions_def=daily_partitions, blocking=True, description="Unit-norm finite vectors, unique ids per entity type.")
def entity_embeddings_check(entity_embeddings: ds.Dataset) -> dg.AssetCheckResult:
    frame = entity_embeddings.to_table(columns=["entity_type", "entity_id"]).to_pandas()
    # Norms batch by batch: the vectors are never all in memory.
    frame["norm"] = np.concatenate(
        [
            np.linalg.norm(np.nan_to_num(vector_matrix(batch.column("vector")), nan=np.inf), axis=1)
            for batch in entity_embeddings.to_batches(columns=["vector"])
        ]
        or [np.zeros(0)]
    )
    return gx_check_result(
        frame,
        [
            gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=["entity_type", "entity_id"]),
            gx.expectations.ExpectColumnValuesToBeBetween(column="norm", min_value=0.999, max_value=1.001),
            gx.expectations.ExpectColumnDistinctValuesToContainSet(column="entity_type", value_set=["pin", "board", "user"]),
        ],
    )


def _staged(entity_embeddings: ds.Dataset) -> dict[str, str]:
    return json.loads(entity_embeddings.schema.metadata[STAGED_KEY])


class IndexRunConfig(dg.Config):
    """The ANN index and the query setting readers will use with it (see ``IndexConfig``)."""

    index_type: str = IndexConfig.index_type
    rows_per_partition: int = IndexConfig.rows_per_partition
    min_rows: int = IndexConfig.min_rows
    nprobes: int = IndexConfig.nprobes
    ef: int | None = IndexConfig.ef

    def index(self) -> IndexConfig:
        return IndexConfig(**self.model_dump())


def _served_setting(instance: dg.DagsterInstance, partition: str) -> IndexConfig:
    """The index setting ``embedding_index`` recorded for this day: what the check measures
    and what the release hands to readers, so the three never disagree."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("embedding_index"), asset_partitions=[partition]), limit=1
    ).records
    if not records:
        raise LookupError(f"embedding_index has no materialization for {partition}")
    return IndexConfig(**records[0].asset_materialization.metadata["query_setting"].value)


@dg.asset(group_name="embeddings", kinds={"lancedb"}, partitions_def=daily_partitions)
def embedding_index(
    context: dg.AssetExecutionContext, config: IndexRunConfig, lancedb: LanceDBResource, entity_embeddings: ds.Dataset
) -> dg.MaterializeResult:
    """ANN indexes on the staged tables, built before anyone reads them."""
    index = config.index()
    built = build_indexes(lancedb.connect(), _staged(entity_embeddings), index)
    rows = [{"table": name, **{k: info.get(k, "") for k in ("index", "rows", "partitions", "seconds")}} for name, info in built.items()]
    return dg.MaterializeResult(
        metadata={
            "indexes": table_md(rows, ["table", "index", "rows", "partitions", "seconds"]),
            "query_setting": dg.MetadataValue.json(dataclasses.asdict(index)),
        }
    )


class IndexCheckConfig(dg.Config):
    recall_floor: float = 0.9
    queries: int = 200


@dg.asset_check(
    asset=embedding_index,
    partitions_def=daily_partitions,
    blocking=True,
    additional_ins={"entity_embeddings": dg.AssetIn()},
    description="Recall@10 of the served query against exact search (index bypassed), on sampled queries.",
)
def embedding_index_check(
    context: dg.AssetCheckExecutionContext, config: IndexCheckConfig, lancedb: LanceDBResource, entity_embeddings: ds.Dataset
) -> dg.AssetCheckResult:
    db = lancedb.connect()
    served = _served_setting(context.instance, context.partition_key)
    frames = [
        pd.DataFrame({"table": name, "recall_at_10": index_recall(db, table, served, config.queries)})
        for name, table in _staged(entity_embeddings).items()
    ]
    facts = pd.concat(frames, ignore_index=True)
    per_table = facts.groupby("table")["recall_at_10"].mean()
    return gx_check_result(
        facts,
        [
            gx.expectations.ExpectColumnMeanToBeBetween(column="recall_at_10", min_value=config.recall_floor, max_value=1.0),
            *[
                gx.expectations.ExpectColumnMeanToBeBetween(
                    column="recall_at_10", min_value=config.recall_floor, max_value=1.0,
                    row_condition=f'table == "{name}"', condition_parser="pandas",
                )
                for name in per_table.index
            ],
        ],
        metadata={f"recall_at_10_{name}": float(value) for name, value in per_table.items()},
    )


class PublishConfig(dg.Config):
    keep_releases: int = 3  # releases whose tables stay readable; older ones are dropped


@dg.asset(group_name="embeddings", kinds={"lancedb"}, partitions_def=daily_partitions, deps=[embedding_index])
def published_embeddings(
    context: dg.AssetExecutionContext, config: PublishConfig, lancedb: LanceDBResource, entity_embeddings: ds.Dataset
) -> dg.MaterializeResult:
    """The day's indexed tables become the release readers get: one atomic append to ``releases``."""
    db = lancedb.connect()
    schema = entity_embeddings.schema.metadata
    release = publish_release(
        db,
        context.partition_key,
        _staged(entity_embeddings),
        f"omnisage-{context.partition_key}",
        schema[b"checkpoint"].decode(),
        _served_setting(context.instance, context.partition_key),
    )
    dropped = cleanup(db, config.keep_releases)
    context.log.info(f"release {release['release_id']} is current; dropped {len(dropped)} old table(s)")
    return dg.MaterializeResult(
        metadata={
            "release_id": release["release_id"],
            "tables": dg.MetadataValue.json(json.loads(release["tables"])),
            "checkpoint": release["checkpoint"],
            "query_setting": dg.MetadataValue.json(json.loads(release["query"])),
            "dropped_tables": len(dropped),
            "lancedb_uri": lancedb.uri,
        }
    )


@dg.asset_check(
    asset=published_embeddings,
    partitions_def=daily_partitions,
    additional_ins={"entity_embeddings": dg.AssetIn()},
    description="The current release is this day's, and each of its tables holds every entity once.",
)
def published_embeddings_check(
    context: dg.AssetCheckExecutionContext, lancedb: LanceDBResource, entity_embeddings: pa.Table
) -> dg.AssetCheckResult:
    db = lancedb.connect()
    release = current_release(db)
    expected = dict(zip(*np.unique(entity_embeddings["entity_type"].to_numpy(zero_copy_only=False), return_counts=True)))
    facts = pd.DataFrame(
        [
            {"table": name, "rows": db.open_table(table).count_rows(), "expected": int(expected.get(name[:-1], 0))}
            for name, table in release["tables"].items()
        ]
    )
    facts["matches"] = facts["rows"] == facts["expected"]
    return gx_check_result(
        facts,
        [gx.expectations.ExpectColumnValuesToBeInSet(column="matches", value_set=[True])],
        extra_problems=[]
        if release["partition_date"] == context.partition_key
        else [f"current release is {release['release_id']}, not {context.partition_key}"],
        metadata={"release_id": release["release_id"]},
    )
