"""Building the weighted Pin-Board and Pin-Pin edges from engagements, and degree pruning.

Edges are stored once, undirected. Pruning works on adjacency lists (what a random walk
leaves a node through), so each row says separately whether its source's and its
destination's list keep it: a board with a million Pins keeps a sample of them, while each
of those Pins still leads to the board.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from omnisage_assets.lib import contracts

PIN_BOARD = "pin_board"
PIN_PIN = "pin_pin"


def _counted(src: pa.Array, dst: pa.Array, edge_type: str) -> pa.Table:
    # group_by's row order follows its threads; sampling walks edges by position, so a fixed
    # order is what makes the neighbourhoods reproducible.
    pairs = (
        pa.table({"src_id": src, "dst_id": dst})
        .group_by(["src_id", "dst_id"])
        .aggregate([([], "count_all")])
        .sort_by([("src_id", "ascending"), ("dst_id", "ascending")])
    )
    return pa.table(
        {
            "edge_type": pa.array([edge_type] * pairs.num_rows, pa.string()),
            "src_id": pairs.column("src_id"),
            "dst_id": pairs.column("dst_id"),
            "weight": pc.cast(pairs.column("count_all"), pa.float32()),
            "kept_by_src": pa.array(np.ones(pairs.num_rows, dtype=bool)),
            "kept_by_dst": pa.array(np.ones(pairs.num_rows, dtype=bool)),
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


@dataclasses.dataclass(frozen=True)
class PruningConfig:
    """A node of degree d keeps max(min(d^alpha, d_max), d_min) of its edges (paper defaults)."""

    alpha: float = 0.86
    d_min: int = 10
    d_max: int = 10_000
    seed: int = 0


def kept_degree(degree: np.ndarray, config: PruningConfig) -> np.ndarray:
    """How many edges a node of each degree keeps; nodes at or below ``d_min`` keep all."""
    target = np.maximum(np.minimum(np.floor(degree.astype(np.float64) ** config.alpha), config.d_max), config.d_min)
    return np.minimum(target, degree).astype(np.int64)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a well-spread 64-bit hash, vectorised (uint64 wraps by design)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _edge_keys(src: np.ndarray, dst: np.ndarray, seed: int, side: int) -> np.ndarray:
    """A random key per (edge, side) that depends on the ids and seed, never on row order."""
    salt = np.uint64((seed * 2 + side) & 0xFFFFFFFFFFFFFFFF)
    return _mix64(_mix64(src.astype(np.uint64) ^ salt) + dst.astype(np.uint64))


def _keep_uniform_sample(node: np.ndarray, key: np.ndarray, config: PruningConfig) -> np.ndarray:
    """For half-edges owned by ``node``: keep each node's ``kept_degree`` lowest-keyed ones."""
    keep = np.ones(len(node), dtype=bool)
    if not len(node):
        return keep
    _, group, degree = np.unique(node, return_inverse=True, return_counts=True)
    target = kept_degree(degree, config)
    pruned = np.flatnonzero((target < degree)[group])  # only hubs pay for the sort
    if len(pruned):
        order = pruned[np.lexsort((key[pruned], group[pruned]))]
        owner = group[order]
        rank = np.arange(len(order)) - np.searchsorted(owner, owner, side="left")
        keep[order[rank >= target[owner]]] = False
    return keep


# The adjacency lists a walk leaves nodes through: (name, edge type, columns that own it).
# Pin-Pin edges are stored once per pair, so a Pin's list spans both columns.
ADJACENCY_LISTS = (
    ("pin->board", PIN_BOARD, ("src",)),
    ("board->pin", PIN_BOARD, ("dst",)),
    ("pin->pin", PIN_PIN, ("src", "dst")),
)


def prune_edges(edges: pa.Table, config: PruningConfig) -> pa.Table:
    """Degree-prune every adjacency list; drop the edges that no endpoint keeps.

    A node's d edges are sampled uniformly without replacement, by keys hashed from
    (seed, edge), so the result does not depend on the order of the input rows.
    """
    parts = []
    for edge_type in (PIN_BOARD, PIN_PIN):
        part = edges.filter(pc.equal(edges["edge_type"], edge_type))
        ids = {side: part[f"{side}_id"].to_numpy() for side in ("src", "dst")}
        kept = {side: part[f"kept_by_{side}"].to_numpy(zero_copy_only=False).copy() for side in ("src", "dst")}
        for _, list_type, sides in ADJACENCY_LISTS:
            if list_type != edge_type:
                continue
            keys = [_edge_keys(ids["src"], ids["dst"], config.seed, i) for i, _ in enumerate(sides)]
            mask = _keep_uniform_sample(np.concatenate([ids[s] for s in sides]), np.concatenate(keys), config)
            for i, side in enumerate(sides):
                kept[side] &= mask[i * part.num_rows : (i + 1) * part.num_rows]
        for side in ("src", "dst"):
            index = part.schema.get_field_index(f"kept_by_{side}")
            part = part.set_column(index, part.schema.field(index), pa.array(kept[side]))
        parts.append(part.filter(pa.array(kept["src"] | kept["dst"])))
    return pa.concat_tables(parts)


def adjacency_lists(edges: pa.Table) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(owner ids, list lengths) of every non-empty adjacency list, by list name."""
    out = {}
    for name, edge_type, sides in ADJACENCY_LISTS:
        part = edges.filter(pc.equal(edges["edge_type"], edge_type))
        owners = [
            part[f"{side}_id"].to_numpy()[part[f"kept_by_{side}"].to_numpy(zero_copy_only=False)] for side in sides
        ]
        out[name] = np.unique(np.concatenate(owners), return_counts=True)
    return out


def adjacency_degrees(edges: pa.Table) -> dict[str, np.ndarray]:
    """Length of every non-empty adjacency list, by list name (see ``ADJACENCY_LISTS``)."""
    return {name: degree for name, (_, degree) in adjacency_lists(edges).items()}


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
    reversed_pairs = edges.filter(
        pc.and_(pc.equal(edges["edge_type"], PIN_PIN), pc.greater(edges["src_id"], edges["dst_id"]))
    )
    if reversed_pairs.num_rows:
        sample = list(zip(reversed_pairs["src_id"].slice(0, 3).to_pylist(), reversed_pairs["dst_id"].slice(0, 3).to_pylist()))
        problems.append(f"pin_pin: {reversed_pairs.num_rows} pair(s) not stored as src_id < dst_id, e.g. {sample}")
    repeats = edges.group_by(["edge_type", "src_id", "dst_id"]).aggregate([([], "count_all")])
    repeats = repeats.filter(pc.greater(repeats["count_all"], 1))
    if repeats.num_rows:
        sample = [(r["edge_type"], r["src_id"], r["dst_id"]) for r in repeats.slice(0, 3).to_pylist()]
        problems.append(f"{repeats.num_rows} edge(s) stored more than once, e.g. {sample}")
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
