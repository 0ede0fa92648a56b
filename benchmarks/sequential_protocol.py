"""The sequential protocol (leave-one-out, full ranking) split across two machines: prepare the
inputs where the whole stack is (graph, neighbourhoods, text vectors need DGL and the text
encoder), train and score where the GPU is (torch and pyarrow only).

    python benchmarks/sequential_protocol.py prepare --dataset ml-1m --out DIR
    python benchmarks/sequential_protocol.py train --inputs DIR --device cuda --steps 20000 \\
        --config '{"seq_max_len": 200, "user_batch_size": 256, "pin_candidates": "all"}'

With 200 dense queries per user, in-batch candidates would grow with the batch (51,200
positives per task and step); ``pin_candidates: "all"`` bounds them by the catalogue (3,883
Pins), an exact softmax.

A run longer than one sitting (a GPU call's time limit) takes ``--state-dir``: rerun with the
same arguments, it resumes from the last state there. ``--score-every N`` adds the learning
curve: HR@10 and NDCG@10 every N steps, kept in the resumable state across sittings.
``--seconds S`` instead of ``--steps``: a short probe run times a step first, then training gets as
many steps as fit in S seconds. The report records them: ``--steps`` with that number reproduces
the run, or resumes it from ``--state-dir`` (a second probe would pick a slightly different one).

``train`` prints one JSON object: HR@10 and NDCG@10 of OmniSage's user embeddings beside
popularity and the published SASRec / BERT4Rec figures (ML-1M), with the configuration.

``train --free-pins`` swaps the Pin embedder for a free vector per Pin (``FreePinUserModel``,
the user task alone, the same trainer and settings): what the training regime reaches with
SASRec's kind of item, in a quarter of OmniSage's time a step.

``sasrec`` trains the in-house reference on the same inputs (item ids only, full softmax,
SASRec's published ML-1M settings unless ``--config`` says otherwise) and prints the same
kind of object; ``--score-every N`` scores every N epochs:

    python benchmarks/sequential_protocol.py sasrec --inputs DIR --epochs 80 --score-every 10
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omnisage_assets.lib.sequential import PUBLISHED_ML1M, run_leave_one_out, run_sasrec_leave_one_out  # noqa: E402
from omnisage_model.baselines import SASRecConfig  # noqa: E402
from omnisage_model.config import ModelConfig, TrainConfig  # noqa: E402
from omnisage_model.data import BUNDLE_TABLES, read_bundle  # noqa: E402

# The study's defaults for the sequential protocol (SequentialTrainingConfig, tested), CPU-sized.
DEFAULTS = {
    "width": 64, "heads": 4, "layers": 1, "mlp_dim": 256, "out_dim": 64, "text_dim": 64, "seq_width": 64,
    "seq_heads": 2, "seq_layers": 1, "seq_max_len": 64, "max_neighbors_per_subgraph": 12, "feature_mlp_hidden": 128,
    "pair_batch_size": 256, "user_batch_size": 64, "feature_batch_size": 128, "random_negatives": 512, "lr": 3e-3,
    "warmup_steps": 30, "user_positions": None, "future_window": 1, "deterministic": True,
}


def prepare(dataset: str, out: Path, text_cache: Path | None) -> None:
    from omnisage_assets.content import ContentConfig
    from omnisage_assets.lib.real_data import PRESETS, RealWorld
    from omnisage_assets.lib.study import prepare_leave_one_out
    from omnisage_assets.lib.text_encoder import TextEncoder

    world = RealWorld(PRESETS[dataset])
    content = ContentConfig()
    encoder = TextEncoder.load(content.text_encoder, content.text_device, content.text_max_tokens, content.text_batch_size)
    cache = text_cache or out / "text_cache.parquet"
    data = prepare_leave_one_out(world, world.days, encoder, cache, content.n_text_buckets, print)
    if text_cache is None:
        cache.unlink(missing_ok=True)  # not needed for training
    write_inputs(data, dataset, out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(json.dumps({"prepared": str(out), "dataset": dataset, "megabytes": round(size / 2**20, 1)}))


def write_inputs(data, dataset: str, out: Path) -> None:
    """What ``train`` reads: the bundle, each user's held-out item, the popularity source."""
    (out / "bundle").mkdir(parents=True, exist_ok=True)
    for name in BUNDLE_TABLES:
        pq.write_table(data.bundle[name], out / "bundle" / f"{name}.parquet", compression="zstd")
    pq.write_table(data.test, out / "test.parquet")
    pq.write_table(data.popularity_source, out / "popularity_source.parquet")
    (out / "dataset.json").write_text(json.dumps({"dataset": dataset}))


PROBE_STEPS = 60
PROBE_WARMUP = 20  # probe steps that pay for warm-up (CUDA kernels, the allocator): not timed


def seconds_per_step(records: list[dict]) -> float:
    """A step's training time from ``train``'s log records, the first ``PROBE_WARMUP`` steps left out."""
    timed = [r for r in records if "loss" in r and r["step"] >= PROBE_WARMUP]
    return (timed[-1]["seconds"] - timed[0]["seconds"]) / (timed[-1]["step"] - timed[0]["step"])


def steps_within(
    inputs: Path, device: str, overrides: dict, seconds: float, free_pins: bool = False
) -> tuple[int, float]:
    """How many training steps of this configuration fit in ``seconds`` on ``device``, timed by a
    short probe run of the same configuration."""
    records: list[dict] = []
    train(inputs, device, PROBE_STEPS, overrides, log=records.append, free_pins=free_pins)
    per_step = seconds_per_step(records)
    return max(1, int(seconds / per_step)), per_step


def _tables(inputs: Path) -> tuple[dict, pa.Table, pa.Table]:
    """What ``write_inputs`` wrote: the bundle, the held-out items, the popularity source."""
    test, popularity_source = (pq.read_table(inputs / f"{name}.parquet") for name in ("test", "popularity_source"))
    return read_bundle(inputs / "bundle"), test, popularity_source


def _published(inputs: Path) -> dict:
    dataset = json.loads((inputs / "dataset.json").read_text())["dataset"]
    published = PUBLISHED_ML1M if dataset == "ml-1m" else {}
    return {
        "dataset": dataset,
        "published": {name: {"hr_at_10": hr, "ndcg_at_10": ndcg} for name, (hr, ndcg) in published.items()},
    }


def _print_record(record: dict) -> None:
    print(json.dumps(record), file=sys.stderr, flush=True)  # progress; stdout stays one JSON


def train(
    inputs: Path,
    device: str,
    steps: int,
    overrides: dict,
    state_dir: Path | None = None,
    score_every: int = 0,
    log: Callable[[dict], None] = _print_record,
    free_pins: bool = False,
) -> dict:
    settings = {**DEFAULTS, **({"checkpoint_every": 500} if state_dir else {}), **overrides, "steps": steps}
    model_fields = {f for f in ModelConfig.__dataclass_fields__}
    model_settings = {k: v for k, v in settings.items() if k in model_fields}  # the data gives the widths
    result = run_leave_one_out(
        *_tables(inputs),
        lambda dims: ModelConfig(**model_settings, **dims),
        TrainConfig.from_dict({**settings, "log_every": max(1, steps // 20)}),
        device,
        log=log,
        state_dir=state_dir,
        score_every=score_every,
        free_pins=free_pins,
    )
    return {**_published(inputs), "device": device, **result, "settings": settings}


def sasrec(
    inputs: Path, device: str, epochs: int, overrides: dict, score_every: int = 0, log: Callable[[dict], None] = _print_record
) -> dict:
    config = SASRecConfig(**{**overrides, "epochs": epochs})
    result = run_sasrec_leave_one_out(
        *_tables(inputs),
        config,
        device,
        log=log,
        score_every=score_every,
    )
    return {**_published(inputs), "device": device, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--dataset", default="ml-1m")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--text-cache", type=Path, default=None, help="reuse (and extend) this text vector cache")
    t = sub.add_parser("train")
    t.add_argument("--inputs", type=Path, required=True)
    t.add_argument("--device", default="cpu")
    t.add_argument("--steps", type=int, default=300)
    t.add_argument(
        "--seconds", type=float, default=None,
        help="instead of --steps: as many steps as fit in this many seconds of training (timed by a probe run)",
    )
    t.add_argument(
        "--config", type=json.loads, action="append", default=[],
        help="JSON of model and training settings; repeatable, a later one overrides an earlier",
    )
    t.add_argument("--out", type=Path, default=None)
    t.add_argument(
        "--state-dir", type=Path, default=None,
        help="resumable training state (every checkpoint_every steps, 500 unless --config says): "
        "a killed or timed-out run, rerun with the same arguments, goes on from it",
    )
    t.add_argument(
        "--score-every", type=int, default=0,
        help="also score HR@10 / NDCG@10 every this many steps: the report's learning curve",
    )
    t.add_argument(
        "--free-pins", action="store_true",
        help="a free vector per Pin in place of the Pin embedder, user task alone (FreePinUserModel): "
        "what the training regime reaches when the Pin side is as free as SASRec's items",
    )
    r = sub.add_parser("sasrec")
    r.add_argument("--inputs", type=Path, required=True)
    r.add_argument("--device", default="cpu")
    r.add_argument("--epochs", type=int, default=SASRecConfig.epochs)
    r.add_argument("--config", type=json.loads, action="append", default=[], help="SASRecConfig fields as JSON")
    r.add_argument("--score-every", type=int, default=0, help="also score HR@10 / NDCG@10 every this many epochs")
    r.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.dataset, args.out, args.text_cache)
        return
    config = {key: value for overrides in args.config for key, value in overrides.items()}
    if args.command == "sasrec":
        _write_report(sasrec(args.inputs, args.device, args.epochs, config, args.score_every), args.out)
        return
    steps = args.steps
    if args.seconds is not None:
        steps, per_step = steps_within(args.inputs, args.device, config, args.seconds, args.free_pins)
        _print_record({"probe_seconds_per_step": per_step, "steps": steps})
    report = train(args.inputs, args.device, steps, config, args.state_dir, args.score_every, free_pins=args.free_pins)
    _write_report(report, args.out)


def _write_report(report: dict, out: Path | None) -> None:
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        out.write_text(text)


if __name__ == "__main__":
    main()
