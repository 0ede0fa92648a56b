"""Graph: weighted Pin-Board and Pin-Pin edges over a trailing window, degree-pruned."""

import dagster as dg
import great_expectations as gx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dagster_defs.partitions import daily_partitions, trailing_window
from omnisage_assets.checks import gx_check_result
from omnisage_assets.lib.edges import (
    PIN_BOARD,
    PIN_PIN,
    PruningConfig,
    adjacency_lists,
    build_graph_edges,
    edge_problems,
    prune_edges,
)
from omnisage_assets.plots import degree_plot_md, table_md


class GraphConfig(dg.Config):
    """Degree pruning: a node of degree d keeps max(min(d^alpha, d_max), d_min) edges.

    The window length is the partition mapping's (``OMNISAGE_WINDOW_DAYS``), so the
    lineage shown in the UI is the window actually read.
    """

    prune_alpha: float = 0.86
    prune_d_min: int = 10
    prune_d_max: int = 10_000
    prune_seed: int = 0


@dg.asset(
    group_name="graph",
    kinds={"parquet"},
    partitions_def=daily_partitions,
    ins={"engagements": dg.AssetIn(partition_mapping=trailing_window)},
)
def graph_edges(context: dg.AssetExecutionContext, config: GraphConfig, engagements: pa.Table) -> pa.Table:
    """Undirected edges weighted by engagement counts in the window ending on this day."""
    raw = build_graph_edges(engagements)
    edges = prune_edges(
        raw, PruningConfig(config.prune_alpha, config.prune_d_min, config.prune_d_max, config.prune_seed)
    )
    before, after = adjacency_lists(raw), adjacency_lists(edges)
    summary = [
        {
            "adjacency list": name,
            "nodes": len(before[name][0]),
            "entries before": int(before[name][1].sum()),
            "entries after": int(after[name][1].sum()),
            "max degree before": int(before[name][1].max(initial=0)),
            "max degree after": int(after[name][1].max(initial=0)),
        }
        for name in before
    ]
    context.add_output_metadata(
        {
            "window_engagements": engagements.num_rows,
            "window_days": len(context.asset_partition_keys_for_input("engagements")),
            "pins_with_edges": len(np.union1d(before["pin->board"][0], before["pin->pin"][0])),
            "boards_with_edges": len(before["board->pin"][0]),
            "edges_before_pruning": raw.num_rows,
            "edges_after_pruning": edges.num_rows,
            "edges_pin_board": int(pc.sum(pc.equal(edges["edge_type"], PIN_BOARD)).as_py() or 0),
            "edges_pin_pin": int(pc.sum(pc.equal(edges["edge_type"], PIN_PIN)).as_py() or 0),
            "pruning": table_md(summary, list(summary[0])),
            "degree_distribution": degree_plot_md(
                {f"{name} {when}": lists[name][1] for name in before for when, lists in (("before", before), ("after", after))},
                "Degrees before and after pruning",
            ),
        }
    )
    return edges


@dg.asset_check(
    asset=graph_edges,
    partitions_def=daily_partitions,
    blocking=True,
    additional_ins={"pins": dg.AssetIn(), "boards": dg.AssetIn()},
    description="Edges reference known Pins and boards, have positive finite weights and no self-loops.",
)
def graph_edges_check(graph_edges: pa.Table, pins: pa.Table, boards: pa.Table) -> dg.AssetCheckResult:
    problems = edge_problems(
        graph_edges, pins["pin_id"].combine_chunks(), boards["board_id"].combine_chunks()
    )
    return gx_check_result(
        graph_edges.to_pandas(),
        [
            gx.expectations.ExpectTableRowCountToBeBetween(min_value=1),
            gx.expectations.ExpectColumnValuesToBeInSet(column="edge_type", value_set=[PIN_BOARD, PIN_PIN]),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="src_id"),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="dst_id"),
            gx.expectations.ExpectColumnValuesToBeBetween(column="weight", min_value=0, strict_min=True),
        ],
        extra_problems=problems,
    )
