"""Retrieval metrics with full ranking over all items: recall@k, and HR@k / NDCG@k for the
sequential (leave-one-out) protocol."""

from __future__ import annotations

import numpy as np
import torch


def recall_at_k(
    queries: np.ndarray,
    targets: np.ndarray,
    items: np.ndarray,
    k: int = 10,
    exclude: np.ndarray | None = None,
    batch_size: int = 2048,
) -> float:
    """Share of (query, target) pairs whose target is among the query's top ``k`` items.

    ``targets`` and ``exclude`` are row indices into ``items``; an excluded item (the query
    Pin itself, say) is removed from that query's ranking.
    """
    if len(queries) == 0:
        return float("nan")
    item_t = torch.from_numpy(np.ascontiguousarray(items, dtype=np.float32))
    hits = 0
    for start in range(0, len(queries), batch_size):
        q = torch.from_numpy(np.ascontiguousarray(queries[start : start + batch_size], dtype=np.float32))
        scores = q @ item_t.T
        if exclude is not None:
            ex = torch.from_numpy(exclude[start : start + batch_size].astype(np.int64))
            scores[torch.arange(len(q)), ex] = float("-inf")
        top = scores.topk(k, dim=1).indices
        t = torch.from_numpy(targets[start : start + batch_size].astype(np.int64))
        hits += int((top == t[:, None]).any(dim=1).sum())
    return hits / len(queries)


def hit_rate_and_ndcg(
    users: np.ndarray, items: np.ndarray, targets: np.ndarray, seen: list[np.ndarray], k: int = 10
) -> tuple[float, float]:
    """HR@k and NDCG@k with full ranking: each user's target among all items but those the
    user already interacted with (ties count against the target)."""
    hits, gains = 0, 0.0
    item_t = torch.from_numpy(np.ascontiguousarray(items, dtype=np.float32))
    for start in range(0, len(users), 1024):
        scores = torch.from_numpy(np.ascontiguousarray(users[start : start + 1024], dtype=np.float32)) @ item_t.T
        rows = torch.arange(len(scores))
        target = torch.from_numpy(targets[start : start + 1024])
        target_score = scores[rows, target].clone()
        for i, s in enumerate(seen[start : start + 1024]):
            scores[i, torch.from_numpy(s)] = float("-inf")
        scores[rows, target] = target_score
        rank = (scores >= target_score[:, None]).sum(1) - 1  # items scoring at least the target, itself excluded
        hits += int((rank < k).sum())
        gains += float((1.0 / torch.log2(rank[rank < k].double() + 2)).sum())
    return hits / max(len(users), 1), gains / max(len(users), 1)
