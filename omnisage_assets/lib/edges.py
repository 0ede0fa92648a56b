"""Building the weighted Pin-Board and Pin-Pin edges from engagements (no Dagster here)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from omnisage_assets.lib import contracts

PIN_BOARD = "pin_board"
PIN_PIN = "pin_pin"


def _counted(src: pa.Array, dst: pa.Array, edge_type: str) -> pa.Table:
    pairs = pa.table({"src_id": src, "dst_id": dst}).group_by(["src_id", "dst_id"]).aggregate(
        [([], "count_all")]
    )
    return pa.table(
        {
            "edge_type": pa.array([edge_type] * pairs.num_rows, pa.string()),
            "src_id": pairs.column("src_id"),
            "dst_id": pairs.column("dst_id"),
            "weight": pc.cast(pairs.column("count_all"), pa.float32()),
        },
        schema=contracts.GRAPH_EDGES,
    )


def build_graph_edges(engagements: pa.Table) -> pa.Table:
    """Undirected weighted edges; the weight is the number of engagements behind the edge.

    Pin-Board: a Pin saved to a board. Pin-Pin: a click or save on the related-Pins surface
    of a query Pin, stored once per unordered pair (src_id < dst_id).
    """
    saves = engagements.filter(
        pc.and_(pc.equal(engagements["action"], "save"), pc.is_valid(engagements["board_id"]))
    )
    pin_board = _counted(saves["pin_id"], saves["board_id"], PIN_BOARD)

    related = engagements.filter(
        pc.and_(
            pc.equal(engagements["surface"], "related"),
            pc.and_(
                pc.is_valid(engagements["query_pin_id"]),
                pc.not_equal(engagements["query_pin_id"], engagements["pin_id"]),
            ),
        )
    )
    a, b = related["query_pin_id"], related["pin_id"]
    pin_pin = _counted(pc.min_element_wise(a, b), pc.max_element_wise(a, b), PIN_PIN)
    return pa.concat_tables([pin_board, pin_pin])


def edge_problems(edges: pa.Table, pin_ids: pa.Array, board_ids: pa.Array) -> list[str]:
    """Every reason these edges would poison the graph, with offending ids named."""
    problems: list[str] = []
    for edge_type, src_known, dst_known, dst_what in (
        (PIN_BOARD, pin_ids, board_ids, "boards"),
        (PIN_PIN, pin_ids, pin_ids, "pins"),
    ):
        part = edges.filter(pc.equal(edges["edge_type"], edge_type))
        for column, known, what in (("src_id", src_known, "pins"), ("dst_id", dst_known, dst_what)):
            unknown = pc.filter(part[column], pc.invert(pc.is_in(part[column], value_set=known)))
            if len(unknown):
                sample = sorted(pc.unique(unknown).to_pylist())[:5]
                problems.append(
                    f"{edge_type}.{column}: {len(unknown)} edge(s) reference unknown {what}, e.g. {sample}"
                )
    bad_type = pc.invert(pc.is_in(edges["edge_type"], value_set=pa.array([PIN_BOARD, PIN_PIN])))
    if pc.any(bad_type).as_py():
        unknown_types = pc.unique(pc.filter(edges["edge_type"], bad_type)).to_pylist()
        problems.append(f"edge_type: unknown values {unknown_types}")
    weight = edges["weight"]
    bad_weight = pc.invert(pc.and_(pc.is_finite(weight), pc.greater(weight, 0)))
    bad_rows = np.flatnonzero(pc.fill_null(bad_weight, True).to_numpy(zero_copy_only=False))
    if len(bad_rows):
        problems.append(
            f"weight: {len(bad_rows)} non-positive or non-finite weight(s), e.g. rows {bad_rows[:5].tolist()}"
        )
    loops = edges.filter(
        pc.and_(pc.equal(edges["edge_type"], PIN_PIN), pc.equal(edges["src_id"], edges["dst_id"]))
    )
    if loops.num_rows:
        sample = loops["src_id"].slice(0, 5).to_pylist()
        problems.append(f"pin_pin: {loops.num_rows} self-loop(s), e.g. pins {sample}")
    return problems


def node_degrees(edges: pa.Table, pin_ids: pa.Array, board_ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Weighted degree of every Pin and board, aligned with ``pin_ids`` / ``board_ids``."""
    pin_deg = np.zeros(len(pin_ids), dtype=np.float64)
    board_deg = np.zeros(len(board_ids), dtype=np.float64)
    w = edges["weight"].to_numpy().astype(np.float64)
    pb = pc.equal(edges["edge_type"], PIN_BOARD).to_numpy(zero_copy_only=False)
    src = pc.index_in(edges["src_id"], value_set=pin_ids).to_numpy(zero_copy_only=False)
    np.add.at(pin_deg, src.astype(np.int64), w)
    dst_board = pc.index_in(edges["dst_id"], value_set=board_ids).to_numpy(zero_copy_only=False)
    np.add.at(board_deg, dst_board[pb].astype(np.int64), w[pb])
    dst_pin = pc.index_in(edges["dst_id"], value_set=pin_ids).to_numpy(zero_copy_only=False)
    np.add.at(pin_deg, dst_pin[~pb].astype(np.int64), w[~pb])
    return pin_deg, board_deg
