"""The standard sequential protocol's scoring (leave-one-out, full ranking), apart from the
study so that a bare GPU box (torch and pyarrow; no Dagster, DGL or LanceDB) can run it on
a bundle prepared elsewhere: ``benchmarks/sequential_protocol.py``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from omnisage_assets.lib.retrieval_eval import pin_popularity
from omnisage_model.config import ModelConfig, TrainConfig
from omnisage_model.data import feature_dims
from omnisage_model.inference import embed_nodes, embed_users
from omnisage_model.metrics import hit_rate_and_ndcg
from omnisage_model.train import load_training_inputs, train

# The standard sequential protocol's published figures on MovieLens-1M (HR@10, NDCG@10),
# from the RecSys 2023 reproducibility study (SASRec and BERT4Rec, 3,000 sampled negatives).
PUBLISHED_ML1M = {"SASRec": (0.3159, 0.1857), "BERT4Rec": (0.2843, 0.1537)}


def run_leave_one_out(
    bundle: dict[str, pa.Table],
    test: pa.Table,
    popularity_source: pa.Table,
    model_config: Callable[[dict[str, int]], ModelConfig],
    train_config: TrainConfig,
    device: str = "cpu",
    log: Callable[[dict[str, float]], None] | None = None,
    state_dir: Path | None = None,
    score_every: int = 0,
) -> dict:
    """OmniSage (all tasks) trained on ``bundle`` (everything but each user's last item), then
    HR@10 and NDCG@10 of its user embeddings, beside popularity (counted over
    ``popularity_source``'s Pins), on that last item (``test``). ``log`` receives the training
    records (loss, seconds) as they come. With ``state_dir`` (and ``train_config.checkpoint_every``)
    training leaves resumable states there and resumes from one: a run longer than one sitting
    (a GPU call's time limit, a CPU session) goes on where the last stopped."""
    config = model_config(feature_dims(bundle["pin_features"]))
    store, tasks = load_training_inputs(bundle, config)
    store = store.to(device)  # once: training and every scoring then use it in place
    user_row = {u: i for i, u in enumerate(tasks.user_ids)}
    test = test.filter(pc.is_in(test["user_id"], value_set=pa.array(tasks.user_ids, pa.int64())))
    rows = np.array([user_row[u] for u in test["user_id"].to_pylist()], np.int64)
    targets = store.pin_index(test["pin_id"].to_numpy())
    history = bundle["sequences"]
    seen_by_user = dict(zip(history["user_id"].to_pylist(), history["pin_ids"].to_pylist()))
    seen = [store.pin_index(np.array(seen_by_user[u], np.int64)) for u in test["user_id"].to_pylist()]

    def score(model: torch.nn.Module) -> dict[str, float]:
        pins = embed_nodes(model, store, device=device)[: store.n_pins]
        users = embed_users(model, pins, tasks, device=device)
        hr, ndcg = hit_rate_and_ndcg(users[rows], pins, targets, seen)
        return {"hr_at_10": hr, "ndcg_at_10": ndcg}

    result = train(
        store, tasks, config, train_config, device=device, log=log, state_dir=state_dir,
        evaluate=score, evaluate_every=score_every,
    )
    final = score(result.model)
    popularity = pin_popularity(popularity_source, store.pin_ids).astype(np.float32)[:, None]
    tie_break = np.random.default_rng(0).random(len(popularity)).astype(np.float32)[:, None] * 1e-3
    pop_hr, pop_ndcg = hit_rate_and_ndcg(np.ones((len(rows), 1), np.float32), popularity + tie_break, targets, seen)
    return {
        "users": len(rows),
        "omnisage": final,
        "popularity": {"hr_at_10": pop_hr, "ndcg_at_10": pop_ndcg},
        "steps": train_config.steps,
        "train_seconds": round(result.seconds, 1),  # across resumed sittings
        "resumed_from_step": result.resumed_from_step,
        "curve": [*result.evaluations, {"step": train_config.steps, **final}] if score_every else [],
    }
