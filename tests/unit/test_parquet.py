"""Parquet data sets: what `ddl data --format parquet` writes is what the readers read, row for row, and a
bad file is one line naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ddl_commodity.data.parquet import Column, pieces, read_piece, to_table, write_parquet
from ddl_commodity.data.redshift import NUM_BANDS, load_redshift_h5, write_redshift_h5, write_redshift_parquet
from ddl_commodity.errors import DataError

SPECTRA = [Column("spectrum", (NUM_BANDS,), "float32"), Column("z", (), "float64"), Column("label", (), "int32")]


def test_parquet_holds_the_same_spectra_as_hdf5_numbered_by_row(tmp_path: Path) -> None:
    write_redshift_h5(tmp_path / "red.h5", 700, seed=5)
    write_redshift_parquet(tmp_path / "red", 700, seed=5, rows_per_file=300)
    found = pieces(str(tmp_path / "red"), SPECTRA)
    assert [(p.path.rsplit("/", 1)[1], p.first_row, p.rows) for p in found] == [
        ("part-00000.parquet", 0, 300), ("part-00001.parquet", 300, 300), ("part-00002.parquet", 600, 100)]
    assert sum(p.rows for p in found) == 700 and found[0].first_row == 0
    h5 = load_redshift_h5(tmp_path / "red.h5")
    rows = [read_piece(p, SPECTRA) for p in found]
    index = np.concatenate([r["row"] for r in rows])
    assert np.array_equal(index, np.arange(700))
    assert np.array_equal(np.concatenate([r["spectrum"] for r in rows]), h5.spectra)
    assert np.array_equal(np.concatenate([r["label"] for r in rows]), h5.label)
    assert np.allclose(np.concatenate([r["z"] for r in rows]), h5.z)


def test_a_glob_selects_files_and_rows_must_number_without_gaps(tmp_path: Path) -> None:
    write_redshift_parquet(tmp_path / "red", 90, seed=1, rows_per_file=30)
    assert sum(p.rows for p in pieces(str(tmp_path / "red" / "part-0000[01].parquet"), SPECTRA)) == 60
    with pytest.raises(DataError, match=r"part-00002.parquet: row group 0 starts at global row 60, expected 30"):
        pieces(str(tmp_path / "red" / "part-0000[02].parquet"), SPECTRA)


def test_row_groups_are_the_pieces(tmp_path: Path) -> None:
    blocks = ((i, {"x": np.full((5, 2), i, np.float32)}) for i in range(0, 20, 5))
    write_parquet(tmp_path / "d", blocks, rows_per_file=12, row_group_rows=4)
    found = pieces(str(tmp_path / "d"), [Column("x", (2,))])
    assert [(p.row_group, p.first_row, p.rows) for p in found] == [(0, 0, 4), (1, 4, 4), (2, 8, 4), (0, 12, 4),
                                                                    (1, 16, 4)]
    assert read_piece(found[3], [Column("x", (2,))])["x"][:, 0].tolist() == [10, 10, 10, 15]


def _one_file(directory: Path, **columns: np.ndarray) -> Path:
    import pyarrow.parquet as pq

    directory.mkdir()
    pq.write_table(to_table(0, columns), directory / "part-00000.parquet")
    return directory


@pytest.mark.parametrize(("columns", "message"), [
    ({"z": np.zeros(4), "label": np.zeros(4, np.int32)}, "column 'spectrum' is missing"),
    ({"spectrum": np.zeros((4, 10), np.float32), "z": np.zeros(4), "label": np.zeros(4, np.int32)},
     "column 'spectrum' must hold 1800 values per row"),
    ({"spectrum": np.zeros((4, NUM_BANDS), np.float64), "z": np.zeros(4), "label": np.zeros(4, np.int32)},
     "column 'spectrum' must be float32, found double"),
])
def test_a_schema_mismatch_names_the_file(tmp_path: Path, columns: dict, message: str) -> None:
    data = _one_file(tmp_path / "bad", **columns)
    with pytest.raises(DataError, match=f"{data / 'part-00000.parquet'}: {message}"):
        pieces(str(data), SPECTRA)


def test_nan_inputs_name_the_file_and_row_group(tmp_path: Path) -> None:
    spectra = np.zeros((4, NUM_BANDS), np.float32)
    spectra[2, 7] = np.nan
    data = _one_file(tmp_path / "nan", spectrum=spectra, z=np.zeros(4), label=np.zeros(4, np.int32))
    with pytest.raises(DataError, match=r"part-00000.parquet: row group 0: column 'spectrum' holds NaN"):
        read_piece(pieces(str(data), SPECTRA)[0], SPECTRA)


def test_labels_outside_the_classes_name_the_file_and_row_group(tmp_path: Path) -> None:
    from ddl_commodity.experiments.registry import get

    inputs, label = get("redshift").columns(None)
    data = _one_file(tmp_path / "labels", spectrum=np.zeros((3, NUM_BANDS), np.float32),
                     label=np.array([0, 799, 800], np.int32))
    with pytest.raises(DataError, match=r"row group 0: column 'label' holds values outside \[0, 800\) \(0 to 800\)"):
        read_piece(pieces(str(data), [*inputs, label])[0], [*inputs, label])


def test_corrupt_or_missing_data_is_one_line_exit_2(tmp_path: Path) -> None:
    write_redshift_parquet(tmp_path / "red", 50, seed=1, rows_per_file=25)
    (tmp_path / "red" / "part-00001.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"part-00001.parquet: not a readable Parquet file"):
        pieces(str(tmp_path / "red"), SPECTRA)
    with pytest.raises(DataError, match="no such file or directory"):
        pieces(str(tmp_path / "nowhere"), SPECTRA)
    proc = subprocess.run([sys.executable, "-m", "ddl_commodity.cli", "data", "redshift", "--samples", "5",
                           "--format", "parquet", "--out", str(tmp_path / "red")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "exists; choose a new directory" in proc.stderr


def test_an_interrupted_write_leaves_nothing(tmp_path: Path) -> None:
    def blocks():
        yield 0, {"x": np.zeros((10, 3), np.float32)}
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_parquet(tmp_path / "data", blocks(), rows_per_file=4)
    assert list(tmp_path.iterdir()) == []
