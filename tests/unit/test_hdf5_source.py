"""Directories of HDF5 shards as a data source: rows numbered through the files in name order, slices as the
pieces, a column found by its name or an alias, and every bad shard one line naming the file (and the rows)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from ddl_commodity.data.parquet import ROW, ROW_GROUP_ROWS, Column, Piece, pieces, read_piece
from ddl_commodity.data.redshift import NUM_BANDS, NUM_CLASSES, load_redshift_h5, write_redshift_h5
from ddl_commodity.errors import DataError

X, LABEL = Column("x", (2, 3)), Column("label", (), "int32", (0, 5))


def shard(path: Path, first: int, rows: int, **override: np.ndarray) -> Path:
    """An HDF5 shard of ``rows`` rows whose ``x`` holds each row's global index ``first + i``; ``row`` holds
    something else (as a patch file's pixel row), ``label`` the index mod 5."""
    index = np.arange(first, first + rows)
    datasets = {"x": np.repeat(index.astype(np.float32), 6).reshape(rows, 2, 3),
                "label": (index % 5).astype(np.int32), "row": np.full(rows, 7, np.int32), **override}
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for name, values in datasets.items():
            f.create_dataset(name, data=values)
    return path


def test_rows_number_through_the_files_in_name_order_in_slices(tmp_path: Path) -> None:
    sizes = {"c.hdf5": 8000, "a.h5": 9000, "b.h5": 30}  # 17,030 rows: 512-row slices
    firsts = dict(zip(sorted(sizes), np.cumsum([0, *[sizes[n] for n in sorted(sizes)]]).tolist(), strict=False))
    for name, rows in sizes.items():  # written out of name order
        shard(tmp_path / "d" / name, firsts[name], rows)
    (tmp_path / "d" / "notes.txt").write_text("not a shard")
    found = pieces(str(tmp_path / "d"), [X, LABEL])
    assert [p.path.rsplit("/", 1)[1] for p in found] == ["a.h5"] * 18 + ["b.h5"] + ["c.hdf5"] * 16
    assert [p.first_row for p in found] == [0, *np.cumsum([p.rows for p in found])[:-1].tolist()]
    assert max(p.rows for p in found) == ROW_GROUP_ROWS
    assert [(p.row_group, p.start, p.rows) for p in found[16:20]] == [(16, 8192, 512), (17, 8704, 296),
                                                                      (0, 0, 30), (0, 0, 512)]
    got = [read_piece(p, [X, LABEL]) for p in found]
    index = np.concatenate([g[ROW] for g in got])
    assert np.array_equal(index, np.arange(17030))  # the global index, not the file's own "row" dataset
    assert np.array_equal(np.concatenate([g["x"] for g in got])[:, 1, 2], index.astype(np.float32))
    assert got[0]["x"].shape == (512, 2, 3) and got[0]["x"].dtype == np.float32
    assert np.array_equal(np.concatenate([g["label"] for g in got]), index % 5)
    alone = pieces(str(tmp_path / "d" / "a.h5"))  # one file, its rows from every dataset (no columns asked)
    assert {p.rows for p in alone} == {281, 9000 - 32 * 281} and len(alone) == 33  # 9,000 // 32 rows a slice


def test_a_small_set_still_makes_32_pieces_and_a_glob_selects_files(tmp_path: Path) -> None:
    shard(tmp_path / "d" / "a.h5", 0, 70)
    shard(tmp_path / "d" / "b.h5", 70, 30)
    shard(tmp_path / "d" / "c.h5", 100, 20)
    found = pieces(str(tmp_path / "d" / "[ab].h5"), [X])
    assert {p.rows for p in found} == {3, 1} and len(found) >= 32  # 100 rows // 32: 3 per slice
    assert sum(p.rows for p in found) == 100 and found[-1].path.endswith("b.h5")
    assert read_piece(found[-1], [X])[ROW].tolist() == [97, 98, 99]


def test_a_column_is_found_by_an_alias_its_own_name_first(tmp_path: Path) -> None:
    values = np.arange(24, dtype=np.float32).reshape(4, 2, 3)
    shard(tmp_path / "a" / "a.h5", 0, 4, pixels=values)
    spectrum = Column("spectrum", (2, 3), aliases=("missing", "pixels"))
    found = pieces(str(tmp_path / "a"), [spectrum])
    assert np.array_equal(read_piece(found[0], [spectrum])["spectrum"], values[:found[0].rows])
    both = Column("x", (2, 3), aliases=("pixels",))
    assert read_piece(found[1], [both])["x"][0, 0, 0] == found[1].first_row  # "x" itself, not "pixels"
    with pytest.raises(DataError, match=r"a.h5: no dataset for column 'spectrum' \(looked for spectrum; has: label, "
                                        r"pixels, row, x\)"):
        pieces(str(tmp_path / "a"), [Column("spectrum", (2, 3))])
    with pytest.raises(DataError, match=r"a.h5: dataset 'pixels' \(column 'spectrum'\) must hold rows of shape "
                                        r"\(3, 2\) along axis 0, found shape \(4, 2, 3\)"):
        pieces(str(tmp_path / "a"), [Column("spectrum", (3, 2), aliases=("pixels",))])


@pytest.mark.parametrize(("override", "column", "message"), [
    ({"x": np.zeros((6, 2, 4), np.float32)}, X, r"dataset 'x' must hold rows of shape \(2, 3\) along axis 0, "
                                                r"found shape \(6, 2, 4\)"),
    ({"x": np.zeros((6, 6), np.float32)}, X, r"must hold rows of shape \(2, 3\) along axis 0, found shape \(6, 6\)"),
    ({"x": np.zeros((6, 2, 3), np.float64)}, X, "dataset 'x' must be float32, found float64"),
    ({"label": np.zeros(6, np.int64)}, LABEL, "dataset 'label' must be int32, found int64"),
    ({"label": np.zeros(5, np.int32)}, LABEL, r"datasets hold different numbers of rows \(x 6, label 5\)"),
])
def test_a_bad_shard_is_one_line_naming_the_file(tmp_path: Path, override: dict, column: Column,
                                                 message: str) -> None:
    shard(tmp_path / "d" / "a.h5", 0, 6)
    shard(tmp_path / "d" / "b.h5", 6, 6, **override)
    with pytest.raises(DataError, match=message) as err:
        pieces(str(tmp_path / "d"), [X, column] if column is not X else [X])
    assert "b.h5" in str(err.value) and "\n" not in str(err.value)


def test_mixed_formats_and_unreadable_shards_are_refused(tmp_path: Path) -> None:
    from ddl_commodity.data.redshift import write_redshift_parquet

    write_redshift_parquet(tmp_path / "mixed", 20, seed=1, rows_per_file=10)
    shard(tmp_path / "mixed" / "extra.h5", 0, 20)
    with pytest.raises(DataError, match=r"mixed: holds both HDF5 \(extra.h5\) and other files \(part-00000.parquet\): "
                                        "one data set is one format"):
        pieces(str(tmp_path / "mixed"))
    assert sum(p.rows for p in pieces(str(tmp_path / "mixed" / "*.parquet"))) == 20  # a glob picks one format
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.h5").write_bytes(b"not HDF5 at all")
    with pytest.raises(DataError, match=r"a.h5: not a readable HDF5 file"):
        pieces(str(tmp_path / "bad"))


def test_nan_and_labels_out_of_bounds_name_the_file_and_rows(tmp_path: Path) -> None:
    x = np.ones((320, 2, 3), np.float32)
    x[25, 1, 0] = np.nan
    label = np.zeros(320, np.int32)
    label[318] = 7
    shard(tmp_path / "d" / "a.h5", 0, 320, x=x, label=label)
    found = pieces(str(tmp_path / "d"), [X, LABEL])  # the driver reads metadata only: nothing found yet
    assert found[2].start == 20 and found[2].rows == 10
    with pytest.raises(DataError, match=r"a.h5: rows 20..29: column 'x' holds NaN or infinite values"):
        read_piece(found[2], [X])
    with pytest.raises(DataError, match=r"a.h5: rows 310..319: column 'label' holds values outside \[0, 5\) "
                                        r"\(0 to 7\)"):
        read_piece(found[-1], [LABEL])
    assert read_piece(found[1], [X, LABEL])["x"].shape == (10, 2, 3)


@pytest.mark.parametrize("source", ["hdfs://namenode:8020/data/shards/*.h5", "s3a://bucket/red.hdf5"])
def test_hdf5_is_read_from_local_paths_only(source: str) -> None:
    with pytest.raises(DataError, match=r"HDF5 is read from a local path or file:// only .* write the data set as "
                                        r"Parquet \(`ddl data ... --format parquet`\)"):
        pieces(source)
    with pytest.raises(DataError, match="local path or file:// only"):  # an executor given such a piece
        read_piece(Piece(source.replace("*", "a"), 0, 0, 10), [X])


def test_the_toolkits_redshift_files_read_as_a_source(tmp_path: Path) -> None:
    from ddl_commodity.experiments.redshift import RedshiftConfig, RedshiftExperiment, label_counts

    write_redshift_h5(tmp_path / "red" / "part-0.h5", 300, seed=5)  # datasets spectra, z, label
    write_redshift_h5(tmp_path / "red" / "part-1.h5", 200, seed=6)
    experiment = RedshiftExperiment()
    cfg = RedshiftConfig(data={"source": f"file://{tmp_path}/red"}, training={"workers": 2})
    source = experiment.dataset(cfg)
    (spectrum,), label = experiment.columns(cfg)
    assert source.num_rows == 500 and len(source.pieces) >= 32 and source.validation
    got = [read_piece(p, [spectrum, label]) for p in source.pieces]
    files = [load_redshift_h5(tmp_path / "red" / f"part-{i}.h5") for i in (0, 1)]
    assert np.array_equal(np.concatenate([g["spectrum"] for g in got]), np.concatenate([f.spectra for f in files]))
    labels = np.concatenate([g["label"] for g in got])
    assert np.array_equal(labels, np.concatenate([f.label for f in files]))
    assert got[0]["spectrum"].shape[1:] == (NUM_BANDS,)
    train, _ = label_counts(source)  # the trivial estimator's class counts, streamed from the shards
    assert np.array_equal(train, np.bincount(labels[source.train_index], minlength=NUM_CLASSES))


@pytest.mark.xdist_group("local_spark")
def test_hdf5_slices_feed_each_spark_task_its_shard(local_spark, tmp_path: Path) -> None:
    from ddl_commodity.data.rdd import index_digest
    from ddl_commodity.data.streaming import piece_feed_rdd, piece_shards, validation_pieces

    write_redshift_h5(tmp_path / "red" / "part-0.h5", 700, seed=3)
    write_redshift_h5(tmp_path / "red" / "part-1.h5", 500, seed=4)
    spectrum, label = Column("spectrum", (NUM_BANDS,), aliases=("spectra",)), Column("label", (), "int32")
    found = pieces(str(tmp_path / "red"), [spectrum, label])
    shards = piece_shards(found, validation_pieces(found, 0.1, seed=3), workers=2, seed=3)
    bundles = piece_feed_rdd(local_spark, found, shards, 2, epochs=1, distribution="disjoint", bundle_size=64,
                             seed=3, inputs=[spectrum], label=label).collect()
    spectra = np.concatenate([load_redshift_h5(tmp_path / "red" / f"part-{i}.h5").spectra for i in (0, 1)])
    for m in (0, 1):
        mine = [b for b in bundles if b.shard == m]
        index = np.concatenate([b.index for b in mine])
        assert index_digest(index) == index_digest(np.flatnonzero(shards == m))
        assert np.array_equal(np.concatenate([b.x for b in mine]), spectra[index])  # row i is the files' row i
