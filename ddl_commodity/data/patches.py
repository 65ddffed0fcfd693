"""25 x 25 multimodal patches from a Houston scene (thesis 6.2.1), and their HDF5 files.

Steps, as the thesis describes them: (a) RGB and HSI are brought onto the ground-truth grid (RGB: mean of
the 10 x 10 pixels of each ground-truth pixel; HSI: nearest, each HSI pixel covers 2 x 2); (b) a patch is the
``size x size`` window around a ground-truth pixel, cut from both modalities at the same pixels; (c) for
each class 1..20, ``per_class`` pixels of that class are drawn at random as patch centres (only where the
whole window lies inside the scene and both modalities have data); class 0 is never drawn.

File layout (``h5py``)::

    rgb    (N, size, size, 3)  float32, values / 255
    hsi    (N, size, size, B)  float32, each band standardised with the scene's mean and std
    label  (N,)                int32, class - 1, so 0..19
    row, col (N,)              int32, centre pixel on the ground-truth grid
    attrs: size, per_class, hsi_bands, class_names, seed, source, hsi_mean, hsi_std (to undo the scaling)

Patches are written class by class in chunks (never all in memory), into a temporary file renamed at the
end. The order is shuffled with a seeded permutation of the chunk order, not of single rows: training code
shuffles per epoch anyway.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ddl_commodity.data.houston import CLASS_NAMES, NUM_CLASSES, HoustonFiles, open_scene
from ddl_commodity.errors import DataError

#: Thesis 6.2.1 uses 11 of the 50 bands without saying which: evenly spaced over 380-1050 nm.
DEFAULT_HSI_BANDS = tuple(int(b) for b in np.linspace(0, 49, 11).round())
CHUNK = 256


@dataclass(frozen=True)
class PatchSpec:
    """What to cut: window size, patches per class, HSI bands (0-based), seed."""

    size: int = 25
    per_class: int = 400
    hsi_bands: tuple[int, ...] = DEFAULT_HSI_BANDS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.size < 1 or self.size % 2 == 0:
            raise DataError(f"patch size must be a positive odd number, got {self.size}")
        if self.per_class < 1:
            raise DataError(f"patches per class must be at least 1, got {self.per_class}")
        if not self.hsi_bands or len(set(self.hsi_bands)) != len(self.hsi_bands):
            raise DataError(f"HSI bands must be a non-empty list without repeats, got {list(self.hsi_bands)}")


def sample_centres(labels: np.ndarray, valid: np.ndarray, spec: PatchSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per class 1..20, ``per_class`` random centre pixels among the valid ones (with replacement if too few).

    Returns (rows, cols), grouped by class in class order.
    """
    rng = np.random.default_rng(spec.seed)
    half = spec.size // 2
    inner = np.zeros_like(valid)
    inner[half:labels.shape[0] - half, half:labels.shape[1] - half] = True
    rows, cols = [], []
    for k in range(1, NUM_CLASSES + 1):
        r, c = np.nonzero((labels == k) & valid & inner)
        if len(r) == 0:
            raise DataError(f"class {k} ({CLASS_NAMES[k]}) has no pixel where a {spec.size} x {spec.size} patch "
                            "fits inside the scene")
        replace = len(r) < spec.per_class
        if replace:
            warnings.warn(f"class {k} ({CLASS_NAMES[k]}): only {len(r)} possible centres for {spec.per_class} "
                          "patches; drawing with replacement", stacklevel=2)
        pick = rng.choice(len(r), size=spec.per_class, replace=replace)
        rows.append(r[pick])
        cols.append(c[pick])
    return np.concatenate(rows), np.concatenate(cols)


def extract_patches(
    scene_root: Path | HoustonFiles, out: Path, spec: PatchSpec = PatchSpec(), progress: bool | None = None
) -> Path:
    """Cut ``20 x per_class`` patches from the scene and write them to ``out`` (HDF5), atomically."""
    import h5py
    from tqdm import tqdm

    from ddl_commodity.data.houston import _no_progress

    out = Path(out)
    with open_scene(scene_root, spec.hsi_bands) as scene:
        valid = np.isfinite(scene.hsi).all(axis=2) & scene.rgb.coverage
        rows, cols = sample_centres(scene.labels, valid, spec)
        n, s, half, nb = len(rows), spec.size, spec.size // 2, len(spec.hsi_bands)
        order = np.random.default_rng(spec.seed + 1).permutation(n)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        os.close(fd)
        try:
            with h5py.File(tmp, "w") as f:
                d_rgb = f.create_dataset("rgb", (n, s, s, 3), dtype="float32", chunks=(min(64, n), s, s, 3))
                d_hsi = f.create_dataset("hsi", (n, s, s, nb), dtype="float32", chunks=(min(64, n), s, s, nb))
                d_label = f.create_dataset("label", (n,), dtype="int32")
                d_row = f.create_dataset("row", (n,), dtype="int32")
                d_col = f.create_dataset("col", (n,), dtype="int32")
                hsi_norm = (scene.hsi - scene.hsi_mean) / scene.hsi_std
                with tqdm(total=n, desc="patches", unit="patch", disable=_no_progress(progress)) as bar:
                    for start in range(0, n, CHUNK):
                        idx = order[start:start + CHUNK]
                        rgb = np.stack([scene.rgb.read_block_means(rows[i] - half, cols[i] - half, s, s) for i in idx])
                        hsi = np.stack([hsi_norm[rows[i] - half:rows[i] + half + 1, cols[i] - half:cols[i] + half + 1]
                                        for i in idx])
                        sl = slice(start, start + len(idx))
                        d_rgb[sl] = rgb / 255.0
                        d_hsi[sl] = hsi
                        d_label[sl] = scene.labels[rows[idx], cols[idx]] - 1
                        d_row[sl] = rows[idx]
                        d_col[sl] = cols[idx]
                        bar.update(len(idx))
                f.attrs.update({
                    "size": s, "per_class": spec.per_class, "hsi_bands": list(spec.hsi_bands), "seed": spec.seed,
                    "class_names": json.dumps(CLASS_NAMES[1:]), "source": str(scene.files.ground_truth.parent),
                    "hsi_mean": scene.hsi_mean, "hsi_std": scene.hsi_std,
                })
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return out


@dataclass
class PatchSet:
    """A loaded patch file: ``rgb`` (N, s, s, 3), ``hsi`` (N, s, s, B), ``label`` (N,) in 0..19."""

    rgb: np.ndarray
    hsi: np.ndarray
    label: np.ndarray
    hsi_bands: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.label)


def load_patches(path: Path, expected_size: int | None = None, expected_bands: int | None = None) -> PatchSet:
    """Read and validate a patch file; any problem is a :class:`DataError` naming the file."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: patch file not found (make one with `ddl data houston --patches`)")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("rgb", "hsi", "label") if k not in f]
            if missing:
                raise DataError(f"{path}: not a patch file, datasets {missing} are missing")
            rgb, hsi, label = f["rgb"][...], f["hsi"][...], f["label"][...]
            bands = tuple(int(b) for b in f.attrs.get("hsi_bands", range(hsi.shape[-1])))
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file ({err})") from None
    n = len(label)
    if n == 0:
        raise DataError(f"{path}: holds no patches")
    if rgb.ndim != 4 or hsi.ndim != 4 or rgb.shape[0] != n or hsi.shape[0] != n or rgb.shape[-1] != 3:
        raise DataError(f"{path}: inconsistent shapes rgb {rgb.shape}, hsi {hsi.shape}, label {label.shape}")
    if rgb.shape[1:3] != hsi.shape[1:3] or rgb.shape[1] != rgb.shape[2]:
        raise DataError(f"{path}: RGB patches {rgb.shape[1:3]} and HSI patches {hsi.shape[1:3]} differ")
    if expected_size is not None and rgb.shape[1] != expected_size:
        raise DataError(f"{path}: patches are {rgb.shape[1]} x {rgb.shape[2]}, the model expects "
                        f"{expected_size} x {expected_size}")
    if expected_bands is not None and hsi.shape[-1] != expected_bands:
        raise DataError(f"{path}: patches have {hsi.shape[-1]} HSI bands, the model expects {expected_bands}")
    if not (np.isfinite(rgb).all() and np.isfinite(hsi).all()):
        raise DataError(f"{path}: patches hold NaN or infinite values")
    if label.min() < 0 or label.max() >= NUM_CLASSES:
        raise DataError(f"{path}: labels must be 0..{NUM_CLASSES - 1}, found {label.min()}..{label.max()}")
    return PatchSet(rgb.astype(np.float32), hsi.astype(np.float32), label.astype(np.int32), bands)


def patches_to_parquet(source: Path, out: Path, rows_per_file: int, seed: int, block: int = 512) -> Path:
    """A patch file as a Parquet data set in directory ``out`` (columns ``rgb`` (s, s, 3), ``hsi`` (s, s, bands)
    float32 and ``label`` int32), its rows in a seeded random order, so that shards of whole row groups each see
    every class whatever order the file holds them in."""
    import h5py

    from ddl_commodity.data.parquet import write_parquet

    load_patches(source)  # a bad patch file ends here, naming it
    with h5py.File(source, "r") as f:
        order = np.random.default_rng([seed, 0xC1A55]).permutation(len(f["label"]))

        def blocks():
            for start in range(0, len(order), block):
                rows = np.sort(order[start:start + block])  # h5py reads increasing indices
                back = np.argsort(np.argsort(order[start:start + block]))
                yield start, {k: f[k][rows][back].astype(np.float32 if k != "label" else np.int32)
                              for k in ("rgb", "hsi", "label")}

        return write_parquet(out, blocks(), rows_per_file)
