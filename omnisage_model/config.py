"""Model and training configuration; defaults are the paper's production settings."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class ModelConfig:
    n_text_buckets: int = 1 << 18
    text_dim: int = 128
    # Width of the pretrained text encoder's vectors (all-MiniLM-L6-v2: 384); 0 = no such token.
    text_embedding_dim: int = 384
    image_dim: int = 1024
    width: int = 768
    heads: int = 12
    layers: int = 1
    mlp_dim: int = 3072
    out_dim: int = 256
    seq_width: int = 512
    seq_heads: int = 4
    seq_layers: int = 4
    seq_max_len: int = 256
    # Best-scored neighbour tokens kept per subgraph (None: all sampled, 25+75 and 50 in the paper).
    max_neighbors_per_subgraph: int | None = None
    dropout: float = 0.0  # on attention weights
    # On the transformers' attention and MLP outputs and the sequence model's input embeddings
    # (SASRec's dropout, BERT's hidden dropout): with ``dropout``, what regularises the user model.
    # At 0 torch's dropout returns its input and draws nothing, so earlier runs reproduce.
    hidden_dropout: float = 0.0
    # Not in the paper: a learned token per Pin id, hashed into this many buckets (0: none, the
    # paper's content-only embedder; size it to the catalogue). For catalogues whose content
    # cannot tell items apart (MovieLens: a title and genres). It makes Pin embeddings partly
    # transductive: a Pin unseen in training lands in a bucket that other Pins trained.
    id_buckets: int = 0
    # Buckets per Pin id, from disjoint digits of its key, their tokens summed (hash embeddings):
    # two Pins share every bucket with odds 1 in id_buckets ** id_hashes, where one bucket makes
    # a fifth of MovieLens-1M's 3,883 Pins share a token at 16,384. The same table, so the same
    # parameters and initial weights whatever the count. (ML-1M at CPU length: no gain from 2.)
    id_hashes: int = 1
    # Standard deviation of the id tokens' initial values. 1.0 (torch's default) starts every
    # Pin at a random token as large as its content's; small values start Pins from content
    # and neighbours and let identity grow where training needs it.
    id_init_std: float = 1.0
    # Not in the paper: a learned vector per Pin id (the same hashed buckets as the id token, so
    # ``id_buckets`` must be set), zero at the start, added to the Pin embedder's output before
    # the L2 norm. The id token reaches the embedding only through attention and the head; this
    # lets a Pin's embedding move freely where its content and neighbours pin it down (SASRec's
    # free item vector, on top of OmniSage's).
    id_residual: bool = False
    # Entity-feature task: per raw feature type a ReLU MLP with this many layers and width.
    feature_mlp_layers: int = 4
    feature_mlp_hidden: int = 1024

    def __post_init__(self) -> None:
        # Keys are below 2**63: a digit beyond that would be 0 for every Pin.
        if self.id_hashes < 1 or max(self.id_buckets, 2) ** (self.id_hashes - 1) >= 2**62:
            raise ValueError(f"id_hashes must be 1 or more with id_buckets ** (id_hashes - 1) < 2**62, not {self.id_hashes}")
        if self.id_residual and not self.id_buckets:
            raise ValueError("id_residual needs id_buckets: the residual vectors are read from the id buckets")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}")
        return cls(**data)


@dataclasses.dataclass
class TrainConfig:
    steps: int = 1000
    pair_batch_size: int = 512
    user_batch_size: int = 64
    random_negatives: int = 1024
    # Candidates of the Pin-retrieving tasks (entity-entity, user-entity). "sampled": the batch's
    # positives plus ``random_negatives`` uniform Pins, logQ-corrected (any catalogue). "all":
    # every Pin, an exact softmax with nothing to correct; for catalogues of thousands, where
    # a step embeds most Pins anyway (MovieLens: the standard sequential protocol).
    pin_candidates: str = "sampled"
    temperature: float = 0.05
    # The user-entity task's sharpness per user. "fixed": cosine over ``temperature`` for every
    # user. "capped": a user vector keeps its norm up to 1 / ``temperature`` (the logits are its
    # dot product with the unit Pins), so a user the model is unsure of can soften its own
    # softmax but none can be sharper than "fixed". A free norm lifts the in-house SASRec at
    # length and, uncapped, overfits OmniSage (docs/sequential_protocol.md, sessions 40 to 42).
    # Training only: served user vectors are unit either way, and a user's ranking of Pins
    # does not depend on its norm.
    user_scale: str = "fixed"
    lr: float = 5e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    # After the warm-up: "cosine" decays the learning rate to zero at ``steps``; "constant"
    # keeps it (SASRec's Adam), so a run can be stopped anywhere or trained on.
    lr_schedule: str = "cosine"
    grad_clip: float = 1.0
    # Decay of an exponential moving average of the weights, updated after every step (None:
    # none). The average is scored beside the trained weights and is what the standalone
    # trainer saves. Under the cosine schedule it scored level with the trained weights on
    # ML-1M (docs/sequential_protocol.md), so it stays off.
    ema_decay: float | None = None
    feature_batch_size: int = 256  # nodes per raw feature type and step, entity-feature task
    pair_weight: float = 1.0  # the paper's l_p
    feature_weight: float = 1.0  # l_f
    user_weight: float = 1.0  # l_s, on L_next + L_future
    loss_chunk_size: int | None = 256  # queries per chunk of the sampled softmax; None: one block
    checkpoint_every: int = 0  # steps between resumable checkpoints (0: none)
    future_window: int = 16  # actions ahead from which the future-action target is drawn
    # Sequence steps per user and step that query the user-entity task; None: every step
    # (SASRec's dense objective, the same sequence forward pass for more signal).
    user_positions: int | None = 8
    # Which ``seq_max_len`` actions of a user a step trains on. "recent": the most recent (what
    # inference embeds). "random": consecutive actions at a random place in the whole history,
    # so a history longer than ``seq_max_len`` trains in full (MovieLens-1M: the most recent 64
    # hold a third of the next-action targets).
    sequence_windows: str = "recent"
    seed: int = 0
    # torch's deterministic kernels: a rerun or a resumed run matches bit for bit (some CPU
    # scatter-adds otherwise differ in the last bits, which training amplifies).
    deterministic: bool = False
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.pin_candidates not in ("sampled", "all"):
            raise ValueError(f"pin_candidates must be 'sampled' or 'all', not {self.pin_candidates!r}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule must be 'cosine' or 'constant', not {self.lr_schedule!r}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie strictly between 0 and 1, not {self.ema_decay}")
        if self.user_scale not in ("fixed", "capped"):
            raise ValueError(f"user_scale must be 'fixed' or 'capped', not {self.user_scale!r}")
        if self.sequence_windows not in ("recent", "random"):
            raise ValueError(f"sequence_windows must be 'recent' or 'random', not {self.sequence_windows!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
