"""Resources: where data lives, which world feeds the pipeline, and the LanceDB connection."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import dagster as dg
import lancedb
import pyarrow.fs as pafs

from omnisage_assets.lib.filesystems import filesystem, is_remote
from omnisage_assets.lib.real_data import PRESETS as REAL_PRESETS
from omnisage_assets.lib.real_data import RealWorld
from omnisage_assets.lib.world import PRESETS, ParquetWorld, SyntheticWorld, World


def join_uri(root: str, *parts: str) -> str:
    """``root/parts`` for a local folder or an ``s3://`` URI; a part that would climb out of
    the root (``..``, an absolute path) is refused."""
    for part in parts:
        if part.startswith("/") or ".." in PurePosixPath(part).parts:
            raise ValueError(f"{part!r} escapes the storage root {root}")
    return "/".join([root.rstrip("/"), *parts])


class StorageResource(dg.ConfigurableResource):
    """Where the assets that are files (checkpoints) live: ``root`` is a local folder or
    ``s3://bucket/prefix``. Work that needs local files (the trainer's output, scratch
    vectors, caches) happens under ``work``, the root itself when it is local; ``upload`` and
    ``download`` move a folder between the two when the root is remote."""

    root: str
    work: str | None = None

    def _work_root(self) -> Path:
        if self.work:
            return Path(self.work).resolve()
        if is_remote(self.root):
            raise ValueError(f"storage root {self.root} is remote: set a local work folder (OMNISAGE_WORK)")
        return Path(self.root).resolve()

    def path(self, *parts: str) -> Path:
        """A local path under the work folder."""
        root = self._work_root()
        path = root.joinpath(*parts).resolve()
        if root != path and root not in path.parents:
            raise ValueError(f"{path} escapes the storage root {root}")
        return path

    def uri(self, *parts: str) -> str:
        """Where ``parts`` is kept: under the root, local or remote."""
        return join_uri(self.root, *parts) if is_remote(self.root) else str(self.path(*parts))

    def upload(self, *parts: str) -> str:
        """Copy the local folder ``parts`` to the remote root (nothing to do when local)."""
        if is_remote(self.root):
            pafs.copy_files(str(self.path(*parts)), self.uri(*parts))
        return self.uri(*parts)

    def download(self, *parts: str) -> Path | None:
        """The local copy of ``parts`` (fetched from a remote root); None if it does not exist."""
        local = self.path(*parts)
        if is_remote(self.root):
            fs, remote = filesystem(self.uri(*parts))
            if fs.get_file_info(remote).type == pafs.FileType.NotFound:
                return None
            shutil.rmtree(local, ignore_errors=True)
            local.mkdir(parents=True)  # copy_files writes into existing folders only
            pafs.copy_files(remote, str(local), source_filesystem=fs)
        return local if local.exists() else None

    def checkpoint_dir(self, partition_key: str) -> Path:
        return self.path("omnisage_checkpoint", partition_key)

    @contextlib.contextmanager
    def exclusive(self, *parts: str) -> Iterator[None]:
        """Hold the lock file ``parts`` + ``.lock`` (under the work folder) or fail at once,
        naming the holder: two runs of one partition on this host never interleave."""
        path = self.path(*parts).with_suffix(".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                raise RuntimeError(f"{path} is held by another run ({handle.read().strip() or 'unknown'}); try again when it ends") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


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
