"""Training: the chunked loss, the entity-feature task, resuming, and the daily warm start."""

import dataclasses
import functools

import numpy as np
import pytest
import torch
from conftest import FAST_TRAINING, MODEL_DAY, TINY
from test_model import _config, bundle  # noqa: F401  (the shared tiny training bundle)

from omnisage_model.baselines import FreePinUserModel
from omnisage_model.config import TrainConfig
from omnisage_model.data import TaskData
from omnisage_model.losses import sampled_softmax_loss
from omnisage_model.model import OmniSage
from omnisage_model.train import _training_sequences, _user_queries, load_training_inputs, lr_lambda, train


def _loss_inputs():
    g = torch.Generator().manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(70, 16, generator=g), dim=-1).requires_grad_(True)
    candidates = torch.nn.functional.normalize(torch.randn(300, 16, generator=g), dim=-1).requires_grad_(True)
    target = torch.arange(70)
    ids = torch.cat([torch.randint(0, 40, (70,), generator=g), torch.randint(0, 1000, (230,), generator=g)])
    return queries, candidates, target, ids, torch.randn(300, generator=g)


def _loss_and_grads(chunk, queries, candidates, target, ids, log_q):
    loss = sampled_softmax_loss(queries * 2, candidates, target, ids, log_q, 0.1, chunk_size=chunk)
    return (loss.detach(), *torch.autograd.grad(loss, (queries, candidates)))


def test_chunked_loss_matches_the_one_block_loss_in_value_and_gradients():
    inputs = _loss_inputs()
    for full, chunked in zip(_loss_and_grads(None, *inputs), _loss_and_grads(16, *inputs)):
        torch.testing.assert_close(chunked, full)


def test_chunked_loss_under_bf16_autocast_as_on_a_gpu():
    """CUDA training runs in bf16 autocast; the hand-written gradients stay float32 and close."""
    inputs = _loss_inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        chunked = _loss_and_grads(16, *inputs)
    for full, got in zip(_loss_and_grads(None, *inputs), chunked):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, full, atol=0.02, rtol=0.02)


def _train_config(**kw) -> TrainConfig:
    return TrainConfig(
        **{"steps": 24, "pair_batch_size": 32, "user_batch_size": 8, "feature_batch_size": 32, "random_negatives": 64,
           "warmup_steps": 4, "log_every": 1, "loss_chunk_size": 16, **kw}
    )


def test_dense_user_queries_cover_every_step_that_has_a_next_action():
    lengths = torch.tensor([3, 4, 2])  # batch rows 0, 1, 2
    config = TrainConfig(user_positions=None, future_window=16)
    row, step, next_pos, future = _user_queries(lengths, config, torch.Generator().manual_seed(0))
    assert list(zip(row.tolist(), step.tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 0)]
    assert torch.equal(next_pos, step + 1)
    last = torch.tensor([2, 2, 3, 3, 3, 1])  # each user's last position: futures never reach padding
    assert bool(((future > step) & (future <= last)).all())
    sampled = _user_queries(lengths, TrainConfig(user_positions=8), torch.Generator().manual_seed(0))
    assert len(sampled[0]) == 24 and bool((sampled[2] <= torch.tensor([2, 3, 1]).repeat_interleave(8)).all())


def test_random_windows_reach_the_whole_history_and_recent_ones_what_inference_embeds():
    # Users of 5, 2 and 3 actions, windows of 3 (TaskData.sequences: each user's most recent 3).
    history, offsets = torch.tensor([10, 11, 12, 13, 14, 20, 21, 30, 31, 32]), torch.tensor([0, 5, 7, 10])
    sequences = torch.tensor([[12, 13, 14], [20, 21, -1], [30, 31, 32]])
    tasks = TaskData(torch.empty(0), torch.empty(0), sequences, torch.tensor([3, 2, 3]), np.arange(3), history, offsets)
    users, g = torch.tensor([0, 1, 2, 0]), torch.Generator().manual_seed(0)
    recent, recent_lengths = _training_sequences(tasks, users, 3, TrainConfig(), g)
    assert torch.equal(recent, sequences[users]) and recent_lengths.tolist() == [3, 2, 3, 3]
    windows = set()
    for _ in range(40):
        seq, lengths = _training_sequences(tasks, users, 3, TrainConfig(sequence_windows="random"), g)
        assert lengths.tolist() == [3, 2, 3, 3]
        assert seq[1].tolist() == [20, 21, -1] and seq[2].tolist() == [30, 31, 32]  # short histories: all of it
        windows.update(tuple(seq[row].tolist()) for row in (0, 3))
    assert windows == {(10, 11, 12), (11, 12, 13), (12, 13, 14)}
    with pytest.raises(ValueError, match="sequence_windows"):
        TrainConfig(sequence_windows="oldest")


def test_the_training_history_ends_in_each_users_inference_sequence(bundle):  # noqa: F811
    config = _config(seq_max_len=3)
    store, tasks = load_training_inputs(bundle, config)
    totals = tasks.history_offsets.diff()
    assert len(totals) == len(tasks.user_ids) and int(totals.max()) > 3  # some history is older than the window
    for user, (end, length) in enumerate(zip(tasks.history_offsets[1:].tolist(), tasks.sequence_length.tolist())):
        assert tasks.history[end - length : end].tolist() == tasks.sequences[user, :length].tolist()
    result = train(store, tasks, config, _train_config(sequence_windows="random", steps=2))
    assert np.isfinite(result.history[-1]["loss_user_next"])


def test_free_pins_train_on_the_user_task_alone(bundle):  # noqa: F811
    """The regime's diagnostic: OmniSage's trainer and user model over a free vector per Pin.
    The user task lowers its loss; a task that embeds boards is refused by name."""
    config = _config()
    store, tasks = load_training_inputs(bundle, config)
    build = functools.partial(FreePinUserModel, n_pins=store.n_pins)
    result = train(store, tasks, config, _train_config(pair_weight=0.0, feature_weight=0.0, steps=30), build_model=build)
    assert {k for k in result.history[0] if k.startswith("loss_")} == {"loss_user_next", "loss_user_future"}
    assert np.mean([r["loss"] for r in result.history[-5:]]) < np.mean([r["loss"] for r in result.history[:5]])
    pins = result.model.embed(store, torch.arange(store.n_pins))
    torch.testing.assert_close(pins.norm(dim=1), torch.ones(store.n_pins))
    with pytest.raises(ValueError, match="embeds Pins only"):
        train(store, tasks, config, _train_config(feature_weight=0.0, steps=1), build_model=build)


def test_entity_feature_task_alone_trains_the_entity_embedders(bundle):  # noqa: F811
    config = _config(feature_mlp_hidden=32)
    store, tasks = load_training_inputs(bundle, config)
    torch.manual_seed(0)  # train() seeds the same way: this is its initial model
    before = OmniSage(config).state_dict()
    result = train(store, tasks, config, _train_config(pair_weight=0.0, user_weight=0.0, steps=30))
    keys = set(result.history[0])
    assert {"loss_feature_image", "loss_feature_text_embedding"} <= keys and "loss_pair" not in keys
    after = result.model.state_dict()
    # AdamW skips parameters without a gradient: these moved because the feature loss reached them.
    assert not torch.equal(after["embedders.0.head.0.weight"], before["embedders.0.head.0.weight"])
    assert not torch.equal(after["embedders.1.head.0.weight"], before["embedders.1.head.0.weight"])
    assert torch.equal(after["sequence.out.weight"], before["sequence.out.weight"])  # no user task: untouched
    first = np.mean([r["loss"] for r in result.history[:5]])
    last = np.mean([r["loss"] for r in result.history[-5:]])
    assert last < first


def test_all_pin_candidates_make_the_pin_tasks_an_exact_softmax_over_every_pin(bundle, monkeypatch):  # noqa: F811
    """``pin_candidates="all"``: the entity-entity and user tasks score every Pin, with no logQ
    correction, each query's own Pin as its target; the feature task (which may retrieve
    boards) keeps its in-batch candidates."""
    import omnisage_model.train as train_module

    config = _config(feature_mlp_hidden=32)
    store, tasks = load_training_inputs(bundle, config)
    calls = []

    def recording_loss(queries, candidates, target, candidate_ids, log_q, temperature, chunk_size=None):
        calls.append((len(queries), candidates.shape[0], target, candidate_ids, log_q))
        return sampled_softmax_loss(queries, candidates, target, candidate_ids, log_q, temperature, chunk_size)

    monkeypatch.setattr(train_module, "sampled_softmax_loss", recording_loss)
    result = train(store, tasks, config, _train_config(pin_candidates="all", steps=1))
    pair, *features, user_next, user_future = calls
    every_pin = torch.arange(store.n_pins)
    for n_queries, n_candidates, target, ids, log_q in (pair, user_next, user_future):
        assert n_candidates == store.n_pins and torch.equal(ids, every_pin)
        assert not log_q.any() and len(target) == n_queries and bool((target < store.n_pins).all())
    # The step's pair sample (train() draws it first from its seeded generator): targets are its positive Pins.
    drawn = torch.randint(0, len(tasks.pair_query), (32,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(pair[2], tasks.pair_positive[drawn])
    assert bool(torch.isin(user_next[2], tasks.sequences[tasks.sequences >= 0]).all())
    assert features and all(n_candidates == n_queries + store.n_pins for n_queries, n_candidates, *_ in features)
    assert np.isfinite(result.history[0]["loss"])
    with pytest.raises(ValueError, match="pin_candidates"):
        TrainConfig(pin_candidates="every")


def test_a_one_action_future_window_counts_the_next_action_loss_twice_and_computes_it_once(bundle, monkeypatch):  # noqa: F811
    """With ``future_window=1`` the future target is the next action: the user task's loss is
    computed once a step and enters L_next + L_future twice, so the objective is what two
    identical losses would give at the cost of one."""
    import omnisage_model.train as train_module

    config = _config(feature_mlp_hidden=32)
    store, tasks = load_training_inputs(bundle, config)
    calls = []

    def counting_loss(*args, **kwargs):
        calls.append(len(args[0]))
        return sampled_softmax_loss(*args, **kwargs)

    monkeypatch.setattr(train_module, "sampled_softmax_loss", counting_loss)
    one = train(store, tasks, config, _train_config(future_window=1, steps=2))
    per_step_one = len(calls) // 2
    calls.clear()
    train(store, tasks, config, _train_config(future_window=2, steps=2))
    assert per_step_one == len(calls) // 2 - 1  # the future task's call, and only it, is saved
    for record in one.history:
        assert record["loss_user_future"] == record["loss_user_next"]
        features = [v for k, v in record.items() if k.startswith("loss_feature_")]
        expected = record["loss_pair"] + sum(features) / len(features) + 2 * record["loss_user_next"]
        assert record["loss"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_a_killed_run_resumes_from_its_last_state_and_ends_where_an_uninterrupted_one_does(bundle, tmp_path, ema_decay):  # noqa: F811
    config = _config(feature_mlp_hidden=32)
    store, tasks = load_training_inputs(bundle, config)
    # Bit for bit needs deterministic kernels: CPU EmbeddingBag backward otherwise varies in the last bits.
    train_config = _train_config(checkpoint_every=10, deterministic=True, ema_decay=ema_decay)
    reference = train(store, tasks, config, train_config, state_dir=tmp_path / "uninterrupted")

    class Killed(Exception):
        pass

    def die_at_step_15(record):
        if record["step"] == 15:
            raise Killed

    state = tmp_path / "state"
    with pytest.raises(Killed):
        train(store, tasks, config, train_config, log=die_at_step_15, state_dir=state)
    resumed = train(store, tasks, config, train_config, state_dir=state)
    assert resumed.resumed_from_step == 10
    assert [r["step"] for r in resumed.history] == list(range(24))
    for key, value in reference.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0, msg=key)
    if ema_decay is not None:  # the moving average resumes too, not from the resumed weights
        for key, value in reference.averaged.state_dict().items():
            torch.testing.assert_close(resumed.averaged.state_dict()[key], value, rtol=0, atol=0, msg=key)
    # Another configuration never resumes a state it did not write.
    other = train(store, tasks, config, dataclasses.replace(train_config, lr=1e-3), state_dir=state)
    assert other.resumed_from_step == 0


def test_the_moving_average_of_the_weights_leaves_training_alone_and_is_scored_beside_it(bundle):  # noqa: F811
    config = _config(feature_mlp_hidden=32)
    store, tasks = load_training_inputs(bundle, config)
    plain = train(store, tasks, config, _train_config(steps=2, deterministic=True))
    first = train(store, tasks, config, _train_config(steps=1, deterministic=True))  # the warm-up gives step 0 the same lr at any length
    scored = []
    averaged = train(
        store, tasks, config, _train_config(steps=2, deterministic=True, ema_decay=0.75),
        evaluate=lambda m: scored.append(m) or {"norm": float(sum(p.norm() for p in m.parameters()))}, evaluate_every=1,
    )
    assert plain.averaged is None and len(scored) == 2 and set(averaged.evaluations[0]) == {"step", "norm", "ema_norm"}
    for key, value in plain.model.state_dict().items():
        torch.testing.assert_close(averaged.model.state_dict()[key], value, rtol=0, atol=0, msg=key)
        if value.is_floating_point():  # the first update copies, the next blends: 0.75 old + 0.25 new
            expected = 0.75 * first.model.state_dict()[key] + 0.25 * value
            torch.testing.assert_close(averaged.averaged.state_dict()[key], expected, msg=key)
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)


def test_the_checkpoint_check_reads_the_loss_trend_not_two_noisy_points():
    from omnisage_assets.training import loss_trend_problem

    falling = [5.0, 4.0, 4.2, 3.1, 3.0, 2.6, 2.9, 2.4]
    assert loss_trend_problem(falling, warm_started=False) is None
    flat_and_noisy = [2.0, 2.3, 1.9, 2.2, 2.1, 1.9, 2.25, 2.05]  # last point above the first
    assert "did not decrease" in loss_trend_problem(flat_and_noisy, warm_started=False)
    assert loss_trend_problem(flat_and_noisy, warm_started=True) is None  # near its floor already
    diverging = [2.0, 2.1, 2.0, 2.4, 2.9, 3.5, 4.0, 5.0]
    assert "rose more than 10%" in loss_trend_problem(diverging, warm_started=True)


def test_the_next_day_warm_starts_from_the_previous_checkpoint(pipeline, dagster_instance):
    import dagster as dg

    next_day = TINY.days[7]
    job = pipeline["defs"].resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=dagster_instance,
        partition_key=next_day,
        asset_selection=[dg.AssetKey(k) for k in ("graph_edges", "sampled_neighborhoods", "training_examples", "omnisage_checkpoint")],
        run_config={"ops": {"omnisage_checkpoint": {"config": {**FAST_TRAINING, "steps": 20}}}},
    )
    assert result.success
    meta = [
        e.materialization.metadata for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "omnisage_checkpoint"
    ][0]
    assert meta["warm_started_from"].value.endswith(f"omnisage_checkpoint/{MODEL_DAY}")
    assert "| pair |" not in meta["losses"].value and "| loss_pair |" in meta["losses"].value
    assert not (pipeline["root"] / "training_state" / next_day).exists()  # finished: no state left


def test_the_learning_rate_warms_up_then_decays_or_stays():
    cosine = lr_lambda(TrainConfig(steps=100, warmup_steps=10))
    constant = lr_lambda(TrainConfig(steps=100, warmup_steps=10, lr_schedule="constant"))
    for f in (cosine, constant):
        assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert cosine(55) == pytest.approx(0.5) and cosine(99) < 0.001
    assert constant(55) == constant(99) == constant(10_000) == 1.0
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear")
