"""The real-data study: its protocol guards, its ablations' inputs, and the asset on ML-100K."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest
from test_model import bundle  # noqa: F401  (the shared tiny training bundle)

from omnisage_assets.lib.sequential import HeldOut, study_items
from omnisage_assets.lib.study import VARIANTS, prepare, prepare_leave_one_out, variant_bundle
from omnisage_assets.study import SequentialTrainingConfig
from omnisage_model.metrics import hit_rate_and_ndcg

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import sequential_protocol  # noqa: E402  (a script, not a package: the GPU box runs it bare)

# A model small enough for a few CPU steps in a test.
SMALL = {"width": 32, "heads": 2, "mlp_dim": 64, "out_dim": 16, "text_dim": 16, "seq_width": 32, "seq_heads": 2, "seq_max_len": 16}
FAST_STUDY = ["OmniSage", "PinSage-style (GraphSAGE, importance pooling)", "OmniSage without graph"]


def test_the_test_days_must_come_strictly_after_the_training_days(tiny_world):
    days = tiny_world.config.days[:3]
    with pytest.raises(ValueError, match=r"test days \['2026-01-03'\] overlap the training days in time"):
        prepare(tiny_world, days, 1, None, None, 1 << 10, real_seconds=lambda day: np.array([0.0, 10.0]))


def test_ablations_see_only_their_subgraphs(bundle):  # noqa: F811
    pin_board = variant_bundle(bundle, VARIANTS["OmniSage, Pin-Board graph only"])
    assert set(pin_board["neighborhoods"]["subgraph"].to_pylist()) == {"pin_board"}
    assert "pin_pin_neighborhood" not in set(pin_board["pairs"]["source"].to_pylist())
    assert "pin_board_neighborhood" in set(pin_board["pairs"]["source"].to_pylist())
    none = variant_bundle(bundle, VARIANTS["OmniSage without graph"])
    assert none["neighborhoods"].num_rows == 0
    assert set(none["pairs"]["source"].to_pylist()) == {"related_engagement", "board_save"}
    full = variant_bundle(bundle, VARIANTS["OmniSage"])
    assert full["pairs"].num_rows == bundle["pairs"].num_rows and full["neighborhoods"].num_rows == bundle["neighborhoods"].num_rows


def test_the_study_on_movielens_100k_through_dagster(tmp_path, dagster_instance):
    """The CI-sized study: three models, 80 steps each, on the real ML-100K timeline."""
    from dagster_defs.definitions import build_definitions

    defs = build_definitions(root=tmp_path)
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dagster_instance,
        asset_selection=[dg.AssetKey("real_data_study")],
        run_config={"ops": {"real_data_study": {"config": {"dataset": "ml-100k", "training": {"steps": 80}, "sequential_training": {"steps": 80}, "variants": FAST_STUDY}}}},
    )
    assert result.success
    report = tmp_path / "study" / "ml-100k" / "report.md"
    recorded = json.loads((report.parent / "results.json").read_text())
    assert recorded["train_days"][-1] < recorded["test_days"][0] == "2026-01-14"
    scores = {r["variant"]: r["recall_at_10"] for r in recorded["results"]}
    popularity = recorded["results"][0]["popularity"]
    assert set(scores) == set(FAST_STUDY) and set(scores["OmniSage"]) == {"pin->pin", "board->pin", "user->pin", "feature->pin"}
    assert set(scores["PinSage-style (GraphSAGE, importance pooling)"]) == {"pin->pin", "board->pin"}
    # Even briefly trained, OmniSage beats popularity on held-out Pin-Pin pairs, and its graph helps.
    # (Board -> Pin is not asserted: on MovieLens it swings with training length, see the README.)
    assert scores["OmniSage"]["pin->pin"] > 1.1 * popularity["pin->pin"]
    assert scores["OmniSage"]["pin->pin"] > 1.1 * scores["OmniSage without graph"]["pin->pin"]
    assert all(0 <= v <= 1 for s in scores.values() for v in s.values())
    loo = recorded["leave_one_out"]
    # 80 steps is far too short for the sequential protocol to beat popularity: shape only here.
    assert loo["users"] == 943 and loo["steps"] == 80
    assert all(0 < m["ndcg_at_10"] < m["hr_at_10"] < 1 for m in (loo["popularity"], loo["omnisage"]))
    text = report.read_text()
    assert "## Methods (the paper's table 2)" in text and "| popularity |" in text and "## Graph ablation (table 3)" in text
    assert "## Sequential protocol: leave-one-out" in text
    metadata = dagster_instance.get_latest_materialization_event(dg.AssetKey("real_data_study")).asset_materialization.metadata
    assert "table_methods" in metadata and metadata["recall_at_10/OmniSage/pin->pin"].value == scores["OmniSage"]["pin->pin"]


def test_make_eval_launches_the_study_with_a_config_dagster_accepts(tmp_path):
    """``make eval DATASET= STEPS= TRAINING=`` (README): its run config parses and validates."""
    from dagster_defs.definitions import build_definitions

    dry_run = subprocess.run(
        ["make", "-n", "eval", "DATASET=ml-1m", "STEPS=7", 'TRAINING="seq_max_len": 128, "pin_candidates": "all"'],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, check=True,
    ).stdout
    command = shlex.split(next(line for line in dry_run.splitlines() if "--config-json" in line))
    run_config = json.loads(command[command.index("--config-json") + 1])
    config = run_config["ops"]["real_data_study"]["config"]
    assert config["dataset"] == "ml-1m"
    for section in ("training", "sequential_training"):
        assert config[section] == {"steps": 7, "seq_max_len": 128, "pin_candidates": "all"}
    job = build_definitions(root=tmp_path).resolve_implicit_global_asset_job_def()
    assert dg.validate_run_config(job.get_subset(asset_selection={dg.AssetKey("real_data_study")}), run_config)


def test_hit_rate_and_ndcg_rank_the_target_among_unseen_items():
    items = np.eye(4, dtype=np.float32)  # item i scores users[:, i]
    users = np.array([[0.9, 0.5, 0.7, 0.1], [0.9, 0.5, 0.7, 0.1]], np.float32)
    # User 0: target 2 ranks second (after item 0); user 1 saw item 0, so target 2 ranks first.
    hr, ndcg = hit_rate_and_ndcg(users, items, np.array([2, 2]), [np.array([], np.int64), np.array([0])], k=1)
    assert (hr, ndcg) == (0.5, 0.5)
    hr, ndcg = hit_rate_and_ndcg(users, items, np.array([2, 2]), [np.array([], np.int64), np.array([0])], k=2)
    assert hr == 1.0 and ndcg == pytest.approx((1 / np.log2(3) + 1) / 2)


def test_the_study_items_leave_rare_pins_out_of_every_ranking():
    """The published figures rank only movies with at least 5 ratings: a rarer Pin that outscores
    the target costs it a rank among every Pin and none among the study's items, and a user
    whose held-out Pin is rare is not scored there."""
    items = np.eye(4, dtype=np.float32)  # Pin i scores users[:, i]
    users = np.array([[0.9, 0.5, 0.7, 0.1], [0.8, 0.1, 0.2, 0.9], [0.1, 0.1, 0.1, 0.9]], np.float32)
    none = np.array([], np.int64)
    held_out = HeldOut(rows=np.arange(3), targets=np.array([2, 0, 3]), seen=[none, none, np.array([1])])
    training = pa.table({"pin_id": pa.array([10] * 4 + [11] * 5 + [12] * 4 + [13] * 3, pa.int64())})
    test = pa.table({"pin_id": pa.array([12, 10, 13], pa.int64())})
    keep = study_items(test, training, np.arange(10, 14))  # 5, 5, 5 and 4 ratings with the held-out ones
    assert keep.tolist() == [True, True, True, False]
    study = held_out.among(keep)
    assert study.rows.tolist() == [0, 1] and [s.tolist() for s in study.seen] == [[3], [3]]
    # Among every Pin only user 2 ranks its target first (user 1's is behind the rare Pin 3) ...
    assert hit_rate_and_ndcg(users, items, held_out.targets, held_out.seen, k=1) == (1 / 3, 1 / 3)
    # ... among the study's items user 1 does, user 0 still does not, and user 2 is not scored.
    assert hit_rate_and_ndcg(users[study.rows], items, study.targets, study.seen, k=1) == (0.5, 0.5)


def test_leave_one_out_holds_out_exactly_each_users_last_interaction(tiny_world, tmp_path):
    days = tiny_world.config.days[:2]
    engagements = pa.concat_tables([tiny_world.engagements(d) for d in days])
    from omnisage_assets.lib.text_encoder import DEFAULT_MODEL, TextEncoder

    encoder = TextEncoder.load(DEFAULT_MODEL, "cpu", 32, 256)
    data = prepare_leave_one_out(tiny_world, days, encoder, tmp_path / "cache.parquet", 1 << 10)
    assert data.test.num_rows == len(set(engagements["user_id"].to_pylist()))
    last_ts = engagements.group_by("user_id").aggregate([("ts", "max")]).to_pydict()
    assert dict(zip(data.test["user_id"].to_pylist(), data.test["ts"].to_pylist())) == dict(zip(last_ts["user_id"], last_ts["ts_max"]))
    trained = sum(len(s) for s in data.bundle["sequences"]["pin_ids"].to_pylist())
    assert trained + data.test.num_rows == engagements.num_rows

    # The same inputs, written for a bare GPU box and scored there by the benchmark script.
    sequential_protocol.write_inputs(data, "tiny", tmp_path / "inputs")
    report = sequential_protocol.train(tmp_path / "inputs", "cpu", 4, {"warmup_steps": 1, **SMALL})
    assert report["users"] == data.test.num_rows and report["steps"] == 4
    assert 0 <= report["omnisage"]["ndcg_at_10"] <= report["omnisage"]["hr_at_10"] <= 1
    # Scored twice: among every Pin, and among the study's items (Pins with 5 ratings or more).
    assert set(report["omnisage"]) == {"hr_at_10", "ndcg_at_10", "study_items_hr_at_10", "study_items_ndcg_at_10"}
    assert report["study_items"] < data.bundle["pin_features"].num_rows and report["study_item_users"] <= report["users"]

    # A run split over two sittings (a GPU call's time limit) scores what the one-sitting run
    # does, and its learning curve (scored every step, which does not change training) is whole.
    split = {"warmup_steps": 1, "checkpoint_every": 2, **SMALL}
    state = tmp_path / "state"
    first = sequential_protocol.train(tmp_path / "inputs", "cpu", 4, split, state, score_every=1)  # leaves step 2's state
    resumed = sequential_protocol.train(tmp_path / "inputs", "cpu", 4, split, state, score_every=1)
    assert (first["resumed_from_step"], resumed["resumed_from_step"]) == (0, 2)
    assert resumed["omnisage"] == first["omnisage"] == report["omnisage"]
    assert [p["step"] for p in first["curve"]] == [1, 2, 3, 4] and report["curve"] == []
    assert resumed["curve"] == first["curve"] and first["curve"][-1] == {"step": 4, **first["omnisage"]}

    # The regime's diagnostic: a free vector per Pin in OmniSage's trainer, the user task alone
    # (boards and the other tasks have nothing to read there).
    free = sequential_protocol.train(tmp_path / "inputs", "cpu", 4, {"warmup_steps": 1, **SMALL}, free_pins=True)
    assert free["users"] == report["users"] and "omnisage" not in free
    assert 0 <= free["free_pins"]["ndcg_at_10"] <= free["free_pins"]["hr_at_10"] <= 1
    assert free["free_pins"] != report["omnisage"]

    # The in-house SASRec reference scores the same held-out items, epoch by epoch.
    reference = sequential_protocol.sasrec(tmp_path / "inputs", "cpu", 2, {"width": 16, "max_len": 16}, score_every=1)
    assert reference["users"] == report["users"] and reference["popularity"] == report["popularity"]
    assert [p["epoch"] for p in reference["curve"]] == [1, 2]
    assert reference["curve"][-1] == {"epoch": 2, **reference["sasrec"]}


def test_the_gpu_script_trains_what_the_study_trains():
    """The benchmark script runs where Dagster is not installed, so it spells out the study's
    sequential-protocol settings; they must not drift apart."""
    study = SequentialTrainingConfig().model_dump()
    assert {key: study[key] for key in sequential_protocol.DEFAULTS} == sequential_protocol.DEFAULTS


def test_a_probe_times_steps_after_its_warm_up():
    """``--seconds`` sizes a GPU run from a probe whose first steps compile kernels: only the
    steps after the warm-up say how long the run's steps take."""
    warm_up = [{"step": s, "loss": 1.0, "seconds": 3.0 * (s + 1)} for s in range(sequential_protocol.PROBE_WARMUP)]
    steady = [{"step": s, "loss": 1.0, "seconds": 60.0 + 0.05 * s} for s in range(sequential_protocol.PROBE_WARMUP, 60, 3)]
    scores = [{"step": 30, "hr_at_10": 0.1, "ndcg_at_10": 0.05}]  # evaluation records carry no time
    assert sequential_protocol.seconds_per_step(warm_up + steady[:4] + scores + steady[4:]) == pytest.approx(0.05)
