"""The real-data study: its protocol guards, its ablations' inputs, and the asset on ML-100K."""

import json

import dagster as dg
import numpy as np
import pytest
from test_model import bundle  # noqa: F401  (the shared tiny training bundle)

from omnisage_assets.lib.study import VARIANTS, prepare, variant_bundle

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
        run_config={"ops": {"real_data_study": {"config": {"dataset": "ml-100k", "steps": 80, "variants": FAST_STUDY}}}},
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
    text = report.read_text()
    assert "## Methods (the paper's table 2)" in text and "| popularity |" in text and "## Graph ablation (table 3)" in text
    metadata = dagster_instance.get_latest_materialization_event(dg.AssetKey("real_data_study")).asset_materialization.metadata
    assert "table_methods" in metadata and metadata["recall_at_10/OmniSage/pin->pin"].value == scores["OmniSage"]["pin->pin"]
