"""The synthetic world: deterministic, structured, and loaded through validated contracts."""

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from omnisage_assets.lib import contracts
from omnisage_assets.lib.world import PRESETS, ParquetWorld, SyntheticWorld


def test_same_seed_same_world(tiny_world):
    again = SyntheticWorld(PRESETS["tiny"])
    assert again.engagements(PRESETS["tiny"].days[2]).equals(tiny_world.engagements(PRESETS["tiny"].days[2]))
    other = SyntheticWorld(dataclasses.replace(PRESETS["tiny"], seed=8))
    assert not other.engagements(PRESETS["tiny"].days[2]).equals(tiny_world.engagements(PRESETS["tiny"].days[2]))


def test_days_follow_the_contract_and_stay_inside_the_day(tiny_world):
    day = tiny_world.config.days[3]
    table = tiny_world.engagements(day)
    assert table.schema.equals(contracts.ENGAGEMENTS)
    assert table.num_rows == pytest.approx(tiny_world.config.n_users * tiny_world.config.actions_per_user_day, rel=0.1)
    ts = pc.cast(table["ts"], pa.int64()).to_numpy()
    start = np.datetime64(day, "us").astype(np.int64)
    assert ((ts >= start) & (ts < start + 86_400_000_000)).all()
    assert (np.diff(ts) >= 0).all()
    saves = table.filter(pc.equal(table["action"], "save"))
    assert saves["board_id"].null_count == 0
    assert table.filter(pc.equal(table["action"], "click"))["board_id"].null_count == table.num_rows - saves.num_rows


def test_hidden_topics_shape_the_engagements(tiny_world):
    """Related-Pins co-engagement stays within a topic far more often than chance."""
    table = tiny_world.engagements(tiny_world.config.days[0])
    related = table.filter(pc.equal(table["surface"], "related"))
    truth = tiny_world.truth()
    topic = dict(zip(truth["pin_id"].to_pylist(), truth["topic"].to_pylist()))
    same = np.mean([topic[a] == topic[b] for a, b in zip(related["query_pin_id"].to_pylist(), related["pin_id"].to_pylist())])
    assert same > 0.95 > 3 / tiny_world.config.n_topics
    # A saved Pin's board is curated for the Pin's topic: one board per (user, topic).
    saves = table.filter(pc.equal(table["action"], "save"))
    assert pc.count_distinct(saves["board_id"]).as_py() <= tiny_world.boards().num_rows


def test_scale_knob_reaches_ten_million_engagements():
    assert PRESETS["tiny"].expected_engagements < 20_000
    assert PRESETS["large"].expected_engagements >= 10_000_000
    assert PRESETS["large"].n_pins >= 1_000_000


def test_parquet_world_round_trip(tiny_world, tmp_path):
    tiny_world.write(tmp_path)
    world = ParquetWorld(tmp_path)
    day = tiny_world.config.days[1]
    assert world.engagements(day).equals(tiny_world.engagements(day))
    assert world.pins().num_rows == tiny_world.pins().num_rows


@pytest.fixture()
def world_dir(tiny_world, tmp_path):
    pq.write_table(tiny_world.pins(), tmp_path / "pins.parquet")
    pq.write_table(tiny_world.boards(), tmp_path / "boards.parquet")
    (tmp_path / "engagements").mkdir()
    return tmp_path


def _write_day(world_dir, table, day="2026-01-02"):
    path = world_dir / "engagements" / f"{day}.parquet"
    pq.write_table(table, path)
    return day, path


def test_missing_column_names_file_and_column(tiny_world, world_dir):
    day, path = _write_day(world_dir, tiny_world.engagements("2026-01-02").drop(["surface"]))
    with pytest.raises(contracts.ContractError, match=r"2026-01-02\.parquet.*missing column\(s\) \['surface'\]"):
        ParquetWorld(world_dir).engagements(day)


def test_uncastable_value_names_column_and_row(tiny_world, world_dir):
    table = tiny_world.engagements("2026-01-02")
    user = pc.cast(table["user_id"], pa.string()).to_pylist()
    user[5] = "not-a-user"
    day, _ = _write_day(world_dir, table.set_column(0, "user_id", pa.array(user)))
    with pytest.raises(contracts.ContractError, match=r"column 'user_id' row 5: value 'not-a-user'"):
        ParquetWorld(world_dir).engagements(day)


def test_unknown_pin_and_null_id_are_named(tiny_world, world_dir):
    table = tiny_world.engagements("2026-01-02")
    pins = table["pin_id"].to_pylist()
    pins[7] = 42
    day, _ = _write_day(world_dir, table.set_column(1, "pin_id", pa.array(pins)))
    with pytest.raises(contracts.ContractError, match=r"'pin_id' has 1 reference\(s\) to unknown pins \(first at row 7\), e.g. \[42\]"):
        ParquetWorld(world_dir).engagements(day)
    pins[7] = None
    day, _ = _write_day(world_dir, table.set_column(1, "pin_id", pa.array(pins, pa.int64())))
    with pytest.raises(contracts.ContractError, match=r"column 'pin_id' row 7: null is not allowed"):
        ParquetWorld(world_dir).engagements(day)


def test_duplicate_pin_ids_and_bad_vectors_are_rejected(tiny_world, world_dir):
    pins = tiny_world.pins()
    pq.write_table(pa.concat_tables([pins, pins.slice(3, 2)]), world_dir / "pins.parquet")
    with pytest.raises(contracts.ContractError, match=r"pins\.parquet: column 'pin_id' has 2 duplicate id\(s\)"):
        ParquetWorld(world_dir).pins()
    image = pins["image"].to_pylist()
    image[4] = [float("nan")] * len(image[0])
    pq.write_table(pins.set_column(3, "image", pa.array(image, pa.list_(pa.float32()))), world_dir / "pins.parquet")
    with pytest.raises(contracts.ContractError, match=r"column 'image' row 4: vector holds NaN"):
        ParquetWorld(world_dir).pins()
    image = pins["image"].to_pylist()
    image[6] = image[6][:-1]
    pq.write_table(pins.set_column(3, "image", pa.array(image, pa.list_(pa.float32()))), world_dir / "pins.parquet")
    with pytest.raises(contracts.ContractError, match=rf"column 'image' row 6: vector has {len(image[0]) - 1} values, expected {len(image[0])}"):
        ParquetWorld(world_dir).pins()
