"""Bad day files, each as a deployment receives it: dropped into the world folder and run
through the day's pipeline. Every one is stopped before anything is built from it, with a
message that names what is wrong, and the published embeddings stay as they were."""

import datetime as dt

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import TINY

from dagster_defs.definitions import build_definitions
from dagster_defs.resources import WorldResource
from omnisage_assets.lib.embedding_reader import EmbeddingReader
from omnisage_assets.lib.world import write_world

BAD_DAY = TINY.days[8]


def _replace(table: pa.Table, column: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(column), column, values)


def _set_row(table: pa.Table, column: str, row: int, value) -> pa.Table:
    values = table.column(column).to_pylist()
    values[row] = value
    return _replace(table, column, pa.array(values, table.schema.field(column).type))


# name: (what the file holds, which gate stops it, what the message must say)
CASES = {
    "missing column": (lambda t: t.drop_columns(["surface"]), "contract", "missing column(s) ['surface']"),
    "wrong type": (
        lambda t: _replace(t, "user_id", pa.array([f"user-{u}" for u in t["user_id"].to_pylist()])),
        "contract", "column 'user_id' row 0: value 'user-",
    ),
    "null id": (lambda t: _set_row(t, "pin_id", 3, None), "contract", "column 'pin_id' row 3: null is not allowed"),
    "negative id": (lambda t: _set_row(t, "user_id", 5, -7), "check", "expect_column_values_to_be_between(user_id): 1 unexpected, e.g. ['-7']"),
    "timestamps far in the future": (
        lambda t: _replace(t, "ts", pc.add(t["ts"], pa.scalar(dt.timedelta(days=3650)))),
        "check", "expect_column_values_to_be_between(seconds_into_window)",
    ),
    "another day's events": (
        lambda t: _replace(t, "ts", pc.subtract(t["ts"], pa.scalar(dt.timedelta(days=1)))),
        "check", "expect_column_values_to_be_between(seconds_into_window)",
    ),
    "empty day": (lambda t: t.slice(0, 0), "check", "expect_table_row_count_to_be_between"),
    "only unknown ids": (
        lambda t: _replace(t, "pin_id", pa.array([999_999_999_999] * t.num_rows, pa.int64())),
        "contract", "reference(s) to unknown pins",
    ),
    "unknown action": (lambda t: _set_row(t, "action", 2, "purchase"), "contract", "row 2: 'purchase' is not one of"),
    "not a Parquet file": (None, "contract", "not a readable Parquet file"),
}


@pytest.fixture(scope="module")
def inbox(pipeline, tiny_world, tmp_path_factory):
    """The tiny world as day files, beside the materialized pipeline and its release."""
    folder = write_world(tiny_world, TINY.days[:8], tmp_path_factory.mktemp("bad_inputs"))
    defs = build_definitions(root=pipeline["root"], world=WorldResource(path=str(folder)))
    return folder, defs


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_day_file_is_stopped_before_anything_is_built_from_it(case, inbox, tiny_world, pipeline, dagster_instance):
    folder, defs = inbox
    make, gate, message = CASES[case]
    path = folder / "engagements" / f"{BAD_DAY}.parquet"
    if make is None:
        path.write_bytes(b"PAR1 this is not parquet")
    else:
        pq.write_table(make(tiny_world.engagements(BAD_DAY)), path)
    root = pipeline["root"]
    stored_days = [p for p in sorted((root / "assets" / "engagements").glob("*.parquet")) if p.stem != BAD_DAY]
    before = {p.name: p.read_bytes() for p in stored_days}
    release = EmbeddingReader(root / "lancedb").release["release_id"]

    result = defs.resolve_job_def("daily_pipeline_job").execute_in_process(
        instance=dagster_instance, partition_key=BAD_DAY, raise_on_error=False
    )
    assert not result.success
    if gate == "contract":
        assert message in result.failure_data_for_node("engagements").error.to_string()
    else:
        (check,) = [c for c in result.get_asset_check_evaluations() if c.asset_key == dg.AssetKey("engagements")]
        assert not check.passed and message in check.description, check.description
    # Stopped before the graph: nothing downstream of the bad day exists, the other days and
    # the release are untouched, and the release still answers.
    assert not (root / "assets" / "graph_edges" / f"{BAD_DAY}.parquet").exists()
    assert {p.name: p.read_bytes() for p in stored_days} == before
    reader = EmbeddingReader(root / "lancedb")
    assert reader.release["release_id"] == release
    pin = reader.db.open_table(reader.release["tables"]["pins"]).search().limit(1).to_arrow()["id"][0].as_py()
    assert reader.similar_pins(pin, k=3).num_rows == 3


def test_duplicate_events_are_dropped_and_counted(inbox, tiny_world, dagster_instance):
    folder, defs = inbox
    day = tiny_world.engagements(BAD_DAY)
    pq.write_table(pa.concat_tables([day, day.slice(0, 10)]), folder / "engagements" / f"{BAD_DAY}.parquet")
    result = defs.resolve_job_def("ingest_job").execute_in_process(instance=dagster_instance, partition_key=BAD_DAY)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("engagements")
    assert materialization.metadata["duplicates_dropped"].value == 10
    assert materialization.metadata["engagements"].value == day.num_rows
