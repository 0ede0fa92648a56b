"""The sequential protocol's in-house reference: SASRec over item ids, trained with a full softmax."""

import dataclasses

import numpy as np
import pytest
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


@pytest.mark.parametrize(
    "score",
    [
        {},  # dot product
        {"temperature": 0.1},  # cosine: OmniSage's score
        {"temperature": 0.1, "unit_vectors": "items"},  # unit items, users keep their norm
        {"temperature": 0.1, "learn_temperature": True, "item_bias": True},
    ],
)
def test_sasrec_learns_which_item_comes_next(score):
    history, offsets = successor_histories()
    model = train_sasrec(history, offsets, N_ITEMS, dataclasses.replace(SMALL, **score))
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


def test_sasrec_scores_are_what_its_options_say():
    """Unit vectors where the options ask for them; the bias rides as one more column; a learned
    temperature moves from where it starts."""
    history, offsets = successor_histories()
    short = dataclasses.replace(SMALL, epochs=2, temperature=0.1)
    model = train_sasrec(history, offsets, N_ITEMS, dataclasses.replace(short, unit_vectors="items", item_bias=True))
    items = model.item_vectors().detach()
    assert torch.allclose(items[:, :-1].norm(dim=1), torch.ones(N_ITEMS)) and torch.equal(items[:, -1], model.bias.detach())
    users = model.embed_users(history, offsets)
    assert users[:, :-1].norm(dim=1).std() > 0.01 and torch.equal(users[:, -1], torch.ones(len(users)))
    fixed, learned = (train_sasrec(history, offsets, N_ITEMS, dataclasses.replace(short, learn_temperature=learn)) for learn in (False, True))
    assert fixed.log_scale.item() == pytest.approx(np.log(10.0)) != learned.log_scale.item()
    assert torch.allclose(learned.embed_users(history, offsets).norm(dim=1), learned.log_scale.exp())
    with pytest.raises(ValueError, match="unit_vectors must be"):
        dataclasses.replace(short, unit_vectors="item")
