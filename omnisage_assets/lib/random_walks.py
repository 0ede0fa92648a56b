"""Importance-based neighbourhoods: random walks with restart over DGL graphs, top-k per type.

For each anchor, ``num_walks`` traces start at the anchor and stop before each step with
probability ``restart_prob``; the expected number of visits to a node is then its
random-walk-with-restart proximity (the Monte-Carlo personalised PageRank estimator that
PinSage uses). Visits are counted and cut to each node type's quota by PinSAGESampler's own
C kernel, so sparse Pin-Pin edges are not swamped by dense Pin-Board ones and nothing per
visit runs in Python. Anchors are processed in chunks, so memory follows the chunk size.

The walks themselves are vectorised torch steps over DGL's CSR arrays, drawn from a seeded
``torch.Generator``, rather than ``dgl.sampling.random_walk``: DGL 2.1 seeds each thread's
stream with ``seed + thread number`` and numbers threads in the order they first ask, a
race, so its walks differed from one process to the next (one ML-100K run in four).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from omnisage_assets.lib import contracts
from omnisage_assets.lib.dgl_compat import dgl, select_top_visited
from omnisage_assets.lib.edges import PIN_BOARD, PIN_PIN

PIN, BOARD = "pin", "board"


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """Walk budget, per-type quotas (paper: Pin-Board 25 Pins + 75 boards, Pin-Pin 50 Pins)."""

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
    prob: str | None  # edge feature that weights transitions; None: the arcs carry the weights

    @functools.cached_property
    def arcs(self) -> dict[str, Arcs]:
        """Each edge type in CSR form, built on the first walk and kept for the others."""
        return {etype: Arcs.of(self.graph, etype, self.prob) for etype in self.graph.etypes}


@dataclasses.dataclass(frozen=True)
class Arcs:
    """One edge type in CSR form: arcs out of node i are ``dst[indptr[i]:indptr[i + 1]]``.

    ``cumulative`` holds the running sum of the arc weights (float64, a leading 0) when the
    transitions are weighted, so a weighted pick is one ``searchsorted``; None: uniform.
    """

    indptr: torch.Tensor
    dst: torch.Tensor
    cumulative: torch.Tensor | None

    @classmethod
    def of(cls, graph: dgl.DGLGraph, etype: str, prob: str | None) -> Arcs:
        indptr, dst, eids = graph.adj_tensors("csr", etype=etype)
        if prob is None:
            return cls(indptr, dst, None)
        weights = graph.edges[etype].data[prob][eids].double()
        return cls(indptr, dst, torch.cat([weights.new_zeros(1), weights.cumsum(0)]))

    def step(self, current: torch.Tensor, restart_prob: float, generator: torch.Generator | None) -> torch.Tensor:
        """One transition of every trace; -1 marks a trace that stopped (now or before)."""
        stay, pick = torch.rand((2, len(current)), generator=generator, dtype=torch.float64)
        if not len(self.dst):
            return torch.full_like(current, -1)
        node = current.clamp(min=0)
        start, end = self.indptr[node], self.indptr[node + 1]
        alive = (current >= 0) & (stay >= restart_prob) & (end > start)
        if self.cumulative is None:
            arc = start + (pick * (end - start)).long()
        else:
            low, high = self.cumulative[start], self.cumulative[end]
            arc = torch.searchsorted(self.cumulative, low + pick * (high - low), right=True) - 1
        arc = torch.where(alive, torch.minimum(arc, end - 1).clamp(min=0), 0)
        return torch.where(alive, self.dst[arc], -1)


# A weighted pick is a binary search over every arc's cumulative weight; a uniform one takes
# constant time. Integer weights w become w parallel arcs (the same transition law) unless
# that would grow the graph more than this factor.
MAX_EXPANSION = 4.0


def _heterograph(arcs: dict[tuple[str, str, str], tuple[np.ndarray, ...]], num_nodes: dict[str, int]):
    weights = np.concatenate([w for _, _, w in arcs.values()])
    expand = bool(np.all((weights >= 1) & (weights == np.round(weights)))) and weights.sum() <= MAX_EXPANSION * len(
        weights
    )
    data = {}
    for etype, (u, v, w) in arcs.items():
        repeats = w.astype(np.int64) if expand else 1
        data[etype] = (torch.from_numpy(np.repeat(u, repeats)), torch.from_numpy(np.repeat(v, repeats)))
    graph = dgl.heterograph(data, num_nodes_dict=num_nodes)
    if expand:
        return graph, None
    for etype, (_, _, w) in arcs.items():
        graph.edges[etype].data["weight"] = torch.from_numpy(w.astype(np.float32))
    return graph, "weight"


def build_subgraphs(
    edges: pa.Table, pin_ids: pa.Array, board_ids: pa.Array, config: SamplingConfig
) -> list[Subgraph]:
    """DGL heterographs for the Pin-Board and Pin-Pin subgraphs, nodes indexed like the tables.

    Each undirected edge becomes an arc out of each endpoint whose pruned list keeps it.
    """

    def arcs(edge_type: str, dst_ids: pa.Array) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
        rows = edges.filter(pc.equal(edges["edge_type"], edge_type))
        src = pc.index_in(rows["src_id"], value_set=pin_ids).to_numpy(zero_copy_only=False).astype(np.int64)
        dst = pc.index_in(rows["dst_id"], value_set=dst_ids).to_numpy(zero_copy_only=False).astype(np.int64)
        weight = rows["weight"].to_numpy()
        by_src = rows["kept_by_src"].to_numpy(zero_copy_only=False)
        by_dst = rows["kept_by_dst"].to_numpy(zero_copy_only=False)
        return (src[by_src], dst[by_src], weight[by_src]), (dst[by_dst], src[by_dst], weight[by_dst])

    forward, backward = arcs(PIN_BOARD, board_ids)
    pin_board, pin_board_prob = _heterograph(
        {(PIN, "saved_to", BOARD): forward, (BOARD, "contains", PIN): backward},
        {PIN: len(pin_ids), BOARD: len(board_ids)},
    )
    forward, backward = arcs(PIN_PIN, pin_ids)
    pin_pin, pin_pin_prob = _heterograph(
        {(PIN, "related", PIN): tuple(np.concatenate(pair) for pair in zip(forward, backward))},
        {PIN: len(pin_ids)},
    )
    hops = (config.max_steps + 1) // 2
    return [
        Subgraph(
            PIN_BOARD,
            pin_board,
            {PIN: ["saved_to", "contains"] * hops, BOARD: ["contains", "saved_to"] * hops},
            {PIN: config.pin_board_pins, BOARD: config.pin_board_boards},
            pin_board_prob,
        ),
        Subgraph(
            PIN_PIN,
            pin_pin,
            {PIN: ["related"] * config.max_steps},
            {PIN: config.pin_pin_pins},
            pin_pin_prob,
        ),
    ]


def top_visited(
    sub: Subgraph,
    anchor_type: str,
    anchors: np.ndarray,
    num_walks: int,
    restart_prob: float,
    quotas: dict[str, int] | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per node type with a quota: (anchor position, node index, visits) of its top visited.

    Visits are summed over the ``num_walks`` traces of each anchor and the anchor itself is
    never counted. Rows come grouped by anchor, most visited first. ``quotas`` defaults to
    the subgraph's; ``generator`` to torch's global one.
    """
    graph, quotas = sub.graph, quotas or sub.quotas
    seeds = torch.from_numpy(anchors.astype(np.int64)).repeat_interleave(num_walks)
    current, steps = seeds, []
    for etype in sub.metapaths[anchor_type]:
        current = sub.arcs[etype].step(current, restart_prob, generator)
        steps.append(current)
    traces = torch.stack(steps, dim=1)
    types = torch.tensor([graph.get_ntype_id(graph.to_canonical_etype(e)[2]) for e in sub.metapaths[anchor_type]])
    out = {}
    for type_id in types.unique().tolist():
        ntype = graph.ntypes[type_id]
        if not quotas.get(ntype, 0):
            continue
        visited = traces[:, types == type_id]
        if ntype == anchor_type:
            visited = visited.masked_fill(visited == seeds[:, None], -1)  # -1: not a visit
        per_anchor = num_walks * visited.shape[1]
        anchor_pos = torch.arange(len(anchors)).repeat_interleave(per_anchor)
        node, pos, visits = select_top_visited(visited.reshape(-1), anchor_pos, per_anchor, quotas[ntype])
        out[ntype] = (pos.numpy(), node.numpy(), visits.numpy())
    return out


def iter_neighborhoods(
    edges: pa.Table, pin_ids: pa.Array, board_ids: pa.Array, config: SamplingConfig
) -> Iterator[pa.Table]:
    """Neighbourhood rows (contract NEIGHBORHOODS) a chunk of anchors at a time."""
    ids = {PIN: pin_ids.to_numpy(), BOARD: board_ids.to_numpy()}
    generator = torch.Generator().manual_seed(config.seed)
    for sub in build_subgraphs(edges, pin_ids, board_ids, config):
        for anchor_type in sub.metapaths:
            n = len(ids[anchor_type])
            for start in range(0, n, config.chunk_size):
                anchors = np.arange(start, min(start + config.chunk_size, n))
                visited = top_visited(
                    sub, anchor_type, anchors, config.num_walks, config.restart_prob, generator=generator
                )
                yield neighborhood_rows(sub.name, anchor_type, anchors, visited, ids, config.num_walks)


def sample_neighborhoods(
    edges: pa.Table, pin_ids: pa.Array, board_ids: pa.Array, config: SamplingConfig
) -> pa.Table:
    """Top-k RWR neighbourhoods of every Pin and board in every subgraph (contract NEIGHBORHOODS).

    Every node gets a row per subgraph it can be an anchor in; isolated nodes get empty
    lists. Scores are expected visits per walk, in descending order.
    """
    parts = list(iter_neighborhoods(edges, pin_ids, board_ids, config))
    return pa.concat_tables(parts) if parts else contracts.NEIGHBORHOODS.empty_table()


def neighborhood_rows(
    subgraph: str,
    anchor_type: str,
    anchors: np.ndarray,
    visited: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    ids: dict[str, np.ndarray],
    num_walks: int,
) -> pa.Table:
    """One row per anchor, node types merged best first (ties: type name, then DGL's order)."""
    types = sorted(visited)
    pos = np.concatenate([visited[t][0] for t in types] + [np.zeros(0, np.int64)])
    type_code = np.concatenate(
        [np.full(len(visited[t][0]), i, np.int8) for i, t in enumerate(types)] + [np.zeros(0, np.int8)]
    )
    node_id = np.concatenate([ids[t][visited[t][1]] for t in types] + [np.zeros(0, np.int64)])
    visits = np.concatenate([visited[t][2] for t in types] + [np.zeros(0, np.int64)])
    # One integer key (anchor, fewer visits, type); each type's block is already sorted by it,
    # so the stable sort (timsort) only merges runs.
    most = int(visits.max(initial=0)) + 1
    key = (pos * most + (most - 1 - visits)) * len(types) + type_code
    order = np.argsort(key, kind="stable")
    neighbor_type = pa.DictionaryArray.from_arrays(pa.array(type_code[order], pa.int8()), pa.array(types, pa.string()))
    offsets = pa.array(np.concatenate([[0], np.cumsum(np.bincount(pos, minlength=len(anchors)))]).astype(np.int32))
    n = len(anchors)
    return pa.Table.from_arrays(
        [
            pa.array([anchor_type] * n, pa.string()),
            pa.array(ids[anchor_type][anchors]),
            pa.array([subgraph] * n, pa.string()),
            pa.ListArray.from_arrays(offsets, neighbor_type.cast(pa.string())),
            pa.ListArray.from_arrays(offsets, pa.array(node_id[order], pa.int64())),
            pa.ListArray.from_arrays(offsets, pa.array((visits[order] / num_walks).astype(np.float32))),
        ],
        schema=contracts.NEIGHBORHOODS,
    )
