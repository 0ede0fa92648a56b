"""Sampling: top-k random-walk-with-restart neighbourhoods per subgraph, through DGL."""

import dagster as dg
import great_expectations as gx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dagster_defs.partitions import daily_partitions
from omnisage_assets.checks import gx_check_result
from omnisage_assets.lib.random_walks import SamplingConfig, sample_neighborhoods


class NeighborhoodConfig(dg.Config):
    """Walk budget and per-type quotas (paper: 25 Pins + 75 boards, 50 Pins)."""

    num_walks: int = 100
    max_steps: int = 6
    restart_prob: float = 0.3
    pin_board_pins: int = 25
    pin_board_boards: int = 75
    pin_pin_pins: int = 50
    seed: int = 0


@dg.asset(group_name="graph", kinds={"dgl", "parquet"}, partitions_def=daily_partitions)
def sampled_neighborhoods(
    context: dg.AssetExecutionContext,
    config: NeighborhoodConfig,
    graph_edges: pa.Table,
    pins: pa.Table,
    boards: pa.Table,
) -> pa.Table:
    """Each Pin's and board's neighbours by proximity, per subgraph; isolated nodes get none."""
    table = sample_neighborhoods(
        graph_edges,
        pins["pin_id"].combine_chunks(),
        boards["board_id"].combine_chunks(),
        SamplingConfig(**config.model_dump()),
    )
    lengths = pc.list_value_length(table["neighbor_id"]).to_numpy(zero_copy_only=False)
    context.add_output_metadata(
        {
            "anchors": table.num_rows,
            "coverage": float((lengths > 0).mean()) if len(lengths) else 0.0,
            "mean_neighbors": float(lengths.mean()) if len(lengths) else 0.0,
        }
    )
    return table


def neighborhood_facts(table: pa.Table) -> pd.DataFrame:
    """One row per anchor: neighbour count, self-reference and score order, for expectations."""
    ids = table["node_id"].to_numpy()
    lengths = pc.list_value_length(table["neighbor_id"]).to_numpy(zero_copy_only=False)
    owner = np.repeat(np.arange(len(ids)), lengths)
    nbr = pc.list_flatten(table["neighbor_id"]).to_numpy()
    types = pc.list_flatten(table["neighbor_type"]).to_numpy(zero_copy_only=False)
    anchor_types = table["node_type"].to_numpy(zero_copy_only=False)
    is_self = (nbr == ids[owner]) & (types == anchor_types[owner])
    score = pc.list_flatten(table["score"]).to_numpy()
    rising = np.r_[False, (score[1:] > score[:-1]) & (owner[1:] == owner[:-1])]
    return pd.DataFrame(
        {
            "subgraph": table["subgraph"].to_numpy(zero_copy_only=False),
            "n_neighbors": lengths,
            "self_neighbors": np.bincount(owner[is_self], minlength=len(ids)),
            "order_violations": np.bincount(owner[rising], minlength=len(ids)),
        }
    )


@dg.asset_check(
    asset=sampled_neighborhoods,
    partitions_def=daily_partitions,
    blocking=True,
    description="No node is its own neighbour, scores descend, lists stay within quota.",
)
def sampled_neighborhoods_check(config: NeighborhoodConfig, sampled_neighborhoods: pa.Table) -> dg.AssetCheckResult:
    facts = neighborhood_facts(sampled_neighborhoods)
    return gx_check_result(
        facts,
        [
            gx.expectations.ExpectColumnValuesToBeInSet(column="self_neighbors", value_set=[0]),
            gx.expectations.ExpectColumnValuesToBeInSet(column="order_violations", value_set=[0]),
            gx.expectations.ExpectColumnValuesToBeBetween(
                column="n_neighbors",
                min_value=0,
                max_value=max(config.pin_board_pins + config.pin_board_boards, config.pin_pin_pins),
            ),
        ],
        metadata={"coverage": float((facts["n_neighbors"] > 0).mean())},
    )
