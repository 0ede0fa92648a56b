"""Embedding tables: the Arrow layout users read, and publishing them to LanceDB."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EMBEDDINGS = pa.schema(
    [
        pa.field("entity_type", pa.string(), nullable=False),
        pa.field("entity_id", pa.int64(), nullable=False),
        pa.field("vector", pa.list_(pa.float32()), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("partition_date", pa.string(), nullable=False),
    ]
)
LANCE_TABLES = {"pin": "pins", "board": "boards", "user": "users"}


def vector_matrix(column: pa.ChunkedArray | pa.Array, dim: int | None = None) -> np.ndarray:
    """(rows, dim) float32 view of an equal-width list column, without a per-row Python loop."""
    # A writable copy: Arrow buffers are read-only and torch.from_numpy warns on those.
    flat = np.array(pc.list_flatten(column).to_numpy(zero_copy_only=False), dtype=np.float32)
    rows = len(column)
    if dim is None:
        dim = len(flat) // rows if rows else 0
    return flat.reshape(rows, dim)


def _fixed(vectors: np.ndarray) -> pa.FixedSizeListArray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])


def embeddings_table(
    vectors: dict[str, np.ndarray], ids: dict[str, np.ndarray], model_version: str, partition_date: str
) -> pa.Table:
    parts = []
    for kind in LANCE_TABLES:
        n = len(ids[kind])
        parts.append(
            pa.table(
                {
                    "entity_type": pa.array([kind] * n, pa.string()),
                    "entity_id": pa.array(ids[kind], pa.int64()),
                    "vector": pc.cast(_fixed(vectors[kind]), pa.list_(pa.float32())),
                    "model_version": pa.array([model_version] * n, pa.string()),
                    "partition_date": pa.array([partition_date] * n, pa.string()),
                },
                schema=EMBEDDINGS,
            )
        )
    return pa.concat_tables(parts)


def lance_tables(
    embeddings: pa.Table, pins: pa.Table, boards: pa.Table, seen_pin_ids: pa.Array | None = None
) -> dict[str, pa.Table]:
    """One LanceDB table per entity type, with the text a person needs to read results, and for
    users the Pins they engaged with (``seen_pin_ids``, aligned with the user rows)."""
    out = {}
    for kind, name in LANCE_TABLES.items():
        rows = embeddings.filter(pc.equal(embeddings["entity_type"], kind))
        vectors = vector_matrix(rows["vector"]) if rows.num_rows else np.zeros((0, 1), np.float32)
        table = pa.table(
            {
                "id": rows["entity_id"],
                "vector": _fixed(vectors),
                "model_version": rows["model_version"],
                "partition_date": rows["partition_date"],
            }
        )
        if kind == "pin":
            text = pins.take(pc.index_in(rows["entity_id"], value_set=pins["pin_id"]))
            table = table.append_column("title", text["title"]).append_column("description", text["description"])
        elif kind == "board":
            text = boards.take(pc.index_in(rows["entity_id"], value_set=boards["board_id"]))
            table = table.append_column("name", text["name"]).append_column("description", text["description"])
        elif seen_pin_ids is not None:
            table = table.append_column("seen_pin_ids", seen_pin_ids)
        out[name] = table
    return out
