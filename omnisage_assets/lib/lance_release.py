"""Publishing embeddings to LanceDB as releases: staged, indexed, then switched atomically.

A day's tables are written under names of their own (``pins__2026_01_07__g1``), indexed
there, and only then named current by appending one row to the ``releases`` table; a
LanceDB commit is atomic, so a reader sees the previous release or the new one, never a
mix, and a run that fails before that row leaves the previous release served. Served
tables are never written again: re-publishing a day writes a new generation. Old releases
are dropped by a keep-the-last-N policy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import time

import numpy as np
import pyarrow as pa

RELEASES = "releases"
RELEASE_SCHEMA = pa.schema(
    [
        pa.field("release_id", pa.string(), nullable=False),
        pa.field("partition_date", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("checkpoint", pa.string(), nullable=False),
        pa.field("tables", pa.string(), nullable=False),  # JSON: {"pins": "pins__2026_01_07__g1", ...}
        pa.field("query", pa.string(), nullable=False),  # JSON: the IndexConfig readers must query with
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


class PublishError(ValueError):
    """Embeddings that must not reach a served table; the message names table and row."""


@dataclasses.dataclass(frozen=True)
class IndexConfig:
    """ANN index per table. IVF_HNSW_SQ won the measurements (benchmarks/lance_index.py)."""

    index_type: str = "IVF_HNSW_SQ"
    metric: str = "cosine"
    rows_per_partition: int = 4096
    min_rows: int = 10_000  # below this an exact scan is fast enough and exact
    nprobes: int = 30  # measured at 1M: recall@10 0.958, p50 4.1 ms (20: 0.946-0.955)
    ef: int | None = None  # HNSW candidate list per probed partition; None: LanceDB's default
    refine_factor: int | None = None


_STAGED = re.compile(r"^(?P<name>\w+?)__(?P<day>\d{4}_\d{2}_\d{2})__g(?P<generation>\d+)$")


def _staged_name(name: str, partition: str, generation: int) -> str:
    return f"{name}__{partition.replace('-', '_')}__g{generation}"


def _validate(name: str, batch: pa.RecordBatch, first_row: int) -> None:
    vectors = batch.column("vector")
    values = vectors.flatten().to_numpy(zero_copy_only=False).reshape(len(vectors), -1)
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if len(bad):
        raise PublishError(
            f"{name}: {len(bad)} vector(s) hold NaN or infinite values, e.g. rows {(bad[:5] + first_row).tolist()}"
        )


def _validated(name: str, reader: pa.RecordBatchReader, refusals: list[PublishError]):
    first_row = 0
    for batch in reader:
        try:
            _validate(name, batch, first_row)
        except PublishError as refusal:
            refusals.append(refusal)  # LanceDB re-raises it as an Arrow error, message buried
            raise
        first_row += batch.num_rows
        yield batch


def stage_tables(db, tables: dict[str, pa.Table | pa.RecordBatchReader], partition: str) -> dict[str, str]:
    """Write each table under a fresh name for ``partition``, streaming batch by batch and
    refusing NaN or ragged vectors as they pass; returns {name: staged name}. On a refusal
    nothing of this generation is left behind."""
    day = partition.replace("-", "_")
    staged_days = [m for t in db.table_names(limit=1_000_000) if (m := _STAGED.match(t)) and m.group("day") == day]
    generation = 1 + max((int(m.group("generation")) for m in staged_days), default=0)
    staged: dict[str, str] = {}
    refusals: list[PublishError] = []
    try:
        for name, table in tables.items():
            reader = table.to_reader() if isinstance(table, pa.Table) else table
            vector_type = reader.schema.field("vector").type
            if not pa.types.is_fixed_size_list(vector_type):
                raise PublishError(f"{name}: column 'vector' is {vector_type}, expected fixed-width float vectors")
            staged[name] = _staged_name(name, partition, generation)
            db.create_table(staged[name], data=_validated(name, reader, refusals), schema=reader.schema, mode="overwrite")
    except BaseException:
        for table_name in staged.values():
            db.drop_table(table_name, ignore_missing=True)
        if refusals:
            raise refusals[0] from None
        raise
    return staged


def build_indexes(db, staged: dict[str, str], config: IndexConfig) -> dict[str, dict]:
    """An ANN index on every staged table big enough to need one; what was built, and how long."""
    out = {}
    for name, table_name in staged.items():
        table = db.open_table(table_name)
        rows = table.count_rows()
        if rows < config.min_rows:
            out[name] = {"index": "none (exact scan)", "rows": rows}
            continue
        partitions = max(1, rows // config.rows_per_partition)
        start = time.perf_counter()
        table.create_index(metric=config.metric, index_type=config.index_type, num_partitions=partitions)
        table.create_scalar_index("id")  # readers look vectors up by id
        out[name] = {
            "index": config.index_type,
            "rows": rows,
            "partitions": partitions,
            "seconds": round(time.perf_counter() - start, 2),
        }
    return out


def search(table, vector: np.ndarray, k: int, config: IndexConfig, where: str | None = None, exact: bool = False):
    """The top-``k`` query every caller uses, so the check measures what readers get."""
    query = table.search(vector).metric(config.metric).limit(k).nprobes(config.nprobes)
    if config.ef:
        query = query.ef(config.ef)
    if config.refine_factor:
        query = query.refine_factor(config.refine_factor)
    if exact:
        query = query.bypass_vector_index()
    if where:
        query = query.where(where, prefilter=True)
    return query


def index_recall(db, table_name: str, config: IndexConfig, queries: int = 200, k: int = 10, seed: int = 0) -> np.ndarray:
    """Per sampled query: the share of the exact top-``k`` (index bypassed) the served query finds."""
    table = db.open_table(table_name)
    n = table.count_rows()
    rows = np.random.default_rng(seed).choice(n, size=min(queries, n), replace=False)
    sample = table.take_offsets(sorted(rows.tolist())).select(["vector"]).to_arrow()["vector"]  # only the queries
    vectors = sample.combine_chunks().flatten().to_numpy().reshape(len(sample), -1)
    recall = []
    for vector in vectors:
        exact = set(search(table, vector, k, config, exact=True).select(["id", "_distance"]).to_arrow()["id"].to_pylist())
        found = set(search(table, vector, k, config).select(["id", "_distance"]).to_arrow()["id"].to_pylist())
        recall.append(len(exact & found) / max(len(exact), 1))
    return np.array(recall)


def publish_release(
    db, partition: str, staged: dict[str, str], model_version: str, checkpoint: str, query: IndexConfig | None = None
) -> dict:
    """Name the staged tables current: one atomic append to ``releases``. ``query`` is the
    setting the index was checked with; readers of this release use it."""
    row = {
        "release_id": f"{partition}/{staged[next(iter(staged))].rsplit('__', 1)[1]}",
        "partition_date": partition,
        "model_version": model_version,
        "checkpoint": checkpoint,
        "tables": json.dumps(staged, sort_keys=True),
        "query": json.dumps(dataclasses.asdict(query or IndexConfig())),
        "created_at": dt.datetime.now(dt.timezone.utc),
    }
    data = pa.Table.from_pylist([row], schema=RELEASE_SCHEMA)
    if RELEASES in db.table_names(limit=1_000_000):
        db.open_table(RELEASES).add(data)
    else:
        db.create_table(RELEASES, data=data)
    return row


def releases(db) -> list[dict]:
    """Every release, newest first."""
    if RELEASES not in db.table_names(limit=1_000_000):
        return []
    rows = db.open_table(RELEASES).to_arrow().sort_by([("created_at", "descending")]).to_pylist()
    return [dict(r, tables=json.loads(r["tables"]), query=IndexConfig(**json.loads(r["query"]))) for r in rows]


def current_release(db, partition: str | None = None) -> dict:
    """The newest release (of ``partition``, when given); LookupError if there is none."""
    for release in releases(db):
        if partition is None or release["partition_date"] == partition:
            return release
    where = f" for {partition}" if partition else ""
    raise LookupError(f"no published embeddings{where} in {db.uri}; materialize published_embeddings first")


def cleanup(db, keep: int) -> list[str]:
    """Keep the newest ``keep`` releases: drop the tables of older ones, and staged tables of
    days before the oldest kept release that were never released (failed runs' leftovers).
    Tables of newer days that are not released yet may be in flight and stay."""
    history = releases(db)
    if not history:
        return []
    kept = history[:keep]
    kept_tables = {t for r in kept for t in r["tables"].values()}
    released_tables = {t for r in history for t in r["tables"].values()}
    oldest_kept = min(r["partition_date"] for r in kept).replace("-", "_")
    dropped = []
    for name in db.table_names(limit=1_000_000):
        staged = _STAGED.match(name)
        if not staged or name in kept_tables:
            continue
        if name in released_tables or staged.group("day") < oldest_kept:
            db.drop_table(name)
            dropped.append(name)
    if len(history) > keep:
        ids = ", ".join(f"'{r['release_id']}'" for r in history[keep:])
        db.open_table(RELEASES).delete(f"release_id IN ({ids})")
    return dropped
