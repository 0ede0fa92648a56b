"""Embeddings: batch inference of every Pin, board and user, published to LanceDB."""

import dagster as dg
import great_expectations as gx
import numpy as np
import pyarrow as pa

from dagster_defs.partitions import daily_partitions
from dagster_defs.resources import LanceDBResource, StorageResource
from omnisage_assets.checks import gx_check_result
from omnisage_assets.lib.lance_tables import embeddings_table, lance_tables, publish, vector_matrix
from omnisage_model.checkpoint import load_checkpoint
from omnisage_model.inference import embed_nodes, embed_users
from omnisage_model.train import load_training_inputs


@dg.asset(
    group_name="embeddings",
    kinds={"lancedb", "parquet"},
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
) -> pa.Table:
    """L2-normalised embeddings of all Pins, boards and users (a user's is the sequence
    model's output after their last action in the window), also published to LanceDB
    tables ``pins``, ``boards`` and ``users``."""
    checkpoint = storage.checkpoint_dir(context.partition_key)
    model, meta = load_checkpoint(checkpoint)
    store, tasks = load_training_inputs(training_examples, model.config)
    node_vectors = embed_nodes(model, store)
    pin_vectors = node_vectors[: store.n_pins]
    vectors = {
        "pin": pin_vectors,
        "board": node_vectors[store.n_pins :],
        "user": embed_users(model, pin_vectors, tasks),
    }
    ids = {"pin": store.pin_ids, "board": store.board_ids, "user": tasks.user_ids}
    version = f"omnisage-{context.partition_key}"
    table = embeddings_table(vectors, ids, version, context.partition_key)
    versions = publish(lancedb.connect(), lance_tables(table, pins, boards))
    context.add_output_metadata(
        {
            "pins": len(ids["pin"]),
            "boards": len(ids["board"]),
            "users": len(ids["user"]),
            "dim": int(pin_vectors.shape[1]),
            "model_version": version,
            "lancedb_uri": lancedb.uri,
            **{f"lancedb_version_{k}": v for k, v in versions.items()},
        }
    )
    return table


@dg.asset_check(asset=entity_embeddings, partitions_def=daily_partitions, blocking=True, description="Unit-norm finite vectors, unique ids per entity type.")
def entity_embeddings_check(entity_embeddings: pa.Table) -> dg.AssetCheckResult:
    frame = entity_embeddings.select(["entity_type", "entity_id"]).to_pandas()
    vectors = vector_matrix(entity_embeddings["vector"])
    frame["norm"] = np.linalg.norm(np.nan_to_num(vectors, nan=np.inf), axis=1)
    return gx_check_result(
        frame,
        [
            gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=["entity_type", "entity_id"]),
            gx.expectations.ExpectColumnValuesToBeBetween(column="norm", min_value=0.999, max_value=1.001),
            gx.expectations.ExpectColumnDistinctValuesToContainSet(column="entity_type", value_set=["pin", "board", "user"]),
        ],
    )
