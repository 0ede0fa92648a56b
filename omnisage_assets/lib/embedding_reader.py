"""Reading published embeddings: similar Pins and boards, recommendations, and a CLI.

    from omnisage_assets.lib.embedding_reader import EmbeddingReader

    reader = EmbeddingReader(".omnisage/lancedb")
    reader.similar_pins(1000000042, k=5)
    reader.recommend_pins(3000000007, k=10, exclude_seen=True)

A reader is pinned to one release (the newest when it opened, or the date it was given),
so every call it answers comes from the same model, even while a new day is published.

    omnisage similar --pin 1000000042
    omnisage recommend --user 3000000007
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from omnisage_assets.lib.lance_release import IndexConfig, current_release, search


class NotFound(LookupError):
    """An id the current release does not hold."""


class EmbeddingReader:
    def __init__(self, uri: str | Path, release: str | None = None, index: IndexConfig | None = None) -> None:
        self.db = lancedb.connect(str(uri))
        self.release = current_release(self.db, release)
        self.index = index or self.release["query"]  # the setting the release's recall was checked with
        self._tables = {name: self.db.open_table(table) for name, table in self.release["tables"].items()}

    def entity(self, table: str, entity_id: int, what: str) -> dict:
        """The stored row of one entity (vector, text fields) in ``table``; ``NotFound`` if absent."""
        rows = self._tables[table].search().where(f"id = {int(entity_id)}").limit(1).to_arrow()
        if not rows.num_rows:
            raise NotFound(f"{what} {entity_id} not found in release {self.release['release_id']}")
        return rows.to_pylist()[0]

    def _nearest(self, table: str, vector: list[float], k: int, where: str | None, drop: set[int]) -> pa.Table:
        columns = [c for c in self._tables[table].schema.names if c != "vector"] + ["_distance"]  # vectors stay put
        query = search(self._tables[table], np.asarray(vector, np.float32), k + len(drop), self.index, where)
        hits = query.select(columns).to_arrow()
        if drop:
            hits = hits.filter(pc.invert(pc.is_in(hits["id"], pa.array(sorted(drop), pa.int64()))))
        return hits.slice(0, k)

    def similar_pins(self, pin_id: int, k: int = 10, where: str | None = None) -> pa.Table:
        """The ``k`` Pins nearest to a Pin (itself excluded); ``where`` is a SQL filter on the table."""
        return self._nearest("pins", self.entity("pins", pin_id, "pin")["vector"], k, where, {int(pin_id)})

    def similar_boards(self, board_id: int, k: int = 10, where: str | None = None) -> pa.Table:
        """The ``k`` boards nearest to a board (itself excluded)."""
        return self._nearest("boards", self.entity("boards", board_id, "board")["vector"], k, where, {int(board_id)})

    def recommend_pins(self, user_id: int, k: int = 10, exclude_seen: bool = True, where: str | None = None) -> pa.Table:
        """The ``k`` Pins nearest to a user's embedding, without the Pins they engaged with."""
        user = self.entity("users", user_id, "user")
        seen = set(user["seen_pin_ids"] or []) if exclude_seen else set()
        return self._nearest("pins", user["vector"], k, where, seen)


def _print(hits: pa.Table, title_column: str) -> None:
    for row in hits.to_pylist():
        print(f"  {row['id']:>12}  {str(row.get(title_column) or ''):<44} distance {row['_distance']:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="omnisage", description="Query the published OmniSage embeddings.")
    parser.add_argument("--db", default=os.environ.get("OMNISAGE_HOME", ".omnisage").rstrip("/") + "/lancedb")
    parser.add_argument("--release", default=None, help="a partition date; default: the newest release")
    commands = parser.add_subparsers(dest="command", required=True)
    similar = commands.add_parser("similar", help="nearest Pins of a Pin, or boards of a board")
    similar.add_argument("-k", type=int, default=10, help="how many (default 10)")
    target = similar.add_mutually_exclusive_group(required=True)
    target.add_argument("--pin", type=int)
    target.add_argument("--board", type=int)
    recommend = commands.add_parser("recommend", help="Pins for a user, without the ones they engaged with")
    recommend.add_argument("--user", type=int, required=True)
    recommend.add_argument("-k", type=int, default=10, help="how many (default 10)")
    recommend.add_argument("--include-seen", action="store_true")
    args = parser.parse_args(argv)
    try:
        reader = EmbeddingReader(args.db, args.release)
        if args.command == "similar" and args.pin is not None:
            print(f"Pins like {args.pin}: {reader.entity('pins', args.pin, 'pin')['title']}")
            _print(reader.similar_pins(args.pin, args.k), "title")
        elif args.command == "similar":
            print(f"boards like {args.board}: {reader.entity('boards', args.board, 'board')['name']}")
            _print(reader.similar_boards(args.board, args.k), "name")
        else:
            print(f"Pins for user {args.user}")
            _print(reader.recommend_pins(args.user, args.k, exclude_seen=not args.include_seen), "title")
    except LookupError as err:  # NotFound, or nothing published yet: a sentence, not a trace
        print(f"omnisage: {err.args[0] if err.args else err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
