"""Arrow tables stored as Parquet, one file per asset partition.

A ``pa.Table`` becomes ``<root>/<asset>/<partition>.parquet``; a ``dict[str, pa.Table]``
(a bundle such as the training examples) becomes ``<root>/<asset>/<partition>/<name>.parquet``.
An input that spans several partitions (a trailing window) is the concatenation of them.
Writes go to a temporary name and are renamed into place, so readers never see half a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

UNPARTITIONED = "__all__"


def _write(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


class ParquetIOManager(dg.ConfigurableIOManager):
    root: str

    def _base(self, asset_key: dg.AssetKey, partition: str) -> Path:
        return Path(self.root).joinpath(*asset_key.path, partition)

    def handle_output(self, context: dg.OutputContext, obj: pa.Table | dict[str, pa.Table]) -> None:
        partition = context.asset_partition_key if context.has_asset_partitions else UNPARTITIONED
        base = self._base(context.asset_key, partition)
        if isinstance(obj, pa.Table):
            _write(obj, base.with_suffix(".parquet"))
            context.add_output_metadata({"path": str(base.with_suffix(".parquet")), "rows": obj.num_rows})
        elif isinstance(obj, dict):
            for name, table in obj.items():
                _write(table, base / f"{name}.parquet")
            context.add_output_metadata(
                {"path": str(base), **{f"rows_{name}": t.num_rows for name, t in obj.items()}}
            )
        else:
            raise TypeError(f"{context.asset_key.to_user_string()}: cannot store {type(obj).__name__} as Parquet")

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

    def load_input(self, context: dg.InputContext) -> pa.Table | dict[str, pa.Table]:
        key = context.asset_key
        if not context.has_asset_partitions:
            return self._load_one(key, UNPARTITIONED)
        parts = [self._load_one(key, k) for k in context.asset_partition_keys]
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)
