"""Edges from engagements, and DGL random walks checked against exact computations."""

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from omnisage_assets.lib import contracts
from omnisage_assets.lib.edges import build_graph_edges, edge_problems, node_degrees
from omnisage_assets.lib.random_walks import SamplingConfig, build_subgraphs, sample_neighborhoods, visit_counts


def _engagements(rows):
    ts = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    cols = ["user_id", "pin_id", "board_id", "action", "surface", "query_pin_id"]
    data = {c: [r[i] for r in rows] for i, c in enumerate(cols)}
    data["ts"] = [ts] * len(rows)
    return pa.table(data, schema=contracts.ENGAGEMENTS)


def test_edges_are_weighted_undirected_and_skip_self_pairs():
    table = _engagements(
        [
            (1, 10, 100, "save", "home", None),
            (2, 10, 100, "save", "search", None),
            (3, 11, None, "click", "related", 10),
            (4, 10, None, "save", "related", 11),  # same unordered pair as above
            (5, 12, None, "click", "related", 12),  # a Pin related to itself is no edge
            (6, 12, 101, "click", "home", None),  # a click never makes a board edge
        ]
    )
    edges = build_graph_edges(table).to_pylist()
    assert {(e["edge_type"], e["src_id"], e["dst_id"], e["weight"]) for e in edges} == {
        ("pin_board", 10, 100, 2.0),
        ("pin_pin", 10, 11, 2.0),
    }


def test_edge_problems_name_unknown_ids_bad_weights_and_self_loops():
    edges = pa.table(
        {
            "edge_type": ["pin_board", "pin_pin", "pin_pin", "pin_board"],
            "src_id": [10, 10, 11, 99],
            "dst_id": [100, 11, 11, 100],
            "weight": pa.array([1.0, -2.0, 1.0, 1.0], pa.float32()),
        }
    )
    problems = "\n".join(edge_problems(edges, pa.array([10, 11]), pa.array([100])))
    assert "pin_board.src_id: 1 edge(s) reference unknown pins, e.g. [99]" in problems
    assert "non-positive or non-finite weight(s), e.g. rows [1]" in problems
    assert "pin_pin: 1 self-loop(s), e.g. pins [11]" in problems
    assert edge_problems(edges.slice(0, 1), pa.array([10, 11]), pa.array([100])) == []


def _small_graph():
    rng = np.random.default_rng(3)
    pins, boards = np.arange(8), np.arange(4)
    pb = {(int(p), int(rng.integers(0, 4))) for p in pins} | {(int(rng.integers(0, 8)), int(b)) for b in boards}
    pp = {(0, 1), (1, 2), (2, 3), (0, 3), (4, 5), (5, 6)}
    edges = pa.table(
        {
            "edge_type": ["pin_board"] * len(pb) + ["pin_pin"] * len(pp),
            "src_id": [p + 1000 for p, _ in pb] + [a + 1000 for a, _ in pp],
            "dst_id": [b + 2000 for _, b in pb] + [b + 1000 for _, b in pp],
            "weight": pa.array(rng.integers(1, 4, size=len(pb) + len(pp)).astype(np.float32)),
        }
    )
    return edges, pa.array(pins + 1000), pa.array(boards + 2000)


def _exact_visits(graph, anchor, metapath, restart_prob):
    """Expected visits to every node: sum over steps of P(alive) * P(at node)."""
    ntype = graph.to_canonical_etype(metapath[0])[0]
    current = np.eye(graph.num_nodes(ntype))[anchor]
    totals = {t: np.zeros(graph.num_nodes(t)) for t in graph.ntypes}
    alive = 1.0
    for etype in metapath:
        src_t, _, dst_t = graph.to_canonical_etype(etype)
        s, d = (x.numpy() for x in graph.edges(etype=etype))
        w = graph.edges[etype].data["weight"].numpy()
        m = np.zeros((graph.num_nodes(src_t), graph.num_nodes(dst_t)))
        np.add.at(m, (s, d), w)
        rows = m.sum(1, keepdims=True)
        m = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
        alive *= 1 - restart_prob
        current = current @ m
        totals[dst_t] += alive * current
    return totals


@pytest.mark.parametrize("subgraph_index,anchor_type", [(0, "pin"), (0, "board"), (1, "pin")])
def test_random_walk_visits_match_the_exact_expectation(subgraph_index, anchor_type):
    edges, pins, boards = _small_graph()
    config = SamplingConfig(max_steps=4, restart_prob=0.3)
    sub = build_subgraphs(edges, pins, boards, config)[subgraph_index]
    metapath = sub.metapaths[anchor_type]
    anchor, walks = 1, 40_000
    counts = visit_counts(sub.graph, np.array([anchor]), metapath, walks, config.restart_prob)
    exact = _exact_visits(sub.graph, anchor, metapath, config.restart_prob)
    for ntype, (_, node, visits) in counts.items():
        sampled = np.zeros(sub.graph.num_nodes(ntype))
        sampled[node] = visits / walks
        expected = exact[ntype].copy()
        if ntype == anchor_type:
            expected[anchor] = 0.0  # the anchor is never its own neighbour
        np.testing.assert_allclose(sampled, expected, atol=0.015)


def test_neighborhoods_respect_quotas_order_and_isolation():
    edges, pins, boards = _small_graph()
    pins = pa.concat_arrays([pins, pa.array([1999])])  # an isolated Pin
    config = SamplingConfig(num_walks=300, pin_board_pins=2, pin_board_boards=1, pin_pin_pins=2)
    table = sample_neighborhoods(edges, pins, boards, config)
    assert table.schema.equals(contracts.NEIGHBORHOODS)
    assert table.num_rows == 2 * len(pins) + len(boards)
    for row in table.to_pylist():
        types = row["neighbor_type"]
        if row["subgraph"] == "pin_board":
            assert types.count("pin") <= 2 and types.count("board") <= 1
        else:
            assert types.count("pin") <= 2 and "board" not in types
        assert row["score"] == sorted(row["score"], reverse=True)
        assert (row["node_type"], row["node_id"]) not in set(zip(types, row["neighbor_id"]))
        if row["node_id"] == 1999:
            assert row["neighbor_id"] == []
    # Pin 0's Pin-Pin walks reach 1, 2 and 3 only; 4-6 are another component.
    pin0 = [r for r in table.to_pylist() if r["node_id"] == 1000 and r["subgraph"] == "pin_pin"][0]
    assert set(pin0["neighbor_id"]) <= {1001, 1002, 1003} and len(pin0["neighbor_id"]) == 2


def test_neighborhoods_are_deterministic_for_a_seed():
    edges, pins, boards = _small_graph()
    config = SamplingConfig(num_walks=50, seed=5)
    assert sample_neighborhoods(edges, pins, boards, config).equals(sample_neighborhoods(edges, pins, boards, config))


def test_degrees_sum_edge_weights_per_node():
    edges, pins, boards = _small_graph()
    pin_deg, board_deg = node_degrees(edges, pins, boards)
    assert pin_deg.sum() == pytest.approx(np.asarray(edges["weight"]).sum() + np.asarray(edges.filter(pa.compute.equal(edges["edge_type"], "pin_pin"))["weight"]).sum())
    assert board_deg.sum() == pytest.approx(np.asarray(edges.filter(pa.compute.equal(edges["edge_type"], "pin_board"))["weight"]).sum())
