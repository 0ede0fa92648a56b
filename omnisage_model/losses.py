"""The one contrastive loss of every task: sampled softmax with logQ correction.

Candidates are the batch's positives (in-batch negatives) plus uniformly drawn random
negatives. Frequent items are over-represented among in-batch negatives, so each logit
is corrected by the log of the candidate's expected number of appearances in the sampled
set (Yi et al., RecSys 2019); item frequencies come from a count-min sketch that streams
over the training positives.

With ``chunk_size`` the loss is computed the paper's way: on detached embeddings, a chunk of
queries at a time, accumulating the gradients with respect to the embeddings (softmax minus
one-hot, written out so each chunk allocates one block of logits and adds its candidate
gradient in place); the model is then backpropagated once. Memory no longer grows with
queries x negatives, only with the candidates themselves; values and gradients are the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_PRIME = 2_147_483_647  # 2^31 - 1
# A chunk's block of logits stays under this many elements (16 MB in fp32), whatever the
# number of candidates: fewer query rows per chunk as candidates grow.
LOGITS_PER_CHUNK = 1 << 22


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


def _masked_logits(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    target: torch.Tensor,
    candidate_ids: torch.Tensor,
    log_q: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """logQ-corrected logits (float32), other columns of a query's own item set to -inf."""
    # One (queries x candidates) block, filled in place: memory is what bounds the negatives.
    logits = torch.addmm(-log_q[None, :].to(queries.dtype), queries, candidates.T, alpha=1.0 / temperature).float()
    same_item = candidate_ids[None, :] == candidate_ids[target][:, None]
    same_item[torch.arange(len(target), device=target.device), target] = False
    return logits.masked_fill_(same_item, float("-inf"))


class _WithGradients(torch.autograd.Function):
    """A loss value whose gradients w.r.t. the embeddings were computed ahead (chunk by chunk)."""

    @staticmethod
    def forward(ctx, value, queries, candidates, grad_queries, grad_candidates):  # type: ignore[override]
        ctx.save_for_backward(grad_queries, grad_candidates)
        return value.clone()

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        grad_queries, grad_candidates = ctx.saved_tensors
        return None, grad_output * grad_queries, grad_output * grad_candidates, None, None


def sampled_softmax_loss(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    target: torch.Tensor,
    candidate_ids: torch.Tensor,
    log_q: torch.Tensor,
    temperature: float,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of each query against ``candidates``.

    ``target[i]`` is the column of query ``i``'s positive; any other column holding the same
    item id is masked, so an item is never its own negative. ``log_q`` (C,) is subtracted
    from the logits (logQ correction). ``chunk_size`` queries at a time bounds the memory of
    the logits; see the module docstring.
    """
    n = len(target)
    if chunk_size is None or n * len(candidates) <= LOGITS_PER_CHUNK and n <= chunk_size or not (queries.requires_grad or candidates.requires_grad):
        logits = _masked_logits(queries, candidates, target, candidate_ids, log_q, temperature)
        return F.cross_entropy(logits, target, reduction="sum") / max(n, 1)
    chunk_size = max(1, min(chunk_size, LOGITS_PER_CHUNK // max(len(candidates), 1)))
    # Hand-written gradients are accumulated in float32, whatever autocast would pick.
    with torch.no_grad(), torch.autocast(queries.device.type, enabled=False):
        q, c = queries.detach().float(), candidates.detach().float()
        grad_q = torch.empty(q.shape, dtype=torch.float32, device=q.device)
        grad_c = torch.zeros(c.shape, dtype=torch.float32, device=c.device)
        value = torch.zeros((), dtype=torch.float32, device=q.device)
        for start in range(0, n, chunk_size):
            rows = torch.arange(start, min(start + chunk_size, n), device=q.device)
            logits = _masked_logits(q[rows], c, target[rows], candidate_ids, log_q, temperature)
            # d(sum of cross-entropies)/d logits = softmax - one-hot, computed in place.
            log_z = torch.logsumexp(logits, dim=1)
            value -= (logits[torch.arange(len(rows), device=q.device), target[rows]] - log_z).sum()
            probs = logits.sub_(log_z[:, None]).exp_()
            probs[torch.arange(len(rows), device=q.device), target[rows]] -= 1.0
            probs.mul_(1.0 / (n * temperature))
            grad_q[rows] = probs @ c
            grad_c.addmm_(probs.T, q[rows])
    return _WithGradients.apply(value / n, queries, candidates, grad_q.to(queries.dtype), grad_c.to(candidates.dtype))


def capped_user_scale(queries: torch.Tensor, temperature: float) -> torch.Tensor:
    """``queries`` rescaled so that, divided by ``temperature`` in the loss, each row's logits are
    its dot products with unit candidates at a norm of at most 1 / ``temperature``: a query
    sharpens its own softmax up to the fixed temperature's, and softens it below that when
    the model leaves it short."""
    norm = queries.norm(dim=-1, keepdim=True)
    return F.normalize(queries, dim=-1) * (norm * temperature).clamp(max=1.0)


def candidate_log_q(
    in_batch_ids: torch.Tensor,
    random_ids: torch.Tensor,
    n_items: int,
    sketch: CountMinSketch,
) -> torch.Tensor:
    """Log expected appearances of each candidate among all of them (mixed negative sampling):
    ``len(in_batch_ids)`` draws by frequency plus ``len(random_ids)`` uniform over ``n_items``.

    Every copy of an item is corrected by the same total, so that in expectation an item adds
    its own score once to the partition function, whichever part it was drawn into (correcting
    each part by its own rate alone would count every item twice)."""
    ids = torch.cat([in_batch_ids, random_ids])
    p = sketch.probability(ids).clamp_min(1.0 / max(sketch.total, 1.0))
    # Random draws are items (Pins, indices below n_items); other candidates (the feature task's
    # boards) can only have come from the batch.
    uniform = (ids < n_items).to(p.dtype) * (len(random_ids) / n_items)
    return torch.log(p * len(in_batch_ids) + uniform).float()
