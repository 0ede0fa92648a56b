"""The benchmarks run end to end on a tiny world (their figures are for `make bench`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))

import graph_sampling  # noqa: E402


def test_graph_sampling_benchmark_reports_targets_and_the_pinsage_baseline(tmp_path, capsys):
    result = graph_sampling.main(["--scale", "tiny", "--cache", str(tmp_path), "--compare-anchors", "300"])
    assert result["world"]["pins"] == 900
    assert result["neighborhoods"]["anchors"] == 2 * 900 + result["world"]["boards"]
    assert result["vs_pinsage_sampler"]["anchors"] == 300
    assert result["vs_pinsage_sampler"]["ours_anchors_per_s"] > 0 and result["vs_pinsage_sampler"]["pinsage_anchors_per_s"] > 0
    assert '"benchmark": "graph_edges + sampled_neighborhoods"' in capsys.readouterr().out


def test_text_encoder_benchmark_reports_cpu_texts_per_second():
    import text_encoder

    result = text_encoder.main(["--texts", "40", "--batch-size", "16"])
    cpu = [r for r in result["results"] if r["device"] == "cpu"]
    assert [r["workload"] for r in cpu] == ["short (Pin titles)", "Pin title + description"]
    assert all(r["texts_per_s"] > 0 for r in cpu) and cpu[0]["mean_tokens"] < cpu[1]["mean_tokens"]
    assert "met" in result["target"]


def test_model_throughput_benchmark_runs_the_paper_configuration():
    import model_throughput

    result = model_throughput.main(
        ["--device", "cpu", "--batch-size", "4", "--train-steps", "1", "--inference-nodes", "8", "--pins", "64", "--boards", "16"]
    )
    assert result["model"]["width"] == 768 and result["model"]["image_dim"] == 1024
    assert result["training_triplets_per_s"] > 0 and result["inference_nodes_per_s"] > 0


def test_chunked_loss_memory_benchmark_compares_both_losses():
    import chunked_loss_memory

    result = chunked_loss_memory.main(["--device", "cpu", "--negatives", "500", "2000"])
    assert [r["candidates"] for r in result["rows"]] == [1012, 2512]
    assert all(r["one_block_mb"] >= 0 and r["chunked_mb"] >= 0 for r in result["rows"])


def test_lance_index_benchmark_compares_settings_with_brute_force(tmp_path):
    import lance_index

    result = lance_index.main(["--sizes", "3000", "--queries", "20", "--settings", "5", "20", "--cache", str(tmp_path)])
    assert [(r["vectors"], r["nprobes"]) for r in result["results"]] == [(3000, 5), (3000, 20)]
    assert all(0 <= r["recall_at_10"] <= 1 and r["numpy_brute_force_p50_ms"] > 0 for r in result["results"])
    assert result["served_setting"]["nprobes"] == 30


def test_training_recall_benchmark_trains_a_bundle_and_scores_the_next_day(tmp_path, tiny_world):
    import dataclasses
    import json

    import pyarrow.parquet as pq
    import training_recall
    from test_model import _config, bundle  # noqa: F401

    from omnisage_model.config import TrainConfig

    tables = bundle.__wrapped__(tiny_world)
    for name, table in tables.items():
        pq.write_table(table, tmp_path / f"{name}.parquet")
    pq.write_table(tiny_world.engagements(tiny_world.config.days[3]), tmp_path / "next_day.parquet")
    config = {"model_config": dataclasses.asdict(_config()), "train_config": dataclasses.asdict(TrainConfig(steps=3, log_every=1))}
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = training_recall.main(
        ["--device", "cpu", "--bundle", str(tmp_path), "--next-day", str(tmp_path / "next_day.parquet"), "--config-from", str(tmp_path)]
    )
    assert result["steps"] == 3 and result["users"] > 0
    assert set(result["recall_at_10"]) == {"pin->pin", "board->pin", "user->pin"}
    assert all(set(models) == {"omnisage", "popularity", "random"} for models in result["recall_at_10"].values())


def test_batch_inference_memory_benchmark_streams_every_size():
    import batch_inference_memory

    result = batch_inference_memory.main(["--nodes", "2000", "4000"])
    assert [r["nodes"] for r in result["rows"]] == [2000, 4000]
    assert all(r["outputs_written_mb"] > 0 and r["peak_rss_growth_mb"] >= 0 for r in result["rows"])
