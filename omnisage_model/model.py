"""The OmniSage entity embedders and the user sequence model.

An entity's tokens are ``[CLS] + own feature tokens + neighbour tokens`` (proximity order);
one transformer per entity type aggregates them and the CLS output, through an MLP head
(plus a free vector per Pin with ``id_residual``) and L2 normalisation, is the entity's
embedding. Users are embedded by a causal transformer over the embeddings of the Pins they
engaged with, so user gradients reach the Pin embedder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from omnisage_model.config import ModelConfig
from omnisage_model.data import BOARD_TYPE, PIN_TYPE, SUBGRAPHS, FeatureStore
from omnisage_model.layers import EncoderLayer, mlp

ENTITY_TYPES = ("pin", "board")
# On a GPU the aggregator's batch is padded to a multiple of this: a step's node count varies,
# and cuDNN attention builds an execution plan for every new shape it meets.
CUDA_BATCH_MULTIPLE = 64


def hashed_rows(table: nn.Embedding, keys: torch.Tensor, hashes: int) -> torch.Tensor:
    """(n, dim) rows of id keys: the sum of ``hashes`` buckets' rows, read from the key's
    base-``num_embeddings`` digits, scaled so the sum starts as large as one row."""
    b = table.num_embeddings
    buckets = torch.stack([keys // b**j % b for j in range(hashes)], dim=-1)
    return table(buckets).sum(dim=-2) * hashes**-0.5


class FeatureTokenizer(nn.Module):
    """Each raw feature of each entity type becomes one width-``D`` token through a small MLP.

    Tokens, in order: hashed n-gram text bag, pretrained text vector (when the config has
    one), image, log degree, Pin id (when ``id_buckets``). A missing feature (no text, no
    image; boards have no image or id token) is masked out rather than fed as zeros.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.width
        self.text_bag = nn.EmbeddingBag(config.n_text_buckets + 1, config.text_dim, mode="mean", padding_idx=0)
        self.text = nn.ModuleList([mlp(config.text_dim, d, d) for _ in ENTITY_TYPES])
        self.text_embedding = (
            nn.ModuleList([mlp(config.text_embedding_dim, d, d) for _ in ENTITY_TYPES])
            if config.text_embedding_dim
            else None
        )
        self.image = mlp(config.image_dim, d, d)
        self.degree = nn.ModuleList([mlp(1, d, d) for _ in ENTITY_TYPES])
        self.entity_id = nn.Embedding(config.id_buckets, d) if config.id_buckets else None
        self.id_hashes = config.id_hashes
        if self.entity_id is not None:
            # The same draws as the default init, rescaled: every other initial weight of a seed
            # stays what it was, so runs that differ in this scale differ in nothing else.
            with torch.no_grad():
                self.entity_id.weight.mul_(config.id_init_std)
        self.slot = nn.Embedding(3 + (self.text_embedding is not None) + (self.entity_id is not None), d)

    def forward(self, store: FeatureStore, idx: torch.Tensor, entity_type: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens (n, T, D) and their mask (n, T) for nodes ``idx``, all of ``entity_type``."""
        has_text = store.has_text[idx]
        tokens = [self.text[entity_type](self.text_bag(store.text[idx]))]
        mask = [has_text]
        if self.text_embedding is not None:
            tokens.append(self.text_embedding[entity_type](store.text_embedding[idx]))
            mask.append(has_text)
        if entity_type == PIN_TYPE:
            tokens.append(self.image(store.image[idx]))
            mask.append(store.has_image[idx])
        else:
            tokens.append(torch.zeros_like(tokens[0]))
            mask.append(torch.zeros_like(has_text))
        tokens.append(self.degree[entity_type](store.log_degree[idx, None]))
        mask.append(torch.ones_like(has_text))
        if self.entity_id is not None:  # Pins only: the catalogue that retrieval ranks
            is_pin = entity_type == PIN_TYPE
            tokens.append(self.id_tokens(store.id_key[idx]) if is_pin else torch.zeros_like(tokens[0]))
            mask.append(torch.full_like(has_text, is_pin))
        return torch.stack(tokens, dim=1) + self.slot.weight, torch.stack(mask, dim=1)

    def id_tokens(self, keys: torch.Tensor) -> torch.Tensor:
        """(n, width) id tokens of id keys (``hashed_rows``)."""
        assert self.entity_id is not None
        return hashed_rows(self.entity_id, keys, self.id_hashes)

    def summary(self, store: FeatureStore, idx: torch.Tensor) -> torch.Tensor:
        """One vector per node (mixed types): the masked sum of its feature tokens."""
        out = torch.zeros(len(idx), self.slot.embedding_dim, device=store.text.device)
        types = store.node_type[idx]
        for t in (PIN_TYPE, BOARD_TYPE):
            sel = types == t
            if sel.any():
                tokens, mask = self(store, idx[sel], t)
                out = out.index_put((sel.nonzero().squeeze(1),), (tokens * mask[..., None]).sum(1))
        return out

    def node_summaries(self, store: FeatureStore, batch_size: int = 65536) -> torch.Tensor:
        """(N, width) summaries of every node, computed once, for ``OmniSage.embed``; kept in
        the autocast dtype when autocast is on (half the memory at width 768)."""
        device = store.node_type.device
        dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else torch.float32
        parts = []
        for start in range(0, store.n_nodes, batch_size):
            idx = torch.arange(start, min(start + batch_size, store.n_nodes), device=device)
            parts.append(self.summary(store, idx).to(dtype))
        return torch.cat(parts)


class EntityEmbedder(nn.Module):
    """Transformer aggregator for one entity type: CLS -> MLP head -> L2 norm."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.width
        self.cls = nn.Parameter(torch.randn(d) * 0.02)
        self.layers = nn.ModuleList(
            EncoderLayer(d, config.heads, config.mlp_dim, config.dropout, config.hidden_dropout)
            for _ in range(config.layers)
        )
        self.norm = nn.LayerNorm(d)
        self.head = mlp(d, d, config.out_dim)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
        """``offset`` (n, out_dim), when given, is added to the head's output before the L2 norm."""
        n = len(tokens)
        pad = -n % CUDA_BATCH_MULTIPLE if tokens.is_cuda else 0
        if pad:  # fully masked rows, dropped below
            tokens, mask = F.pad(tokens, (0, 0, 0, 0, 0, pad)), F.pad(mask, (0, 0, 0, pad))
        cls = self.cls.expand(tokens.shape[0], 1, -1)
        x = torch.cat([cls, tokens], dim=1)
        mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, key_mask=mask, queries=1 if i == last else None)  # only the CLS is read
        out = self.head(self.norm(x[:n, 0]))
        return F.normalize(out if offset is None else out + offset, dim=-1)


def relu_mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class FeatureEncoders(nn.Module):
    """The entity-feature task's encoders: one ReLU MLP per raw feature type.

    Input: the node's raw feature beside the mean raw feature of its neighbours that have
    it; output: a unit vector that must retrieve the node's embedding, which keeps content
    information in the embedding (the paper's "autoencoding" task).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        hidden = [config.feature_mlp_hidden] * (config.feature_mlp_layers - 1)
        self.encoders = nn.ModuleDict(
            {name: relu_mlp([2 * dim, *hidden, config.out_dim]) for name, dim in feature_widths(config).items()}
        )

    def forward(self, store: FeatureStore, idx: torch.Tensor, feature: str) -> torch.Tensor:
        values, present = store.raw_feature(feature)
        nbr = store.nbr_index[idx]
        valid = (nbr >= 0) & present[nbr.clamp(min=0)]
        weights = valid.to(values.dtype)[..., None]
        mean = (values[nbr.clamp(min=0)] * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return F.normalize(self.encoders[feature](torch.cat([values[idx], mean], dim=1)), dim=-1)


def feature_widths(config: ModelConfig) -> dict[str, int]:
    """Raw feature types the entity-feature task encodes, with their widths."""
    widths = {"image": config.image_dim}
    if config.text_embedding_dim:
        widths["text_embedding"] = config.text_embedding_dim
    return widths


class OmniSage(nn.Module):
    """Embeds Pins and boards (``embed``) and user sequences (``embed_sequence``); the
    entity-feature encoders (``feature_encoders``) only serve training."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.width
        self.features = FeatureTokenizer(config)
        self.neighbor_type = nn.Embedding(len(ENTITY_TYPES), d)
        self.neighbor_subgraph = nn.Embedding(len(SUBGRAPHS), d)
        self.neighbor_score = mlp(1, d, d)
        self.embedders = nn.ModuleList([EntityEmbedder(config) for _ in ENTITY_TYPES])
        self.sequence = UserSequenceModel(config)
        self.feature_encoders = FeatureEncoders(config)
        # Zero at the start (and drawn from no random stream, so every other initial weight of a
        # seed stays): a Pin starts where its content and neighbours put it, and moves away only
        # as far as training pulls its own vector.
        self.pin_residual = (
            nn.Embedding.from_pretrained(torch.zeros(config.id_buckets, config.out_dim), freeze=False)
            if config.id_residual
            else None
        )

    def _neighbor_tokens(
        self, store: FeatureStore, idx: torch.Tensor, summaries: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        nbr = store.nbr_index[idx]  # (n, K)
        mask = nbr >= 0
        flat = nbr[mask]
        tokens = torch.zeros(*nbr.shape, self.config.width, device=nbr.device)
        if len(flat):
            if summaries is None:
                # Each distinct neighbour's features are tokenised once per call.
                unique, inverse = torch.unique(flat, return_inverse=True)
                summary = self.features.summary(store, unique)[inverse]
            else:
                summary = summaries[flat]
            extra = (
                self.neighbor_type(store.node_type[flat])
                + self.neighbor_subgraph(store.nbr_subgraph[idx][mask])
                + self.neighbor_score(store.nbr_score[idx][mask][:, None])
            )
            tokens = tokens.index_put(tuple(mask.nonzero().T), summary + extra)
        return tokens, mask

    def embed(self, store: FeatureStore, idx: torch.Tensor, summaries: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised embeddings (n, out_dim) of nodes ``idx`` (Pins and boards mixed).

        ``summaries`` (N, width), from ``features.node_summaries``, saves re-tokenising neighbours when
        many batches share them (inference); training leaves it out so gradients reach the
        tokenizer."""
        out = torch.zeros(len(idx), self.config.out_dim, device=idx.device)
        types = store.node_type[idx]
        for t in (PIN_TYPE, BOARD_TYPE):
            sel = (types == t).nonzero().squeeze(1)
            if len(sel) == 0:
                continue
            nodes = idx[sel]
            own, own_mask = self.features(store, nodes, t)
            nbr, nbr_mask = self._neighbor_tokens(store, nodes, summaries)
            offset = None
            if t == PIN_TYPE and self.pin_residual is not None:
                offset = hashed_rows(self.pin_residual, store.id_key[nodes], self.config.id_hashes)
            emb = self.embedders[t](torch.cat([own, nbr], 1), torch.cat([own_mask, nbr_mask], 1), offset)
            out = out.index_put((sel,), emb.to(out.dtype))
        return out

    def embed_sequence(self, pin_embeddings: torch.Tensor, lengths: torch.Tensor, unit: bool = True) -> torch.Tensor:
        return self.sequence(pin_embeddings, lengths, unit)


class UserSequenceModel(nn.Module):
    """Causal transformer over a user's chronological Pin embeddings (PinnerFormer style).

    Output ``t`` summarises actions ``0..t`` and is the user's embedding at that step.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.inp = nn.Linear(config.out_dim, config.seq_width)
        self.position = nn.Embedding(config.seq_max_len, config.seq_width)
        # Small, as BERT's and GPT's (0.02): the Pins come in as unit vectors, which ``inp`` maps
        # to a norm near 0.6, and positions at nn.Embedding's N(0, 1) (norm 8) drowned them 14
        # to 1 until training had shrunk them. The default draws rescaled: every other initial
        # weight of a seed stays what it was.
        with torch.no_grad():
            self.position.weight.mul_(0.02)
        self.layers = nn.ModuleList(
            EncoderLayer(
                config.seq_width, config.seq_heads, 4 * config.seq_width, config.dropout, config.hidden_dropout
            )
            for _ in range(config.seq_layers)
        )
        self.norm = nn.LayerNorm(config.seq_width)
        self.out = nn.Linear(config.seq_width, config.out_dim)
        self.hidden_dropout = config.hidden_dropout

    def forward(self, pins: torch.Tensor, lengths: torch.Tensor, unit: bool = True) -> torch.Tensor:
        """``pins`` (U, T, out_dim), right-padded; returns (U, T, out_dim), L2-normalised unless
        ``unit`` is False (training with ``user_scale`` "capped": the norm is the user's own
        inverse temperature)."""
        t = pins.shape[1]
        positions = torch.arange(t, device=pins.device)
        x = F.dropout(self.inp(pins) + self.position(positions), self.hidden_dropout, self.training)
        mask = positions[None, :] < lengths[:, None]
        for layer in self.layers:
            x = layer(x, key_mask=mask, causal=True)
        out = self.out(self.norm(x))
        return F.normalize(out, dim=-1) if unit else out
