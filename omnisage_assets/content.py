"""Content: hashed n-gram text tokens and image vectors for every Pin and board."""

import dagster as dg
import great_expectations as gx
import pyarrow as pa
import pyarrow.compute as pc

from omnisage_assets.checks import gx_check_result
from omnisage_assets.lib.text_features import content_features as build_content_features


class ContentConfig(dg.Config):
    n_text_buckets: int = 1 << 15


@dg.asset(group_name="content", kinds={"parquet"})
def content_features(
    context: dg.AssetExecutionContext, config: ContentConfig, pins: pa.Table, boards: pa.Table
) -> pa.Table:
    """Text n-gram bucket ids (the model's hash embedding bag) and image vectors; Pins
    without an image are marked ``has_image = false``, never silently zero-filled."""
    table = build_content_features(pins, boards, config.n_text_buckets)
    context.add_output_metadata(
        {
            "entities": table.num_rows,
            "n_text_buckets": config.n_text_buckets,
            "pins_without_image": pins["image"].null_count,
        }
    )
    return table


@dg.asset_check(
    asset=content_features,
    blocking=True,
    additional_ins={"pins": dg.AssetIn(), "boards": dg.AssetIn()},
    description="Every Pin and board has a row with text tokens.",
)
def content_features_check(content_features: pa.Table, pins: pa.Table, boards: pa.Table) -> dg.AssetCheckResult:
    frame = content_features.select(["entity_type", "entity_id", "has_image"]).to_pandas()
    frame["n_text_tokens"] = pc.list_value_length(content_features["text_ngrams"]).to_numpy(zero_copy_only=False)
    return gx_check_result(
        frame,
        [
            gx.expectations.ExpectTableRowCountToEqual(value=pins.num_rows + boards.num_rows),
            gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=["entity_type", "entity_id"]),
            gx.expectations.ExpectColumnValuesToBeBetween(column="n_text_tokens", min_value=1),
        ],
    )
