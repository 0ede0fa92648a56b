"""Edges from engagements, and random walks over DGL graphs checked against exact computations."""

import datetime as dt
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from omnisage_assets.lib import contracts
from omnisage_assets.lib.edges import (
    PruningConfig,
    adjacency_degrees,
    build_graph_edges,
    edge_problems,
    kept_degree,
    node_degrees,
    prune_edges,
)
from omnisage_assets.lib.random_walks import SamplingConfig, build_subgraphs, sample_neighborhoods, top_visited


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
    edges = build_graph_edges(table)
    assert edges.schema.equals(contracts.GRAPH_EDGES)
    edges = edges.to_pylist()
    assert {(e["edge_type"], e["src_id"], e["dst_id"], e["weight"]) for e in edges} == {
        ("pin_board", 10, 100, 2.0),
        ("pin_pin", 10, 11, 2.0),
    }


def test_edge_problems_name_unknown_ids_bad_weights_and_self_loops():
    edges = _edges(["pin_board", "pin_pin", "pin_pin", "pin_board"], [10, 10, 11, 99], [100, 11, 11, 100], [1, -2, 1, 1])
    problems = "\n".join(edge_problems(edges, pa.array([10, 11]), pa.array([100])))
    assert "pin_board.src_id: 1 edge(s) reference unknown pins, e.g. [99]" in problems
    assert "non-positive or non-finite weight(s), e.g. rows [1]" in problems
    assert "pin_pin: 1 self-loop(s), e.g. pins [11]" in problems
    twice = _edges(["pin_pin", "pin_pin", "pin_board", "pin_board"], [11, 10, 10, 10], [10, 11, 100, 100], [1] * 4)
    problems = "\n".join(edge_problems(twice, pa.array([10, 11]), pa.array([100])))
    assert "pin_pin: 1 pair(s) not stored as src_id < dst_id, e.g. [(11, 10)]" in problems
    assert "1 edge(s) stored more than once, e.g. [('pin_board', 10, 100)]" in problems
    assert edge_problems(edges.slice(0, 1), pa.array([10, 11]), pa.array([100])) == []


def _edges(edge_type, src, dst, weight) -> pa.Table:
    n = len(src)
    return pa.table(
        {
            "edge_type": [edge_type] * n if isinstance(edge_type, str) else edge_type,
            "src_id": pa.array(src, pa.int64()),
            "dst_id": pa.array(dst, pa.int64()),
            "weight": pa.array(weight, pa.float32()),
            "kept_by_src": pa.array([True] * n),
            "kept_by_dst": pa.array([True] * n),
        },
        schema=contracts.GRAPH_EDGES,
    )


def _small_graph():
    rng = np.random.default_rng(3)
    pins, boards = np.arange(8), np.arange(4)
    pb = {(int(p), int(rng.integers(0, 4))) for p in pins} | {(int(rng.integers(0, 8)), int(b)) for b in boards}
    pp = {(0, 1), (1, 2), (2, 3), (0, 3), (4, 5), (5, 6)}
    edges = _edges(
        ["pin_board"] * len(pb) + ["pin_pin"] * len(pp),
        [p + 1000 for p, _ in pb] + [a + 1000 for a, _ in pp],
        [b + 2000 for _, b in pb] + [b + 1000 for _, b in pp],
        rng.integers(1, 4, size=len(pb) + len(pp)),
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
        w = graph.edges[etype].data["weight"].numpy() if "weight" in graph.edges[etype].data else 1.0
        m = np.zeros((graph.num_nodes(src_t), graph.num_nodes(dst_t)))
        np.add.at(m, (s, d), w)
        rows = m.sum(1, keepdims=True)
        m = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
        alive *= 1 - restart_prob
        current = current @ m
        totals[dst_t] += alive * current
    return totals


@pytest.mark.parametrize("subgraph_index,anchor_type", [(0, "pin"), (0, "board"), (1, "pin")])
@pytest.mark.parametrize("weight_scale", [1.0, 0.37], ids=["integer-weights", "real-weights"])
def test_random_walk_visits_match_the_exact_expectation(subgraph_index, anchor_type, weight_scale):
    """Integer weights walk uniformly over parallel arcs, real ones by their cumulative weights."""
    edges, pins, boards = _small_graph()
    edges = edges.set_column(3, contracts.GRAPH_EDGES.field("weight"), pc.multiply(edges["weight"], pa.scalar(weight_scale, pa.float32())))
    config = SamplingConfig(max_steps=4, restart_prob=0.3)
    sub = build_subgraphs(edges, pins, boards, config)[subgraph_index]
    assert sub.prob == (None if weight_scale == 1.0 else "weight")
    metapath = sub.metapaths[anchor_type]
    anchor, walks = 1, 40_000
    everything = {t: sub.graph.num_nodes(t) for t in sub.graph.ntypes}
    counts = top_visited(sub, anchor_type, np.array([anchor]), walks, config.restart_prob, everything)
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


def test_edges_do_not_depend_on_the_order_of_engagements(tiny_world):
    engagements = pa.concat_tables([tiny_world.engagements(d) for d in tiny_world.config.days[:3]])
    shuffled = engagements.take(np.random.default_rng(0).permutation(engagements.num_rows))
    assert build_graph_edges(shuffled).equals(build_graph_edges(engagements))


def test_neighborhoods_are_deterministic_for_a_seed():
    edges, pins, boards = _small_graph()
    config = SamplingConfig(num_walks=50, seed=5)
    assert sample_neighborhoods(edges, pins, boards, config).equals(sample_neighborhoods(edges, pins, boards, config))
    other = sample_neighborhoods(edges, pins, boards, SamplingConfig(num_walks=50, seed=6))
    assert not other.equals(sample_neighborhoods(edges, pins, boards, config))


_SAMPLE_IN_A_FRESH_PROCESS = """
import sys
import pyarrow.parquet as pq
from omnisage_assets.lib.random_walks import SamplingConfig, sample_neighborhoods
edges, pins, boards = (pq.read_table(f"{sys.argv[1]}/{name}.parquet") for name in ("edges", "pins", "boards"))
sample = sample_neighborhoods(edges, pins["id"].combine_chunks(), boards["id"].combine_chunks(), SamplingConfig(chunk_size=50))
pq.write_table(sample, sys.argv[2])
"""


def test_neighborhoods_are_the_same_in_fresh_processes_whatever_the_thread_count(tmp_path):
    """A rerun reproduces the sample: no stream may depend on which thread or process drew it.

    DGL 2.1's own walks failed this: their streams follow the thread count and the order in
    which threads first ask for one.
    """
    edges, pins, boards = _ppr_test_graph()
    for name, table in (("edges", edges), ("pins", pa.table({"id": pins})), ("boards", pa.table({"id": boards}))):
        pq.write_table(table, tmp_path / f"{name}.parquet")
    outputs = []
    for threads in ("1", "2"):
        out = tmp_path / f"neighborhoods-{threads}.parquet"
        env = {**os.environ, "OMP_NUM_THREADS": threads, "PYTHONHASHSEED": threads}
        subprocess.run([sys.executable, "-c", _SAMPLE_IN_A_FRESH_PROCESS, str(tmp_path), str(out)], env=env, check=True)
        outputs.append(pq.read_table(out))
    assert outputs[0].num_rows == len(pins) * 2 + len(boards)
    assert outputs[0].equals(outputs[1])


def test_degrees_sum_edge_weights_per_node():
    edges, pins, boards = _small_graph()
    pin_deg, board_deg = node_degrees(edges, pins, boards)
    assert pin_deg.sum() == pytest.approx(np.asarray(edges["weight"]).sum() + np.asarray(edges.filter(pa.compute.equal(edges["edge_type"], "pin_pin"))["weight"]).sum())
    assert board_deg.sum() == pytest.approx(np.asarray(edges.filter(pa.compute.equal(edges["edge_type"], "pin_board"))["weight"]).sum())


def test_kept_degree_follows_the_papers_rule():
    degree = np.array([1, 10, 11, 100, 1_000, 10**6])
    # max(min(d^0.86, 10000), 10), never more than d itself.
    assert kept_degree(degree, PruningConfig()).tolist() == [1, 10, 10, 52, 380, 10_000]


def test_pruning_keeps_the_expected_edge_count_per_adjacency_list():
    # Board 2000 holds 200 Pins; Pin 1000 is related to 60 Pins; a 30x30 block of saves.
    block = [(p, b) for p in range(1100, 1130) for b in range(2100, 2130)]
    edges = pa.concat_tables(
        [
            _edges("pin_board", list(range(1200, 1400)), [2000] * 200, [1.0] * 200),
            _edges("pin_board", [p for p, _ in block], [b for _, b in block], [1.0] * len(block)),
            _edges("pin_pin", [1000] * 60, list(range(1400, 1460)), [2.0] * 60),
        ]
    )
    before = adjacency_degrees(edges)
    pruned = prune_edges(edges, PruningConfig())
    after = adjacency_degrees(pruned)
    assert pruned.schema.equals(contracts.GRAPH_EDGES)
    assert np.array_equal(after["pin->board"], kept_degree(before["pin->board"], PruningConfig()))
    assert sorted(after["board->pin"].tolist()) == [18] * 30 + [95]  # 30^0.86 -> 18, 200^0.86 -> 95
    assert sorted(after["pin->pin"].tolist()) == [1] * 60 + [33]  # leaves keep their only edge
    # An edge survives while either endpoint keeps it: in the block some are dropped by both.
    flags = pruned.to_pydict()
    assert all(s or d for s, d in zip(flags["kept_by_src"], flags["kept_by_dst"]))
    dropped_block_edges = len(block) - sum(1 for b in flags["dst_id"] if 2100 <= b < 2130)
    assert dropped_block_edges > 0


def test_pruning_samples_uniformly_and_ignores_row_order():
    star = _edges("pin_board", list(range(1000, 1200)), [2000] * 200, [1.0] * 200)
    kept = np.zeros(200)
    for seed in range(300):
        pruned = prune_edges(star, PruningConfig(seed=seed))
        kept += np.asarray(pruned["kept_by_dst"])
    share = kept / 300
    assert share.mean() == pytest.approx(95 / 200)  # exactly 95 kept each time
    assert np.abs(share - 95 / 200).max() < 0.15  # about 5 standard deviations
    shuffled = star.take(np.random.default_rng(0).permutation(200))
    a = prune_edges(star, PruningConfig(seed=4)).sort_by("src_id")
    b = prune_edges(shuffled, PruningConfig(seed=4)).sort_by("src_id")
    assert a.equals(b)


def _exact_ppr(graph, anchor_type, anchor, restart_prob, steps=200):
    """Personalised PageRank from one anchor (untruncated), as expected visits per walk."""
    offset, start = {}, 0
    for t in graph.ntypes:
        offset[t], start = start, start + graph.num_nodes(t)
    m = np.zeros((start, start))
    for etype in graph.canonical_etypes:
        s, d = (x.numpy() for x in graph.edges(etype=etype))
        w = graph.edges[etype].data["weight"].numpy() if "weight" in graph.edges[etype].data else 1.0
        np.add.at(m, (s + offset[etype[0]], d + offset[etype[2]]), w)
    rows = m.sum(1, keepdims=True)
    m = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    current, total = np.zeros(start), np.zeros(start)
    current[offset[anchor_type] + anchor] = 1.0
    for _ in range(steps):
        current = (1 - restart_prob) * current @ m
        total += current
    return {t: total[offset[t] : offset[t] + graph.num_nodes(t)] for t in graph.ntypes}


def _ppr_test_graph():
    """Zipf-popular boards and random related Pins: many near-ties, a hard case for top-k."""
    rng = np.random.default_rng(11)
    saves = {(int(rng.integers(0, 120)), int(rng.zipf(1.6)) % 40) for _ in range(500)}
    related = {tuple(sorted(rng.choice(120, size=2, replace=False).tolist())) for _ in range(400)}
    edges = pa.concat_tables(
        [
            _edges("pin_board", [p for p, _ in saves], [b + 500 for _, b in saves], rng.integers(1, 5, len(saves))),
            _edges("pin_pin", [a for a, _ in related], [b for _, b in related], rng.integers(1, 5, len(related))),
        ]
    )
    return edges, pa.array(np.arange(120)), pa.array(np.arange(40) + 500)


def _agreement_with_exact_ppr(subgraph_index, anchor_type, num_walks, k=10):
    """Mean top-k set overlap, and the share of the exact top-k's PPR mass the sample holds."""
    edges, pins, boards = _ppr_test_graph()
    config = SamplingConfig(num_walks=num_walks)
    sub = build_subgraphs(edges, pins, boards, config)[subgraph_index]
    anchors = np.arange(sub.graph.num_nodes(anchor_type))
    quotas = {t: k for t in sub.graph.ntypes}
    sampled = top_visited(sub, anchor_type, anchors, num_walks, config.restart_prob, quotas, torch.Generator().manual_seed(0))
    overlap, mass = [], []
    for anchor in anchors:
        exact = _exact_ppr(sub.graph, anchor_type, anchor, config.restart_prob)
        for ntype, (pos, node, _) in sampled.items():
            scores = exact[ntype].copy()
            if ntype == anchor_type:
                scores[anchor] = -1.0
            if (scores > 0).sum() < k:  # fewer than k reachable: nothing to rank
                continue
            truth = np.argsort(-scores, kind="stable")[:k]
            got = node[pos == anchor]
            overlap.append(len(set(truth.tolist()) & set(got.tolist())) / k)
            mass.append(scores[got].sum() / scores[truth].sum())
    assert len(overlap) >= len(anchors) // 2
    return float(np.mean(overlap)), float(np.mean(mass))


@pytest.mark.parametrize("subgraph_index,anchor_type", [(0, "pin"), (0, "board"), (1, "pin")])
def test_sampled_top_k_agrees_with_exact_personalized_pagerank(subgraph_index, anchor_type):
    """Walks truncated at 6 steps against untruncated PPR, restart 0.3, top-10 per type.

    Measured on this graph: at 100 walks (the default) overlap 0.53-0.77 and PPR mass
    0.87-0.95; at 1,000 walks overlap 0.78-0.92 and mass 0.97-0.995.
    """
    overlap_100, mass_100 = _agreement_with_exact_ppr(subgraph_index, anchor_type, num_walks=100)
    overlap_1000, mass_1000 = _agreement_with_exact_ppr(subgraph_index, anchor_type, num_walks=1000)
    assert mass_100 >= 0.83 and overlap_100 >= 0.48
    assert mass_1000 >= 0.95 and overlap_1000 >= 0.72
    assert overlap_1000 > overlap_100  # the estimator converges to PPR as walks grow


def test_neighbourhood_check_names_every_kind_of_bad_row():
    """Self-neighbours, unknown ids, quota overruns, rising scores and strays fail the check."""
    import pyarrow.dataset as ds

    from omnisage_assets.sampling import NeighborhoodConfig, sampled_neighborhoods_check

    edges, pins, boards = _small_graph()
    config = SamplingConfig(num_walks=50)
    good = sample_neighborhoods(edges, pins, boards, config)
    ins = {
        "graph_edges": edges,
        "pins": pa.table({"pin_id": pins}),
        "boards": pa.table({"board_id": boards}),
    }
    assert sampled_neighborhoods_check(
        config=NeighborhoodConfig(num_walks=50), sampled_neighborhoods=ds.dataset(good), **ins
    ).passed
    rows = good.to_pylist()
    rows[0]["neighbor_id"][0] = rows[0]["node_id"]  # a Pin anchor listed as its own neighbour
    rows[0]["neighbor_type"][0] = "pin"
    rows[1]["neighbor_id"][-1] = 4242  # an id no table has
    rows[2]["score"] = sorted(rows[2]["score"])  # ascending
    bad = pa.Table.from_pylist(rows, schema=contracts.NEIGHBORHOODS)
    result = sampled_neighborhoods_check(
        config=NeighborhoodConfig(num_walks=50, pin_board_boards=1), sampled_neighborhoods=ds.dataset(bad), **ins
    )
    assert not result.passed
    for column in ("self_neighbors", "unknown_neighbors", "order_violations", "over_quota"):
        assert f"({column})" in result.description, column
