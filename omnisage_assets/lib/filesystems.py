"""A local folder or an ``s3://`` prefix, opened the same way with pyarrow."""

from __future__ import annotations

import functools
from pathlib import Path

import pyarrow.fs as pafs


def is_remote(uri: str) -> bool:
    """Whether ``uri`` names an object store (``s3://...``) rather than a local path."""
    return "://" in uri


@functools.lru_cache(maxsize=64)
def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path inside it)`` for a local path or a URI such as ``s3://bucket/prefix``;
    cached, so an S3 client is made once per location rather than once per file checked."""
    if is_remote(uri):
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), str(Path(uri).resolve())
