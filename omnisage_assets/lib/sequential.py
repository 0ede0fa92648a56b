"""The standard sequential protocol's scoring (leave-one-out, full ranking), apart from the
study so that a bare GPU box (torch and pyarrow; no Dagster, DGL or LanceDB) can run it on
a bundle prepared elsewhere: ``benchmarks/sequential_protocol.py``."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from omnisage_assets.lib.retrieval_eval import pin_popularity
from omnisage_model.baselines import FreePinUserModel, SASRec, SASRecConfig, train_sasrec
from omnisage_model.config import ModelConfig, TrainConfig
from omnisage_model.data import FeatureStore, TaskData, feature_dims
from omnisage_model.inference import embed_nodes, embed_users
from omnisage_model.metrics import hit_rate_and_ndcg
from omnisage_model.model import OmniSage
from omnisage_model.train import load_training_inputs, train

# The standard sequential protocol's published figures on MovieLens-1M (HR@10, NDCG@10),
# from the RecSys 2023 reproducibility study (SASRec and BERT4Rec, 3,000 sampled negatives).
PUBLISHED_ML1M = {"SASRec": (0.3159, 0.1857), "BERT4Rec": (0.2843, 0.1537)}
# The study ranks the items of SASRec's ml-1m.txt: the movies with at least 5 ratings (3,416 of
# MovieLens-1M's 3,883; the file holds 999,611 of its 1,000,209 ratings). Reports score both ways.
STUDY_MIN_ITEM_RATINGS = 5


@dataclasses.dataclass
class HeldOut:
    """Each test user's held-out item and the items they saw before it, as row indices of the
    users and items a model embeds."""

    rows: np.ndarray  # (N,) the test users' rows among the embedded users
    targets: np.ndarray  # (N,) each one's held-out Pin
    seen: list[np.ndarray]  # each one's earlier Pins, left out of their ranking

    @classmethod
    def of(cls, test: pa.Table, store: FeatureStore, tasks: TaskData) -> HeldOut:
        user_row = {u: i for i, u in enumerate(tasks.user_ids)}
        test = test.filter(pc.is_in(test["user_id"], value_set=pa.array(tasks.user_ids, pa.int64())))
        rows = np.array([user_row[u] for u in test["user_id"].to_pylist()], np.int64)
        history, offsets = tasks.history.numpy(), tasks.history_offsets.numpy()
        return cls(
            rows=rows,
            targets=store.pin_index(test["pin_id"].to_numpy()),
            seen=[history[offsets[r] : offsets[r + 1]] for r in rows],
        )

    def among(self, keep: np.ndarray) -> HeldOut:
        """The same users ranked among the Pins ``keep`` (a mask over Pins) marks, the others
        left out of every ranking; users whose held-out Pin is left out are dropped."""
        kept_users = keep[self.targets]
        left_out = np.flatnonzero(~keep)
        return HeldOut(
            rows=self.rows[kept_users],
            targets=self.targets[kept_users],
            seen=[np.union1d(s, left_out) for s, kept in zip(self.seen, kept_users) if kept],
        )

    def score(self, users: np.ndarray, pins: np.ndarray) -> dict[str, float]:
        """HR@10 and NDCG@10 of every user's scores (dot products) over every Pin."""
        hr, ndcg = hit_rate_and_ndcg(users[self.rows], pins, self.targets, self.seen)
        return {"hr_at_10": hr, "ndcg_at_10": ndcg}

    def popularity(self, source: pa.Table, pin_ids: np.ndarray) -> dict[str, float]:
        """The same metrics for one ranking of every Pin by its count in ``source``."""
        counts = pin_popularity(source, pin_ids).astype(np.float32)[:, None]
        tie_break = np.random.default_rng(0).random(len(counts)).astype(np.float32)[:, None] * 1e-3
        hr, ndcg = hit_rate_and_ndcg(np.ones((len(self.rows), 1), np.float32), counts + tie_break, self.targets, self.seen)
        return {"hr_at_10": hr, "ndcg_at_10": ndcg}


def study_items(test: pa.Table, popularity_source: pa.Table, pin_ids: np.ndarray) -> np.ndarray:
    """A mask over ``pin_ids``: the Pins with at least ``STUDY_MIN_ITEM_RATINGS`` ratings, counted
    over training and held-out ratings alike, as the study's file was filtered."""
    ratings = pin_popularity(popularity_source, pin_ids) + pin_popularity(test, pin_ids)
    return ratings >= STUDY_MIN_ITEM_RATINGS


@dataclasses.dataclass
class HeldOutBothWays:
    """The held-out items ranked among every Pin and among the study's items only (the
    movies with at least ``STUDY_MIN_ITEM_RATINGS`` ratings in the whole dataset)."""

    every_pin: HeldOut
    study_items: HeldOut
    study_item_count: int

    @classmethod
    def of(cls, test: pa.Table, popularity_source: pa.Table, store: FeatureStore, tasks: TaskData) -> HeldOutBothWays:
        every_pin = HeldOut.of(test, store, tasks)
        keep = study_items(test, popularity_source, store.pin_ids)
        return cls(every_pin, every_pin.among(keep), int(keep.sum()))

    def score(self, users: np.ndarray, pins: np.ndarray) -> dict[str, float]:
        """HR@10 and NDCG@10 among every Pin, then among the study's items (``study_items_``)."""
        study = {f"study_items_{k}": v for k, v in self.study_items.score(users, pins).items()}
        return self.every_pin.score(users, pins) | study

    def sizes(self) -> dict[str, int]:
        return {
            "users": len(self.every_pin.rows),
            "study_items": self.study_item_count,
            "study_item_users": len(self.study_items.rows),
        }


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
    free_pins: bool = False,
) -> dict:
    """OmniSage (all tasks) trained on ``bundle`` (everything but each user's last item), then
    HR@10 and NDCG@10 of its user embeddings, beside popularity (counted over
    ``popularity_source``'s Pins), on that last item (``test``). ``log`` receives the training
    records (loss, seconds) as they come. With ``state_dir`` (and ``train_config.checkpoint_every``)
    training leaves resumable states there and resumes from one: a run longer than one sitting
    (a GPU call's time limit, a CPU session) goes on where the last stopped.

    ``free_pins`` trains ``FreePinUserModel`` instead, on the user task alone, with the same
    trainer and settings: the report's ``free_pins`` is what the training regime reaches when
    every Pin is a free vector."""
    config = model_config(feature_dims(bundle["pin_features"]))
    store, tasks = load_training_inputs(bundle, config)
    store = store.to(device)  # once: training and every scoring then use it in place
    held_out = HeldOutBothWays.of(test, popularity_source, store, tasks)
    build_model: Callable[[ModelConfig], torch.nn.Module] = OmniSage
    if free_pins:
        train_config = dataclasses.replace(train_config, pair_weight=0.0, feature_weight=0.0)
        build_model = functools.partial(FreePinUserModel, n_pins=store.n_pins)

    def score(model: torch.nn.Module) -> dict[str, float]:
        if free_pins:
            with torch.no_grad():
                pins = model.eval().embed(store, torch.arange(store.n_pins, device=device)).float().cpu().numpy()
        else:
            pins = embed_nodes(model, store, device=device)[: store.n_pins]
        return held_out.score(embed_users(model, pins, tasks, device=device), pins)

    result = train(
        store, tasks, config, train_config, device=device, log=log, state_dir=state_dir,
        build_model=build_model, evaluate=score, evaluate_every=score_every,
    )
    final = score(result.model)
    if result.averaged is not None:
        final |= {f"ema_{k}": v for k, v in score(result.averaged).items()}
    return {
        **held_out.sizes(),
        "free_pins" if free_pins else "omnisage": final,
        "popularity": held_out.every_pin.popularity(popularity_source, store.pin_ids),
        "steps": train_config.steps,
        "train_seconds": round(result.seconds, 1),  # across resumed sittings
        "resumed_from_step": result.resumed_from_step,
        "curve": [*result.evaluations, {"step": train_config.steps, **final}] if score_every else [],
    }


def run_sasrec_leave_one_out(
    bundle: dict[str, pa.Table],
    test: pa.Table,
    popularity_source: pa.Table,
    config: SASRecConfig,
    device: str = "cpu",
    log: Callable[[dict[str, float]], None] | None = None,
    score_every: int = 0,
) -> dict:
    """The in-house reference: SASRec (item ids only) trained on the histories OmniSage's user
    task reads, scored on the same held-out items; ``score_every`` epochs adds its learning curve."""
    model_config = ModelConfig(**feature_dims(bundle["pin_features"]), seq_max_len=config.max_len)
    store, tasks = load_training_inputs(bundle, model_config)
    held_out = HeldOutBothWays.of(test, popularity_source, store, tasks)
    curve: list[dict[str, float]] = []

    def score(model: SASRec) -> dict[str, float]:
        users = model.embed_users(tasks.history, tasks.history_offsets).float().cpu().numpy()
        return held_out.score(users, model.item_vectors().detach().float().cpu().numpy())

    seconds = 0.0

    def record(entry: dict[str, float]) -> None:
        nonlocal seconds
        seconds = entry["seconds"]
        if "hr_at_10" in entry:
            curve.append({k: v for k, v in entry.items() if k == "epoch" or k.endswith("_at_10")})
        if log is not None:
            log(entry)

    model = train_sasrec(
        tasks.history, tasks.history_offsets, store.n_pins, config, device, record, score, score_every
    )
    final = curve[-1] if curve and curve[-1]["epoch"] == config.epochs else {"epoch": config.epochs, **score(model)}
    return {
        **held_out.sizes(),
        "sasrec": {k: v for k, v in final.items() if k.endswith("_at_10")},
        "popularity": held_out.every_pin.popularity(popularity_source, store.pin_ids),
        "epochs": config.epochs,
        "train_seconds": round(seconds, 1),  # scoring left out, as OmniSage's
        "curve": curve,
        "config": dataclasses.asdict(config),
    }
