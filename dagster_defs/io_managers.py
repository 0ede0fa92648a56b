"""Arrow tables stored as Parquet, one file per asset partition, in a local folder or on S3.

A ``pa.Table`` becomes ``<root>/<asset>/<partition>.parquet``; a ``pa.RecordBatchReader``
is written there batch by batch, so an asset can produce more than fits in memory; a
``dict[str, pa.Table]`` (a bundle such as the training examples) becomes
``<root>/<asset>/<partition>/<name>.parquet``. Readers never see half a file: a write goes
to a temporary name and is moved into place. A dict keyed by exactly the output's
partition keys holds one such value per partition, each stored as its own partition: that
is how one run covers a range of days (Dagster's UPath IO managers refuse such outputs).

An input is loaded as a ``pa.Table`` (several partitions, such as a trailing window, are
concatenated); when annotated ``pyarrow.dataset.Dataset``, it is opened lazily for reading
in batches; when annotated ``pathlib.Path``, a local folder or file is handed over, for a
process of its own (training through Dagster Pipes) to read: the stored one, or a copy
under ``local_copies`` when the root is on S3.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from omnisage_assets.lib.filesystems import filesystem, is_remote

UNPARTITIONED = "__all__"


def _write(data: pa.Table | pa.RecordBatchReader, fs: pafs.FileSystem, path: str) -> int:
    """Write whole or not at all; return the number of rows written. The data goes to a
    temporary name first, then is moved into place: a rename locally, a server-side copy on
    S3; either way readers see the previous file or the new one, never a partial file."""
    folder, name = path.rsplit("/", 1)
    fs.create_dir(folder, recursive=True)
    tmp = f"{folder}/.{name}.tmp"
    batches = data.to_batches() if isinstance(data, pa.Table) else data
    rows = 0
    try:
        with pq.ParquetWriter(tmp, data.schema, filesystem=fs) as writer:
            for batch in batches:
                writer.write_batch(batch)
                rows += batch.num_rows
    except BaseException:
        fs.delete_file(tmp)  # what was published before stays in place
        raise
    fs.move(tmp, path)
    return rows


class ParquetIOManager(dg.ConfigurableIOManager):
    root: str  # a local folder or s3://bucket/prefix
    local_copies: str | None = None  # where Path inputs are copied when the root is remote

    def _fs(self) -> tuple[pafs.FileSystem, str]:
        return filesystem(self.root)

    def _base(self, asset_key: dg.AssetKey, partition: str) -> str:
        return "/".join([self._fs()[1], *asset_key.path, partition])

    def _kind(self, path: str) -> pafs.FileType:
        return self._fs()[0].get_file_info(path).type

    def handle_output(
        self, context: dg.OutputContext, obj: pa.Table | pa.RecordBatchReader | dict[str, pa.Table]
    ) -> None:
        keys = context.asset_partition_keys if context.has_asset_partitions else [UNPARTITIONED]
        if isinstance(obj, dict) and context.has_asset_partitions and set(obj) == set(keys):
            per_partition = obj  # one value per partition key (any other dict is a bundle)
        elif len(keys) == 1:
            per_partition = {keys[0]: obj}
        else:
            raise TypeError(
                f"{context.asset_key.to_user_string()}: an output covering partitions {keys[0]}..{keys[-1]} "
                f"must be a dict with one value per partition key, not {type(obj).__name__}"
            )
        stored = {key: self._store(context.asset_key, key, value) for key, value in per_partition.items()}
        if len(stored) == 1:
            context.add_output_metadata(next(iter(stored.values())))
        else:
            context.add_output_metadata(
                {"path": self._base(context.asset_key, ""), "partitions": len(stored), "rows": sum(m["rows"] for m in stored.values())}
            )

    def _store(self, asset_key: dg.AssetKey, partition: str, obj: pa.Table | pa.RecordBatchReader | dict[str, pa.Table]) -> dict:
        """Write one partition; return its metadata."""
        fs, base = self._fs()[0], self._base(asset_key, partition)
        if isinstance(obj, (pa.Table, pa.RecordBatchReader)):
            return {"path": f"{base}.parquet", "rows": _write(obj, fs, f"{base}.parquet")}
        if isinstance(obj, dict):
            rows = {f"rows_{name}": _write(table, fs, f"{base}/{name}.parquet") for name, table in obj.items()}
            return {"path": base, "rows": sum(rows.values()), **rows}
        raise TypeError(f"{asset_key.to_user_string()}: cannot store {type(obj).__name__} as Parquet")

    def _missing(self, asset_key: dg.AssetKey, where: str | list[str]) -> FileNotFoundError:
        return FileNotFoundError(f"{asset_key.to_user_string()}: nothing stored at {where}; materialize it first")

    def _load_one(self, asset_key: dg.AssetKey, partition: str) -> pa.Table | dict[str, pa.Table]:
        fs, base = self._fs()[0], self._base(asset_key, partition)
        if self._kind(f"{base}.parquet") == pafs.FileType.File:
            return pq.read_table(f"{base}.parquet", filesystem=fs)
        if self._kind(base) == pafs.FileType.Directory:
            files = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(base)) if i.path.endswith(".parquet"))
            return {Path(f).stem: pq.read_table(f, filesystem=fs) for f in files}
        raise self._missing(asset_key, f"{base}(.parquet)")

    def _local(self, asset_key: dg.AssetKey, partition: str) -> Path:
        """The stored folder or file itself, or (remote root) a fresh local copy of it."""
        base = self._base(asset_key, partition)
        found = [p for p in (base, f"{base}.parquet") if self._kind(p) != pafs.FileType.NotFound]
        if not found:
            raise self._missing(asset_key, f"{base}(.parquet)")
        if not is_remote(self.root):
            return Path(found[0])
        if not self.local_copies:
            raise ValueError(f"{self.root} is remote: set local_copies for {asset_key.to_user_string()}")
        local = Path(self.local_copies).resolve().joinpath(*asset_key.path, found[0].rsplit("/", 1)[1])
        shutil.rmtree(local, ignore_errors=True)
        # copy_files writes into existing folders only
        (local if self._kind(found[0]) == pafs.FileType.Directory else local.parent).mkdir(parents=True, exist_ok=True)
        pafs.copy_files(found[0], str(local), source_filesystem=self._fs()[0])
        return local

    def load_input(self, context: dg.InputContext) -> pa.Table | ds.Dataset | Path | dict[str, pa.Table]:
        key = context.asset_key
        keys = context.asset_partition_keys if context.has_asset_partitions else [UNPARTITIONED]
        if context.dagster_type.typing_type is Path:
            return self._local(key, context.asset_partition_key if context.has_asset_partitions else UNPARTITIONED)
        if context.dagster_type.typing_type is ds.Dataset:
            paths = [f"{self._base(key, k)}.parquet" for k in keys]
            missing = [p for p in paths if self._kind(p) != pafs.FileType.File]
            if missing:
                raise self._missing(key, missing)
            return ds.dataset(paths, format="parquet", filesystem=self._fs()[0])
        parts = [self._load_one(key, k) for k in keys]
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)
