"""Retrieval metrics with full ranking over all items."""

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
