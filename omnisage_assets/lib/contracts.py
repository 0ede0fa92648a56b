"""Arrow data contracts shared by every stage, and the validator that enforces them.

Every table that enters the pipeline passes through :func:`validate`, so a bad file is
rejected at the door with the file, column and row named, instead of surfacing as a
shape error three stages later.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

ENGAGEMENTS = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("pin_id", pa.int64(), nullable=False),
        pa.field("board_id", pa.int64()),
        pa.field("action", pa.string(), nullable=False),
        pa.field("surface", pa.string(), nullable=False),
        pa.field("query_pin_id", pa.int64()),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

PINS = pa.schema(
    [
        pa.field("pin_id", pa.int64(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("description", pa.string()),
        # Fixed width is checked by the validator, not the type, so worlds may choose it.
        pa.field("image", pa.list_(pa.float32())),
    ]
)

BOARDS = pa.schema(
    [
        pa.field("board_id", pa.int64(), nullable=False),
        pa.field("owner_user_id", pa.int64(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("description", pa.string()),
    ]
)

GRAPH_EDGES = pa.schema(
    [
        pa.field("edge_type", pa.string(), nullable=False),
        pa.field("src_id", pa.int64(), nullable=False),
        pa.field("dst_id", pa.int64(), nullable=False),
        pa.field("weight", pa.float32(), nullable=False),
        # Degree pruning keeps an edge in each endpoint's adjacency list separately.
        pa.field("kept_by_src", pa.bool_(), nullable=False),
        pa.field("kept_by_dst", pa.bool_(), nullable=False),
    ]
)

NEIGHBORHOODS = pa.schema(
    [
        pa.field("node_type", pa.string(), nullable=False),
        pa.field("node_id", pa.int64(), nullable=False),
        pa.field("subgraph", pa.string(), nullable=False),
        pa.field("neighbor_type", pa.list_(pa.string()), nullable=False),
        pa.field("neighbor_id", pa.list_(pa.int64()), nullable=False),
        pa.field("score", pa.list_(pa.float32()), nullable=False),
    ]
)

ACTIONS = ("save", "click")
SURFACES = ("home", "related", "search", "board")


class ContractError(ValueError):
    """A table does not satisfy its data contract; the message names file, column and row."""


def _first_true(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.index(pc.fill_null(mask, False), True).as_py())


def _first_uncastable_row(column: pa.ChunkedArray, target: pa.DataType) -> tuple[int, object]:
    """Row and value of the first element that will not cast; only called on the error path."""
    offset = 0
    for chunk in column.chunks:
        for i in range(len(chunk)):
            try:
                pc.cast(chunk.slice(i, 1), target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return offset + i, chunk[i].as_py()
        offset += len(chunk)
    return -1, None


def validate(table: pa.Table, schema: pa.Schema, source: str) -> pa.Table:
    """Return ``table`` cast to ``schema`` (columns in contract order, extras dropped).

    Raises :class:`ContractError` naming ``source`` (a file or asset), the column and the
    first offending row when a column is missing, cannot be cast, or holds a null where the
    contract forbids one.
    """
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise ContractError(
            f"{source}: missing column(s) {missing}; expected {[f.name for f in schema]}, "
            f"found {table.column_names}"
        )
    columns = []
    for field in schema:
        column = table.column(field.name)
        if not column.type.equals(field.type):
            try:
                column = pc.cast(column, field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                row, value = _first_uncastable_row(column, field.type)
                raise ContractError(
                    f"{source}: column '{field.name}' row {row}: value {value!r} is not "
                    f"{field.type} ({err})"
                ) from None
        if not field.nullable and column.null_count:
            row = _first_true(pc.is_null(column))
            raise ContractError(f"{source}: column '{field.name}' row {row}: null is not allowed")
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def require_unique(table: pa.Table, column: str, source: str) -> None:
    """Reject duplicate ids, naming a sample of them."""
    counts = pc.value_counts(table.column(column).combine_chunks())
    dupes = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
    if len(dupes):
        raise ContractError(
            f"{source}: column '{column}' has {len(dupes)} duplicate id(s), e.g. "
            f"{dupes.slice(0, 5).to_pylist()}"
        )


def require_values_in(table: pa.Table, column: str, allowed: tuple[str, ...], source: str) -> None:
    bad = pc.invert(pc.is_in(table.column(column), value_set=pa.array(allowed)))
    if pc.any(pc.fill_null(bad, False)).as_py():
        row = _first_true(bad)
        raise ContractError(
            f"{source}: column '{column}' row {row}: {table.column(column)[row].as_py()!r} "
            f"is not one of {list(allowed)}"
        )


def require_known_ids(
    table: pa.Table, column: str, known: pa.Array, what: str, source: str
) -> None:
    """Reject references to ids that the referenced table does not hold."""
    values = table.column(column)
    unknown = pc.and_(pc.is_valid(values), pc.invert(pc.is_in(values, value_set=known)))
    n_unknown = pc.sum(pc.cast(unknown, pa.int64())).as_py() or 0
    if n_unknown:
        row = _first_true(unknown)
        sample = pc.unique(pc.filter(values, unknown)).slice(0, 5).to_pylist()
        raise ContractError(
            f"{source}: column '{column}' has {n_unknown} reference(s) to unknown {what} "
            f"(first at row {row}), e.g. {sample}"
        )


def require_fixed_width(table: pa.Table, column: str, width: int, source: str) -> None:
    lengths = pc.list_value_length(table.column(column))
    bad = pc.and_(pc.is_valid(lengths), pc.not_equal(lengths, width))
    if pc.any(pc.fill_null(bad, False)).as_py():
        row = _first_true(bad)
        raise ContractError(
            f"{source}: column '{column}' row {row}: vector has {lengths[row].as_py()} values, "
            f"expected {width}"
        )
    flat = pc.list_flatten(table.column(column))
    if len(flat) and not pc.all(pc.is_finite(flat)).as_py():
        row_of_value = pc.list_parent_indices(table.column(column))
        bad_value = _first_true(pc.invert(pc.is_finite(flat)))
        raise ContractError(
            f"{source}: column '{column}' row {row_of_value[bad_value].as_py()}: "
            "vector holds NaN or infinite values"
        )


def drop_duplicate_rows(table: pa.Table) -> tuple[pa.Table, int]:
    """The table without exact duplicate rows (at-least-once delivery repeats events), first
    occurrences kept in their order; and how many were dropped."""
    indexed = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
    first = indexed.group_by(table.column_names, use_threads=False).aggregate([("__row", "min")])
    keep = pc.sort_indices(first["__row_min"])
    rows = pc.take(first["__row_min"], keep)
    return table.take(rows), table.num_rows - len(rows)
