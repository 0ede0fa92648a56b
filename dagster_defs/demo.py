"""`make demo`: materialize every asset of the embedded world, then show the results.

Runs go to the Dagster instance in ``$DAGSTER_HOME``, so ``make ui`` shows them afterwards
with their lineage, metadata and checks.
"""

import os
import time

import dagster as dg

from dagster_defs.definitions import build_definitions, storage_root
from dagster_defs.partitions import GRAPH_WINDOW_DAYS, daily_partitions
from dagster_defs.resources import join_uri
from omnisage_assets.lib.embedding_reader import EmbeddingReader

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

    world = os.environ.get("OMNISAGE_DATASET") or os.environ.get("OMNISAGE_WORLD", "demo")
    print(f"world: {world}; model day {model_day}, evaluated on {eval_day}")
    run("catalog_job")
    for day in days[: GRAPH_WINDOW_DAYS + 1]:
        run("ingest_job", day)
    run("daily_model_job", model_day)
    evaluation = run("evaluation_job", model_day).output_for_node("offline_evaluation")

    root = storage_root()
    print(f"\nassets (Parquet):  {join_uri(root, 'assets')}")
    print(f"checkpoint:        {join_uri(root, 'omnisage_checkpoint', model_day)}")
    print(f"LanceDB:           {join_uri(root, 'lancedb')}  (releases of tables pins, boards, users)")
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

    reader = EmbeddingReader(join_uri(root, "lancedb"))
    pin_id = reader.db.open_table(reader.release["tables"]["pins"]).search().limit(43).to_arrow()["id"][42].as_py()
    print(f"\nrelease {reader.release['release_id']}; Pin {pin_id}: {reader.entity('pins', pin_id, 'pin')['title']}")
    for row in reader.similar_pins(pin_id, k=5).to_pylist():
        print(f"  {row['id']}  {row['title']:40s} distance {row['_distance']:.3f}")
    print(f"(the same from a terminal: omnisage similar --pin {pin_id})")
    print(f"\ndone in {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
