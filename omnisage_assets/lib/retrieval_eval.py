"""Offline evaluation: recall@10 on the next day's engagements, with full ranking over Pins.

The model for day D never saw day D+1, so every positive here is a future one:
- entity-entity (Pin -> Pin): a related-Pins engagement's query Pin retrieves the engaged Pin;
- entity-entity (board -> Pin): a board retrieves the Pin saved to it;
- user-entity: a user's embedding at the end of day D retrieves the Pins they engage with.
Baselines on the same queries: popularity over the training window, and random vectors.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from omnisage_model.metrics import recall_at_k

RESULT_SCHEMA = pa.schema(
    [
        pa.field("task", pa.string()),
        pa.field("model", pa.string()),
        pa.field("recall_at_10", pa.float64()),
        pa.field("queries", pa.int64()),
    ]
)


def _index(ids: np.ndarray, universe: np.ndarray) -> np.ndarray:
    """Positions of ``ids`` in ``universe``; -1 where absent."""
    idx = pc.index_in(pa.array(ids), value_set=pa.array(universe))
    return pc.fill_null(idx, -1).to_numpy().astype(np.int64)


def evaluation_queries(
    next_day: pa.Table, pin_ids: np.ndarray, board_ids: np.ndarray, user_ids: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """Per task: (query row, target Pin row, query entity type), unknown ids dropped."""
    related = next_day.filter(
        pc.and_(pc.equal(next_day["surface"], "related"), pc.is_valid(next_day["query_pin_id"]))
    )
    saves = next_day.filter(pc.is_valid(next_day["board_id"]))
    user_pin = next_day.select(["user_id", "pin_id"]).group_by(["user_id", "pin_id"]).aggregate([])
    out = {}
    for task, q, t, kind, universe in (
        ("pin->pin", related["query_pin_id"], related["pin_id"], "pin", pin_ids),
        ("board->pin", saves["board_id"], saves["pin_id"], "board", board_ids),
        ("user->pin", user_pin["user_id"], user_pin["pin_id"], "user", user_ids),
    ):
        qi = _index(q.to_numpy(), universe)
        ti = _index(t.to_numpy(), pin_ids)
        keep = (qi >= 0) & (ti >= 0)
        out[task] = (qi[keep], ti[keep], kind)
    return out


def evaluate(
    vectors: dict[str, np.ndarray],
    ids: dict[str, np.ndarray],
    next_day: pa.Table,
    pin_popularity: np.ndarray,
    k: int = 10,
    seed: int = 0,
) -> pa.Table:
    """Recall@k per task for OmniSage, popularity and random embeddings."""
    queries = evaluation_queries(next_day, ids["pin"], ids["board"], ids["user"])
    rng = np.random.default_rng(seed)
    random_vecs = {kind: rng.normal(size=v.shape).astype(np.float32) for kind, v in vectors.items()}
    # Popularity as a 1-d embedding: every query scores items by their count (ties broken randomly).
    pop_items = (pin_popularity + rng.random(len(pin_popularity)) * 1e-3).astype(np.float32)[:, None]
    rows = []
    for task, (q, t, kind) in queries.items():
        exclude = q if kind == "pin" else None
        for model, query_vecs, items in (
            ("omnisage", vectors[kind][q], vectors["pin"]),
            ("popularity", np.ones((len(q), 1), np.float32), pop_items),
            ("random", random_vecs[kind][q], random_vecs["pin"]),
        ):
            rows.append(
                {
                    "task": task,
                    "model": model,
                    "recall_at_10": recall_at_k(query_vecs, t, items, k=k, exclude=exclude),
                    "queries": len(q),
                }
            )
    return pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)


def pin_popularity(engagements: pa.Table, pin_ids: np.ndarray) -> np.ndarray:
    idx = _index(engagements["pin_id"].to_numpy(), pin_ids)
    return np.bincount(idx[idx >= 0], minlength=len(pin_ids)).astype(np.float64)
