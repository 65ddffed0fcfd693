"""Spectrum simulator (thesis 5.1) and its HDF5 files."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest

from ddl_commodity.data import redshift as rs
from ddl_commodity.data.split import train_validation_split
from ddl_commodity.errors import DataError


@pytest.mark.parametrize("z", [1.0, 1.25, 1.5, 1.79])
def test_halpha_peaks_at_its_redshifted_wavelength(z: float) -> None:
    spectrum = rs.noiseless_spectrum(z, "starburst")
    lam_nm = rs.wavelength_grid() * 1000.0
    peak = lam_nm[np.argmax(spectrum)]
    band = lam_nm[1] - lam_nm[0]
    assert abs(peak - 656.28 * (1 + z)) <= band, (peak, 656.28 * (1 + z))


def test_grid_and_labels() -> None:
    grid = rs.wavelength_grid()
    assert grid.shape == (1800,) and grid[0] == pytest.approx(1.1) and grid[-1] == pytest.approx(2.0)
    z = np.array([1.0, 1.0005, 1.0015, 1.4005, 1.7999999])  # bin centres, away from float edges
    np.testing.assert_array_equal(rs.z_to_label(z), [0, 0, 1, 400, 799])


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> Path:
    return rs.write_redshift_h5(tmp_path_factory.mktemp("d") / "s.h5", 1500, seed=3, progress=False)


def test_written_file_layout_and_labels(small_file: Path) -> None:
    data = rs.load_redshift_h5(small_file)
    assert data.spectra.shape == (1500, 1800) and data.spectra.dtype == np.float32
    assert ((data.z >= 1.0) & (data.z < 1.8)).all()
    np.testing.assert_array_equal(data.label, np.floor((data.z - 1.0) / 0.8 * 800).astype(np.int32))
    assert data.attrs["seed"] == 3 and data.attrs["generator_version"] == rs.GENERATOR_VERSION
    assert len(data.wavelength_um) == 1800


def test_same_seed_same_bytes(small_file: Path, tmp_path: Path) -> None:
    again = rs.write_redshift_h5(tmp_path / "again.h5", 1500, seed=3, progress=False)
    other = rs.write_redshift_h5(tmp_path / "other.h5", 1500, seed=4, progress=False)
    with h5py.File(small_file) as a, h5py.File(again) as b, h5py.File(other) as c:
        for name in ("spectra", "z", "label"):
            assert a[name][...].tobytes() == b[name][...].tobytes()
        assert a["spectra"][...].tobytes() != c["spectra"][...].tobytes()


def test_streams_without_holding_the_whole_array(tmp_path: Path) -> None:
    n = 8000  # 58 MB of float32 spectra
    tracemalloc.start()
    rs.write_redshift_h5(tmp_path / "big.h5", n, seed=1, progress=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < n * 1800 * 4 / 2, f"peak {peak / 2**20:.0f} MiB: the whole array was materialised"


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    calls = {"n": 0}
    real = rs.simulate_batch

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(rs, "simulate_batch", failing)
    with pytest.raises(RuntimeError):
        rs.write_redshift_h5(tmp_path / "x.h5", 3000, seed=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def make_h5(path: Path, spectra: np.ndarray, z=None, label=None, drop: str = "") -> Path:
    n = len(spectra)
    with h5py.File(path, "w") as f:
        for name, value in (("spectra", spectra), ("z", np.full(n, 1.2) if z is None else z),
                            ("label", np.full(n, 250, np.int32) if label is None else label)):
            if name != drop:
                f[name] = value
    return path


@pytest.mark.parametrize(
    ("builder", "needle"),
    [
        (lambda p: p, "not found"),
        (lambda p: (p.write_text("not hdf5"), p)[1], "not a readable HDF5 file"),
        (lambda p: make_h5(p, np.zeros((4, 1700), np.float32)), "1700 bands, expected 1800"),
        (lambda p: make_h5(p, np.zeros((4, 1800), np.float32), drop="label"), "'label' is missing"),
        (lambda p: make_h5(p, np.full((4, 1800), np.nan, np.float32)), "NaN or Inf"),
        (lambda p: make_h5(p, np.zeros((4, 1800), np.float32), z=np.ones(3)), "differ in length"),
        (lambda p: make_h5(p, np.zeros((0, 1800), np.float32)), "no spectra"),
        (lambda p: make_h5(p, np.zeros((2, 1800), np.float32), label=np.array([0, 800], np.int32)),
         "labels must be in 0..799"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path: Path, builder, needle: str) -> None:
    path = builder(tmp_path / "bad.h5")
    with pytest.raises(DataError) as err:
        rs.load_redshift_h5(path)
    assert needle in str(err.value) and str(path) in str(err.value)


def test_split_is_deterministic_and_disjoint() -> None:
    train, val = train_validation_split(1000, 0.1, seed=5)
    assert len(val) == 100 and len(train) == 900 and not set(train) & set(val)
    np.testing.assert_array_equal(train, train_validation_split(1000, 0.1, seed=5)[0])
