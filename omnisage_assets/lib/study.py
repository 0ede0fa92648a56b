"""The comparison study on a real dataset: OmniSage, its ablations and baselines, one protocol.

Temporal protocol: every model learns from the first days of the timeline (graph, pairs,
sequences and popularity all come from them) and is scored on the last day, which happened
strictly later (checked here, not assumed). Recall@10 with full ranking over all Pins, per
task:

- Pin -> Pin: the query Pin of a held-out related-Pins engagement retrieves the engaged Pin;
- board -> Pin: a board retrieves the Pin saved to it;
- user -> Pin: a user's embedding after their training history retrieves their future Pins;
- feature -> Pin: the entity-feature encoder of a held-out Pin's text vector retrieves the
  Pin's own embedding (models trained with that task only).

Every model is built and trained by the same code as the daily pipeline, on the same
graph, neighbourhoods, content features and examples; variants differ only in what they
are given (graph subgraphs), which tasks they learn, or their architecture. The tables
mirror the paper's: methods (its table 2), graph ablation (table 3), tasks (table 5).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from omnisage_assets.lib.edges import PruningConfig, build_graph_edges, prune_edges
from omnisage_assets.lib.examples import training_examples
from omnisage_assets.lib.random_walks import SamplingConfig, sample_neighborhoods
from omnisage_assets.lib.retrieval_eval import evaluate, pin_popularity
from omnisage_assets.lib.text_encoder import TextEncoder, encode_with_cache
from omnisage_assets.lib.text_features import catalog_texts, content_features
from omnisage_assets.lib.world import World
from omnisage_model.baselines import PinSageStyle
from omnisage_model.config import ModelConfig, TrainConfig
from omnisage_model.data import feature_dims
from omnisage_model.inference import embed_nodes, embed_users
from omnisage_model.metrics import recall_at_k
from omnisage_model.model import OmniSage
from omnisage_model.train import load_training_inputs, train

SUBGRAPHS = ("pin_board", "pin_pin")
TASKS = ("pin->pin", "board->pin", "user->pin", "feature->pin")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One trained model of the study: what it sees, what it learns, which architecture."""

    name: str
    subgraphs: tuple[str, ...] = SUBGRAPHS
    tasks: tuple[str, ...] = ("pair", "feature", "user")  # entity-entity, entity-feature, user-entity
    architecture: str = "omnisage"  # or "pinsage"
    tables: tuple[str, ...] = ()  # which of the paper's tables it belongs to


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in [
        Variant("OmniSage", tables=("methods", "graph", "tasks")),
        Variant("PinSage-style (GraphSAGE, importance pooling)", tasks=("pair",), architecture="pinsage", tables=("methods",)),
        Variant("PinnerFormer-style (sequence over content-only items)", subgraphs=(), tasks=("user",), tables=("methods",)),
        Variant("OmniSage without graph", subgraphs=(), tables=("graph",)),
        Variant("OmniSage, Pin-Board graph only", subgraphs=("pin_board",), tables=("graph",)),
        Variant("entity-entity only", tasks=("pair",), tables=("tasks",)),
        Variant("entity-entity + entity-feature", tasks=("pair", "feature"), tables=("tasks",)),
        Variant("entity-entity + user-entity", tasks=("pair", "user"), tables=("tasks",)),
    ]
}


@dataclasses.dataclass
class StudyData:
    """What every variant starts from: one window's examples, and the held-out day."""

    bundle: dict[str, pa.Table]
    test: pa.Table
    train_days: list[str]
    test_days: list[str]
    popularity_source: pa.Table  # the training engagements' Pin ids


def _build(
    engagements: pa.Table,
    world: World,
    text_encoder: TextEncoder,
    cache_path: Path,
    n_text_buckets: int,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, pa.Table]:
    """The pipeline's stages, with its defaults, on ``engagements``: the examples every model trains on."""
    pins, boards = world.pins(), world.boards()
    pin_ids, board_ids = pins["pin_id"].combine_chunks(), boards["board_id"].combine_chunks()
    edges = prune_edges(build_graph_edges(engagements), PruningConfig())
    log(f"graph: {edges.num_rows:,} edges from {engagements.num_rows:,} engagements")
    neighborhoods = sample_neighborhoods(edges, pin_ids, board_ids, SamplingConfig())
    log(f"neighbourhoods: {neighborhoods.num_rows:,} rows")
    pin_texts, board_texts, _ = catalog_texts(pins, boards)

    def progress(done: int, total: int) -> None:
        if done == total or done % (text_encoder.batch_size * 100) == 0:
            log(f"text encoder: {done:,}/{total:,} new texts")

    vectors, _ = encode_with_cache(text_encoder, pin_texts + board_texts, cache_path, progress)
    content = content_features(pins, boards, n_text_buckets, (pin_texts, board_texts), vectors, text_encoder.name)
    return training_examples(engagements, edges, neighborhoods, content, pin_ids, board_ids)


def prepare(
    world: World,
    days: list[str],
    test_days: int,
    text_encoder: TextEncoder,
    cache_path: Path,
    n_text_buckets: int,
    real_seconds: Callable[[str], np.ndarray] | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> StudyData:
    """Graph, neighbourhoods, content features and examples from all days but the last
    ``test_days``, with the pipeline's own defaults; those last days are the test set."""
    train_days, held_out = days[:-test_days], days[-test_days:]
    if real_seconds is not None:  # the dataset's own clock: nothing tested may precede training
        last_train = max(real_seconds(d).max() for d in train_days)
        first_test = min(real_seconds(d).min() for d in held_out)
        if not last_train < first_test:
            raise ValueError(f"test days {held_out} overlap the training days in time ({first_test} <= {last_train})")
    engagements = pa.concat_tables([world.engagements(d) for d in train_days])
    return StudyData(
        bundle=_build(engagements, world, text_encoder, cache_path, n_text_buckets, log),
        test=pa.concat_tables([world.engagements(d) for d in held_out]),
        train_days=train_days,
        test_days=held_out,
        popularity_source=engagements.select(["pin_id"]),
    )


def variant_bundle(bundle: dict[str, pa.Table], variant: Variant) -> dict[str, pa.Table]:
    """The examples as ``variant`` may see them: neighbourhoods (and the pairs drawn from
    them) of the other subgraphs removed."""
    nb = bundle["neighborhoods"]
    keep = pc.is_in(nb["subgraph"], value_set=pa.array(list(variant.subgraphs), pa.string()))
    dropped_sources = [f"{s}_neighborhood" for s in SUBGRAPHS if s not in variant.subgraphs]
    pairs = bundle["pairs"]
    pairs = pairs.filter(pc.invert(pc.is_in(pairs["source"], value_set=pa.array(dropped_sources, pa.string()))))
    return {**bundle, "neighborhoods": nb.filter(keep), "pairs": pairs}


def run_variant(
    data: StudyData,
    variant: Variant,
    model_config: Callable[[dict[str, int]], ModelConfig],
    train_config: TrainConfig,
    device: str = "cpu",
    log: Callable[[dict[str, float]], None] | None = None,
) -> dict:
    """Train ``variant``, embed everything, and score it: {task: recall@10} plus its history."""
    bundle = variant_bundle(data.bundle, variant)
    config = model_config(feature_dims(bundle["pin_features"]))
    store, tasks = load_training_inputs(bundle, config)
    weights = {
        "pair_weight": float("pair" in variant.tasks),
        "feature_weight": float("feature" in variant.tasks),
        "user_weight": float("user" in variant.tasks),
    }
    build = PinSageStyle if variant.architecture == "pinsage" else OmniSage
    start = time.perf_counter()
    result = train(store, tasks, config, dataclasses.replace(train_config, **weights), device=device, log=log, build_model=build)
    seconds = time.perf_counter() - start
    nodes = embed_nodes(result.model, store, device=device)
    vectors = {"pin": nodes[: store.n_pins], "board": nodes[store.n_pins :]}
    ids = {"pin": store.pin_ids, "board": store.board_ids, "user": tasks.user_ids}
    if isinstance(result.model, OmniSage):
        vectors["user"] = embed_users(result.model, vectors["pin"], tasks, device=device)
    else:  # no sequence model: no user embeddings
        vectors["user"] = np.zeros((len(tasks.user_ids), nodes.shape[1]), np.float32)
    popularity = pin_popularity(data.popularity_source, ids["pin"])
    rows = evaluate(vectors, ids, data.test, popularity).to_pylist()
    recall = {(r["task"], r["model"]): r["recall_at_10"] for r in rows}
    queries = {r["task"]: r["queries"] for r in rows}
    scores = {task: recall[(task, "omnisage")] for task in queries}
    if "user" not in variant.tasks:
        scores.pop("user->pin")
    if "pair" not in variant.tasks:  # the entity-entity tasks measure what it never learned
        del scores["pin->pin"], scores["board->pin"]
    if "feature" in variant.tasks:
        scores["feature->pin"], queries["feature->pin"] = feature_recall(result.model, store, data.test, vectors["pin"], device)
    return {
        "variant": variant.name,
        "recall_at_10": scores,
        "popularity": {task: recall[(task, "popularity")] for task in queries if (task, "popularity") in recall},
        "queries": queries,
        "train_seconds": round(seconds, 1),
        "history": result.history,
    }


@torch.no_grad()
def feature_recall(model: OmniSage, store, test: pa.Table, pins: np.ndarray, device: str = "cpu") -> tuple[float, int]:
    """Recall@10 of the entity-feature encoder: each held-out Pin's text vector (and its
    neighbours') retrieves the Pin's own embedding among all Pins."""
    model.eval().to(device)
    store = store.to(device)
    engaged = np.unique(test["pin_id"].to_numpy())
    rows = store.pin_index(engaged[np.isin(engaged, store.pin_ids)])
    rows = rows[store.has_text[torch.from_numpy(rows).to(device)].cpu().numpy()]
    if not len(rows):
        return float("nan"), 0
    name = "text_embedding" if "text_embedding" in model.feature_encoders.encoders else "image"
    queries = model.feature_encoders(store, torch.from_numpy(rows).to(device), name).float().cpu().numpy()
    return recall_at_k(queries, rows, pins), len(rows)


def tables(results: list[dict]) -> dict[str, list[dict]]:
    """The paper's three tables from the variants' results, popularity first in the methods table."""
    by_name = {r["variant"]: r for r in results}
    out: dict[str, list[dict]] = {}
    for table in ("methods", "graph", "tasks"):
        rows = []
        if table == "methods" and results:
            rows.append({"model": "popularity", **{t: results[0]["popularity"].get(t) for t in TASKS}})
        for name, variant in VARIANTS.items():
            if table in variant.tables and name in by_name:
                rows.append({"model": name, **{t: by_name[name]["recall_at_10"].get(t) for t in TASKS}})
        out[table] = rows
    return out


def prepare_leave_one_out(
    world: World,
    days: list[str],
    text_encoder: TextEncoder,
    cache_path: Path,
    n_text_buckets: int,
    log: Callable[[str], None] = lambda message: None,
) -> StudyData:
    """The sequential protocol: each user's last interaction is held out, everything else
    (graph, pairs, sequences, popularity) is training data."""
    engagements = pa.concat_tables([world.engagements(d) for d in days])
    user = engagements["user_id"].to_numpy()
    ts = pc.cast(engagements["ts"], pa.int64()).to_numpy()
    order = np.lexsort((np.arange(len(user)), ts, user))  # by user, then time, then file order
    last = order[np.r_[user[order][1:] != user[order][:-1], True]]
    held_out = np.zeros(len(user), bool)
    held_out[last] = True
    train = engagements.filter(pa.array(~held_out))
    return StudyData(
        bundle=_build(train, world, text_encoder, cache_path, n_text_buckets, log),
        test=engagements.take(pa.array(np.sort(last))),
        train_days=days,
        test_days=[],
        popularity_source=train.select(["pin_id"]),
    )
