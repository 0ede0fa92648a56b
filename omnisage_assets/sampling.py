"""Sampling: top-k random-walk-with-restart neighbourhoods per subgraph, through DGL."""

from collections.abc import Iterator

import dagster as dg
import great_expectations as gx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from dagster_defs.partitions import daily_partitions
from omnisage_assets.checks import gx_check_result
from omnisage_assets.lib import contracts
from omnisage_assets.lib.edges import adjacency_lists
from omnisage_assets.lib.random_walks import BOARD, PIN, SamplingConfig, iter_neighborhoods
from omnisage_assets.plots import table_md

# (subgraph, anchor type) -> the adjacency list its walks leave the anchor through.
ANCHOR_LISTS = {("pin_board", PIN): "pin->board", ("pin_board", BOARD): "board->pin", ("pin_pin", PIN): "pin->pin"}


class NeighborhoodConfig(dg.Config):
    """Walk budget and per-type quotas (paper: 25 Pins + 75 boards, 50 Pins)."""

    num_walks: int = 100
    max_steps: int = 6
    restart_prob: float = 0.3
    pin_board_pins: int = 25
    pin_board_boards: int = 75
    pin_pin_pins: int = 50
    chunk_size: int = 20_000
    seed: int = 0

    def quotas(self) -> dict[tuple[str, str], int]:
        return {
            ("pin_board", PIN): self.pin_board_pins,
            ("pin_board", BOARD): self.pin_board_boards,
            ("pin_pin", PIN): self.pin_pin_pins,
        }


@dg.asset(group_name="graph", kinds={"dgl", "parquet"}, partitions_def=daily_partitions)
def sampled_neighborhoods(
    context: dg.AssetExecutionContext,
    config: NeighborhoodConfig,
    graph_edges: pa.Table,
    pins: pa.Table,
    boards: pa.Table,
) -> pa.RecordBatchReader:
    """Each Pin's and board's neighbours by proximity, per subgraph; isolated nodes get none.

    Streamed a chunk of anchors at a time to Parquet, so memory follows the chunk size and
    not the graph; counts and coverage are reported by the check, which reads it back.
    """
    pin_ids, board_ids = pins["pin_id"].combine_chunks(), boards["board_id"].combine_chunks()
    total = 2 * len(pin_ids) + len(board_ids)
    context.add_output_metadata({"anchors": total, "walks_per_anchor": config.num_walks})

    def logged(chunks: Iterator[pa.Table]) -> Iterator[pa.RecordBatch]:
        done = 0
        for chunk in chunks:
            done += chunk.num_rows
            context.log.info(f"sampled neighbourhoods of {done:,}/{total:,} anchors")
            yield from chunk.to_batches()

    chunks = iter_neighborhoods(graph_edges, pin_ids, board_ids, SamplingConfig(**config.model_dump()))
    return pa.RecordBatchReader.from_batches(contracts.NEIGHBORHOODS, logged(chunks))


def neighborhood_facts(
    table: pa.Table,
    quotas: dict[tuple[str, str], int],
    known: dict[str, pd.Index],
    connected: dict[tuple[str, str], pd.Index],
) -> pd.DataFrame:
    """One row per anchor: what its neighbourhood must satisfy, for expectations.

    Per-neighbour work stays in Arrow and integer codes: a day's table holds hundreds of
    millions of neighbours, too many for Python strings. Id sets are pandas indexes, whose
    hash tables are built once and reused for every batch.
    """
    type_names = list(known)
    subgraph_names = sorted({s for s, _ in quotas})
    ids = table["node_id"].to_numpy()
    anchor_type = pc.fill_null(pc.index_in(table["node_type"], value_set=pa.array(type_names)), -1).to_numpy()
    subgraph = pc.fill_null(pc.index_in(table["subgraph"], value_set=pa.array(subgraph_names)), -1).to_numpy()
    lengths = pc.list_value_length(table["neighbor_id"]).to_numpy(zero_copy_only=False)
    owner = np.repeat(np.arange(len(ids)), lengths)
    nbr = pc.list_flatten(table["neighbor_id"]).to_numpy()
    # -1: a type that is not a node table's.
    nbr_type = pc.fill_null(
        pc.index_in(pc.list_flatten(table["neighbor_type"]), value_set=pa.array(type_names)), -1
    ).to_numpy()
    score = pc.list_flatten(table["score"]).to_numpy()
    rising = np.r_[False, (score[1:] > score[:-1]) & (owner[1:] == owner[:-1])]
    over_quota = np.zeros(len(ids), dtype=np.int64)
    unknown = np.bincount(owner[nbr_type < 0], minlength=len(ids))
    for code, ntype in enumerate(type_names):
        of_type = nbr_type == code
        counts = np.bincount(owner[of_type], minlength=len(ids))
        quota = np.array([quotas.get((name, ntype), 0) for name in subgraph_names] + [0])[subgraph]
        over_quota += np.maximum(counts - quota, 0)
        missing = of_type.copy()
        missing[of_type] = known[ntype].get_indexer(nbr[of_type]) < 0
        unknown += np.bincount(owner[missing], minlength=len(ids))
    known_anchor = np.zeros(len(ids), dtype=bool)
    has_edges = np.zeros(len(ids), dtype=bool)
    for (subgraph_name, ntype), owners in connected.items():
        rows = (subgraph == subgraph_names.index(subgraph_name)) & (anchor_type == type_names.index(ntype))
        known_anchor[rows] = known[ntype].get_indexer(ids[rows]) >= 0
        has_edges[rows] = owners.get_indexer(ids[rows]) >= 0
    is_self = (nbr == ids[owner]) & (nbr_type == anchor_type[owner])
    return pd.DataFrame(
        {
            "subgraph": table["subgraph"].to_numpy(zero_copy_only=False),
            "node_type": table["node_type"].to_numpy(zero_copy_only=False),
            "n_neighbors": lengths,
            "over_quota": over_quota,
            "unknown_neighbors": unknown,
            "self_neighbors": np.bincount(owner[is_self], minlength=len(ids)),
            "order_violations": np.bincount(owner[rising], minlength=len(ids)),
            "known_anchor": known_anchor,
            "has_edges": has_edges,
            "empty_but_connected": has_edges & (lengths == 0),
            "isolated_but_not_empty": ~has_edges & (lengths > 0),
        }
    )


@dg.asset_check(
    asset=sampled_neighborhoods,
    partitions_def=daily_partitions,
    blocking=True,
    additional_ins={"graph_edges": dg.AssetIn(), "pins": dg.AssetIn(), "boards": dg.AssetIn()},
    description=(
        "Every node is an anchor once per subgraph; neighbours exist, are not the anchor, stay "
        "within quota and descend by score; connected nodes have neighbours, isolated ones none."
    ),
)
def sampled_neighborhoods_check(
    config: NeighborhoodConfig,
    sampled_neighborhoods: ds.Dataset,
    graph_edges: pa.Table,
    pins: pa.Table,
    boards: pa.Table,
) -> dg.AssetCheckResult:
    known = {PIN: pd.Index(pins["pin_id"].to_numpy()), BOARD: pd.Index(boards["board_id"].to_numpy())}
    lists = adjacency_lists(graph_edges)
    connected = {anchor: pd.Index(lists[name][0]) for anchor, name in ANCHOR_LISTS.items()}
    facts = pd.concat(
        [
            neighborhood_facts(pa.Table.from_batches([batch]), config.quotas(), known, connected)
            for batch in sampled_neighborhoods.to_batches(batch_size=200_000, batch_readahead=1, fragment_readahead=1)
        ]
        or [neighborhood_facts(contracts.NEIGHBORHOODS.empty_table(), config.quotas(), known, connected)],
        ignore_index=True,
    )
    per_anchor = facts.groupby(["subgraph", "node_type"]).agg(
        anchors=("n_neighbors", "size"),
        connected=("has_edges", "sum"),
        mean_neighbors=("n_neighbors", "mean"),
    )
    per_anchor["coverage_of_connected"] = (
        facts[facts["has_edges"]].groupby(["subgraph", "node_type"])["n_neighbors"].apply(lambda n: (n > 0).mean())
    )
    rows = [{"subgraph": s, "anchor": t, **r.to_dict()} for (s, t), r in per_anchor.fillna(0.0).iterrows()]
    connected_rows = facts[facts["has_edges"]]
    return gx_check_result(
        facts,
        [
            gx.expectations.ExpectTableRowCountToEqual(value=2 * len(known[PIN]) + len(known[BOARD])),
            gx.expectations.ExpectColumnValuesToBeInSet(column="known_anchor", value_set=[True]),
            gx.expectations.ExpectColumnValuesToBeInSet(column="unknown_neighbors", value_set=[0]),
            gx.expectations.ExpectColumnValuesToBeInSet(column="self_neighbors", value_set=[0]),
            gx.expectations.ExpectColumnValuesToBeInSet(column="over_quota", value_set=[0]),
            gx.expectations.ExpectColumnValuesToBeInSet(column="order_violations", value_set=[0]),
            gx.expectations.ExpectColumnValuesToBeInSet(column="isolated_but_not_empty", value_set=[False]),
            # A connected node left empty means walks never moved: a pruning or graph bug.
            gx.expectations.ExpectColumnValuesToBeInSet(column="empty_but_connected", value_set=[False], mostly=0.99),
        ],
        metadata={
            "coverage_of_connected": float((connected_rows["n_neighbors"] > 0).mean()) if len(connected_rows) else 0.0,
            "coverage": table_md(rows, list(rows[0])) if rows else "no anchors",
        },
    )
