"""GRSS Data Fusion Contest 2018 (Houston) scenes: the real files, and synthetic scenes of the same layout.

Thesis 6.1 / Table 6.1. A scene has three rasters over the same ground extent:

* **hyperspectral** (HSI): 50 bands over 380-1050 nm at 1 m GSD, 601 x 2384 pixels; delivered as an ENVI
  cube (header ``.hdr`` + binary) or a GeoTIFF;
* **very-high-resolution RGB** at 5 cm GSD, 12020 x 47680 x 3 when its 4 GeoTIFF tiles are joined
  (~1.7 GB): it is only ever read by windows (:meth:`RgbMosaic.read_block_means`);
* **ground truth** at 0.5 m GSD, 1202 x 4768, classes 1..20 and 0 = unclassified.

All three are georeferenced; :class:`HoustonScene` maps every raster onto the ground-truth grid through
its affine transform, which must be an integer multiple (HSI: 2 ground-truth pixels per HSI pixel, RGB:
10 x 10 RGB pixels per ground-truth pixel). Files are read with ``rasterio`` (GDAL), which handles both
formats.

:func:`write_synthetic_scene` writes the same layout at a chosen ``scale`` of the extent: class regions
(Voronoi cells with irregular borders), per-class smooth spectral signatures with confusable pairs (healthy
vs stressed grass, the road classes), per-class RGB colour and texture, and noise, so a CNN can learn the
classes from 25 x 25 patches, but not from one pixel.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ddl_commodity.errors import DataError

#: Table 6.1; index = class number.
CLASS_NAMES: tuple[str, ...] = (
    "Unclassified", "Healthy Grass", "Stressed Grass", "Artificial Turf", "Evergreen Trees", "Deciduous Trees",
    "Bare Earth", "Water", "Residential Buildings", "Non-Residential Buildings", "Roads", "Sidewalks",
    "Crosswalks", "Major thoroughfares", "Highways", "Railways", "Paved Parking Lots", "Unpaved Parking Lots",
    "Cars", "Trains", "Stadium Seats",
)
NUM_CLASSES = 20  # classes 1..20; 0 is left out of every experiment (thesis 6.2.1)

#: Full-size layout of the contest's training scene (thesis 6.1).
GT_SHAPE = (1202, 4768)
GT_GSD_M = 0.5
HSI_BANDS = 50
HSI_GSD_M = 1.0
HSI_WAVELENGTHS_NM = tuple(float(w) for w in np.linspace(380.0, 1050.0, HSI_BANDS))
RGB_GSD_M = 0.05
RGB_TILES = 4
#: Upper-left corner (NAD83 / UTM zone 15N) of the contest scene; synthetic scenes reuse it.
ORIGIN_XY = (271460.0, 3290290.0)
CRS = "EPSG:26915"
SYNTHETIC_VERSION = "1"


@dataclass(frozen=True)
class HoustonFiles:
    """Paths of one scene's rasters."""

    hsi: Path
    rgb_tiles: tuple[Path, ...]
    ground_truth: Path

    @classmethod
    def discover(cls, root: Path) -> HoustonFiles:
        """Find the rasters under ``root`` by the contest's naming (and ours for synthetic scenes).

        Ground truth: ``*GT*.tif``; hyperspectral: ``*HSI*`` with an ENVI ``.hdr`` or ``.tif``; RGB tiles:
        every other ``.tif`` (the contest names them ``UH_NAD83_<x>_<y>.tif``).
        """
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: not a directory holding a Houston scene")
        tifs = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".tif", ".tiff"))
        gts = [p for p in tifs if "GT" in p.name.upper()]
        hsi_hdr = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".hdr" and "HSI" in p.name.upper())
        hsi_tif = [p for p in tifs if "HSI" in p.name.upper()]
        rgb = tuple(p for p in tifs if p not in gts and p not in hsi_tif)
        if len(gts) != 1:
            raise DataError(f"{root}: expected one ground-truth GeoTIFF (*GT*.tif), found {len(gts)}")
        if hsi_hdr:
            hsi = _envi_data_file(hsi_hdr[0])
        elif hsi_tif:
            hsi = hsi_tif[0]
        else:
            raise DataError(f"{root}: no hyperspectral image (*HSI*.hdr + binary, or *HSI*.tif)")
        if not rgb:
            raise DataError(f"{root}: no VHR RGB tiles (*.tif other than the GT and HSI files)")
        return cls(hsi=hsi, rgb_tiles=rgb, ground_truth=gts[0])


def _envi_data_file(header: Path) -> Path:
    for candidate in (header.with_suffix(""), header.with_suffix(".bin"), header.with_suffix(".raw"),
                      header.with_suffix(".img"), header.with_suffix(".dat")):
        if candidate.is_file() and candidate != header:
            return candidate
    raise DataError(f"{header}: ENVI header without its binary data file next to it")


def _open(path: Path):
    import rasterio

    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as err:
        raise DataError(f"{path}: cannot read raster: {err}") from None


def _grid_ratio(coarse: float, fine: float, what: str) -> int:
    ratio = coarse / fine
    if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
        raise DataError(f"{what}: pixel size ratio {coarse}/{fine} is not a whole number")
    return round(ratio)


def _offset(src_transform, gt_transform, what: str) -> tuple[int, int]:
    """Row/column of a raster's upper-left corner on the ground-truth grid (must be whole pixels)."""
    col = (src_transform.c - gt_transform.c) / gt_transform.a
    row = (src_transform.f - gt_transform.f) / gt_transform.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        raise DataError(f"{what}: not aligned with the ground-truth grid (offset {row:.3f}, {col:.3f} pixels)")
    return round(row), round(col)


class RgbMosaic:
    """The VHR RGB tiles seen as one image on the ground-truth grid, read by windows only.

    ``read_block_means(r0, c0, h, w)`` returns the (h, w, 3) float32 ground-truth-grid pixels starting at
    (r0, c0): each is the mean of the ``factor x factor`` RGB pixels it covers (the thesis's resize of the
    joined tiles to the ground-truth size), assembled from every tile the window touches.
    """

    def __init__(self, tiles: tuple[Path, ...], gt_transform, gt_shape: tuple[int, int]) -> None:
        self._datasets = []
        self.factor = 0
        for path in tiles:
            ds = _open(path)
            if ds.count < 3:
                ds.close()
                raise DataError(f"{path}: an RGB tile needs 3 bands, it has {ds.count}")
            factor = _grid_ratio(abs(gt_transform.a), abs(ds.transform.a), f"{path}")
            if self.factor and factor != self.factor:
                raise DataError(f"{path}: pixel size differs from the other RGB tiles")
            self.factor = factor
            r, c = _offset(ds.transform, gt_transform, str(path))
            if ds.height % factor or ds.width % factor:
                raise DataError(f"{path}: size {ds.height} x {ds.width} is not a multiple of {factor}")
            self._datasets.append((ds, r, c, ds.height // factor, ds.width // factor))
        covered = np.zeros(gt_shape, dtype=bool)
        for _, r, c, h, w in self._datasets:
            covered[max(r, 0):r + h, max(c, 0):c + w] = True
        self.coverage = covered

    def read_block_means(self, r0: int, c0: int, h: int, w: int) -> np.ndarray:
        from rasterio.windows import Window

        out = np.zeros((h, w, 3), dtype=np.float32)
        f = self.factor
        for ds, tr, tc, th, tw in self._datasets:
            rr0, rr1 = max(r0, tr), min(r0 + h, tr + th)
            cc0, cc1 = max(c0, tc), min(c0 + w, tc + tw)
            if rr0 >= rr1 or cc0 >= cc1:
                continue
            window = Window((cc0 - tc) * f, (rr0 - tr) * f, (cc1 - cc0) * f, (rr1 - rr0) * f)
            block = ds.read((1, 2, 3), window=window).astype(np.float32)  # (3, H*f, W*f)
            means = block.reshape(3, rr1 - rr0, f, cc1 - cc0, f).mean(axis=(2, 4))
            out[rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0] = means.transpose(1, 2, 0)
        return out

    def close(self) -> None:
        for ds, *_ in self._datasets:
            ds.close()


class HoustonScene:
    """An opened scene: ground truth in memory, the selected HSI bands on the ground-truth grid, RGB by windows.

    Use as a context manager. ``hsi_bands``: 0-based band indices to keep (thesis: 11 of 50).
    """

    def __init__(self, files: HoustonFiles, hsi_bands: tuple[int, ...]) -> None:
        self.files = files
        with _open(files.ground_truth) as gt:
            self.gt_transform = gt.transform
            self.crs = gt.crs
            self.labels = gt.read(1)
        if self.labels.size == 0:
            raise DataError(f"{files.ground_truth}: empty ground truth")
        if self.labels.min() < 0 or self.labels.max() > NUM_CLASSES:
            raise DataError(f"{files.ground_truth}: class values must be 0..{NUM_CLASSES}, found "
                            f"{self.labels.min()}..{self.labels.max()}")
        self.labels = self.labels.astype(np.int16)
        self.hsi_bands = tuple(hsi_bands)
        self.hsi, self.hsi_mean, self.hsi_std = self._read_hsi()
        self.rgb = RgbMosaic(files.rgb_tiles, self.gt_transform, self.shape)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.labels.shape)  # type: ignore[return-value]

    def _read_hsi(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Selected HSI bands upsampled (nearest) onto the ground-truth grid; NaN where the HSI has no data."""
        with _open(self.files.hsi) as ds:
            bad = [b for b in self.hsi_bands if not 0 <= b < ds.count]
            if bad:
                raise DataError(f"{self.files.hsi}: has {ds.count} bands; band indices {bad} do not exist")
            factor = _grid_ratio(abs(ds.transform.a), abs(self.gt_transform.a), str(self.files.hsi))
            r, c = _offset(ds.transform, self.gt_transform, str(self.files.hsi))
            cube = ds.read([b + 1 for b in self.hsi_bands]).astype(np.float32)  # (B, h, w); small: 11 bands
        if not np.isfinite(cube).all():
            raise DataError(f"{self.files.hsi}: hyperspectral data hold NaN or infinite values")
        mean = cube.mean(axis=(1, 2))
        std = cube.std(axis=(1, 2))
        std[std == 0] = 1.0
        up = np.repeat(np.repeat(cube, factor, axis=1), factor, axis=2).transpose(1, 2, 0)
        out = np.full((*self.shape, len(self.hsi_bands)), np.nan, dtype=np.float32)
        rr0, cc0 = max(r, 0), max(c, 0)
        rr1, cc1 = min(r + up.shape[0], self.shape[0]), min(c + up.shape[1], self.shape[1])
        out[rr0:rr1, cc0:cc1] = up[rr0 - r:rr1 - r, cc0 - c:cc1 - c]
        return out, mean, std

    def close(self) -> None:
        self.rgb.close()

    def __enter__(self) -> HoustonScene:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------------------
# Synthetic scenes


@dataclass(frozen=True)
class SyntheticLayout:
    """Raster sizes of a synthetic scene at ``scale`` of the contest's extent (same pixel sizes)."""

    gt_shape: tuple[int, int]
    hsi_shape: tuple[int, int]
    rgb_tile_shape: tuple[int, int]

    @classmethod
    def at_scale(cls, scale: float) -> SyntheticLayout:
        if not 0.0 < scale <= 1.0:
            raise DataError(f"scale must be in (0, 1], got {scale}")
        # Ground-truth rows even (2 per HSI row) and columns a multiple of 8 (4 tiles, each 2 per HSI column).
        rows = max(2 * round(GT_SHAPE[0] * scale / 2), 50)
        cols = max(8 * round(GT_SHAPE[1] * scale / 8), 56)
        f_rgb = round(GT_GSD_M / RGB_GSD_M)
        return cls((rows, cols), (rows // 2, cols // 2), (rows * f_rgb, cols * f_rgb // RGB_TILES))


def _class_signatures(rng: np.random.Generator) -> np.ndarray:
    """(21, 50) smooth reflectance-like spectra; pairs of related classes are made close on purpose."""
    wl = np.linspace(0.0, 1.0, HSI_BANDS)
    sig = np.zeros((len(CLASS_NAMES), HSI_BANDS))
    for k in range(len(CLASS_NAMES)):
        base = rng.uniform(0.1, 0.3) + rng.uniform(-0.1, 0.2) * wl
        for _ in range(3):
            centre, width, height = rng.uniform(0, 1), rng.uniform(0.05, 0.25), rng.uniform(-0.15, 0.3)
            base = base + height * np.exp(-0.5 * ((wl - centre) / width) ** 2)
        sig[k] = base
    vegetation_edge = 1 / (1 + np.exp(-(wl - 0.5) * 30))  # red edge near 700 nm
    for k in (1, 2, 4, 5):
        sig[k] += 0.35 * vegetation_edge
    # Confusable pairs: the second is the first plus a small difference.
    for a, b in ((1, 2), (4, 5), (10, 13), (13, 14), (16, 17), (8, 9), (11, 12)):
        sig[b] = sig[a] + 0.04 * rng.standard_normal(HSI_BANDS).cumsum() / np.sqrt(HSI_BANDS)
    return np.clip(sig, 0.01, None).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """Zero-mean spatially correlated noise: random values on a coarse grid, upsampled bilinearly."""
    gh, gw = shape[0] // cell + 2, shape[1] // cell + 2
    coarse = rng.standard_normal((gh, gw))
    r = np.arange(shape[0]) / cell
    c = np.arange(shape[1]) / cell
    r0, c0 = r.astype(int), c.astype(int)
    fr, fc = (r - r0)[:, None], (c - c0)[None, :]
    a = coarse[r0][:, c0]
    b = coarse[r0][:, c0 + 1]
    cc = coarse[r0 + 1][:, c0]
    d = coarse[r0 + 1][:, c0 + 1]
    return (a * (1 - fr) * (1 - fc) + b * (1 - fr) * fc + cc * fr * (1 - fc) + d * fr * fc).astype(np.float32)


def synthetic_class_map(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Voronoi regions with wobbly borders; every class 1..20 gets several regions, 0 fills ~15%."""
    rows, cols = shape
    n_regions = max(4 * (NUM_CLASSES + 1), int(rows * cols / 900))
    seeds = np.column_stack([rng.uniform(0, rows, n_regions), rng.uniform(0, cols, n_regions)])
    classes = np.concatenate([np.arange(NUM_CLASSES + 1), rng.integers(0, NUM_CLASSES + 1, n_regions)])[:n_regions]
    rng.shuffle(classes)
    out = np.empty(shape, dtype=np.uint8)
    wobble_r = 6 * _smooth_noise(rng, shape, 12)
    wobble_c = 6 * _smooth_noise(rng, shape, 12)
    cc = np.arange(cols, dtype=np.float32)
    for r in range(rows):  # row by row: memory stays O(cols x regions) even at full scale
        pr = r + wobble_r[r]
        pc = cc + wobble_c[r]
        d = (pr[:, None] - seeds[None, :, 0]) ** 2 + (pc[:, None] - seeds[None, :, 1]) ** 2
        out[r] = classes[np.argmin(d, axis=1)]
    return out


def write_synthetic_scene(out_dir: Path, scale: float = 0.1, seed: int = 0,
                          progress: bool | None = None) -> HoustonFiles:
    """Write a synthetic scene with the contest's layout into ``out_dir`` (which must not exist yet).

    Files: ``synthetic_HSI.hdr`` + ``synthetic_HSI`` (ENVI, 50 bands, float32), ``UH_NAD83_<x>_<y>.tif`` x 4
    (RGB uint8 GeoTIFF tiles side by side), ``synthetic_GT.tif`` (uint8). Everything goes to a temporary
    directory first and is renamed into place at the end, so an interrupted run leaves nothing behind.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise DataError(f"{out_dir}: already exists; choose a new directory")
    layout = SyntheticLayout.at_scale(scale)
    rng = np.random.default_rng(seed)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)
    try:
        labels = synthetic_class_map(layout.gt_shape, rng)
        _write_gt(tmp, labels)
        _write_hsi(tmp, labels, layout, rng)
        _write_rgb_tiles(tmp, labels, layout, rng, progress)
        (tmp / "SYNTHETIC").write_text(f"synthetic Houston-like scene v{SYNTHETIC_VERSION} scale={scale} "
                                       f"seed={seed}\n")
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return HoustonFiles.discover(out_dir)


def _write_gt(tmp: Path, labels: np.ndarray) -> None:
    import rasterio
    from rasterio.transform import from_origin

    x0, y0 = ORIGIN_XY
    gt_profile = dict(driver="GTiff", height=labels.shape[0], width=labels.shape[1], count=1, dtype="uint8",
                      crs=CRS, transform=from_origin(x0, y0, GT_GSD_M, GT_GSD_M))
    with rasterio.open(tmp / "synthetic_GT.tif", "w", **gt_profile) as ds:
        ds.write(labels, 1)


def _write_hsi(tmp: Path, labels: np.ndarray, layout: SyntheticLayout, rng: np.random.Generator) -> None:
    """Each HSI pixel covers 2 x 2 ground-truth pixels; it takes the class of the upper-left one."""
    import rasterio
    from rasterio.transform import from_origin

    x0, y0 = ORIGIN_XY
    sig = _class_signatures(rng)
    hsi_classes = labels[::2, ::2]
    texture = 0.15 * _smooth_noise(rng, layout.hsi_shape, 4)
    cube = sig[hsi_classes] * (1.0 + texture[..., None])
    cube += 0.04 * rng.standard_normal(cube.shape).astype(np.float32)
    hsi_profile = dict(driver="ENVI", height=layout.hsi_shape[0], width=layout.hsi_shape[1], count=HSI_BANDS,
                       dtype="float32", crs=CRS, transform=from_origin(x0, y0, HSI_GSD_M, HSI_GSD_M))
    with rasterio.open(tmp / "synthetic_HSI", "w", **hsi_profile) as ds:
        ds.write(cube.transpose(2, 0, 1))
        for b, wl in enumerate(HSI_WAVELENGTHS_NM, start=1):
            ds.set_band_description(b, f"{wl:.1f} nm")


def _write_rgb_tiles(tmp: Path, labels: np.ndarray, layout: SyntheticLayout, rng: np.random.Generator,
                     progress: bool | None) -> None:
    """Four RGB tiles: a colour per class (confusable pairs close), stripes and noise, written in strips."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window
    from tqdm import tqdm

    x0, y0 = ORIGIN_XY
    colours = rng.uniform(30, 220, size=(len(CLASS_NAMES), 3)).astype(np.float32)
    for a, b in ((1, 2), (4, 5), (10, 13), (13, 14), (16, 17), (11, 12)):
        colours[b] = colours[a] + rng.uniform(-12, 12, 3)
    stripe_period = rng.integers(4, 16, size=len(CLASS_NAMES))
    f_rgb = round(GT_GSD_M / RGB_GSD_M)
    th, tw = layout.rgb_tile_shape
    strip = 8 * f_rgb  # RGB rows per write: 8 ground-truth rows
    total = RGB_TILES * ((th + strip - 1) // strip)
    with tqdm(total=total, desc="RGB tiles", unit="strip", disable=_no_progress(progress)) as bar:
        for t in range(RGB_TILES):
            tx = x0 + t * tw * RGB_GSD_M
            name = f"UH_NAD83_{int(tx)}_{int(y0 - th * RGB_GSD_M)}.tif"
            profile = dict(driver="GTiff", height=th, width=tw, count=3, dtype="uint8", crs=CRS,
                           transform=from_origin(tx, y0, RGB_GSD_M, RGB_GSD_M), tiled=True,
                           blockxsize=256, blockysize=256, compress="deflate")
            gt_c0 = t * tw // f_rgb
            with rasterio.open(tmp / name, "w", **profile) as ds:
                for r0 in range(0, th, strip):
                    h = min(strip, th - r0)
                    cls = np.repeat(np.repeat(labels[r0 // f_rgb:(r0 + h) // f_rgb, gt_c0:gt_c0 + tw // f_rgb],
                                              f_rgb, axis=0), f_rgb, axis=1)
                    rows = np.arange(r0, r0 + h)[:, None]
                    cols = np.arange(t * tw, (t + 1) * tw)[None, :]
                    stripes = np.sin(2 * np.pi * (rows + cols) / stripe_period[cls])
                    img = colours[cls] + 25.0 * stripes[..., None] + 18.0 * rng.standard_normal((h, tw, 3))
                    ds.write(np.clip(img, 0, 255).astype(np.uint8).transpose(2, 0, 1), window=Window(0, r0, tw, h))
                    bar.update(1)


def _no_progress(progress: bool | None) -> bool:
    if progress is None:
        import sys

        return not sys.stderr.isatty()
    return not progress


@contextlib.contextmanager
def open_scene(root_or_files: Path | HoustonFiles, hsi_bands: tuple[int, ...]) -> Iterator[HoustonScene]:
    files = root_or_files if isinstance(root_or_files, HoustonFiles) else HoustonFiles.discover(root_or_files)
    scene = HoustonScene(files, hsi_bands)
    try:
        yield scene
    finally:
        scene.close()
