"""Content features: the paper's hashed n-gram text tokens, text-encoder vectors, images.

Word unigrams and bigrams are hashed into a fixed number of buckets; the model learns an
embedding bag over the bucket ids end to end, so no vocabulary has to be built or shipped.
Beside them sits a pretrained encoder's vector of the same text (``lib/text_encoder.py``).

Texts are repaired, never dropped: undecodable bytes become U+FFFD, texts beyond
``max_chars`` are cut, empty ones are marked ``has_text = false``; each repair is counted
with sample ids so the asset's metadata can say what happened.
"""

from __future__ import annotations

import dataclasses
import re
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from omnisage_assets.lib import contracts

DEFAULT_BUCKETS = 1 << 18
DEFAULT_MAX_CHARS = 2_000
_WORD = re.compile(r"\w+", re.UNICODE)

CONTENT_FEATURES = pa.schema(
    [
        pa.field("entity_type", pa.string(), nullable=False),
        pa.field("entity_id", pa.int64(), nullable=False),
        pa.field("has_text", pa.bool_(), nullable=False),
        # Bucket ids in [1, n_buckets]; 0 is the padding id of the model's embedding bag.
        pa.field("text_ngrams", pa.list_(pa.int32()), nullable=False),
        pa.field("image", pa.list_(pa.float32())),
        pa.field("has_image", pa.bool_(), nullable=False),
    ]
)


def hashed_ngrams(text: str, n_buckets: int = DEFAULT_BUCKETS) -> list[int]:
    """Stable (process-independent) bucket ids of the word unigrams and bigrams of ``text``."""
    words = _WORD.findall(text.lower())
    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
    return [zlib.crc32(g.encode("utf-8")) % n_buckets + 1 for g in grams]


@dataclasses.dataclass
class TextRepairs:
    """How many texts needed each repair, with a few of their ids."""

    empty: list[int] = dataclasses.field(default_factory=list)
    invalid_utf8: list[int] = dataclasses.field(default_factory=list)
    cut_to_max_chars: list[int] = dataclasses.field(default_factory=list)

    def metadata(self) -> dict[str, int | str]:
        out: dict[str, int | str] = {}
        for name in ("empty", "invalid_utf8", "cut_to_max_chars"):
            ids = getattr(self, name)
            out[f"texts_{name}"] = len(ids)
            if ids:
                out[f"texts_{name}_sample_ids"] = str(ids[:5])
        return out


def _decoded(column: pa.ChunkedArray, ids: list[int], repairs: TextRepairs) -> list[str]:
    """The column as Python strings; bytes that are not UTF-8 become U+FFFD (counted)."""
    raw = pc.cast(column, pa.binary()).to_pylist()  # str would raise on invalid UTF-8
    out = []
    for entity_id, value in zip(ids, raw):
        if value is None:
            out.append("")
            continue
        try:
            out.append(value.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(value.decode("utf-8", errors="replace"))
            repairs.invalid_utf8.append(entity_id)
    return out


def entity_texts(
    table: pa.Table, id_column: str, text_columns: tuple[str, str], max_chars: int, repairs: TextRepairs
) -> list[str]:
    """One text per row: the text columns joined by a space, repaired as described above."""
    ids = table[id_column].to_pylist()
    first, second = (_decoded(table[c], ids, repairs) for c in text_columns)
    texts = []
    for entity_id, a, b in zip(ids, first, second):
        text = f"{a} {b}".strip()
        if len(text) > max_chars:
            text = text[:max_chars]
            repairs.cut_to_max_chars.append(entity_id)
        if not _WORD.search(text):  # nothing a word n-gram or a reader could use
            repairs.empty.append(entity_id)
        texts.append(text)
    return texts


def catalog_texts(
    pins: pa.Table, boards: pa.Table, max_chars: int = DEFAULT_MAX_CHARS
) -> tuple[list[str], list[str], TextRepairs]:
    """Pin texts (title + description) and board texts (name + description), ids checked unique."""
    contracts.require_unique(pins, "pin_id", "pins")
    contracts.require_unique(boards, "board_id", "boards")
    repairs = TextRepairs()
    pin_texts = entity_texts(pins, "pin_id", ("title", "description"), max_chars, repairs)
    board_texts = entity_texts(boards, "board_id", ("name", "description"), max_chars, repairs)
    return pin_texts, board_texts, repairs


def _vectors(matrix: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1).astype(np.float32)), matrix.shape[1])


def content_features(
    pins: pa.Table,
    boards: pa.Table,
    n_buckets: int = DEFAULT_BUCKETS,
    texts: tuple[list[str], list[str]] | None = None,
    text_embedding: np.ndarray | None = None,
    text_encoder: str | None = None,
) -> pa.Table:
    """One row per Pin (text, image) and per board (text), Pins first.

    ``texts`` are the repaired texts of :func:`catalog_texts` (computed here if omitted);
    ``text_embedding`` has one row per Pin then per board, from ``text_encoder``.
    """
    pin_texts, board_texts = texts if texts is not None else catalog_texts(pins, boards)[:2]
    image = pins["image"].combine_chunks()
    ngrams = [hashed_ngrams(t, n_buckets) for t in pin_texts + board_texts]
    columns = {
        "entity_type": pa.array(["pin"] * pins.num_rows + ["board"] * boards.num_rows, pa.string()),
        "entity_id": pa.concat_arrays([pins["pin_id"].combine_chunks(), boards["board_id"].combine_chunks()]),
        "has_text": pa.array([len(g) > 0 for g in ngrams]),
        "text_ngrams": pa.array(ngrams, pa.list_(pa.int32())),
        "image": pa.concat_arrays([image, pa.nulls(boards.num_rows, image.type)]),
        "has_image": pa.concat_arrays([pc.is_valid(image), pa.array(np.zeros(boards.num_rows, dtype=bool))]),
    }
    schema = CONTENT_FEATURES
    # The model sizes its embedding bag and text projection from these; they travel with the
    # table through Parquet.
    metadata = {"n_text_buckets": str(n_buckets)}
    if text_embedding is not None:
        if text_embedding.shape[0] != pins.num_rows + boards.num_rows:
            raise ValueError(f"{text_embedding.shape[0]} text vectors for {pins.num_rows + boards.num_rows} entities")
        columns["text_embedding"] = _vectors(text_embedding)
        schema = schema.append(pa.field("text_embedding", columns["text_embedding"].type, nullable=False))
        metadata |= {"text_encoder": text_encoder or "", "text_embedding_dim": str(text_embedding.shape[1])}
    return pa.table(columns, schema=schema).replace_schema_metadata(metadata)
