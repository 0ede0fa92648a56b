"""`make demo`: materialize every asset of the embedded world, then show the results.

Runs go to the Dagster instance in ``$DAGSTER_HOME``, so ``make ui`` shows them afterwards
with their lineage, metadata and checks.
"""

import os
import time

import dagster as dg
import lancedb
import pyarrow.compute as pc

from dagster_defs.definitions import build_definitions, storage_root
from dagster_defs.partitions import GRAPH_WINDOW_DAYS, daily_partitions

# Dagster's console logger at INFO: training progress, not every engine event.
QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def main() -> None:
    started = time.perf_counter()
    defs = build_definitions()
    instance = dg.DagsterInstance.get()
    days = daily_partitions.get_partition_keys()
    model_day, eval_day = days[GRAPH_WINDOW_DAYS - 1], days[GRAPH_WINDOW_DAYS]

    def run(job: str, partition: str | None = None) -> dg.ExecuteInProcessResult:
        t = time.perf_counter()
        result = defs.resolve_job_def(job).execute_in_process(
            instance=instance, partition_key=partition, run_config=QUIET
        )
        print(f"  {job:16s} {partition or '':10s} ok in {time.perf_counter() - t:5.1f}s", flush=True)
        return result

    print(f"world: {os.environ.get('OMNISAGE_WORLD', 'demo')}; model day {model_day}, evaluated on {eval_day}")
    run("catalog_job")
    for day in days[: GRAPH_WINDOW_DAYS + 1]:
        run("ingest_job", day)
    run("daily_model_job", model_day)
    evaluation = run("evaluation_job", model_day).output_for_node("offline_evaluation")

    root = storage_root()
    print(f"\nassets (Parquet):  {root / 'assets'}")
    print(f"checkpoint:        {root / 'omnisage_checkpoint' / model_day}")
    print(f"LanceDB:           {root / 'lancedb'}  (tables pins, boards, users)")
    print(f"Dagster instance:  {instance.root_directory}  (make ui)")

    print("\nrecall@10, full ranking over all Pins, on the next day's engagements")
    rows = evaluation.to_pylist()
    print(f"  {'task':12s} {'queries':>8s} {'omnisage':>9s} {'popularity':>10s} {'random':>8s}")
    for task in dict.fromkeys(r["task"] for r in rows):
        by_model = {r["model"]: r for r in rows if r["task"] == task}
        print(
            f"  {task:12s} {by_model['omnisage']['queries']:8d} {by_model['omnisage']['recall_at_10']:9.3f} "
            f"{by_model['popularity']['recall_at_10']:10.3f} {by_model['random']['recall_at_10']:8.3f}"
        )

    pins = lancedb.connect(str(root / "lancedb")).open_table("pins")
    sample = pins.search().where(f"id = {pins.to_arrow()['id'][42].as_py()}").limit(1).to_arrow()
    hits = pins.search(sample["vector"][0].values.to_numpy()).limit(6).to_arrow()
    hits = hits.filter(pc.not_equal(hits["id"], sample["id"][0])).slice(0, 5)
    print(f"\nPin {sample['id'][0]}: {sample['title'][0]}")
    for pid, title, dist in zip(hits["id"].to_pylist(), hits["title"].to_pylist(), hits["_distance"].to_pylist()):
        print(f"  {pid}  {title:40s} distance {dist:.3f}")
    print(f"\ndone in {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
