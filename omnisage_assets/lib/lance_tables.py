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


def embedding_batches(
    vectors: dict[str, np.ndarray],
    ids: dict[str, np.ndarray],
    model_version: str,
    partition_date: str,
    batch_rows: int = 65_536,
    metadata: dict[bytes, bytes] | None = None,
) -> pa.RecordBatchReader:
    """Every entity's row in the ``EMBEDDINGS`` layout, ``batch_rows`` at a time: ``vectors``
    may be memory-mapped, and only one batch is ever converted."""
    schema = EMBEDDINGS.with_metadata(metadata) if metadata else EMBEDDINGS

    def batches():
        for kind in LANCE_TABLES:
            for start in range(0, len(ids[kind]), batch_rows):
                end = min(start + batch_rows, len(ids[kind]))
                n = end - start
                yield pa.record_batch(
                    [
                        pa.array([kind] * n, pa.string()),
                        pa.array(ids[kind][start:end], pa.int64()),
                        pc.cast(_fixed(vectors[kind][start:end]), pa.list_(pa.float32())),
                        pa.array([model_version] * n, pa.string()),
                        pa.array([partition_date] * n, pa.string()),
                    ],
                    schema=schema,
                )

    return pa.RecordBatchReader.from_batches(schema, batches())


def lance_batches(
    kind: str,
    ids: np.ndarray,
    vectors: np.ndarray,
    model_version: str,
    partition_date: str,
    catalog: pa.Table | None = None,
    seen_pin_ids: pa.Array | None = None,
    batch_rows: int = 65_536,
) -> pa.RecordBatchReader:
    """The LanceDB table of one entity type, ``batch_rows`` at a time, with the text a person
    needs to read results (Pins: title, description; boards: name, description; from
    ``catalog``) and for users the Pins they engaged with (``seen_pin_ids``, aligned with ``ids``)."""
    fields = [
        pa.field("id", pa.int64()),
        pa.field("vector", pa.list_(pa.float32(), vectors.shape[1])),
        pa.field("model_version", pa.string()),
        pa.field("partition_date", pa.string()),
    ]
    text_columns = {"pin": ["title", "description"], "board": ["name", "description"]}.get(kind, [])
    fields += [pa.field(c, pa.string()) for c in text_columns]
    if kind == "user" and seen_pin_ids is not None:
        fields.append(pa.field("seen_pin_ids", pa.list_(pa.int64())))
    schema = pa.schema(fields)
    if text_columns and catalog is None:
        raise ValueError(f"{kind} table: a catalog with {text_columns} is required")
    rows = pc.index_in(pa.array(ids, pa.int64()), value_set=catalog[f"{kind}_id"]) if text_columns else None

    def batches():
        for start in range(0, len(ids), batch_rows):
            end = min(start + batch_rows, len(ids))
            n = end - start
            columns = [
                pa.array(ids[start:end], pa.int64()),
                _fixed(vectors[start:end]),
                pa.array([model_version] * n, pa.string()),
                pa.array([partition_date] * n, pa.string()),
            ]
            if text_columns:
                text = catalog.select(text_columns).take(rows.slice(start, n))
                columns += [text[c].combine_chunks() for c in text_columns]
            if "seen_pin_ids" in schema.names:
                columns.append(seen_pin_ids.slice(start, n))
            yield pa.record_batch(columns, schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())
