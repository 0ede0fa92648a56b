"""Graph: weighted Pin-Board and Pin-Pin edges over a trailing window of engagements."""

import dagster as dg
import great_expectations as gx
import pyarrow as pa
import pyarrow.compute as pc

from dagster_defs.partitions import daily_partitions, trailing_window
from omnisage_assets.checks import gx_check_result
from omnisage_assets.lib.edges import PIN_BOARD, PIN_PIN, build_graph_edges, edge_problems


@dg.asset(
    group_name="graph",
    kinds={"parquet"},
    partitions_def=daily_partitions,
    ins={"engagements": dg.AssetIn(partition_mapping=trailing_window)},
)
def graph_edges(context: dg.AssetExecutionContext, engagements: pa.Table) -> pa.Table:
    """Undirected edges weighted by engagement counts in the window ending on this day."""
    edges = build_graph_edges(engagements)
    by_type = {t: edges.filter(pc.equal(edges["edge_type"], t)) for t in (PIN_BOARD, PIN_PIN)}
    context.add_output_metadata(
        {
            "window_engagements": engagements.num_rows,
            "edges_pin_board": by_type[PIN_BOARD].num_rows,
            "edges_pin_pin": by_type[PIN_PIN].num_rows,
            "total_weight": float(pc.sum(edges["weight"]).as_py() or 0.0),
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
