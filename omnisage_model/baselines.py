"""Baselines the real-data study compares OmniSage with, on the same inputs and trainer.

``PinSageStyle`` is GraphSAGE with importance pooling (Ying et al., KDD 2018): a node's
representation joins its own features with the visit-count-weighted mean of its sampled
neighbours' transformed features, over the very neighbourhoods OmniSage reads. It has
``embed`` only, so ``train`` fits it on the entity-entity task alone, as PinSage was.

``SASRec`` is the sequential protocol's in-house reference: item ids only, no graph and no
content, trained by ``train_sasrec`` on the same histories OmniSage's user task reads.

``FreePinUserModel`` is OmniSage's user model over a free vector per Pin (SASRec's item) in
place of the Pin embedder; trained by OmniSage's own trainer on the user task alone, it tells
what the training regime costs from what the Pin embedder costs.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from omnisage_model.config import ModelConfig
from omnisage_model.data import FeatureStore, history_windows
from omnisage_model.layers import EncoderLayer, mlp
from omnisage_model.model import FeatureTokenizer, UserSequenceModel


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


class FreePinUserModel(nn.Module):
    """A unit vector of its own per Pin, and OmniSage's ``UserSequenceModel`` over them: the
    ``embed`` / ``embed_sequence`` that ``train`` needs for the user-entity task (Pins only:
    boards and the other tasks have nothing to read here)."""

    def __init__(self, config: ModelConfig, n_pins: int) -> None:
        super().__init__()
        self.config = config
        self.pins = nn.Embedding(n_pins, config.out_dim)
        nn.init.normal_(self.pins.weight, std=config.out_dim**-0.5)  # as SASRec's: unit norm in expectation
        self.sequence = UserSequenceModel(config)

    def embed(self, store: FeatureStore, idx: torch.Tensor, summaries: torch.Tensor | None = None) -> torch.Tensor:
        if len(idx) and int(idx.max()) >= self.pins.num_embeddings:
            raise ValueError("FreePinUserModel embeds Pins only: train it on the user-entity task alone")
        return F.normalize(self.pins(idx), dim=-1)

    def embed_sequence(self, pin_embeddings: torch.Tensor, lengths: torch.Tensor, unit: bool = True) -> torch.Tensor:
        return self.sequence(pin_embeddings, lengths, unit)


@dataclasses.dataclass
class SASRecConfig:
    """SASRec's published ML-1M settings (Kang and McAuley, ICDM 2018), trained with a full
    softmax (SASRec+, Klenitskiy and Vasilev, RecSys 2023) rather than one sampled negative."""

    width: int = 64
    layers: int = 2
    heads: int = 1
    max_len: int = 200
    dropout: float = 0.2
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 80
    seed: int = 0
    # None: SASRec's dot product. A value: OmniSage's score instead, cosine over this temperature,
    # to measure what unit-norm embeddings cost an otherwise equal model.
    temperature: float | None = None
    # With ``temperature``, which side's vectors are unit: "both" (cosine / temperature), "items"
    # (users keep their norm, as a user vector scored against unit Pin embeddings by dot product),
    # or "users" (unit users over the temperature, items keep their norm).
    unit_vectors: str = "both"
    # With ``temperature``, learn it (CLIP's logit scale, starting at that value): whether a fixed
    # temperature is what unit-norm scores cost.
    learn_temperature: bool = False
    # A learned score per item added to every user's (a popularity prior, which a dot product
    # can keep in an item's norm and a cosine cannot).
    item_bias: bool = False

    def __post_init__(self) -> None:
        if self.unit_vectors not in ("both", "items", "users"):
            raise ValueError(f"unit_vectors must be 'both', 'items' or 'users', not {self.unit_vectors!r}")


class SASRec(nn.Module):
    """A causal transformer over item-id embeddings; the same table embeds the inputs and
    scores the next item by dot product, so popularity can live in an item's norm (unless
    ``config.temperature`` asks for cosine scores)."""

    def __init__(self, n_items: int, config: SASRecConfig) -> None:
        super().__init__()
        self.config = config
        d = config.width
        self.items = nn.Embedding(n_items, d)
        nn.init.normal_(self.items.weight, std=d**-0.5)  # unit-norm rows in expectation
        self.position = nn.Embedding(config.max_len, d)
        self.layers = nn.ModuleList(
            EncoderLayer(d, config.heads, 4 * d, hidden_dropout=config.dropout) for _ in range(config.layers)
        )
        self.norm = nn.LayerNorm(d)
        # Neither draws random numbers: a seed's other initial weights stay what they were.
        self.bias = nn.Parameter(torch.zeros(n_items)) if config.item_bias else None
        scale = 1.0 / config.temperature if config.temperature else 1.0
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)), requires_grad=config.learn_temperature)

    def forward(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``items`` (B, T) item index, -1 padded on the right; returns (B, T, width): output
        ``t`` summarises items ``0..t``; as ``user_vectors`` it scores item ``t + 1``."""
        positions = torch.arange(items.shape[1], device=items.device)
        x = self.items(items.clamp_min(0)) * (items >= 0)[..., None] * self.config.width**0.5
        x = F.dropout(x + self.position(positions), self.config.dropout, self.training)
        mask = positions[None, :] < lengths[:, None]
        for layer in self.layers:
            x = layer(x, key_mask=mask, causal=True)
        return self.norm(x)

    def user_vectors(self, hidden: torch.Tensor) -> torch.Tensor:
        """Outputs as queries: their dot products with ``item_vectors()`` are the scores (a last
        column of ones picks up the item bias)."""
        if self.config.temperature is not None and self.config.unit_vectors != "items":
            hidden = F.normalize(hidden, dim=-1) * self.log_scale.exp()
        return hidden if self.bias is None else torch.cat([hidden, torch.ones_like(hidden[..., :1])], dim=-1)

    def item_vectors(self) -> torch.Tensor:
        """(n_items, width, plus 1 with ``item_bias``): what ``user_vectors`` score."""
        items = self.items.weight
        if self.config.temperature is not None and self.config.unit_vectors != "users":
            items = F.normalize(items, dim=-1)
        return items if self.bias is None else torch.cat([items, self.bias[:, None]], dim=-1)

    @torch.no_grad()
    def embed_users(self, history: torch.Tensor, offsets: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """(U, width): each user's ``user_vectors`` after the last of their latest ``max_len`` items."""
        self.eval()
        device = self.items.weight.device
        out = []
        for start in range(0, len(offsets) - 1, batch_size):
            users = torch.arange(start, min(start + batch_size, len(offsets) - 1))
            items, lengths = history_windows(history, offsets, users, self.config.max_len)
            hidden = self(items.to(device), lengths.clamp_min(1).to(device))
            out.append(hidden[torch.arange(len(users), device=device), (lengths - 1).clamp_min(0).to(device)])
        return self.user_vectors(torch.cat(out))


def train_sasrec(
    history: torch.Tensor,
    offsets: torch.Tensor,
    n_items: int,
    config: SASRecConfig,
    device: str = "cpu",
    log: Callable[[dict[str, float]], None] | None = None,
    evaluate: Callable[[SASRec], dict[str, float]] | None = None,
    evaluate_every: int = 0,
) -> SASRec:
    """Fit ``SASRec`` to every user's latest ``max_len + 1`` items (``history`` user after user,
    user u's at ``offsets[u]:offsets[u + 1]``), once per user and epoch: each item predicts the
    next under a softmax over all ``n_items``. ``evaluate`` scores every ``evaluate_every``
    epochs; its results join the epoch's log record, and its time is left out of the record's
    ``seconds`` (training time, as ``train``'s)."""
    torch.manual_seed(config.seed)
    order = torch.Generator().manual_seed(config.seed)
    model = SASRec(n_items, config).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.98))
    n_users = len(offsets) - 1
    start = time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        total, batches = 0.0, 0
        for users in torch.randperm(n_users, generator=order).split(config.batch_size):
            items, lengths = history_windows(history, offsets, users, config.max_len + 1)
            items, lengths = items.to(device), lengths.to(device)
            hidden = model(items[:, :-1], (lengths - 1).clamp_min(1))
            targets = items[:, 1:]
            scored = targets >= 0  # only the positions with a next item are scored
            loss = F.cross_entropy(model.user_vectors(hidden[scored]) @ model.item_vectors().T, targets[scored])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, batches = total + loss.item(), batches + 1
        record = {"epoch": epoch + 1, "loss": total / batches, "seconds": time.perf_counter() - start}
        if evaluate is not None and evaluate_every and ((epoch + 1) % evaluate_every == 0 or epoch + 1 == config.epochs):
            began = time.perf_counter()
            record.update(evaluate(model))
            start += time.perf_counter() - began
        if log is not None:
            log(record)
    return model.eval()
