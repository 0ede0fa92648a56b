"""Training examples: node features, entity-entity pairs and user sequences for the model.

The output is the table bundle that ``omnisage_model.data`` reads (and that
``python -m omnisage_model.train --data DIR`` reads from Parquet).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from omnisage_assets.lib.edges import node_degrees

PAIR_SCHEMA = pa.schema(
    [
        pa.field("query_type", pa.string(), nullable=False),
        pa.field("query_id", pa.int64(), nullable=False),
        pa.field("pos_id", pa.int64(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
)


def _entity_features(content: pa.Table, entity_type: str, ids: pa.Array, degree: np.ndarray) -> pa.Table:
    rows = content.filter(pc.equal(content["entity_type"], entity_type))
    position = pc.index_in(ids, value_set=rows["entity_id"])
    if position.null_count:
        missing = pc.filter(ids, pc.is_null(position)).slice(0, 5).to_pylist()
        raise ValueError(f"content_features lacks {position.null_count} {entity_type}(s), e.g. {missing}")
    rows = rows.take(position)
    columns = {f"{entity_type}_id": ids, "text_ngrams": rows["text_ngrams"]}
    if "text_embedding" in rows.column_names:
        columns["text_embedding"] = rows["text_embedding"]
    if entity_type == "pin":
        columns["image"] = rows["image"]
    columns["log_degree"] = pa.array(np.log1p(degree).astype(np.float32))
    return pa.table(columns).replace_schema_metadata(content.schema.metadata)


def _pairs(query_type: str, query: pa.Array, pos: pa.Array, source: str) -> pa.Table:
    return pa.table(
        {
            "query_type": pa.array([query_type] * len(query), pa.string()),
            "query_id": query,
            "pos_id": pos,
            "source": pa.array([source] * len(query), pa.string()),
        },
        schema=PAIR_SCHEMA,
    )


def neighborhood_pairs(neighborhoods: pa.Table, per_anchor: int) -> list[pa.Table]:
    """(anchor, Pin) pairs from the best ``per_anchor`` Pin neighbours of every anchor."""
    out = []
    for subgraph in ("pin_pin", "pin_board"):
        nb = neighborhoods.filter(pc.equal(neighborhoods["subgraph"], subgraph))
        lengths = pc.list_value_length(nb["neighbor_id"]).to_numpy(zero_copy_only=False)
        anchor_row = np.repeat(np.arange(nb.num_rows), lengths)
        is_pin = pc.equal(pc.list_flatten(nb["neighbor_type"]), "pin").to_numpy(zero_copy_only=False)
        nbr = pc.list_flatten(nb["neighbor_id"]).to_numpy()
        anchor_row, nbr = anchor_row[is_pin], nbr[is_pin]
        first = np.searchsorted(anchor_row, anchor_row, side="left")
        keep = (np.arange(len(anchor_row)) - first) < per_anchor  # lists are score-ordered
        anchors = nb.take(pa.array(anchor_row[keep]))
        out.append(
            pa.table(
                {
                    "query_type": anchors["node_type"],
                    "query_id": anchors["node_id"],
                    "pos_id": pa.array(nbr[keep]),
                    "source": pa.array([f"{subgraph}_neighborhood"] * int(keep.sum()), pa.string()),
                },
                schema=PAIR_SCHEMA,
            )
        )
    return out


def user_sequences(engagements: pa.Table) -> pa.Table:
    """Each user's engaged Pins in time order (a stable sort: timestamps can tie)."""
    user = engagements["user_id"].to_numpy()
    ts = pc.cast(engagements["ts"], pa.int64()).to_numpy()
    order = np.lexsort((ts, user))
    user, pins = user[order], engagements["pin_id"].to_numpy()[order]
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    offsets = np.r_[starts, len(user)].astype(np.int32)
    return pa.table(
        {
            "user_id": pa.array(user[starts] if len(user) else np.zeros(0, np.int64)),
            "pin_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(pins)),
        }
    )


def training_examples(
    engagements: pa.Table,
    edges: pa.Table,
    neighborhoods: pa.Table,
    content: pa.Table,
    pin_ids: pa.Array,
    board_ids: pa.Array,
    neighbor_positives: int = 3,
) -> dict[str, pa.Table]:
    pin_deg, board_deg = node_degrees(edges, pin_ids, board_ids)
    related = engagements.filter(
        pc.and_(pc.equal(engagements["surface"], "related"), pc.is_valid(engagements["query_pin_id"]))
    )
    saves = engagements.filter(pc.is_valid(engagements["board_id"]))
    pairs = pa.concat_tables(
        [
            _pairs("pin", related["query_pin_id"].combine_chunks(), related["pin_id"].combine_chunks(), "related_engagement"),
            _pairs("board", saves["board_id"].combine_chunks(), saves["pin_id"].combine_chunks(), "board_save"),
            *neighborhood_pairs(neighborhoods, neighbor_positives),
        ]
    )
    return {
        "pin_features": _entity_features(content, "pin", pin_ids, pin_deg),
        "board_features": _entity_features(content, "board", board_ids, board_deg),
        "neighborhoods": neighborhoods,
        "pairs": pairs,
        "sequences": user_sequences(engagements),
    }
