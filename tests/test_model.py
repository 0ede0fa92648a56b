"""omnisage_model on its own: shapes, losses, sketches, checkpoints and input validation."""

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
import torch

from omnisage_assets.lib.edges import build_graph_edges
from omnisage_assets.lib.examples import training_examples
from omnisage_assets.lib.random_walks import SamplingConfig, sample_neighborhoods
from omnisage_assets.lib.text_features import content_features, hashed_ngrams
from omnisage_model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, trained_with
from omnisage_model.config import ModelConfig
from omnisage_model.data import BOARD_TYPE, PIN_TYPE, BundleError, entity_keys
from omnisage_model.inference import embed_nodes, embed_users
from omnisage_model.layers import EncoderLayer
from omnisage_model.losses import CountMinSketch, candidate_log_q, capped_user_scale, sampled_softmax_loss
from omnisage_model.model import OmniSage, UserSequenceModel
from omnisage_model.train import load_training_inputs

TEXT_DIM = 8
SMALL = dict(text_embedding_dim=TEXT_DIM, width=32, heads=4, mlp_dim=64, out_dim=16, text_dim=16, seq_width=32, seq_heads=2, seq_layers=1, seq_max_len=16)


@pytest.fixture(scope="module")
def bundle(tiny_world):
    engagements = pa.concat_tables([tiny_world.engagements(d) for d in tiny_world.config.days[:3]])
    pins, boards = tiny_world.pins()["pin_id"].combine_chunks(), tiny_world.boards()["board_id"].combine_chunks()
    edges = build_graph_edges(engagements)
    nb = sample_neighborhoods(edges, pins, boards, SamplingConfig(num_walks=20, pin_board_pins=4, pin_board_boards=4, pin_pin_pins=4))
    n = tiny_world.pins().num_rows + tiny_world.boards().num_rows
    # Stand-in text-encoder vectors: the model takes any unit vectors of the declared width.
    vectors = np.random.default_rng(0).normal(size=(n, TEXT_DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    content = content_features(
        tiny_world.pins(), tiny_world.boards(), n_buckets=1 << 12, text_embedding=vectors, text_encoder="test"
    )
    return training_examples(engagements, edges, nb, content, pins, boards)


def _config(**kw):
    return ModelConfig(**{**SMALL, "image_dim": 32, "n_text_buckets": 1 << 12, **kw})


def test_hashed_ngrams_are_stable_and_in_range():
    ids = hashed_ngrams("Cozy Reading Nook", 1000)
    assert ids == hashed_ngrams("cozy reading nook", 1000)
    assert len(ids) == 3 + 2 and all(1 <= i <= 1000 for i in ids)


def test_embeddings_are_unit_vectors_of_the_configured_width(bundle):
    config = _config()
    store, tasks = load_training_inputs(bundle, config)
    model = OmniSage(config)
    nodes = embed_nodes(model, store, batch_size=256)
    assert nodes.shape == (store.n_nodes, 16)
    np.testing.assert_allclose(np.linalg.norm(nodes, axis=1), 1.0, atol=1e-5)
    users = embed_users(model, nodes[: store.n_pins], tasks)
    assert users.shape == (len(tasks.user_ids), 16)
    np.testing.assert_allclose(np.linalg.norm(users, axis=1), 1.0, atol=1e-5)


def test_batch_inference_equals_embedding_each_batch_from_scratch(bundle):
    """embed_nodes tokenises every neighbour once up front; the vectors must not change."""
    config = _config()
    store, _ = load_training_inputs(bundle, config)
    model = OmniSage(config).eval()
    with torch.no_grad():
        direct = torch.cat([model.embed(store, idx) for idx in torch.arange(store.n_nodes).split(100)])
    np.testing.assert_allclose(embed_nodes(model, store, batch_size=100), direct.numpy(), atol=1e-5)


def test_neighbor_cap_keeps_the_best_per_subgraph(bundle):
    store, _ = load_training_inputs(bundle, _config(max_neighbors_per_subgraph=2))
    assert store.nbr_index.shape[1] <= 4
    full, _ = load_training_inputs(bundle, _config())
    pin = 0
    capped = store.nbr_index[pin][store.nbr_subgraph[pin] == 0][:2]
    assert torch.equal(capped, full.nbr_index[pin][(full.nbr_subgraph[pin] == 0) & (full.nbr_index[pin] >= 0)][:2])


def test_id_tokens_tell_apart_pins_whose_content_and_neighbours_are_the_same(bundle):
    """Without id tokens (the paper's embedder) two Pins with the same features and neighbours
    embed identically; with them each id has its own vector, stable across bundles."""
    pins = bundle["pin_features"]
    twin = pins.slice(0, 1).set_column(0, "pin_id", pa.array([max(pins["pin_id"].to_pylist()) + 1], pa.int64()))
    twin_bundle = {**bundle, "pin_features": pa.concat_tables([pins, twin])}
    for id_buckets, same in ((0, True), (1 << 10, False)):
        store, _ = load_training_inputs(twin_bundle, _config(id_buckets=id_buckets))
        store.nbr_index[store.n_pins - 1] = store.nbr_index[0]  # same neighbourhood as Pin 0
        store.nbr_score[store.n_pins - 1], store.nbr_subgraph[store.n_pins - 1] = store.nbr_score[0], store.nbr_subgraph[0]
        store.log_degree[store.n_pins - 1] = store.log_degree[0]
        with torch.no_grad():
            first, twin = OmniSage(_config(id_buckets=id_buckets)).eval().embed(store, torch.tensor([0, store.n_pins - 1]))
        assert torch.allclose(first, twin, atol=1e-6) is same
    again, _ = load_training_inputs(bundle, _config(id_buckets=1 << 10))
    assert torch.equal(again.id_key[: again.n_pins], store.id_key[: again.n_pins])  # the same ids, the same keys
    assert entity_keys(np.array([5]), PIN_TYPE) != entity_keys(np.array([5]), BOARD_TYPE)


def test_id_init_std_scales_the_id_tokens_and_leaves_every_other_initial_weight():
    """Runs that compare id token scales differ in those tokens alone, seed for seed."""
    torch.manual_seed(0)
    default = OmniSage(_config(id_buckets=1 << 10)).state_dict()
    torch.manual_seed(0)
    small = OmniSage(_config(id_buckets=1 << 10, id_init_std=0.02)).state_dict()
    ids = "features.entity_id.weight"
    assert torch.allclose(small[ids], default[ids] * 0.02)
    assert 0.015 < float(small[ids].std()) < 0.025
    assert all(torch.equal(small[k], v) for k, v in default.items() if k != ids)


def test_id_hashes_tell_apart_pins_that_share_a_bucket_with_the_same_weights(bundle):
    """With one hash, Pins in one bucket share an id token; with two they almost never share
    both. The table is the same, so runs that compare hash counts start from the same weights."""
    store, _ = load_training_inputs(bundle, _config(id_buckets=16))
    keys = store.id_key[: store.n_pins]
    first, second = keys % 16, keys // 16 % 16
    a, b = next((i, j) for i in range(len(keys)) for j in range(i) if first[i] == first[j] and second[i] != second[j])
    models = {}
    for hashes, same in ((1, True), (2, False)):
        torch.manual_seed(0)
        models[hashes] = OmniSage(_config(id_buckets=16, id_hashes=hashes))
        tokens = models[hashes].features.id_tokens(keys[[a, b]])
        assert torch.equal(tokens[0], tokens[1]) is same
    one, two = models[1].features, models[2].features
    assert torch.equal(one.id_tokens(keys), one.entity_id.weight[first])
    assert torch.allclose(two.id_tokens(keys), (two.entity_id.weight[first] + two.entity_id.weight[second]) / 2**0.5)
    assert all(torch.equal(v, models[2].state_dict()[k]) for k, v in models[1].state_dict().items())
    with pytest.raises(ValueError, match="id_hashes"):
        _config(id_buckets=1 << 16, id_hashes=5)


def test_id_residual_starts_at_zero_and_moves_only_its_own_pins(bundle):
    """The residual changes nothing at the start (nor any other initial weight of a seed); a
    trained row moves the Pins of its bucket and no other node; it trains; it needs id buckets."""
    store, _ = load_training_inputs(bundle, _config(id_buckets=1 << 10))
    torch.manual_seed(0)
    plain = OmniSage(_config(id_buckets=1 << 10)).eval()
    torch.manual_seed(0)
    model = OmniSage(_config(id_buckets=1 << 10, id_residual=True)).eval()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in plain.state_dict().items())
    nodes = torch.arange(store.n_nodes)
    with torch.no_grad():
        before = model.embed(store, nodes)
        torch.testing.assert_close(before, plain.embed(store, nodes))
        bucket = store.id_key[0] % (1 << 10)
        model.pin_residual.weight[bucket] = 10.0
        after = model.embed(store, nodes)
    moved = (after - before).abs().amax(dim=1) > 1e-6
    in_bucket = torch.zeros(store.n_nodes, dtype=torch.bool)
    in_bucket[: store.n_pins] = store.id_key[: store.n_pins] % (1 << 10) == bucket
    assert moved[0] and torch.equal(moved, in_bucket)  # boards have no residual
    torch.testing.assert_close(after.norm(dim=1), torch.ones(store.n_nodes))
    model.train().embed(store, nodes[:5]).sum().backward()
    assert model.pin_residual.weight.grad[bucket].abs().sum() > 0
    with pytest.raises(ValueError, match="id_residual needs id_buckets"):
        _config(id_residual=True)


def test_hidden_dropout_drops_in_training_only_and_draws_nothing_at_zero():
    """SASRec's dropout (residual branches, sequence inputs) regularises training and leaves
    inference alone; at 0 a run draws the random numbers it drew before the setting existed."""
    torch.manual_seed(0)
    plain = OmniSage(_config())
    torch.manual_seed(0)
    dropped = OmniSage(_config(hidden_dropout=0.5))
    assert all(torch.equal(dropped.state_dict()[k], v) for k, v in plain.state_dict().items())
    pins = torch.nn.functional.normalize(torch.randn(2, 6, 16), dim=-1)
    lengths = torch.tensor([6, 4])
    served = plain.eval().embed_sequence(pins, lengths)
    torch.testing.assert_close(dropped.eval().embed_sequence(pins, lengths), served)
    assert not torch.allclose(dropped.train().embed_sequence(pins, lengths), served)
    rng = torch.get_rng_state()
    torch.testing.assert_close(plain.train().embed_sequence(pins, lengths), served)
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_layer_asked_for_its_first_queries_returns_what_the_full_layer_gives_them():
    """The entity embedder's last layer computes only its CLS row (the rest is never read):
    the same values and gradients as the full layer's first row, every token still a key."""
    torch.manual_seed(0)
    layer = EncoderLayer(32, 4, 64).double().eval()
    x = torch.randn(5, 9, 32, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(5, 9) > 0.4
    mask[:, 0] = True
    full = layer(x, key_mask=mask)[:, :1]
    (grad_full,) = torch.autograd.grad(full.square().sum(), x)
    first = layer(x, key_mask=mask, queries=1)
    (grad_first,) = torch.autograd.grad(first.square().sum(), x)
    assert first.shape == (5, 1, 32)
    torch.testing.assert_close(first, full)
    torch.testing.assert_close(grad_first, grad_full)
    assert grad_first[:, 1:][mask[:, 1:]].abs().sum() > 0  # the other tokens are still read
    with pytest.raises(ValueError, match="bidirectional"):
        layer(x, causal=True, queries=1)


def test_sequence_output_at_step_t_ignores_later_actions():
    config = _config()
    model = OmniSage(config).eval()
    pins = torch.nn.functional.normalize(torch.randn(1, 6, 16), dim=-1)
    changed = pins.clone()
    changed[0, 4:] = torch.randn(2, 16)
    a = model.embed_sequence(pins, torch.tensor([6]))
    b = model.embed_sequence(changed, torch.tensor([6]))
    torch.testing.assert_close(a[0, :4], b[0, :4])
    assert not torch.allclose(a[0, 4:], b[0, 4:])


def test_a_fresh_sequence_model_hears_the_pins_over_the_positions():
    torch.manual_seed(0)
    model = UserSequenceModel(ModelConfig(out_dim=64, seq_width=64, seq_max_len=64))
    pins = torch.nn.functional.normalize(torch.randn(1000, 64), dim=-1)
    projected = model.inp(pins)
    pin_signal = (projected - projected.mean(0)).norm(dim=-1).mean()  # what tells Pins apart
    assert model.position.weight.norm(dim=-1).mean() < pin_signal / 3  # N(0, 1) gave 14 times it


def test_sampled_softmax_masks_duplicates_and_applies_log_q():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    cand = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    ids = torch.tensor([7, 8, 7])  # column 2 is item 7 again: not a negative for query 0
    target = torch.tensor([0, 1])
    loss = sampled_softmax_loss(q, cand, target, ids, torch.zeros(3), temperature=1.0)
    expected_q0 = -torch.log_softmax(torch.tensor([1.0, 0.0]), 0)[0]
    expected_q1 = -torch.log_softmax(torch.tensor([0.0, 1.0, 0.0]), 0)[1]
    torch.testing.assert_close(loss, (expected_q0 + expected_q1) / 2)
    # A large log Q on the positive lowers its corrected logit and raises the loss.
    assert sampled_softmax_loss(q, cand, target, ids, torch.tensor([5.0, 5.0, 0.0]), 1.0) > loss


def test_log_q_makes_mixed_candidates_an_unbiased_partition_function():
    """In-batch candidates (drawn by frequency) plus uniform random ones, each copy corrected by
    log Q: summed exp(score - log Q) estimates the sum of exp(score) over every item, once."""
    g = torch.Generator().manual_seed(0)
    n_items, n_in_batch, n_random = 50, 40, 20
    frequency = torch.rand(n_items, generator=g) ** 3 + 1e-3
    frequency /= frequency.sum()
    sketch = CountMinSketch(width=1 << 12)
    sketch.update(torch.multinomial(frequency, 200_000, replacement=True, generator=g))
    score = torch.randn(n_items, generator=g)
    estimates = []
    for _ in range(2000):
        in_batch = torch.multinomial(frequency, n_in_batch, replacement=True, generator=g)
        random = torch.randint(0, n_items, (n_random,), generator=g)
        ids = torch.cat([in_batch, random])
        estimates.append((score[ids] - candidate_log_q(in_batch, random, n_items, sketch)).exp().sum())
    assert torch.stack(estimates).mean().item() == pytest.approx(score.exp().sum().item(), rel=0.03)


def test_capped_user_scale_softens_short_users_and_caps_long_ones_at_the_temperature():
    """Over a temperature of 0.05 the logits are the raw dot product up to a norm of 20, and
    cosine over 0.05 (the fixed scale) beyond it."""
    queries = torch.tensor([[3.0, 4.0], [300.0, 400.0], [0.0, 20.0]])
    pin = torch.tensor([0.6, 0.8])
    logits = capped_user_scale(queries, 0.05) @ pin / 0.05
    torch.testing.assert_close(logits, torch.tensor([5.0, 20.0, 16.0]))


def test_count_min_sketch_never_underestimates_and_finds_heavy_hitters():
    rng = np.random.default_rng(0)
    ids = np.concatenate([np.full(5000, 123), rng.integers(0, 100_000, size=20_000)])
    sketch = CountMinSketch(width=4096, depth=4)
    sketch.update(torch.from_numpy(ids))
    uniq, counts = np.unique(ids, return_counts=True)
    est = sketch.estimate(torch.from_numpy(uniq)).numpy()
    assert (est >= counts).all()
    assert est[uniq == 123][0] == pytest.approx(5000, rel=0.01)
    assert sketch.probability(torch.tensor([123])).item() == pytest.approx(5000 / len(ids), rel=0.01)


def test_checkpoint_round_trip_and_refusals(tmp_path):
    model = OmniSage(_config())
    save_checkpoint(tmp_path / "ok", model, {"step": 3})
    loaded, meta = load_checkpoint(tmp_path / "ok")
    assert meta["step"] == 3
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)

    # Warm starts: a setting added since the checkpoint was written takes its default.
    assert trained_with(meta, model.config)
    older = {**meta, "model_config": {k: v for k, v in meta["model_config"].items() if k != "id_residual"}}
    assert trained_with(older, model.config) and not trained_with(older, _config(id_buckets=8, id_residual=True))
    assert not trained_with({**meta, "model_config": {**meta["model_config"], "from_the_future": 1}}, model.config)

    (tmp_path / "ok" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt weights"):
        load_checkpoint(tmp_path / "ok")

    save_checkpoint(tmp_path / "foreign", model)
    meta = json.loads((tmp_path / "foreign" / "config.json").read_text())
    meta["format"] = "someone-else/2"
    (tmp_path / "foreign" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not an OmniSage checkpoint"):
        load_checkpoint(tmp_path / "foreign")

    save_checkpoint(tmp_path / "wider", OmniSage(_config(out_dim=8)))
    # Weights of a narrower model under a config that promises the wider one.
    (tmp_path / "wider" / "config.json").write_text((tmp_path / "ok" / "config.json").read_text())
    with pytest.raises(CheckpointError, match="do not fit this model"):
        load_checkpoint(tmp_path / "wider")


def test_bad_feature_tables_fail_before_training_with_the_column_named(bundle):
    with pytest.raises(BundleError, match="column 'image' row 0 has width 32, the model expects 64"):
        load_training_inputs(bundle, _config(image_dim=64))
    image = bundle["pin_features"]["image"].to_pylist()
    row = next(i for i, v in enumerate(image) if v is not None)
    image[row] = [float("nan")] * 32
    pins = bundle["pin_features"]
    bad = dict(bundle, pin_features=pins.set_column(pins.schema.get_field_index("image"), "image", pa.array(image, pa.list_(pa.float32()))))
    with pytest.raises(BundleError, match=f"column 'image' row {row} holds NaN"):
        load_training_inputs(bad, _config())
    with pytest.raises(BundleError, match="bucket id .* the model has 16 buckets"):
        load_training_inputs(bundle, _config(n_text_buckets=16))
    with pytest.raises(BundleError, match=r"pin_features: column 'text_embedding' has type fixed_size_list<.*>\[8\], the model expects 12"):
        load_training_inputs(bundle, _config(text_embedding_dim=12))
    vectors = bundle["board_features"]["text_embedding"].combine_chunks()
    values = vectors.flatten().to_numpy().copy()
    values[3 * TEXT_DIM] = np.inf
    broken = pa.FixedSizeListArray.from_arrays(pa.array(values), TEXT_DIM)
    column = bundle["board_features"].schema.get_field_index("text_embedding")
    bad = dict(bundle, board_features=bundle["board_features"].set_column(column, "text_embedding", broken))
    with pytest.raises(BundleError, match="board_features: column 'text_embedding' row 3 holds NaN or infinite"):
        load_training_inputs(bad, _config())


def test_the_model_package_runs_without_dagster_dgl_or_lancedb():
    code = (
        "import sys, omnisage_model.train, omnisage_model.inference, omnisage_model.metrics; "
        "print(sorted(m for m in ('dagster', 'dgl', 'lancedb', 'great_expectations') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_capped_users_train_differently_from_fixed_ones_and_serve_unit_vectors(bundle):
    """``user_scale="capped"`` adds no weight (runs compare seed for seed) but changes what the
    user task trains; the user vectors served are unit all the same."""
    from omnisage_model.config import TrainConfig
    from omnisage_model.train import train

    config = _config()
    store, tasks = load_training_inputs(bundle, config)
    trained = {}
    for scale in ("fixed", "capped"):
        user_task = TrainConfig(
            steps=5, user_batch_size=8, random_negatives=32, pair_weight=0, feature_weight=0, warmup_steps=1,
            deterministic=True, user_scale=scale,
        )
        trained[scale] = train(store, tasks, config, user_task).model
    assert not torch.equal(trained["fixed"].sequence.out.weight, trained["capped"].sequence.out.weight)
    pins = embed_nodes(trained["capped"], store)[: store.n_pins]
    np.testing.assert_allclose(np.linalg.norm(embed_users(trained["capped"], pins, tasks), axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="user_scale"):
        TrainConfig(user_scale="free")
