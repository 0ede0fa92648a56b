"""Importance-based neighbourhoods: random walks with restart through DGL, top-k per type.

For each anchor, ``num_walks`` traces start at the anchor and stop before each step with
probability ``restart_prob``; the expected number of visits to a node is then its
random-walk-with-restart proximity (the Monte-Carlo personalised PageRank estimator that
PinSage uses). Visit counts are kept per node type and cut to that type's quota, so sparse
Pin-Pin edges are not swamped by dense Pin-Board ones.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from omnisage_assets.lib import contracts
from omnisage_assets.lib.dgl_compat import dgl
from omnisage_assets.lib.edges import PIN_BOARD, PIN_PIN

PIN, BOARD = "pin", "board"


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    num_walks: int = 100
    max_steps: int = 6
    restart_prob: float = 0.3
    pin_board_pins: int = 25
    pin_board_boards: int = 75
    pin_pin_pins: int = 50
    chunk_size: int = 20_000
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Subgraph:
    """One edge-type subset with its DGL graph and the walk pattern from each anchor type."""

    name: str
    graph: dgl.DGLGraph
    metapaths: dict[str, list[str]]
    quotas: dict[str, int]


def build_subgraphs(
    edges: pa.Table, pin_ids: pa.Array, board_ids: pa.Array, config: SamplingConfig
) -> list[Subgraph]:
    """DGL heterographs for the Pin-Board and Pin-Pin subgraphs, nodes indexed like the tables."""
    n_pins, n_boards = len(pin_ids), len(board_ids)

    def part(edge_type: str, dst_ids: pa.Array) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = edges.filter(pc.equal(edges["edge_type"], edge_type))
        src = pc.index_in(rows["src_id"], value_set=pin_ids).to_numpy(zero_copy_only=False)
        dst = pc.index_in(rows["dst_id"], value_set=dst_ids).to_numpy(zero_copy_only=False)
        weight = rows["weight"].to_numpy().astype(np.float32)
        return torch.from_numpy(src.astype(np.int64)), torch.from_numpy(dst.astype(np.int64)), torch.from_numpy(weight)

    p, b, w = part(PIN_BOARD, board_ids)
    pin_board = dgl.heterograph(
        {(PIN, "saved_to", BOARD): (p, b), (BOARD, "contains", PIN): (b, p)},
        num_nodes_dict={PIN: n_pins, BOARD: n_boards},
    )
    pin_board.edges["saved_to"].data["weight"] = w
    pin_board.edges["contains"].data["weight"] = w

    s, d, w = part(PIN_PIN, pin_ids)
    pin_pin = dgl.heterograph(
        {(PIN, "related", PIN): (torch.cat([s, d]), torch.cat([d, s]))},
        num_nodes_dict={PIN: n_pins},
    )
    pin_pin.edges["related"].data["weight"] = torch.cat([w, w])

    hops = (config.max_steps + 1) // 2
    return [
        Subgraph(
            PIN_BOARD,
            pin_board,
            {PIN: ["saved_to", "contains"] * hops, BOARD: ["contains", "saved_to"] * hops},
            {PIN: config.pin_board_pins, BOARD: config.pin_board_boards},
        ),
        Subgraph(
            PIN_PIN,
            pin_pin,
            {PIN: ["related"] * config.max_steps},
            {PIN: config.pin_pin_pins},
        ),
    ]


def visit_counts(
    graph: dgl.DGLGraph,
    anchors: np.ndarray,
    metapath: list[str],
    num_walks: int,
    restart_prob: float,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per node type: (anchor position, node index, visits) for every node any walk reached.

    The anchor itself is not counted; visits are summed over the ``num_walks`` traces.
    """
    seeds = torch.from_numpy(np.repeat(anchors.astype(np.int64), num_walks))
    traces, types = dgl.sampling.random_walk(
        graph, seeds, metapath=metapath, prob="weight", restart_prob=restart_prob
    )
    traces = traces.numpy()[:, 1:]
    types = types.numpy()[1:]
    row_anchor = np.repeat(np.arange(len(anchors)), num_walks)
    anchor_type = graph.to_canonical_etype(metapath[0])[0]
    out = {}
    for type_id in np.unique(types):
        ntype = graph.ntypes[type_id]
        n_nodes = graph.num_nodes(ntype)
        visited = traces[:, types == type_id]
        who = np.broadcast_to(row_anchor[:, None], visited.shape)
        keep = visited >= 0
        if ntype == anchor_type:
            keep &= visited != anchors[who]
        key = who[keep].astype(np.int64) * n_nodes + visited[keep]
        uniq, counts = np.unique(key, return_counts=True)
        out[ntype] = (uniq // n_nodes, uniq % n_nodes, counts)
    return out


def top_k(
    anchor_pos: np.ndarray, node: np.ndarray, score: np.ndarray, k: int
) -> np.ndarray:
    """Mask of the ``k`` best-scored nodes per anchor (ties broken by node index)."""
    order = np.lexsort((node, -score, anchor_pos))
    sorted_anchor = anchor_pos[order]
    first = np.searchsorted(sorted_anchor, sorted_anchor, side="left")
    rank = np.arange(len(order)) - first
    mask = np.zeros(len(order), dtype=bool)
    mask[order[rank < k]] = True
    return mask


def sample_neighborhoods(
    edges: pa.Table, pin_ids: pa.Array, board_ids: pa.Array, config: SamplingConfig
) -> pa.Table:
    """Top-k RWR neighbourhoods of every Pin and board in every subgraph (contract NEIGHBORHOODS).

    Every node gets a row per subgraph it can be an anchor in; isolated nodes get empty
    lists. Scores are expected visits per walk, in descending order.
    """
    ids = {PIN: pin_ids.to_numpy(), BOARD: board_ids.to_numpy()}
    dgl.seed(config.seed)
    parts = []
    for sub in build_subgraphs(edges, pin_ids, board_ids, config):
        for anchor_type, metapath in sub.metapaths.items():
            n = len(ids[anchor_type])
            for start in range(0, n, config.chunk_size):
                anchors = np.arange(start, min(start + config.chunk_size, n))
                parts.append(
                    _chunk_table(sub, anchor_type, anchors, metapath, ids, config)
                )
    return pa.concat_tables(parts) if parts else contracts.NEIGHBORHOODS.empty_table()


def _chunk_table(
    sub: Subgraph,
    anchor_type: str,
    anchors: np.ndarray,
    metapath: list[str],
    ids: dict[str, np.ndarray],
    config: SamplingConfig,
) -> pa.Table:
    counts = visit_counts(sub.graph, anchors, metapath, config.num_walks, config.restart_prob)
    pos, types, nodes, scores = [], [], [], []
    for ntype, (anchor_pos, node, visits) in counts.items():
        quota = sub.quotas.get(ntype, 0)
        keep = top_k(anchor_pos, node, visits, quota)
        pos.append(anchor_pos[keep])
        types.append(np.full(int(keep.sum()), ntype, dtype=object))
        nodes.append(ids[ntype][node[keep]])
        scores.append(visits[keep] / config.num_walks)
    pos_a = np.concatenate(pos) if pos else np.zeros(0, np.int64)
    type_a = np.concatenate(types) if types else np.zeros(0, object)
    node_a = np.concatenate(nodes) if nodes else np.zeros(0, np.int64)
    score_a = np.concatenate(scores).astype(np.float32) if scores else np.zeros(0, np.float32)
    # Merge node types per anchor, best first; ties broken by type then id for determinism.
    order = np.lexsort((node_a, type_a.astype(str), -score_a, pos_a))
    offsets = np.concatenate([[0], np.cumsum(np.bincount(pos_a, minlength=len(anchors)))]).astype(np.int32)
    offsets_arr = pa.array(offsets)
    n = len(anchors)
    return pa.Table.from_arrays(
        [
            pa.array([anchor_type] * n, pa.string()),
            pa.array(ids[anchor_type][anchors]),
            pa.array([sub.name] * n, pa.string()),
            pa.ListArray.from_arrays(offsets_arr, pa.array(type_a[order], pa.string())),
            pa.ListArray.from_arrays(offsets_arr, pa.array(node_a[order], pa.int64())),
            pa.ListArray.from_arrays(offsets_arr, pa.array(score_a[order], pa.float32())),
        ],
        schema=contracts.NEIGHBORHOODS,
    )
