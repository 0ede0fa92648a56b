"""Worlds: where Pins, boards and engagements come from.

``SyntheticWorld`` generates a Pinterest-like world from a seed. Its structure is hidden
but real: Pins belong to topics and sub-topics (their text and image vectors say so),
users follow a few topics that drift over the days and favour one sub-topic per topic,
boards are curated per (user, topic), and related-Pins co-engagement stays mostly within a
sub-topic. Learned embeddings can therefore be scored against what generated the data.

Each day is generated independently from ``(seed, day)`` and the interest schedule, so a
day costs memory proportional to that day only, whatever the world's size.

``ParquetWorld`` reads the same contracts from a folder (``pins.parquet``,
``boards.parquet``, ``engagements/YYYY-MM-DD.parquet``) and validates them on the way in.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from omnisage_assets.lib import contracts
from omnisage_assets.lib.filesystems import filesystem

PIN_ID_BASE = 1_000_000_000
BOARD_ID_BASE = 2_000_000_000
USER_ID_BASE = 3_000_000_000


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """Knobs of the synthetic world. ``scale`` presets live in :data:`PRESETS`."""

    seed: int = 7
    start_date: str = "2026-01-01"
    n_days: int = 14
    n_topics: int = 12
    subtopics_per_topic: int = 4
    n_users: int = 2_000
    n_pins: int = 6_000
    interests_per_user: int = 3
    actions_per_user_day: float = 4.0
    drift_prob: float = 0.04  # chance per user per day that one interest is replaced
    subtopic_loyalty: float = 0.75  # chance an action stays in the user's preferred sub-topic
    noise_prob: float = 0.08  # chance an action ignores the user's interests altogether
    related_prob: float = 0.35  # share of actions on the related-Pins surface
    related_same_subtopic: float = 0.85
    save_prob: float = 0.5
    zipf_exponent: float = 0.9
    image_dim: int = 32
    image_missing_prob: float = 0.05

    @property
    def days(self) -> list[str]:
        start = dt.date.fromisoformat(self.start_date)
        return [(start + dt.timedelta(days=i)).isoformat() for i in range(self.n_days)]

    @property
    def expected_engagements(self) -> int:
        return int(self.n_users * self.actions_per_user_day * self.n_days)


PRESETS: dict[str, WorldConfig] = {
    # Seconds: what tests and CI use.
    "tiny": WorldConfig(n_topics=6, subtopics_per_topic=3, n_users=300, n_pins=900),
    # The demo's default world: a couple of minutes end to end on 2 cores.
    "demo": WorldConfig(),
    # 1M Pins and ~11M engagements, generated a day at a time.
    "large": WorldConfig(
        n_topics=200,
        subtopics_per_topic=10,
        n_users=400_000,
        n_pins=1_000_000,
        actions_per_user_day=2.0,
    ),
}


class World(Protocol):
    """What the ingest assets need from a source of data."""

    def pins(self) -> pa.Table: ...
    def boards(self) -> pa.Table: ...
    def engagements(self, day: str) -> pa.Table: ...


_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


def _words(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct pronounceable pseudo-words."""
    out: dict[str, None] = {}
    while len(out) < n:
        k = int(rng.integers(2, 4))
        out["".join(rng.choice(_SYLLABLES, size=k))] = None
    return list(out)


class SyntheticWorld:
    """A seeded Pinterest-like world; see the module docstring."""

    def __init__(self, config: WorldConfig) -> None:
        self.config = config
        c = config
        rng = np.random.default_rng([c.seed, 0])
        n_groups = c.n_topics * c.subtopics_per_topic
        vocab = np.array(_words(rng, c.n_topics * 12 + n_groups * 6 + 150))
        self._topic_vocab = vocab[: c.n_topics * 12].reshape(c.n_topics, 12)
        rest = vocab[c.n_topics * 12 :]
        self._group_vocab = rest[: n_groups * 6].reshape(n_groups, 6)
        self._generic_vocab = rest[n_groups * 6 :]

        # Pins sorted by (topic, sub-topic) group; popularity is Zipf within a group.
        group = np.sort(rng.integers(0, n_groups, size=c.n_pins))
        self.pin_group = group
        self.pin_topic = group // c.subtopics_per_topic
        self._group_start = np.searchsorted(group, np.arange(n_groups + 1))
        rank = np.arange(c.n_pins) - self._group_start[group]
        weight = 1.0 / (rank + 1.0) ** c.zipf_exponent
        cum = np.cumsum(weight)
        group_total = np.add.reduceat(weight, self._group_start[:-1].clip(max=c.n_pins - 1))
        group_total[np.diff(self._group_start) == 0] = 0.0
        before = np.concatenate([[0.0], cum])[self._group_start[group]]
        # Global key "group + fraction": searchsorted(group + u) samples within a group.
        self._pin_key = group + (cum - before) / np.maximum(group_total[group], 1e-12)

        # Interest schedule: topics and preferred sub-topics per (day, user, slot).
        k = c.interests_per_user
        topics = np.argsort(rng.random((c.n_users, c.n_topics)), axis=1)[:, :k]
        subs = rng.integers(0, c.subtopics_per_topic, size=(c.n_users, k))
        self._slot_weights = np.cumsum(rng.dirichlet(np.ones(k), size=c.n_users), axis=1)
        sched_t = np.empty((c.n_days, c.n_users, k), dtype=np.int32)
        sched_s = np.empty((c.n_days, c.n_users, k), dtype=np.int32)
        for d in range(c.n_days):
            drift = np.flatnonzero(rng.random(c.n_users) < c.drift_prob)
            slot = rng.integers(0, k, size=len(drift))
            topics[drift, slot] = rng.integers(0, c.n_topics, size=len(drift))
            subs[drift, slot] = rng.integers(0, c.subtopics_per_topic, size=len(drift))
            sched_t[d], sched_s[d] = topics, subs
        self._sched_topic, self._sched_sub = sched_t, sched_s

        # One board per (user, topic) the user ever follows: curated by topic.
        keys = np.unique(
            np.repeat(np.arange(c.n_users, dtype=np.int64), c.n_days * k) * c.n_topics
            + sched_t.transpose(1, 0, 2).reshape(-1)
        )
        self._board_keys = keys

    # -- catalog -----------------------------------------------------------------------
    @functools.cached_property
    def _pins(self) -> pa.Table:
        c = self.config
        rng = np.random.default_rng([c.seed, 1])
        n = c.n_pins
        group, topic = self.pin_group, self.pin_topic
        title = np.concatenate(
            [
                self._group_vocab[group[:, None], rng.integers(0, 6, size=(n, 2))],
                self._topic_vocab[topic[:, None], rng.integers(0, 12, size=(n, 1))],
                self._generic_vocab[rng.integers(0, len(self._generic_vocab), size=(n, 1))],
            ],
            axis=1,
        )
        desc = np.concatenate(
            [
                self._topic_vocab[topic[:, None], rng.integers(0, 12, size=(n, 4))],
                self._group_vocab[group[:, None], rng.integers(0, 6, size=(n, 2))],
                self._generic_vocab[rng.integers(0, len(self._generic_vocab), size=(n, 4))],
            ],
            axis=1,
        )
        perm = rng.permuted(desc, axis=1)
        topic_centre = rng.normal(size=(c.n_topics, c.image_dim))
        group_centre = rng.normal(size=(c.n_topics * c.subtopics_per_topic, c.image_dim))
        image = (
            topic_centre[topic] + 0.6 * group_centre[group] + 0.8 * rng.normal(size=(n, c.image_dim))
        ).astype(np.float32)
        missing = rng.random(n) < c.image_missing_prob
        offsets = pa.array(np.arange(0, n * c.image_dim + 1, c.image_dim, dtype=np.int32))
        image_col = pa.ListArray.from_arrays(
            offsets, pa.array(image.reshape(-1)), mask=pa.array(missing)
        )
        return pa.table(
            {
                "pin_id": pa.array(PIN_ID_BASE + np.arange(n, dtype=np.int64)),
                "title": [" ".join(row) for row in title],
                "description": [" ".join(row) for row in perm],
                "image": image_col,
            },
            schema=contracts.PINS,
        )

    def pins(self) -> pa.Table:
        return self._pins

    @functools.cached_property
    def _boards(self) -> pa.Table:
        c = self.config
        rng = np.random.default_rng([c.seed, 2])
        keys = self._board_keys
        user, topic = keys // c.n_topics, keys % c.n_topics
        n = len(keys)
        name = self._topic_vocab[topic[:, None], rng.integers(0, 12, size=(n, 2))]
        desc = np.concatenate(
            [
                self._topic_vocab[topic[:, None], rng.integers(0, 12, size=(n, 3))],
                self._generic_vocab[rng.integers(0, len(self._generic_vocab), size=(n, 2))],
            ],
            axis=1,
        )
        return pa.table(
            {
                "board_id": pa.array(BOARD_ID_BASE + np.arange(n, dtype=np.int64)),
                "owner_user_id": pa.array(USER_ID_BASE + user.astype(np.int64)),
                "name": [" ".join(row) for row in name],
                "description": [" ".join(row) for row in desc],
            },
            schema=contracts.BOARDS,
        )

    def boards(self) -> pa.Table:
        return self._boards

    def truth(self) -> pa.Table:
        """The hidden topic structure, for scoring embeddings; not part of any contract."""
        return pa.table(
            {
                "pin_id": self.pins().column("pin_id"),
                "topic": self.pin_topic.astype(np.int32),
                "subtopic_group": self.pin_group.astype(np.int32),
            }
        )

    # -- engagements -------------------------------------------------------------------
    def _sample_pins(self, group: np.ndarray, u: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self._pin_key, group + u, side="left")
        empty = self._group_start[group] == self._group_start[group + 1]
        # An empty group (tiny worlds) falls back to the nearest Pin: still topical.
        idx = np.where(empty, self._group_start[group], idx)
        return np.clip(idx, 0, self.config.n_pins - 1)

    def engagements(self, day: str) -> pa.Table:
        c = self.config
        if day not in c.days:
            raise KeyError(f"day {day} is outside the synthetic world ({c.days[0]}..{c.days[-1]})")
        d = c.days.index(day)
        rng = np.random.default_rng([c.seed, 3, d])
        counts = rng.poisson(c.actions_per_user_day, size=c.n_users)
        user = np.repeat(np.arange(c.n_users), counts)
        n = len(user)
        slot = (rng.random(n)[:, None] > self._slot_weights[user]).sum(axis=1)
        slot = np.minimum(slot, c.interests_per_user - 1)
        topic = self._sched_topic[d, user, slot].astype(np.int64)
        sub = self._sched_sub[d, user, slot].astype(np.int64)
        wander = rng.random(n) > c.subtopic_loyalty
        sub = np.where(wander, rng.integers(0, c.subtopics_per_topic, size=n), sub)
        noise = rng.random(n) < c.noise_prob
        topic = np.where(noise, rng.integers(0, c.n_topics, size=n), topic)
        group = topic * c.subtopics_per_topic + sub
        pin = self._sample_pins(group, rng.random(n))

        related = rng.random(n) < c.related_prob
        query_group = np.where(
            rng.random(n) < c.related_same_subtopic,
            group,
            topic * c.subtopics_per_topic + rng.integers(0, c.subtopics_per_topic, size=n),
        )
        query = self._sample_pins(query_group, rng.random(n))
        related &= query != pin
        surface = np.where(related, "related", np.where(rng.random(n) < 0.5, "home", "search"))

        # A save lands on the user's board for the Pin's topic; without one it is a click.
        board_key = user.astype(np.int64) * c.n_topics + topic
        pos = np.searchsorted(self._board_keys, board_key).clip(max=len(self._board_keys) - 1)
        has_board = self._board_keys[pos] == board_key
        save = (rng.random(n) < c.save_prob) & has_board

        start = np.datetime64(day, "us").astype(np.int64)
        ts = start + rng.integers(0, 86_400_000_000, size=n)
        order = np.argsort(ts, kind="stable")
        user, pin, query, save, related, pos, surface, ts = (
            a[order] for a in (user, pin, query, save, related, pos, surface, ts)
        )
        return pa.table(
            {
                "user_id": pa.array(USER_ID_BASE + user.astype(np.int64)),
                "pin_id": pa.array(PIN_ID_BASE + pin.astype(np.int64)),
                "board_id": pa.array(BOARD_ID_BASE + pos.astype(np.int64), mask=~save),
                "action": pa.array(np.where(save, "save", "click")),
                "surface": pa.array(surface),
                "query_pin_id": pa.array(PIN_ID_BASE + query.astype(np.int64), mask=~related),
                "ts": pa.array(ts, type=pa.timestamp("us", tz="UTC")),
            },
            schema=contracts.ENGAGEMENTS,
        )

    def write(self, out: Path) -> Path:
        return write_world(self, self.config.days, out)


def write_world(world: World, days: list[str], out: Path) -> Path:
    """Write ``world`` as a ``ParquetWorld`` folder, one day at a time."""
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(world.pins(), out / "pins.parquet")
    pq.write_table(world.boards(), out / "boards.parquet")
    (out / "engagements").mkdir(exist_ok=True)
    for day in days:
        pq.write_table(world.engagements(day), out / "engagements" / f"{day}.parquet")
    return out


def day_files(folder: str) -> dict[str, int]:
    """``{file name: modification time in ns}`` of the Parquet files in a local folder or
    under an ``s3://`` prefix (empty when it does not exist)."""
    fs, path = filesystem(folder)
    found = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return {i.base_name: i.mtime_ns for i in found if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")}


class ParquetWorld:
    """A world read from Parquet files in a local folder or under an ``s3://`` prefix, each
    validated against its contract."""

    def __init__(self, root: Path | str, image_dim: int | None = None) -> None:
        self.root = str(root).rstrip("/")
        self.image_dim = image_dim

    def _read(self, *parts: str) -> tuple[pa.Table, str]:
        """The table at ``root/parts`` and its location, for messages."""
        path = "/".join([self.root, *parts])
        try:
            return pq.read_table(path), path
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such file in world folder {self.root}") from None
        except pa.ArrowException as err:
            raise contracts.ContractError(f"{path}: not a readable Parquet file ({err})") from None

    @functools.cached_property
    def _pins(self) -> pa.Table:
        table, path = self._read("pins.parquet")
        table = contracts.validate(table, contracts.PINS, path)
        contracts.require_unique(table, "pin_id", path)
        lengths = pc.drop_null(pc.list_value_length(table.column("image")))
        width = self.image_dim or (lengths[0].as_py() if len(lengths) else 0)
        contracts.require_fixed_width(table, "image", width, path)
        return table

    def pins(self) -> pa.Table:
        return self._pins

    @functools.cached_property
    def _boards(self) -> pa.Table:
        table, path = self._read("boards.parquet")
        table = contracts.validate(table, contracts.BOARDS, path)
        contracts.require_unique(table, "board_id", path)
        return table

    def boards(self) -> pa.Table:
        return self._boards

    def engagements(self, day: str) -> pa.Table:
        table, source = self._read("engagements", f"{day}.parquet")
        table = contracts.validate(table, contracts.ENGAGEMENTS, source)
        contracts.require_values_in(table, "action", contracts.ACTIONS, source)
        contracts.require_values_in(table, "surface", contracts.SURFACES, source)
        pins = self.pins().column("pin_id").combine_chunks()
        contracts.require_known_ids(table, "pin_id", pins, "pins", source)
        contracts.require_known_ids(table, "query_pin_id", pins, "pins", source)
        boards = self.boards().column("board_id").combine_chunks()
        contracts.require_known_ids(table, "board_id", boards, "boards", source)
        return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a synthetic world as Parquet files.")
    parser.add_argument("--scale", choices=sorted(PRESETS), default="demo")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    config = PRESETS[args.scale]
    if args.seed is not None:
        config = dataclasses.replace(config, seed=args.seed)
    SyntheticWorld(config).write(args.out)
    print(f"wrote {args.scale} world ({config.expected_engagements:,} engagements expected) to {args.out}")


if __name__ == "__main__":
    main()
