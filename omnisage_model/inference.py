"""Batch inference: every node and every user, in bounded-memory batches, no gradients."""

from __future__ import annotations

import numpy as np
import torch

from omnisage_model.data import FeatureStore, TaskData
from omnisage_model.model import OmniSage


@torch.no_grad()
def embed_nodes(
    model: OmniSage, store: FeatureStore, batch_size: int = 4096, device: str = "cpu", out: np.ndarray | None = None
) -> np.ndarray:
    """(N, out_dim) float32 embeddings of all Pins then all boards, in store order.

    ``out`` (an ``np.memmap``, say) receives them batch by batch, so the vectors need not
    fit in memory; only the feature store does."""
    model.eval().to(device)
    store = store.to(device)
    out = np.empty((store.n_nodes, model.config.out_dim), np.float32) if out is None else out
    with _autocast(device):
        # Every node is some batch's neighbour many times over: tokenise each one once.
        summaries = model.features.node_summaries(store)
    for start in range(0, store.n_nodes, batch_size):
        idx = torch.arange(start, min(start + batch_size, store.n_nodes), device=device)
        with _autocast(device):
            out[start : start + len(idx)] = model.embed(store, idx, summaries).float().cpu().numpy()
    return out


def _autocast(device: str | torch.device) -> torch.autocast:
    """bf16 on CUDA (what training used), full precision elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=str(device).startswith("cuda"))


@torch.no_grad()
def embed_users(
    model: OmniSage,
    pin_embeddings: np.ndarray,
    tasks: TaskData,
    batch_size: int = 512,
    device: str = "cpu",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """(U, out_dim) user embeddings: the sequence model's output after each user's last action,
    written into ``out`` when given (as ``embed_nodes``)."""
    model.eval().to(device)
    pins = torch.from_numpy(np.ascontiguousarray(pin_embeddings)).to(device)
    n = len(tasks.user_ids)
    out = np.empty((n, model.config.out_dim), np.float32) if out is None else out
    for start in range(0, n, batch_size):
        seq = tasks.sequences[start : start + batch_size].to(device)
        lengths = tasks.sequence_length[start : start + batch_size].to(device)
        x = pins[seq.clamp_min(0)] * (seq >= 0)[..., None]
        with _autocast(device):
            y = model.embed_sequence(x, lengths.clamp_min(1))
        last = (lengths - 1).clamp_min(0)
        out[start : start + len(seq)] = y[torch.arange(len(seq), device=device), last].float().cpu().numpy()
    return out
