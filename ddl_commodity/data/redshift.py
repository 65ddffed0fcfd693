"""Simulated galaxy spectra for redshift estimation (thesis 5.1), and their HDF5 files.

A spectrum covers 1.1-2.0 um in 1800 bands (0.5 nm each). Each galaxy gets

* a redshift z in [1, 1.8) from a configurable distribution; its class is one of 800 equal-width bins;
* a spectral type (elliptical, spiral, starburst) that sets the continuum slope (its colour) and how
  strong the emission lines are;
* emission lines at their rest wavelengths shifted by (1 + z): H-alpha, [NII], [SII], H-beta, [OIII], with
  per-galaxy jitter of line ratios and widths;
* an apparent magnitude that scales the flux, and sky-dominated Gaussian noise of fixed level, so faint
  galaxies have a low signal-to-noise ratio.

At these redshifts H-alpha lands at 1.31-1.84 um and [OIII]/H-beta at 0.97-1.40 um, so most spectra show
several lines and a faint one may show almost none: learnable, but not trivially.

Files hold ``spectra`` (N x 1800 float32), ``z`` (float64), ``label`` (int32) and attributes with the
wavelength grid, seed, generator version and simulator settings. Generation is done in fixed blocks of
:data:`BLOCK` spectra, each from its own seeded generator, so the bytes depend only on (seed, N, config).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ddl_commodity.errors import DataError

NUM_BANDS = 1800
WAVELENGTH_MIN_UM = 1.1
WAVELENGTH_MAX_UM = 2.0
Z_MIN, Z_MAX = 1.0, 1.8
NUM_CLASSES = 800
GENERATOR_VERSION = "1"
BLOCK = 256

#: Rest wavelengths (nm) and mean strength relative to H-alpha.
EMISSION_LINES: dict[str, tuple[float, float]] = {
    "H-alpha": (656.28, 1.0),
    "[NII]6548": (654.80, 0.10),
    "[NII]6584": (658.40, 0.30),
    "[SII]6716": (671.60, 0.15),
    "[SII]6731": (673.10, 0.12),
    "H-beta": (486.10, 0.35),
    "[OIII]4959": (495.90, 0.15),
    "[OIII]5007": (500.70, 0.45),
}
SPECTRAL_TYPES = ("elliptical", "spiral", "starburst")
_TYPE_PROBABILITY = np.array([0.3, 0.4, 0.3])
_TYPE_SLOPE = np.array([1.0, 0.0, -1.0])  # continuum ~ (lambda_rest / 650 nm) ** slope: red to blue
_TYPE_HALPHA = np.array([0.4, 2.0, 5.0])  # H-alpha peak in units of the continuum at 650 nm
_SKY_NOISE = 0.08  # noise sigma, in units of the continuum of a magnitude-20 galaxy
_INSTRUMENT_SIGMA_NM = 0.5  # one band: lines are always sampled by a few bands
_C_KM_S = 299_792.458


def wavelength_grid() -> np.ndarray:
    """The 1800 band centres in micrometres, shape (1800,)."""
    return np.linspace(WAVELENGTH_MIN_UM, WAVELENGTH_MAX_UM, NUM_BANDS)


def z_to_label(z: np.ndarray) -> np.ndarray:
    """Class of each redshift: 800 equal bins over [1, 1.8), shape like ``z``, int32."""
    z = np.asarray(z, dtype=np.float64)
    return np.clip(np.floor((z - Z_MIN) / (Z_MAX - Z_MIN) * NUM_CLASSES), 0, NUM_CLASSES - 1).astype(np.int32)


@dataclass(frozen=True)
class SimulatorConfig:
    """Distributions of the simulated population (thesis 5.1 names redshift, colour, magnitude and type)."""

    z_distribution: str = "uniform"  # "uniform" over [1, 1.8), or "beta" (more low-z galaxies)
    beta_a: float = 2.0
    beta_b: float = 3.0
    magnitude_mean: float = 21.0
    magnitude_std: float = 1.0
    magnitude_range: tuple[float, float] = (18.0, 24.0)
    colour_jitter: float = 0.3  # std of the continuum slope around its type's value
    velocity_dispersion_km_s: tuple[float, float] = (60.0, 150.0)
    noise: bool = True

    def __post_init__(self) -> None:
        if self.z_distribution not in ("uniform", "beta"):
            raise ValueError(f"z_distribution must be 'uniform' or 'beta', got {self.z_distribution!r}")
        if self.beta_a <= 0 or self.beta_b <= 0:
            raise ValueError("beta_a and beta_b must be positive")
        lo, hi = self.magnitude_range
        if not lo < hi:
            raise ValueError(f"magnitude_range must be (low, high) with low < high, got {self.magnitude_range}")
        if self.magnitude_std < 0:
            raise ValueError(f"magnitude_std must be at least 0, got {self.magnitude_std:g}")
        if not lo <= self.magnitude_mean <= hi:
            raise ValueError(f"magnitude_mean {self.magnitude_mean} outside magnitude_range {self.magnitude_range}")
        vlo, vhi = self.velocity_dispersion_km_s
        if not 0 < vlo <= vhi:
            raise ValueError("velocity_dispersion_km_s must be (low, high) with 0 < low <= high")
        if self.colour_jitter < 0:
            raise ValueError("colour_jitter must be >= 0")


def _draw_z(rng: np.random.Generator, n: int, cfg: SimulatorConfig) -> np.ndarray:
    u = rng.uniform(size=n) if cfg.z_distribution == "uniform" else rng.beta(cfg.beta_a, cfg.beta_b, size=n)
    return np.minimum(Z_MIN + u * (Z_MAX - Z_MIN), np.nextafter(Z_MAX, Z_MIN))


def _render(
    z: np.ndarray, slope: np.ndarray, halpha: np.ndarray, ratios: np.ndarray, sigma_v: np.ndarray,
    flux_scale: np.ndarray,
) -> np.ndarray:
    """Noiseless spectra, shape (n, 1800): continuum plus Gaussian lines, times the flux scale.

    ``ratios`` (n, lines) are each line's peak relative to H-alpha; ``sigma_v`` (n,) in km/s.
    """
    lam = wavelength_grid() * 1000.0  # nm, (1800,)
    rest = lam[None, :] / (1.0 + z[:, None])  # (n, 1800)
    continuum = (rest / 650.0) ** slope[:, None]
    spectra = continuum.copy()
    for j, (rest_nm, _) in enumerate(EMISSION_LINES.values()):
        centre = rest_nm * (1.0 + z)  # (n,)
        sigma = np.sqrt((centre * sigma_v / _C_KM_S) ** 2 + _INSTRUMENT_SIGMA_NM**2)
        amp = halpha * ratios[:, j] * (rest_nm / 650.0) ** slope  # relative to the local continuum
        spectra += amp[:, None] * np.exp(-0.5 * ((lam[None, :] - centre[:, None]) / sigma[:, None]) ** 2)
    return spectra * flux_scale[:, None]


def simulate_batch(
    rng: np.random.Generator, n: int, config: SimulatorConfig = SimulatorConfig()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` galaxies: spectra (n, 1800) float32, z (n,) float64, label (n,) int32."""
    z = _draw_z(rng, n, config)
    kind = rng.choice(len(SPECTRAL_TYPES), size=n, p=_TYPE_PROBABILITY)
    slope = _TYPE_SLOPE[kind] + rng.normal(0.0, config.colour_jitter, n)
    halpha = _TYPE_HALPHA[kind] * rng.lognormal(0.0, 0.3, n)
    mean_ratio = np.array([r for _, r in EMISSION_LINES.values()])
    ratios = mean_ratio[None, :] * rng.lognormal(0.0, 0.25, (n, mean_ratio.size))
    ratios[:, 0] = 1.0
    sigma_v = rng.uniform(*config.velocity_dispersion_km_s, n)
    lo, hi = config.magnitude_range
    mag = np.clip(rng.normal(config.magnitude_mean, config.magnitude_std, n), lo, hi)
    spectra = _render(z, slope, halpha, ratios, sigma_v, 10.0 ** (-0.4 * (mag - 20.0)))
    noise = rng.normal(0.0, _SKY_NOISE, spectra.shape)  # drawn always: bytes do not depend on `noise` order
    if config.noise:
        spectra += noise
    return spectra.astype(np.float32), z, z_to_label(z)


def noiseless_spectrum(z: float, spectral_type: str = "starburst", magnitude: float = 20.0) -> np.ndarray:
    """One spectrum with mean line ratios and no noise, shape (1800,); for checks and plots."""
    k = SPECTRAL_TYPES.index(spectral_type)
    ratios = np.array([[r for _, r in EMISSION_LINES.values()]])
    return _render(np.array([z]), _TYPE_SLOPE[[k]], _TYPE_HALPHA[[k]], ratios, np.array([100.0]),
                   np.array([10.0 ** (-0.4 * (magnitude - 20.0))]))[0]


def _blocks(num_samples: int, seed: int, config: SimulatorConfig) -> Iterator[tuple[int, tuple]]:
    for b, start in enumerate(range(0, num_samples, BLOCK)):
        rng = np.random.default_rng([seed, b])
        yield start, simulate_batch(rng, min(BLOCK, num_samples - start), config)


def write_redshift_h5(
    path: str | Path,
    num_samples: int,
    seed: int,
    config: SimulatorConfig = SimulatorConfig(),
    progress: bool | None = None,
) -> Path:
    """Simulate ``num_samples`` spectra into ``path``, streaming one block at a time.

    Written to a temporary file in the same directory and renamed at the end: a crash never leaves a
    half-written file at ``path``. ``progress=None`` shows a progress bar only on a terminal.
    """
    import h5py
    from tqdm.auto import tqdm

    path = Path(path)
    if num_samples < 1:
        raise DataError(f"{path}: num_samples must be at least 1, got {num_samples}")
    if path.is_dir():
        raise DataError(f"{path}: is a directory; give the HDF5 file's path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise DataError(f"{path}: cannot write there: {err.strerror}") from None
    tmp = Path(tmp_name)
    try:
        with h5py.File(tmp, "w") as f, tqdm(total=num_samples, unit="spectra", desc=f"simulating {path.name}",
                                            disable=None if progress is None else not progress) as bar:
            chunk_rows = min(num_samples, 256)
            spectra = f.create_dataset("spectra", (num_samples, NUM_BANDS), dtype="float32",
                                       chunks=(chunk_rows, NUM_BANDS))
            z_ds = f.create_dataset("z", (num_samples,), dtype="float64")
            label_ds = f.create_dataset("label", (num_samples,), dtype="int32")
            for start, (x, z, label) in _blocks(num_samples, seed, config):
                end = start + len(z)
                spectra[start:end], z_ds[start:end], label_ds[start:end] = x, z, label
                bar.update(len(z))
            f.attrs.update({
                "wavelength_um": wavelength_grid(), "seed": seed, "generator_version": GENERATOR_VERSION,
                "num_classes": NUM_CLASSES, "z_min": Z_MIN, "z_max": Z_MAX,
                "simulator_config": json.dumps(asdict(config)),
            })
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@dataclass
class RedshiftData:
    """A loaded file: spectra (N, 1800) float32, z (N,) float64, label (N,) int32."""

    spectra: np.ndarray
    z: np.ndarray
    label: np.ndarray
    wavelength_um: np.ndarray
    attrs: dict


def load_redshift_h5(path: str | Path) -> RedshiftData:
    """Read and validate a spectra file; every problem is a :class:`DataError` naming file and cause."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file ({err})") from None
    with f:
        for name in ("spectra", "z", "label"):
            if name not in f:
                raise DataError(f"{path}: dataset '{name}' is missing (expected spectra, z, label)")
        shape = f["spectra"].shape
        if len(shape) != 2 or shape[1] != NUM_BANDS:
            bands = shape[1] if len(shape) == 2 else f"shape {shape}"
            raise DataError(f"{path}: spectra have {bands} bands, expected {NUM_BANDS}")
        if shape[0] == 0:
            raise DataError(f"{path}: the file holds no spectra")
        if f["z"].shape != (shape[0],) or f["label"].shape != (shape[0],):
            raise DataError(f"{path}: spectra ({shape[0]}), z {f['z'].shape} and label {f['label'].shape} "
                            "differ in length")
        try:
            spectra = f["spectra"][...].astype(np.float32, copy=False)
            z, label = f["z"][...], f["label"][...].astype(np.int32)
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: corrupt data ({err})") from None
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
    bad_rows = np.flatnonzero(~np.isfinite(spectra).all(axis=1))
    if bad_rows.size:
        raise DataError(f"{path}: {bad_rows.size} spectra contain NaN or Inf (first at row {bad_rows[0]})")
    if label.min() < 0 or label.max() >= NUM_CLASSES:
        raise DataError(f"{path}: labels must be in 0..{NUM_CLASSES - 1}, found {label.min()}..{label.max()}")
    grid = np.asarray(attrs.get("wavelength_um", wavelength_grid()))
    return RedshiftData(spectra, z, label, grid, attrs)


#: The columns of a redshift data set in Parquet (:mod:`ddl_commodity.data.parquet`), besides ``row``.
PARQUET_COLUMNS = {"spectrum": (NUM_BANDS,), "z": (), "label": ()}


def write_redshift_parquet(out: str | Path, num_samples: int, seed: int, rows_per_file: int,
                           config: SimulatorConfig = SimulatorConfig(), progress: bool | None = None) -> Path:
    """The spectra :func:`write_redshift_h5` writes for the same seed, as a Parquet data set in directory
    ``out``: ``rows_per_file`` rows per file, columns ``row`` (the global index), ``spectrum`` (1800 float32),
    ``z`` (float64) and ``label`` (int32)."""
    from tqdm.auto import tqdm

    from ddl_commodity.data.parquet import write_parquet

    if num_samples < 1:
        raise DataError(f"{out}: num_samples must be at least 1, got {num_samples}")
    with tqdm(total=num_samples, unit="spectra", desc=f"simulating {Path(out).name}",
              disable=None if progress is None else not progress) as bar:
        def blocks() -> Iterator[tuple[int, dict[str, np.ndarray]]]:
            for start, (x, z, label) in _blocks(num_samples, seed, config):
                bar.update(len(z))
                yield start, {"spectrum": x.astype(np.float32, copy=False), "z": z, "label": label}

        return write_parquet(out, blocks(), rows_per_file)
