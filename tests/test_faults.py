"""Fault injection: processes killed with SIGKILL mid-work, and readers during a publish."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from conftest import MODEL_DAY
from safetensors.torch import load_file

from omnisage_assets.lib.embedding_reader import EmbeddingReader
from omnisage_assets.lib.lance_release import cleanup, publish_release, stage_tables
from omnisage_assets.lib.lance_tables import LANCE_TABLES

MODEL = {
    "width": 32, "heads": 2, "mlp_dim": 64, "out_dim": 16, "text_dim": 16, "seq_width": 32,
    "seq_heads": 2, "seq_layers": 1, "seq_max_len": 16, "max_neighbors_per_subgraph": 4,
}
TRAIN = {"steps": 40, "warmup_steps": 4, "log_every": 1, "checkpoint_every": 10, "deterministic": True}


def _trainer(data, out, state) -> list[str]:
    return [
        sys.executable, "-m", "omnisage_model.train", "--data", str(data), "--out", str(out),
        "--model-config", json.dumps(MODEL), "--train-config", json.dumps(TRAIN), "--state-dir", str(state),
        "--device", "cpu",
    ]


def test_training_killed_with_sigkill_resumes_and_ends_with_the_uninterrupted_weights(pipeline, tmp_path):
    data = pipeline["root"] / "assets" / "training_examples" / MODEL_DAY
    done = subprocess.run(_trainer(data, tmp_path / "reference", tmp_path / "state_a"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]

    # The same run, killed with SIGKILL once it has logged step 25 (its last state: step 20).
    proc = subprocess.Popen(_trainer(data, tmp_path / "resumed", tmp_path / "state_b"), stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("{") and json.loads(line).get("step", -1) >= 25:
            proc.send_signal(signal.SIGKILL)
            break
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not (tmp_path / "resumed").exists()  # killed before it wrote a checkpoint

    again = subprocess.run(_trainer(data, tmp_path / "resumed", tmp_path / "state_b"), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert summary["resumed_from_step"] == 20
    reference, resumed = load_file(str(tmp_path / "reference" / "model.safetensors")), load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert reference.keys() == resumed.keys()
    for key in reference:
        torch.testing.assert_close(resumed[key], reference[key], rtol=0, atol=0, msg=key)


def test_rematerializing_a_day_gives_the_same_outputs(pipeline, dagster_instance):
    """Same inputs and seed, same graph, neighbourhoods and examples (the trainer's own
    determinism is shown above: a resumed run ends bit-identical to an uninterrupted one)."""
    import dagster as dg
    import pyarrow.parquet as pq

    assets = pipeline["root"] / "assets"
    stages = ["graph_edges", "sampled_neighborhoods", "training_examples"]

    def stored() -> dict[str, pa.Table]:
        return {
            str(p.relative_to(assets)): pq.read_table(p)
            for stage in stages
            for p in sorted((assets / stage).rglob("*.parquet"))
            if MODEL_DAY in str(p)
        }

    before = stored()
    result = pipeline["defs"].resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dagster_instance, asset_selection=[dg.AssetKey(s) for s in stages], partition_key=MODEL_DAY
    )
    assert result.success
    after = stored()
    assert before.keys() == after.keys() and len(before) >= 6
    for name in before:
        assert after[name].equals(before[name]), name


def test_a_second_training_run_of_the_same_day_is_refused_while_one_runs(pipeline, dagster_instance):
    import dagster as dg

    from dagster_defs.resources import StorageResource

    root = pipeline["root"]
    before = (root / "omnisage_checkpoint" / MODEL_DAY / "model.safetensors").read_bytes()
    with StorageResource(root=str(root)).exclusive("training_state", MODEL_DAY):  # "the other run"
        result = pipeline["defs"].resolve_implicit_global_asset_job_def().execute_in_process(
            instance=dagster_instance,
            asset_selection=[dg.AssetKey("omnisage_checkpoint")],
            partition_key=MODEL_DAY,
            raise_on_error=False,
        )
    assert not result.success
    assert "is held by another run (pid" in result.failure_data_for_node("omnisage_checkpoint").error.to_string()
    assert (root / "omnisage_checkpoint" / MODEL_DAY / "model.safetensors").read_bytes() == before


def test_a_checkpoint_is_never_unpickled(pipeline, tmp_path):
    """A weights file replaced by a pickle that would run code is refused as corrupt, and the
    code never runs: checkpoints are safetensors and JSON only."""
    import pickle
    import shutil

    from omnisage_model.checkpoint import CheckpointError, load_checkpoint

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(pipeline["root"] / "omnisage_checkpoint" / MODEL_DAY, checkpoint)
    (checkpoint / "model.safetensors").write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(CheckpointError, match="model.safetensors: corrupt weights"):
        load_checkpoint(checkpoint)
    assert not (tmp_path / "pwned").exists()


def test_a_kill_between_the_state_swaps_renames_loses_nothing(tmp_path):
    from omnisage_model.checkpoint import recover_training_state

    state = tmp_path / "state"
    (tmp_path / ".state.old").mkdir()
    (tmp_path / ".state.old" / "state.json").write_text("{}")
    (tmp_path / ".state.tmp").mkdir()  # the half-written new state
    recover_training_state(state)
    assert (state / "state.json").read_text() == "{}"


def _release_tables(n: int, version: str, day: str, seed: int) -> dict[str, pa.Table]:
    """One generation of the three served tables: every row's vector and version mark it."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return {
        name: pa.table(
            {
                "id": pa.array(np.arange(n) + 1, pa.int64()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 16),
                "model_version": pa.array([version] * n),
                "partition_date": pa.array([day] * n),
            }
        )
        for name in LANCE_TABLES.values()
    }


def test_readers_during_publishes_see_no_errors_and_never_a_mix_of_versions(tmp_path):
    import lancedb

    db = lancedb.connect(str(tmp_path / "lancedb"))
    days = ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]

    def publish(i: int) -> None:
        staged = stage_tables(db, _release_tables(2_000, f"v{i}", days[i], i), days[i])
        publish_release(db, days[i], staged, f"v{i}", f"checkpoint-{i}")

    publish(0)
    errors: list[BaseException] = []
    seen_versions: list[str] = []
    stop = threading.Event()
    started = threading.Barrier(5)  # four readers and the publisher

    def query() -> None:
        reader = EmbeddingReader(tmp_path / "lancedb")
        expected = reader.release["model_version"]
        hits = reader.similar_pins(int(np.random.randint(1, 2_000)), k=10)
        versions = set(hits["model_version"].to_pylist())
        assert versions == {expected}, (versions, expected)
        seen_versions.append(expected)

    def read() -> None:
        try:
            query()  # on the first release, before any publish starts
            started.wait(timeout=60)
            for _ in range(500):  # a bounded number of queries per reader
                if stop.is_set():
                    break
                query()
            query()  # and once more after the last publish
        except BaseException as err:  # noqa: BLE001  (collected, asserted below)
            errors.append(err)
            started.abort()

    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in readers:
        t.start()
    started.wait(timeout=60)
    for i in range(1, 4):
        publish(i)
    stop.set()
    for t in readers:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert EmbeddingReader(tmp_path / "lancedb").release["model_version"] == "v3"
    # The readers ran across the publishes: served the first release, then the last.
    assert {"v0", "v3"} <= set(seen_versions), sorted(set(seen_versions))


PUBLISH_IN_A_CHILD = """
import sys
import lancedb, numpy as np, pyarrow as pa
from test_faults import _release_tables
from omnisage_assets.lib.lance_release import cleanup, publish_release, stage_tables

db = lancedb.connect(sys.argv[1])
tables = _release_tables(2_000, "v1", "2026-01-02", 1)

written = iter(range(1_000_000))

def slowly(table):  # many batches, each announced: the parent kills it mid-write
    for batch in table.to_batches(max_chunksize=100):
        print(f"batch {next(written)}", flush=True)
        yield batch

readers = {name: pa.RecordBatchReader.from_batches(t.schema, slowly(t)) for name, t in tables.items()}
publish_release(db, "2026-01-02", stage_tables(db, readers, "2026-01-02"), "v1", "checkpoint-1")
print("published", flush=True)
"""


def test_a_publish_killed_with_sigkill_leaves_readers_on_the_previous_release(tmp_path):
    import lancedb

    uri = str(tmp_path / "lancedb")
    db = lancedb.connect(uri)
    publish_release(db, "2026-01-01", stage_tables(db, _release_tables(2_000, "v0", "2026-01-01", 0), "2026-01-01"), "v0", "checkpoint-0")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", PUBLISH_IN_A_CHILD, uri], stdout=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:
        if line.strip() == "batch 25":  # the second table is being written
            proc.send_signal(signal.SIGKILL)
            break
    assert proc.wait(timeout=60) == -signal.SIGKILL
    leftovers = set(db.table_names()) - set(EmbeddingReader(uri).release["tables"].values()) - {"releases"}
    assert leftovers and all("2026_01_02" in t for t in leftovers)  # it died while staging

    reader = EmbeddingReader(uri)
    assert reader.release["model_version"] == "v0"
    for name, table in reader.release["tables"].items():
        rows = reader.db.open_table(table).to_arrow()
        assert rows.num_rows == 2_000 and set(rows["model_version"].to_pylist()) == {"v0"}, name
    assert set(reader.similar_pins(7, k=10)["model_version"].to_pylist()) == {"v0"}
    # The next publish of that day goes through beside the leftovers (a new generation), and
    # cleanup drops them once the day leaves the releases kept.
    for i, day in enumerate(["2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05"], start=1):
        publish_release(db, day, stage_tables(db, _release_tables(100, f"v{i}", day, i), day), f"v{i}", f"checkpoint-{i}")
    assert EmbeddingReader(uri).release["model_version"] == "v4"
    cleanup(db, keep=3)
    assert not leftovers & set(db.table_names())
