"""The AWS deployment's storage, end to end against a local S3-compatible server (moto's
server mode on 127.0.0.1): Parquet assets, checkpoints and LanceDB all in the bucket,
selected by ``OMNISAGE_HOME=s3://...`` alone, and day files that land in a bucket."""

import boto3
import dagster as dg
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from conftest import TINY
from dagster_aws.s3 import S3Resource
from moto.server import ThreadedMotoServer

from dagster_defs.automation import engagements_folder_sensor
from dagster_defs.definitions import build_definitions
from dagster_defs.io_managers import _write
from dagster_defs.resources import StorageResource, WorldResource
from omnisage_assets.lib.embedding_reader import EmbeddingReader
from omnisage_assets.lib.world import write_world

BUCKET = "omnisage-test"
HOME = f"s3://{BUCKET}/prod"
DAY = TINY.days[0]
FAST = {"ops": {"omnisage_checkpoint": {"config": {"steps": 30, "warmup_steps": 5, "checkpoint_every": 0}}}}


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """A moto S3 server and the standard AWS variables pointing at it, as a deployment sets them."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",  # LanceDB's object store: plain HTTP to the local server
            "OMNISAGE_WORK": str(tmp_path_factory.mktemp("work")),
        }.items():
            env.setenv(name, value)
        S3Resource(endpoint_url=f"http://{host}:{port}").get_client().create_bucket(Bucket=BUCKET)
        yield f"http://{host}:{port}"
    server.stop()


def test_a_day_materialized_on_s3_is_read_back_from_the_bucket(s3_server, dagster_instance, tmp_path):
    defs = build_definitions(root=HOME, world=WorldResource(scale="tiny"))
    assert defs.resolve_job_def("catalog_job").execute_in_process(instance=dagster_instance).success
    result = defs.resolve_job_def("daily_pipeline_job").execute_in_process(
        instance=dagster_instance, partition_key=DAY, run_config=FAST
    )
    assert result.success

    keys = {o["Key"] for page in boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET) for o in page.get("Contents", [])}
    assert f"prod/assets/engagements/{DAY}.parquet" in keys
    assert f"prod/assets/training_examples/{DAY}/pairs.parquet" in keys
    assert f"prod/assets/entity_embeddings/{DAY}.parquet" in keys
    assert f"prod/omnisage_checkpoint/{DAY}/model.safetensors" in keys
    assert any(k.startswith("prod/lancedb/releases.lance/") for k in keys)

    # A serving client needs nothing but the bucket.
    reader = EmbeddingReader(f"{HOME}/lancedb")
    assert reader.release["partition_date"] == DAY and reader.release["checkpoint"] == f"{HOME}/omnisage_checkpoint/{DAY}"
    pin = reader.db.open_table(reader.release["tables"]["pins"]).search().limit(1).to_arrow()["id"][0].as_py()
    assert reader.similar_pins(pin, k=5).num_rows == 5
    user = reader.db.open_table(reader.release["tables"]["users"]).search().limit(1).to_arrow()["id"][0].as_py()
    assert reader.recommend_pins(user, k=5).num_rows == 5


def test_the_sensor_starts_the_days_that_land_in_the_bucket(s3_server, tiny_world, dagster_instance, tmp_path):
    local = write_world(tiny_world, TINY.days[:2], tmp_path / "world")
    pafs.copy_files(str(local), f"s3://{BUCKET}/inbox")
    world = WorldResource(path=f"s3://{BUCKET}/inbox")
    first = engagements_folder_sensor(dg.build_sensor_context(instance=dagster_instance, resources={"world": world}))
    assert [r.partition_key for r in first.run_requests] == TINY.days[:2]
    # The run the sensor starts reads the day from the bucket, checked against its contract.
    assert world.load().engagements(TINY.days[1]).equals(tiny_world.engagements(TINY.days[1]))
    pafs.copy_files(str(local / "engagements" / f"{TINY.days[0]}.parquet"), f"s3://{BUCKET}/inbox/engagements/{TINY.days[2]}.parquet")
    second = engagements_folder_sensor(
        dg.build_sensor_context(instance=dagster_instance, cursor=first.cursor, resources={"world": world})
    )
    assert [r.partition_key for r in second.run_requests] == [TINY.days[2]]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_write_that_fails_midway_leaves_the_previous_file(where, s3_server, tmp_path):
    fs, root = (pafs.LocalFileSystem(), str(tmp_path)) if where == "local" else pafs.FileSystem.from_uri(f"s3://{BUCKET}/writes")
    path = f"{root}/asset/2026-01-01.parquet"
    previous = pa.table({"x": [1, 2, 3]})
    assert _write(previous, fs, path) == 3

    def failing():
        yield pa.record_batch({"x": [7, 8]})
        raise RuntimeError("the producer died")

    with pytest.raises(RuntimeError, match="the producer died"):
        _write(pa.RecordBatchReader.from_batches(previous.schema, failing()), fs, path)
    assert pq.read_table(path, filesystem=fs).equals(previous)
    assert [i.base_name for i in fs.get_file_info(pafs.FileSelector(f"{root}/asset"))] == ["2026-01-01.parquet"]


def test_paths_from_configuration_cannot_leave_the_storage_root(tmp_path):
    with pytest.raises(ValueError, match="escapes the storage root"):
        StorageResource(root=HOME, work=str(tmp_path)).uri("omnisage_checkpoint", "../../other-bucket")
    with pytest.raises(ValueError, match="escapes the storage root"):
        StorageResource(root=str(tmp_path)).path("..", "etc")
