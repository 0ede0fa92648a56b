"""LanceDB releases: staged, indexed, switched atomically, cleaned up; bad vectors refused."""

import lancedb
import numpy as np
import pyarrow as pa
import pytest

from omnisage_assets.lib.embedding_reader import EmbeddingReader
from omnisage_assets.lib.lance_release import (
    IndexConfig,
    PublishError,
    build_indexes,
    cleanup,
    current_release,
    index_recall,
    publish_release,
    stage_tables,
)
from omnisage_assets.lib.lance_tables import lance_batches


def _tables(n: int, seed: int, dim: int = 16, noise: float = 0.5) -> dict[str, pa.Table]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    x = centres[rng.integers(0, 20, n)] + noise * rng.normal(size=(n, dim))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim)
    pins = pa.table({"id": pa.array(np.arange(n) + 1_000, pa.int64()), "vector": vectors, "title": [f"pin {i} v{seed}" for i in range(n)]})
    users = pa.table(
        {"id": pa.array([7], pa.int64()), "vector": vectors.slice(0, 1), "seen_pin_ids": pa.array([[1_000, 1_001]], pa.list_(pa.int64()))}
    )
    return {"pins": pins, "users": users}


def test_readers_see_the_previous_release_until_the_switch_and_never_a_mix(tmp_path):
    db = lancedb.connect(str(tmp_path))
    with pytest.raises(LookupError, match="no published embeddings"):
        EmbeddingReader(tmp_path)
    day1 = stage_tables(db, _tables(300, seed=1), "2026-01-07")
    publish_release(db, "2026-01-07", day1, "omnisage-2026-01-07", "ckpt/2026-01-07")
    before = EmbeddingReader(tmp_path)
    day2 = stage_tables(db, _tables(300, seed=2), "2026-01-08")  # staged, not released: a run that died here
    assert EmbeddingReader(tmp_path).release["release_id"] == "2026-01-07/g1"
    publish_release(db, "2026-01-08", day2, "omnisage-2026-01-08", "ckpt/2026-01-08")
    after = EmbeddingReader(tmp_path)
    assert after.release["release_id"] == "2026-01-08/g1"
    # The reader opened before the switch still answers from its own release, whole.
    assert before.similar_pins(1_000, k=3)["title"].to_pylist()[0].endswith("v1")
    assert after.similar_pins(1_000, k=3)["title"].to_pylist()[0].endswith("v2")
    assert EmbeddingReader(tmp_path, release="2026-01-07").release["release_id"] == "2026-01-07/g1"
    # Re-publishing a served day writes a new generation; the served tables are never rewritten.
    again = stage_tables(db, _tables(300, seed=3), "2026-01-08")
    assert again["pins"].endswith("__g2") and after.similar_pins(1_000, k=1)["title"][0].as_py().endswith("v2")
    publish_release(db, "2026-01-08", again, "omnisage-2026-01-08", "ckpt/2026-01-08")
    dropped = cleanup(db, keep=1)
    assert sorted(dropped) == sorted(list(day1.values()) + list(day2.values()))
    assert current_release(db)["release_id"] == "2026-01-08/g2"
    with pytest.raises(LookupError):
        current_release(db, "2026-01-07")


def test_recommendations_skip_what_the_user_saw(tmp_path):
    db = lancedb.connect(str(tmp_path))
    staged = stage_tables(db, _tables(100, seed=1), "2026-01-07")
    publish_release(db, "2026-01-07", staged, "v", "c", IndexConfig(nprobes=7))
    reader = EmbeddingReader(tmp_path)
    assert reader.index.nprobes == 7  # the release's checked setting, not a default
    assert not {1_000, 1_001} & set(reader.recommend_pins(7, k=10)["id"].to_pylist())
    assert 1_000 in reader.recommend_pins(7, k=10, exclude_seen=False)["id"].to_pylist()


def test_the_index_is_built_on_big_tables_and_keeps_recall(tmp_path):
    db = lancedb.connect(str(tmp_path))
    # Loose clusters: a query's neighbours straddle IVF partitions, so probing matters.
    staged = stage_tables(db, _tables(3_000, seed=4, noise=2.0), "2026-01-07")
    config = IndexConfig(min_rows=1_000, rows_per_partition=500)
    built = build_indexes(db, staged, config)
    assert built["pins"]["index"] == "IVF_HNSW_SQ" and built["pins"]["partitions"] == 6
    assert built["users"]["index"] == "none (exact scan)"
    assert db.open_table(staged["pins"]).list_indices()
    recall = index_recall(db, staged["pins"], config, queries=50)
    assert recall.mean() >= 0.9
    # Fewer probes than partitions on an index really is approximate: the check can fail.
    assert index_recall(db, staged["pins"], IndexConfig(nprobes=1), queries=50).mean() < recall.mean()


def test_bad_vectors_never_reach_a_table(tmp_path):
    db = lancedb.connect(str(tmp_path))
    tables = _tables(10, seed=5)
    values = tables["pins"]["vector"].combine_chunks().flatten().to_numpy().copy()
    values[3 * 16 + 2] = np.nan
    broken = tables["pins"].set_column(1, "vector", pa.FixedSizeListArray.from_arrays(pa.array(values), 16))
    with pytest.raises(PublishError, match=r"pins: 1 vector\(s\) hold NaN or infinite values, e.g. rows \[3\]"):
        stage_tables(db, {**tables, "pins": broken}, "2026-01-07")
    ragged = tables["pins"].set_column(1, "vector", pa.array([[0.1] * 16] * 9 + [[0.1] * 15], pa.list_(pa.float32())))
    with pytest.raises(PublishError, match="pins: column 'vector' is list<item: float>, expected fixed-width"):
        stage_tables(db, {**tables, "pins": ragged}, "2026-01-07")
    assert db.table_names() == []


def test_streamed_tables_carry_text_and_refuse_a_bad_batch_by_its_global_row(tmp_path):
    db = lancedb.connect(str(tmp_path))
    ids = np.arange(10, dtype=np.int64) + 1_000
    vectors = np.eye(10, 16, dtype=np.float32)
    catalog = pa.table({"pin_id": ids[::-1], "title": [f"t{i}" for i in ids[::-1]], "description": ["d"] * 10})
    staged = stage_tables(db, {"pins": lance_batches("pin", ids, vectors, "v", "2026-01-07", catalog, batch_rows=4)}, "2026-01-07")
    table = db.open_table(staged["pins"]).to_arrow()
    assert table["id"].to_pylist() == ids.tolist() and table["title"].to_pylist() == [f"t{i}" for i in ids]
    vectors[6, 3] = np.nan  # in the second batch of four
    users = lance_batches("user", ids[:1], vectors[:1], "v", "2026-01-07", seen_pin_ids=pa.array([[1_000]], pa.list_(pa.int64())))
    with pytest.raises(PublishError, match=r"pins: 1 vector\(s\) hold NaN or infinite values, e.g. rows \[6\]"):
        stage_tables(db, {"users": users, "pins": lance_batches("pin", ids, vectors, "v", "2026-01-07", catalog, batch_rows=4)}, "2026-01-07")
    assert db.table_names() == [staged["pins"]]  # the refused generation left nothing behind
