"""Real datasets mapped onto the contracts: MovieLens-100K, a generic CSV, and bad files."""

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from omnisage_assets.lib.real_data import PRESETS, DatasetError, DatasetSpec, RealWorld, read_table, resolve
from omnisage_assets.lib.world import PIN_ID_BASE, ParquetWorld


@pytest.fixture(scope="module")
def ml100k() -> RealWorld:
    return RealWorld(PRESETS["ml-100k"])


def test_movielens_100k_maps_every_rating_onto_the_contracts(ml100k, tmp_path):
    ratings = read_table(resolve(PRESETS["ml-100k"].interactions))
    saves = int(pc.sum(pc.greater_equal(pc.cast(ratings["rating"], pa.float64()), 4.0)).as_py())
    world = ParquetWorld(ml100k.write(tmp_path / "ml-100k"))  # reading it back validates every file
    days = [world.engagements(d) for d in ml100k.days]
    assert world.pins().num_rows == 1682 and len(ml100k.user_ids) == 943
    assert sum(d.num_rows for d in days) == 100_000 and min(d.num_rows for d in days) > 6_000
    everything = pa.concat_tables(days)
    assert int(pc.sum(pc.equal(everything["action"], "save")).as_py()) == saves
    assert everything["board_id"].null_count == 100_000 - saves  # clicks go to no board
    # One board per user and genre saved to, owned by that user, named after the genre.
    boards = world.boards()
    saved = everything.filter(pc.equal(everything["action"], "save"))
    pairs = set(zip(saved["user_id"].to_pylist(), saved["board_id"].to_pylist()))
    assert len(pairs) == boards.num_rows == len({b for _, b in pairs})
    owner = dict(zip(boards["board_id"].to_pylist(), boards["owner_user_id"].to_pylist()))
    assert all(owner[b] == u for u, b in pairs)
    toy_story = world.pins().filter(pc.equal(world.pins()["pin_id"], PIN_ID_BASE)).to_pylist()[0]
    assert toy_story["title"] == "Toy Story" and toy_story["description"] == "1995 · Animation Children's Comedy"


def test_days_split_the_timeline_without_leakage(ml100k):
    """Everything in day D happened strictly before everything in day D + 1."""
    for day, next_day in zip(ml100k.days, ml100k.days[1:]):
        assert ml100k.real_seconds(day).max() < ml100k.real_seconds(next_day).min()
        ts = ml100k.engagements(day)["ts"]
        assert pc.all(pc.equal(pc.strftime(ts, "%Y-%m-%d"), day)).as_py()
        assert np.all(np.diff(pc.cast(ts, pa.int64()).to_numpy()) >= 0)


def test_consecutive_actions_in_a_session_become_related_pin_engagements(tmp_path):
    spec = _write(tmp_path, [("u1", "a", 5, 100), ("u1", "b", 4, 200), ("u1", "c", 2, 100_000), ("u2", "a", 5, 150)])
    world = RealWorld(dataclasses.replace(spec, n_days=1, session_gap_s=1000))
    rows = world.engagements(world.days[0]).to_pylist()
    by_pin = {(r["user_id"], r["pin_id"]): r for r in rows}
    a, b, c = (PIN_ID_BASE + i for i in range(3))
    u1, u2 = (r["user_id"] for r in sorted(rows, key=lambda r: r["ts"])[:2])
    assert by_pin[(u1, b)]["surface"] == "related" and by_pin[(u1, b)]["query_pin_id"] == a
    assert by_pin[(u1, c)]["surface"] == "home" and by_pin[(u1, c)]["action"] == "click"  # an hour later; rated 2
    assert by_pin[(u2, a)]["surface"] == "home"  # another user's action never links


def test_a_generic_csv_with_its_own_column_names(tmp_path):
    spec = _write(tmp_path, [("u1", "a", None, 100), ("u2", "b", None, 200)], rating=False)
    world = RealWorld(dataclasses.replace(spec, n_days=2))
    assert [world.engagements(d).num_rows for d in world.days] == [1, 1]
    assert world.pins()["title"].to_pylist() == ["title a", "title b", "title c"]


def test_bad_files_are_refused_with_the_file_column_and_a_sample(tmp_path):
    spec = _write(tmp_path, [("u1", "a", 5, 100), ("u1", "zz", 5, 200), ("u2", "yy", 4, 300)])
    with pytest.raises(DatasetError, match=r"interactions.csv: column 'movie' has 2 interaction\(s\) with 2 item id\(s\) that items.csv lacks, e.g. \['zz', 'yy'\]"):
        RealWorld(spec)
    assert RealWorld(dataclasses.replace(spec, drop_unknown_items=True)).dropped_interactions == 2

    with pytest.raises(DatasetError, match=r"interactions.csv: missing column\(s\) \['when'\]"):
        RealWorld(dataclasses.replace(spec, timestamp="when"))

    bad_time = _write(tmp_path, [("u1", "a", 5, 100), ("u1", "b", 5, "yesterday")])
    with pytest.raises(DatasetError, match=r"column 'seconds' has 1 unparsable timestamp\(s\), e.g. \(row, value\) \[\(1, 'yesterday'\)\]"):
        RealWorld(bad_time)

    ragged = tmp_path / "ragged.csv"
    ragged.write_text("person,movie,stars,seconds\nu1,a,5,100\nu1,b,5,200,extra\n")
    with pytest.raises(DatasetError, match=r"ragged.csv: not readable as CSV \(.*Expected 4 columns, got 5"):
        RealWorld(dataclasses.replace(spec, interactions=str(ragged)))

    with pytest.raises(DatasetError, match="package 'no_such_package' is not installed"):
        RealWorld(dataclasses.replace(spec, items="package:no_such_package/items.tsv"))


def _write(tmp_path, rows, rating: bool = True) -> DatasetSpec:
    """A tiny dataset in CSV, with column names of its own."""
    columns = {"person": [r[0] for r in rows], "movie": [r[1] for r in rows], "seconds": [str(r[3]) for r in rows]}
    if rating:
        columns["stars"] = [r[2] for r in rows]
    pacsv.write_csv(pa.table(columns), tmp_path / "interactions.csv")
    pacsv.write_csv(
        pa.table({"movie": ["a", "b", "c"], "name": ["title a", "title b", "title c"], "genres": ["Drama", "Comedy Drama", ""]}),
        tmp_path / "items.csv",
    )
    return DatasetSpec(
        interactions=str(tmp_path / "interactions.csv"),
        items=str(tmp_path / "items.csv"),
        user="person",
        item="movie",
        timestamp="seconds",
        rating="stars" if rating else None,
        title="name",
        text=("genres",),
        category="genres",
    )
