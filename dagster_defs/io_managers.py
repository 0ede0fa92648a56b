"""Arrow tables stored as Parquet, one file per asset partition.

A ``pa.Table`` becomes ``<root>/<asset>/<partition>.parquet``; a ``pa.RecordBatchReader``
is written there batch by batch, so an asset can produce more than fits in memory; a
``dict[str, pa.Table]`` (a bundle such as the training examples) becomes
``<root>/<asset>/<partition>/<name>.parquet``. Writes go to a temporary name and are
renamed into place, so readers never see half a file. A dict keyed by exactly the output's
partition keys holds one such value per partition, each stored as its own partition: that
is how one run covers a range of days (Dagster's UPath IO managers refuse such outputs).

An input is loaded as a ``pa.Table`` (several partitions, such as a trailing window, are
concatenated); when annotated ``pyarrow.dataset.Dataset``, it is opened lazily for reading
in batches; when annotated ``pathlib.Path``, the stored location itself is handed over, for
a process of its own (training through Dagster Pipes) to read.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

UNPARTITIONED = "__all__"


def _write(data: pa.Table | pa.RecordBatchReader, path: Path) -> int:
    """Write atomically; return the number of rows written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if isinstance(data, pa.Table):
        pq.write_table(data, tmp)
        rows = data.num_rows
    else:
        rows = 0
        try:
            with pq.ParquetWriter(tmp, data.schema) as writer:
                for batch in data:
                    writer.write_batch(batch)
                    rows += batch.num_rows
        except BaseException:
            tmp.unlink(missing_ok=True)  # what was published before stays in place
            raise
    os.replace(tmp, path)
    return rows


class ParquetIOManager(dg.ConfigurableIOManager):
    root: str

    def _base(self, asset_key: dg.AssetKey, partition: str) -> Path:
        return Path(self.root).joinpath(*asset_key.path, partition)

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
                {"path": str(self._base(context.asset_key, "")), "partitions": len(stored), "rows": sum(m["rows"] for m in stored.values())}
            )

    def _store(self, asset_key: dg.AssetKey, partition: str, obj: pa.Table | pa.RecordBatchReader | dict[str, pa.Table]) -> dict:
        """Write one partition; return its metadata."""
        base = self._base(asset_key, partition)
        if isinstance(obj, (pa.Table, pa.RecordBatchReader)):
            return {"path": str(base.with_suffix(".parquet")), "rows": _write(obj, base.with_suffix(".parquet"))}
        if isinstance(obj, dict):
            rows = {f"rows_{name}": _write(table, base / f"{name}.parquet") for name, table in obj.items()}
            return {"path": str(base), "rows": sum(rows.values()), **rows}
        raise TypeError(f"{asset_key.to_user_string()}: cannot store {type(obj).__name__} as Parquet")

    def _load_one(self, asset_key: dg.AssetKey, partition: str) -> pa.Table | dict[str, pa.Table]:
        base = self._base(asset_key, partition)
        if base.with_suffix(".parquet").exists():
            return pq.read_table(base.with_suffix(".parquet"))
        if base.is_dir():
            return {p.stem: pq.read_table(p) for p in sorted(base.glob("*.parquet"))}
        raise FileNotFoundError(
            f"{asset_key.to_user_string()} partition {partition}: nothing stored at {base}(.parquet); "
            "materialize it first"
        )

    def load_input(self, context: dg.InputContext) -> pa.Table | ds.Dataset | Path | dict[str, pa.Table]:
        key = context.asset_key
        if context.dagster_type.typing_type is Path:
            base = self._base(key, context.asset_partition_key if context.has_asset_partitions else UNPARTITIONED)
            found = [p for p in (base, base.with_suffix(".parquet")) if p.exists()]
            if not found:
                raise FileNotFoundError(f"{key.to_user_string()}: nothing stored at {base}(.parquet); materialize it first")
            return found[0]
        if context.dagster_type.typing_type is ds.Dataset:
            keys = context.asset_partition_keys if context.has_asset_partitions else [UNPARTITIONED]
            paths = [self._base(key, k).with_suffix(".parquet") for k in keys]
            missing = [str(p) for p in paths if not p.exists()]
            if missing:
                raise FileNotFoundError(f"{key.to_user_string()}: nothing stored at {missing}; materialize it first")
            return ds.dataset([str(p) for p in paths], format="parquet")
        if not context.has_asset_partitions:
            return self._load_one(key, UNPARTITIONED)
        parts = [self._load_one(key, k) for k in context.asset_partition_keys]
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)
