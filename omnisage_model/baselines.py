"""Baselines the real-data study compares OmniSage with, on the same inputs and trainer.

``PinSageStyle`` is GraphSAGE with importance pooling (Ying et al., KDD 2018): a node's
representation joins its own features with the visit-count-weighted mean of its sampled
neighbours' transformed features, over the very neighbourhoods OmniSage reads. It has
``embed`` only, so ``train`` fits it on the entity-entity task alone, as PinSage was.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from omnisage_model.config import ModelConfig
from omnisage_model.data import FeatureStore
from omnisage_model.layers import mlp
from omnisage_model.model import FeatureTokenizer


class PinSageStyle(nn.Module):
    """h_v = normalize(G(ReLU(W [z_v ; sum_u a_u ReLU(Q z_u) / sum_u a_u]))), with z the node's
    feature summary and a_u the neighbour's random-walk visit score."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.width
        self.features = FeatureTokenizer(config)
        self.neighbor = nn.Linear(d, d)
        self.combine = nn.Linear(2 * d, d)
        self.head = mlp(d, d, config.out_dim)

    def embed(self, store: FeatureStore, idx: torch.Tensor, summaries: torch.Tensor | None = None) -> torch.Tensor:
        def summary(nodes: torch.Tensor) -> torch.Tensor:
            return summaries[nodes] if summaries is not None else self.features.summary(store, nodes)

        own = summary(idx)
        nbr = store.nbr_index[idx]
        mask = nbr >= 0
        rows = mask.nonzero()[:, 0]
        pooled = torch.zeros_like(own)
        weight = torch.zeros(len(idx), 1, device=own.device)
        if len(rows):
            unique, inverse = torch.unique(nbr[mask], return_inverse=True)
            messages = F.relu(self.neighbor(summary(unique)))[inverse]
            score = store.nbr_score[idx][mask][:, None].to(messages.dtype)
            pooled = pooled.index_add(0, rows, (messages * score).to(pooled.dtype))
            weight = weight.index_add(0, rows, score.to(weight.dtype))
        pooled = pooled / weight.clamp_min(1e-6)
        return F.normalize(self.head(F.relu(self.combine(torch.cat([own, pooled], dim=1)))), dim=-1)
