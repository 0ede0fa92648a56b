"""Content features: the paper's hashed n-gram text tokens and the image vectors.

Word unigrams and bigrams are hashed into a fixed number of buckets; the model learns an
embedding bag over the bucket ids end to end, so no vocabulary has to be built or shipped.
"""

from __future__ import annotations

import re
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DEFAULT_BUCKETS = 1 << 18
_WORD = re.compile(r"\w+", re.UNICODE)

CONTENT_FEATURES = pa.schema(
    [
        pa.field("entity_type", pa.string(), nullable=False),
        pa.field("entity_id", pa.int64(), nullable=False),
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


def _ngram_column(texts: list[str], n_buckets: int) -> pa.Array:
    return pa.array([hashed_ngrams(t, n_buckets) for t in texts], pa.list_(pa.int32()))


def _text(first: pa.ChunkedArray, second: pa.ChunkedArray) -> list[str]:
    joined = pc.binary_join_element_wise(
        pc.fill_null(first, ""), pc.fill_null(second, ""), " "
    )
    return joined.to_pylist()


def content_features(pins: pa.Table, boards: pa.Table, n_buckets: int = DEFAULT_BUCKETS) -> pa.Table:
    """One row per Pin (title + description, image) and per board (name + description)."""
    image = pins["image"].combine_chunks()
    pin_rows = pa.table(
        {
            "entity_type": pa.array(["pin"] * pins.num_rows, pa.string()),
            "entity_id": pins["pin_id"],
            "text_ngrams": _ngram_column(_text(pins["title"], pins["description"]), n_buckets),
            "image": image,
            "has_image": pc.is_valid(image),
        },
        schema=CONTENT_FEATURES,
    )
    board_rows = pa.table(
        {
            "entity_type": pa.array(["board"] * boards.num_rows, pa.string()),
            "entity_id": boards["board_id"],
            "text_ngrams": _ngram_column(_text(boards["name"], boards["description"]), n_buckets),
            "image": pa.nulls(boards.num_rows, pa.list_(pa.float32())),
            "has_image": pa.array(np.zeros(boards.num_rows, dtype=bool)),
        },
        schema=CONTENT_FEATURES,
    )
    # The model sizes its embedding bag from this; it travels with the table through Parquet.
    return pa.concat_tables([pin_rows, board_rows]).replace_schema_metadata(
        {"n_text_buckets": str(n_buckets)}
    )
