"""Evaluation: recall@10 of day D's embeddings on day D + 1, beside popularity and random."""

import dagster as dg
import great_expectations as gx
import pyarrow as pa
import pyarrow.compute as pc

from dagster_defs.partitions import daily_partitions, next_day
from omnisage_assets.checks import gx_check_result
from omnisage_assets.lib.lance_tables import vector_matrix
from omnisage_assets.lib.retrieval_eval import evaluate, pin_popularity
from omnisage_assets.plots import table_md


@dg.asset(
    group_name="evaluation",
    kinds={"parquet"},
    partitions_def=daily_partitions,
    ins={"next_day_engagements": dg.AssetIn("engagements", partition_mapping=next_day)},
)
def offline_evaluation(
    context: dg.AssetExecutionContext,
    entity_embeddings: pa.Table,
    training_examples: dict[str, pa.Table],
    next_day_engagements: pa.Table,
) -> pa.Table:
    """Full-ranking recall@10 per task (Pin->Pin, board->Pin, user->Pin) on the next day."""
    vectors, ids = {}, {}
    for kind in ("pin", "board", "user"):
        rows = entity_embeddings.filter(pc.equal(entity_embeddings["entity_type"], kind))
        ids[kind] = rows["entity_id"].to_numpy()
        vectors[kind] = vector_matrix(rows["vector"])
    history = pa.table({"pin_id": pc.list_flatten(training_examples["sequences"]["pin_ids"])})
    results = evaluate(vectors, ids, next_day_engagements, pin_popularity(history, ids["pin"]))
    rows = results.to_pylist()
    wide = {}
    for r in rows:
        wide.setdefault(r["task"], {"task": r["task"], "queries": r["queries"]})[r["model"]] = r["recall_at_10"]
    context.add_output_metadata(
        {
            "recall_at_10": table_md(list(wide.values()), ["task", "queries", "omnisage", "popularity", "random"]),
            **{f"recall_at_10/{r['task']}/{r['model']}": r["recall_at_10"] for r in rows},
        }
    )
    return results


@dg.asset_check(asset=offline_evaluation, partitions_def=daily_partitions, blocking=False, description="OmniSage beats random and popularity on every task.")
def offline_evaluation_check(offline_evaluation: pa.Table) -> dg.AssetCheckResult:
    frame = offline_evaluation.to_pandas()
    wide = frame.pivot(index="task", columns="model", values="recall_at_10")
    problems = [
        f"{task}: omnisage {row['omnisage']:.3f} does not beat {base} {row[base]:.3f}"
        for task, row in wide.iterrows()
        for base in ("random", "popularity")
        if not row["omnisage"] > row[base]
    ]
    return gx_check_result(
        frame,
        [
            gx.expectations.ExpectColumnValuesToBeBetween(column="recall_at_10", min_value=0, max_value=1),
            gx.expectations.ExpectColumnValuesToBeBetween(column="queries", min_value=1),
        ],
        extra_problems=problems,
    )
