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
