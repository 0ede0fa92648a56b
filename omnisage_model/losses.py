"""The one contrastive loss of every task: sampled softmax with logQ correction.

Candidates are the batch's positives (in-batch negatives) plus uniformly drawn random
negatives. Frequent items are over-represented among in-batch negatives, so each logit
is corrected by the log of the candidate's expected number of appearances in the sampled
set (Yi et al., RecSys 2019); item frequencies come from a count-min sketch that streams
over the training positives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_PRIME = 2_147_483_647  # 2^31 - 1


class CountMinSketch:
    """Streaming frequency estimates in ``depth x width`` counters (overestimates only)."""

    def __init__(self, width: int = 1 << 16, depth: int = 4, seed: int = 0, device: str | torch.device = "cpu") -> None:
        g = torch.Generator().manual_seed(seed)
        self.width, self.depth = width, depth
        self.a = torch.randint(1, _PRIME, (depth, 1), generator=g, dtype=torch.int64).to(device)
        self.b = torch.randint(0, _PRIME, (depth, 1), generator=g, dtype=torch.int64).to(device)
        self.counts = torch.zeros(depth, width, dtype=torch.float64, device=device)
        self.total = 0.0

    def _buckets(self, ids: torch.Tensor) -> torch.Tensor:
        return ((self.a * (ids[None, :] % _PRIME) + self.b) % _PRIME) % self.width

    def update(self, ids: torch.Tensor) -> None:
        buckets = self._buckets(ids)
        self.counts.scatter_add_(1, buckets, torch.ones_like(buckets, dtype=self.counts.dtype))
        self.total += float(ids.numel())

    def estimate(self, ids: torch.Tensor) -> torch.Tensor:
        """Estimated count of each id (the minimum over rows)."""
        return self.counts.gather(1, self._buckets(ids)).min(dim=0).values

    def probability(self, ids: torch.Tensor) -> torch.Tensor:
        return self.estimate(ids) / max(self.total, 1.0)


def sampled_softmax_loss(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    target: torch.Tensor,
    candidate_ids: torch.Tensor,
    log_q: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Mean cross-entropy of each query against ``candidates``.

    ``target[i]`` is the column of query ``i``'s positive; any other column holding the same
    item id is masked, so an item is never its own negative. ``log_q`` (C,) is subtracted
    from the logits (logQ correction).
    """
    logits = queries @ candidates.T / temperature - log_q[None, :]
    same_item = candidate_ids[None, :] == candidate_ids[target][:, None]
    same_item[torch.arange(len(target), device=target.device), target] = False
    logits = logits.masked_fill(same_item, float("-inf"))
    return F.cross_entropy(logits.float(), target)


def candidate_log_q(
    in_batch_ids: torch.Tensor,
    n_in_batch: int,
    n_random: int,
    n_items: int,
    sketch: CountMinSketch,
) -> torch.Tensor:
    """Log expected appearances of each candidate: in-batch ones by frequency, random ones uniform."""
    p = sketch.probability(in_batch_ids).clamp_min(1.0 / max(sketch.total, 1.0))
    in_batch = torch.log(p * n_in_batch)
    random = torch.full((n_random,), float(torch.log(torch.tensor(n_random / n_items))), dtype=in_batch.dtype, device=in_batch.device)
    return torch.cat([in_batch, random]).float()
