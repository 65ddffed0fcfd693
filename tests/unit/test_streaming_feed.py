"""Shards of whole pieces and bundles streamed from them: every row of a shard once per epoch, from a few
pieces at a time, numbered by the stored global row index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ddl_commodity.data.parquet import Column, Piece, pieces
from ddl_commodity.data.rdd import index_digest
from ddl_commodity.data.redshift import NUM_BANDS, write_redshift_parquet
from ddl_commodity.data.streaming import piece_shards, pieces_of, stream_bundles, validation_pieces
from ddl_commodity.errors import DataError


def synthetic(rows: list[int]) -> list[Piece]:
    starts = np.concatenate([[0], np.cumsum(rows)[:-1]])
    return [Piece(f"file:///d/part-{i}.parquet", 0, int(s), r)
            for i, (s, r) in enumerate(zip(starts, rows, strict=True))]


def test_pieces_go_whole_to_validation_and_balanced_shards() -> None:
    found = synthetic([100] * 19 + [37])
    validation = validation_pieces(found, 0.1, seed=4)
    shards = piece_shards(found, validation, workers=3, seed=4)
    assert len(shards) == 1937 and validation == sorted(validation)
    assert sum(found[i].rows for i in validation) >= round(1937 * 0.1)
    assert all((shards[found[i].first_row:found[i].first_row + found[i].rows] == -1).all() for i in validation)
    for p in found:  # a piece is never split
        assert len(set(shards[p.first_row:p.first_row + p.rows].tolist())) == 1
    held = [int((shards == m).sum()) for m in range(3)]
    assert max(held) - min(held) <= 100 and sum(held) + int((shards == -1).sum()) == 1937
    assert np.array_equal(shards, piece_shards(found, validation, workers=3, seed=4))
    assert validation_pieces(found, 0.1, seed=5) != validation
    two = piece_shards(found, validation, workers=2, seed=4)  # fewer live workers: the same rows held out
    assert np.array_equal(two == -1, shards == -1) and set(two.tolist()) == {-1, 0, 1}
    with pytest.raises(DataError, match="leave none for validation"):
        validation_pieces(synthetic([10]), 0.2, seed=0)
    with pytest.raises(DataError, match="2 training row groups cannot make 3 shards"):
        piece_shards(synthetic([10, 10, 10]), [0], workers=3, seed=0)


def test_every_row_once_per_epoch_from_a_window_of_pieces() -> None:
    found = synthetic([7, 9, 5, 11, 6, 8])
    read_order: list[int] = []

    def read(p: Piece):
        read_order.append(p.first_row)
        index = np.arange(p.first_row, p.first_row + p.rows)
        return index, index[:, None].astype(np.float32), index.astype(np.int32)

    stream = stream_bundles(found, [], Column("y"), range(2), shard=1, bundle_size=4, seed=3, window=2, read=read)
    first = next(stream)
    assert len(read_order) == 2  # lazily: the first bundle needed one window of pieces, no more
    bundles = [first, *stream]
    for epoch in (0, 1):
        got = [b for b in bundles if b.epoch == epoch]
        index = np.concatenate([b.index for b in got])
        assert sorted(index.tolist()) == list(range(46))
        assert [b.last for b in got] == [False] * (len(got) - 1) + [True]
        assert all(len(b.index) == 4 for b in got[:-1]) and all(b.shard == 1 for b in got)
        assert np.array_equal(got[0].x[:, 0], got[0].index) and np.array_equal(got[0].y, got[0].index)
    orders = [np.concatenate([b.index for b in bundles if b.epoch == e]) for e in (0, 1)]
    assert not np.array_equal(*orders)  # reshuffled every epoch


def test_a_parquet_shard_streams_exactly_its_rows(tmp_path: Path) -> None:
    write_redshift_parquet(tmp_path / "red", 400, seed=2, rows_per_file=50)
    found = pieces(str(tmp_path / "red"))
    validation = validation_pieces(found, 0.1, seed=9)
    shards = piece_shards(found, validation, workers=2, seed=9)
    spectrum, label = Column("spectrum", (NUM_BANDS,)), Column("label", (), "int32")
    for m in (0, 1):
        mine = pieces_of(found, shards, m)
        bundles = list(stream_bundles(mine, [spectrum], label, range(1), m, bundle_size=32, seed=9))
        index = np.concatenate([b.index for b in bundles])
        assert index_digest(index) == index_digest(np.flatnonzero(shards == m))
        assert bundles[0].x.shape == (32, NUM_BANDS) and bundles[0].x.dtype == np.float32
    assert {p.first_row for p in pieces_of(found, shards, None)} | {found[i].first_row for i in validation} == {
        p.first_row for p in found}
