"""The sequential protocol's in-house reference: SASRec over item ids, trained with a full softmax."""

import dataclasses

import numpy as np
import torch

from omnisage_model.baselines import SASRecConfig, train_sasrec
from omnisage_model.metrics import hit_rate_and_ndcg

N_ITEMS = 30


def successor_histories(n_users: int = 48, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Every user walks the cycle 0 -> 1 -> ... -> 29 -> 0 from a random item, for 8 to 24 steps."""
    rng = np.random.default_rng(seed)
    walks = [(rng.integers(N_ITEMS) + np.arange(rng.integers(8, 25))) % N_ITEMS for _ in range(n_users)]
    offsets = torch.tensor(np.concatenate([[0], np.cumsum([len(w) for w in walks])]))
    return torch.from_numpy(np.concatenate(walks)), offsets


SMALL = SASRecConfig(width=16, layers=1, max_len=16, dropout=0.0, lr=1e-2, batch_size=16, epochs=40)


def test_sasrec_learns_which_item_comes_next():
    history, offsets = successor_histories()
    model = train_sasrec(history, offsets, N_ITEMS, SMALL)
    users = model.embed_users(history, offsets).detach().numpy()
    last = history[offsets[1:] - 1].numpy()
    nothing_seen = [np.array([], np.int64)] * len(users)
    items = model.item_vectors().detach().numpy()
    top1, _ = hit_rate_and_ndcg(users, items, (last + 1) % N_ITEMS, nothing_seen, k=1)
    assert top1 > 0.9  # every item appears about equally often: popularity's top 1 is right 1 time in 30


def test_sasrec_training_is_reproducible_for_a_seed():
    history, offsets = successor_histories()
    short = dataclasses.replace(SMALL, epochs=2, dropout=0.2)
    first, again = (train_sasrec(history, offsets, N_ITEMS, short).state_dict() for _ in range(2))
    other = train_sasrec(history, offsets, N_ITEMS, dataclasses.replace(short, seed=1)).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["items.weight"], other["items.weight"])
