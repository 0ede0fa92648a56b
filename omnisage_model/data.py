"""Arrow tables in, dense tensors out: the model's view of nodes, neighbourhoods and tasks.

Nodes share one index space: Pins are ``0..P-1`` in ``pin_features`` order and boards
``P..P+B-1`` in ``board_features`` order. Every table is checked before training starts so
a wrong width or a NaN fails with the table and column named.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

PIN_TYPE, BOARD_TYPE = 0, 1
SUBGRAPHS = ("pin_board", "pin_pin")
BUNDLE_TABLES = ("pin_features", "board_features", "neighborhoods", "pairs", "sequences")


class BundleError(ValueError):
    """Training inputs are malformed; the message names the table and column."""


def feature_dims(pin_features: pa.Table) -> dict[str, int]:
    """The widths the model must be built with, as ``ModelConfig`` fields, from the Pin features.

    ``n_text_buckets`` and ``text_embedding_dim`` travel in the schema metadata written by
    content_features; the image width is read off the first Pin that has an image.
    """
    meta = pin_features.schema.metadata or {}
    if b"n_text_buckets" not in meta:
        raise BundleError("pin_features lacks the 'n_text_buckets' schema metadata written by content_features")
    lengths = pc.drop_null(pc.list_value_length(_require_column(pin_features, "pin_features", "image")))
    return {
        "n_text_buckets": int(meta[b"n_text_buckets"]),
        "text_embedding_dim": int(meta.get(b"text_embedding_dim", b"0")),
        "image_dim": int(lengths[0].as_py()) if len(lengths) else 1,
    }


def read_bundle(directory: Path | str) -> dict[str, pa.Table]:
    """Read ``<name>.parquet`` for every table the model needs from ``directory``."""
    directory = Path(directory)
    missing = [n for n in BUNDLE_TABLES if not (directory / f"{n}.parquet").exists()]
    if missing:
        raise BundleError(f"{directory}: missing {', '.join(m + '.parquet' for m in missing)}")
    return {n: pq.read_table(directory / f"{n}.parquet") for n in BUNDLE_TABLES}


def _padded(lists: pa.ChunkedArray | pa.Array, width: int, fill: float, dtype: np.dtype) -> np.ndarray:
    """Right-padded (rows, width) matrix from a list column, truncating longer rows."""
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    lists = pc.fill_null(lists, pa.scalar([], lists.type)) if lists.null_count else lists
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(lists).to_numpy(zero_copy_only=False).astype(dtype)
    out = np.full((len(lengths), width), fill, dtype=dtype)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    pos = np.arange(len(values)) - np.repeat(starts, lengths)
    row = np.repeat(np.arange(len(lengths)), lengths)
    keep = pos < width
    out[row[keep], pos[keep]] = values[keep]
    return out


def _require_column(table: pa.Table, name: str, column: str) -> pa.ChunkedArray:
    if column not in table.column_names:
        raise BundleError(f"{name}: missing column '{column}' (has {table.column_names})")
    return table[column]


def _finite(array: np.ndarray, name: str, column: str) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise BundleError(f"{name}: column '{column}' row {row} holds NaN or infinite values")


@dataclasses.dataclass
class FeatureStore:
    """Every node's raw features and neighbourhood, as tensors on one device."""

    pin_ids: np.ndarray
    board_ids: np.ndarray
    text: torch.Tensor  # (N, L) bucket ids, 0 = padding
    has_text: torch.Tensor  # (N,) bool: any text n-gram (content_features' has_text)
    text_embedding: torch.Tensor  # (N, text_embedding_dim): a pretrained encoder's unit vectors
    image: torch.Tensor  # (N, image_dim), zeros where has_image is False
    has_image: torch.Tensor  # (N,) bool
    log_degree: torch.Tensor  # (N,)
    node_type: torch.Tensor  # (N,) 0 pin, 1 board
    nbr_index: torch.Tensor  # (N, K) global node index, -1 = padding
    nbr_score: torch.Tensor  # (N, K)
    nbr_subgraph: torch.Tensor  # (N, K) index into SUBGRAPHS
    id_key: torch.Tensor  # (N,) stable hash of (type, id), for the model's id buckets (entity_keys)

    @property
    def n_pins(self) -> int:
        return len(self.pin_ids)

    @property
    def n_nodes(self) -> int:
        return len(self.pin_ids) + len(self.board_ids)

    @property
    def image_dim(self) -> int:
        return int(self.image.shape[1])

    def raw_feature(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """A raw feature of every node, and whether each node has it."""
        if name == "image":
            return self.image, self.has_image
        if name == "text_embedding":
            return self.text_embedding, self.has_text
        raise KeyError(f"no raw feature {name!r}")

    def to(self, device: torch.device | str) -> "FeatureStore":
        return dataclasses.replace(
            self,
            **{
                f.name: getattr(self, f.name).to(device)
                for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor)
            },
        )

    def pin_index(self, ids: np.ndarray | pa.Array, what: str = "pin ids") -> np.ndarray:
        return _lookup(self.pin_ids, ids, what)

    def board_index(self, ids: np.ndarray | pa.Array, what: str = "board ids") -> np.ndarray:
        return _lookup(self.board_ids, ids, what) + self.n_pins


def _lookup(universe: np.ndarray, ids: np.ndarray | pa.Array, what: str) -> np.ndarray:
    idx = pc.index_in(pa.array(np.asarray(ids)), value_set=pa.array(universe))
    if idx.null_count:
        unknown = np.asarray(ids)[pc.is_null(idx).to_numpy(zero_copy_only=False)]
        raise BundleError(f"{len(unknown)} unknown {what}, e.g. {unknown[:5].tolist()}")
    return idx.to_numpy().astype(np.int64)


def _text_embedding(table: pa.Table, name: str, dim: int) -> np.ndarray:
    if dim == 0:
        return np.zeros((table.num_rows, 0), np.float32)
    column = _require_column(table, name, "text_embedding").combine_chunks()
    width = column.type.list_size if pa.types.is_fixed_size_list(column.type) else None
    if width != dim:
        raise BundleError(f"{name}: column 'text_embedding' has type {column.type}, the model expects {dim} floats")
    matrix = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    _finite(matrix, name, "text_embedding")
    return matrix


def entity_keys(ids: np.ndarray, entity_type: int) -> np.ndarray:
    """Non-negative int64 keys of (type, id), the same in every bundle and process (splitmix64),
    so an entity keeps its id bucket from one day's training to the next."""
    with np.errstate(over="ignore"):
        z = ids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15) * np.uint64(entity_type + 1)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(1)).astype(np.int64)


def build_feature_store(
    tables: dict[str, pa.Table],
    image_dim: int,
    n_text_buckets: int,
    text_embedding_dim: int = 0,
    max_text_tokens: int = 32,
    max_neighbors_per_subgraph: int | None = None,
) -> FeatureStore:
    pins, boards = tables["pin_features"], tables["board_features"]
    pin_ids = _require_column(pins, "pin_features", "pin_id").to_numpy()
    board_ids = _require_column(boards, "board_features", "board_id").to_numpy()
    text = np.concatenate(
        [
            _padded(_require_column(pins, "pin_features", "text_ngrams"), max_text_tokens, 0, np.int64),
            _padded(_require_column(boards, "board_features", "text_ngrams"), max_text_tokens, 0, np.int64),
        ]
    )
    if text.size and text.max() > n_text_buckets:
        raise BundleError(
            f"pin_features/board_features: column 'text_ngrams' holds bucket id {int(text.max())}, "
            f"the model has {n_text_buckets} buckets"
        )
    text_embedding = np.concatenate(
        [_text_embedding(pins, "pin_features", text_embedding_dim), _text_embedding(boards, "board_features", text_embedding_dim)]
    )
    image_col = _require_column(pins, "pin_features", "image").combine_chunks()
    lengths = pc.drop_null(pc.list_value_length(image_col)).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != image_dim).any():
        row = int(np.flatnonzero(pc.fill_null(pc.list_value_length(image_col), image_dim).to_numpy() != image_dim)[0])
        raise BundleError(
            f"pin_features: column 'image' row {row} has width "
            f"{pc.list_value_length(image_col)[row].as_py()}, the model expects {image_dim}"
        )
    pin_image = _padded(image_col, image_dim, 0.0, np.float32)
    _finite(pin_image, "pin_features", "image")
    image = np.concatenate([pin_image, np.zeros((len(board_ids), image_dim), np.float32)])
    has_image = np.concatenate([pc.is_valid(image_col).to_numpy(zero_copy_only=False), np.zeros(len(board_ids), bool)])
    log_degree = np.concatenate(
        [
            _require_column(pins, "pin_features", "log_degree").to_numpy().astype(np.float32),
            _require_column(boards, "board_features", "log_degree").to_numpy().astype(np.float32),
        ]
    )
    _finite(log_degree, "pin_features/board_features", "log_degree")
    node_type = np.concatenate([np.zeros(len(pin_ids), np.int64), np.ones(len(board_ids), np.int64)])

    store = FeatureStore(
        pin_ids=pin_ids,
        board_ids=board_ids,
        text=torch.from_numpy(text),
        has_text=torch.from_numpy((text > 0).any(1)),
        text_embedding=torch.from_numpy(text_embedding),
        image=torch.from_numpy(image),
        has_image=torch.from_numpy(has_image),
        log_degree=torch.from_numpy(log_degree),
        node_type=torch.from_numpy(node_type),
        nbr_index=torch.empty(0),
        nbr_score=torch.empty(0),
        nbr_subgraph=torch.empty(0),
        id_key=torch.from_numpy(np.concatenate([entity_keys(pin_ids, PIN_TYPE), entity_keys(board_ids, BOARD_TYPE)])),
    )
    _attach_neighborhoods(store, tables["neighborhoods"], max_neighbors_per_subgraph)
    return store


def _attach_neighborhoods(store: FeatureStore, nb: pa.Table, per_subgraph: int | None) -> None:
    """Concatenate each node's subgraph neighbourhoods (in SUBGRAPHS order) into fixed slots,
    keeping at most ``per_subgraph`` best-scored neighbours from each subgraph."""
    n = store.n_nodes
    per_node: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for s, subgraph in enumerate(SUBGRAPHS):
        part = nb.filter(pc.equal(nb["subgraph"], subgraph))
        if not part.num_rows:
            continue
        is_pin = pc.equal(part["node_type"], "pin").to_numpy(zero_copy_only=False)
        ids = part["node_id"].to_numpy()
        owner = np.empty(part.num_rows, np.int64)
        if is_pin.any():
            owner[is_pin] = store.pin_index(ids[is_pin], f"neighborhoods.node_id ({subgraph})")
        if (~is_pin).any():
            owner[~is_pin] = store.board_index(ids[~is_pin], f"neighborhoods.node_id ({subgraph})")
        lengths = pc.list_value_length(part["neighbor_id"]).to_numpy(zero_copy_only=False).astype(np.int64)
        nbr_ids = pc.list_flatten(part["neighbor_id"]).to_numpy()
        nbr_is_pin = pc.equal(pc.list_flatten(part["neighbor_type"]), "pin").to_numpy(zero_copy_only=False)
        nbr = np.empty(len(nbr_ids), np.int64)
        nbr[nbr_is_pin] = store.pin_index(nbr_ids[nbr_is_pin], "neighborhoods.neighbor_id")
        nbr[~nbr_is_pin] = store.board_index(nbr_ids[~nbr_is_pin], "neighborhoods.neighbor_id")
        score = pc.list_flatten(part["score"]).to_numpy().astype(np.float32)
        _finite(score, "neighborhoods", "score")
        rank = np.arange(len(nbr)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        keep = rank < (per_subgraph if per_subgraph is not None else len(nbr) + 1)
        per_node.append((np.repeat(owner, lengths)[keep], nbr[keep], score[keep], np.full(int(keep.sum()), s)))

    if not per_node:
        width = 1
        store.nbr_index = torch.full((n, width), -1, dtype=torch.long)
        store.nbr_score = torch.zeros((n, width))
        store.nbr_subgraph = torch.zeros((n, width), dtype=torch.long)
        return
    owner = np.concatenate([p[0] for p in per_node])
    nbr = np.concatenate([p[1] for p in per_node])
    score = np.concatenate([p[2] for p in per_node])
    sub = np.concatenate([p[3] for p in per_node])
    order = np.argsort(owner, kind="stable")  # keeps subgraph then proximity order
    owner, nbr, score, sub = owner[order], nbr[order], score[order], sub[order]
    counts = np.bincount(owner, minlength=n)
    width = max(int(counts.max()), 1)
    slot = np.arange(len(owner)) - np.repeat(np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    index = np.full((n, width), -1, np.int64)
    scores = np.zeros((n, width), np.float32)
    subs = np.zeros((n, width), np.int64)
    index[owner, slot] = nbr
    scores[owner, slot] = score
    subs[owner, slot] = sub
    store.nbr_index = torch.from_numpy(index)
    store.nbr_score = torch.from_numpy(scores)
    store.nbr_subgraph = torch.from_numpy(subs)


@dataclasses.dataclass
class TaskData:
    """Entity-entity pairs and user sequences as node indices."""

    pair_query: torch.Tensor  # (M,) global node index
    pair_positive: torch.Tensor  # (M,) global node index (Pins)
    sequences: torch.Tensor  # (U, T) Pin index, -1 = padding (right): each user's most recent actions
    sequence_length: torch.Tensor  # (U,)
    user_ids: np.ndarray
    # Every action of every user, oldest first, user after user; user u's are
    # history[history_offsets[u]:history_offsets[u + 1]]. For training windows older than ``sequences``.
    history: torch.Tensor
    history_offsets: torch.Tensor  # (U + 1,)


def history_windows(
    history: torch.Tensor, offsets: torch.Tensor, users: torch.Tensor, max_len: int, where: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows (B, T) of up to ``max_len`` consecutive actions of each of ``users``, -1 padded on
    the right, and their lengths (B,). ``where`` (B,) in [0, 1) places each window along the
    user's history (0: the oldest); None takes the most recent actions."""
    first = offsets[users]
    total = offsets[users + 1] - first
    lengths = total.clamp(max=max_len)
    first += total - lengths if where is None else (where * (total - lengths + 1)).long()
    position = torch.arange(max(int(lengths.max()) if len(lengths) else 0, 1))
    inside = position < lengths[:, None]
    index = torch.where(inside, first[:, None] + position, 0)
    return torch.where(inside, history[index], -1), lengths


def build_task_data(tables: dict[str, pa.Table], store: FeatureStore, max_len: int) -> TaskData:
    pairs = tables["pairs"]
    qtype = _require_column(pairs, "pairs", "query_type")
    qid = _require_column(pairs, "pairs", "query_id").to_numpy()
    is_pin = pc.equal(qtype, "pin").to_numpy(zero_copy_only=False)
    query = np.empty(len(qid), np.int64)
    query[is_pin] = store.pin_index(qid[is_pin], "pairs.query_id")
    query[~is_pin] = store.board_index(qid[~is_pin], "pairs.query_id")
    positive = store.pin_index(_require_column(pairs, "pairs", "pos_id").to_numpy(), "pairs.pos_id")

    seqs = tables["sequences"]
    pin_lists = _require_column(seqs, "sequences", "pin_ids").combine_chunks()
    lengths = pc.list_value_length(pin_lists).to_numpy(zero_copy_only=False).astype(np.int64)
    history = torch.from_numpy(store.pin_index(pc.list_flatten(pin_lists).to_numpy(), "sequences.pin_ids"))
    offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]))
    # What inference embeds: the most recent max_len actions of each user.
    seq, kept = history_windows(history, offsets, torch.arange(len(lengths)), max_len)
    return TaskData(
        pair_query=torch.from_numpy(query),
        pair_positive=torch.from_numpy(positive),
        sequences=seq,
        sequence_length=kept,
        user_ids=_require_column(seqs, "sequences", "user_id").to_numpy(),
        history=history,
        history_offsets=offsets,
    )
