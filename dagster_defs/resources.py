"""Resources: where data lives, which world feeds the pipeline, and the LanceDB connection."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import dagster as dg
import lancedb

from omnisage_assets.lib.real_data import PRESETS as REAL_PRESETS
from omnisage_assets.lib.real_data import RealWorld
from omnisage_assets.lib.world import PRESETS, ParquetWorld, SyntheticWorld, World


class StorageResource(dg.ConfigurableResource):
    """The root folder under which assets that are files (checkpoints) are written."""

    root: str

    def path(self, *parts: str) -> Path:
        root = Path(self.root).resolve()
        path = root.joinpath(*parts).resolve()
        if root != path and root not in path.parents:
            raise ValueError(f"{path} escapes the storage root {root}")
        return path

    def checkpoint_dir(self, partition_key: str) -> Path:
        return self.path("omnisage_checkpoint", partition_key)


@functools.lru_cache(maxsize=4)
def _synthetic(scale: str, seed: int) -> SyntheticWorld:
    return SyntheticWorld(dataclasses.replace(PRESETS[scale], seed=seed))


@functools.lru_cache(maxsize=2)
def _real(dataset: str) -> RealWorld:
    return RealWorld(REAL_PRESETS[dataset])


class WorldResource(dg.ConfigurableResource):
    """The source of Pins, boards and engagements: the embedded synthetic world by default;
    a real dataset preset (``dataset``: ml-100k, ml-1m) mapped onto the contracts; or a
    folder of Parquet files (``pins.parquet``, ``boards.parquet``,
    ``engagements/YYYY-MM-DD.parquet``) when ``path`` is set."""

    scale: str = "demo"
    seed: int = 7
    path: str | None = None
    dataset: str | None = None

    def load(self) -> World:
        if self.path:
            return ParquetWorld(self.path)
        if self.dataset:
            if self.dataset not in REAL_PRESETS:
                raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {sorted(REAL_PRESETS)}")
            return _real(self.dataset)
        if self.scale not in PRESETS:
            raise ValueError(f"unknown world scale {self.scale!r}; choose one of {sorted(PRESETS)}")
        return _synthetic(self.scale, self.seed)


class LanceDBResource(dg.ConfigurableResource):
    """Connection to the LanceDB database that serves the published embeddings."""

    uri: str

    def connect(self) -> lancedb.DBConnection:
        return lancedb.connect(self.uri)
