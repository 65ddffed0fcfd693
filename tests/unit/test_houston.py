"""Houston loader on small files in the contest's formats (ENVI HSI, GeoTIFF RGB tiles and ground truth),
patch alignment across modalities, and the synthetic scene generator."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from ddl_commodity.data.houston import (
    CLASS_NAMES,
    HoustonFiles,
    SyntheticLayout,
    open_scene,
    write_synthetic_scene,
)
from ddl_commodity.data.patches import PatchSpec, extract_patches, load_patches
from ddl_commodity.errors import DataError

X0, Y0 = 271460.0, 3290290.0
GT_ROWS, GT_COLS = 50, 56  # 0.5 m; HSI 25 x 28 at 1 m; RGB 500 x 560 at 5 cm in 4 tiles of 140 columns


def coded_labels() -> np.ndarray:
    """Classes 0..20 in vertical stripes two pixels wide, repeating; every class has interior pixels."""
    cols = np.arange(GT_COLS)
    labels = np.broadcast_to(((cols // 2) % 21).astype(np.uint8), (GT_ROWS, GT_COLS)).copy()
    return labels


def write_coded_scene(root: Path, hsi_bands: int = 6, tile_order: tuple[int, ...] = (2, 0, 3, 1),
                      nan_hsi: bool = False, shift_tile: bool = False) -> None:
    """A scene whose pixel values encode their ground-truth coordinates.

    HSI band b at HSI pixel (i, j) = 1000 i + j + 0.1 b; RGB channel 0 = RGB row // 10, channel 1 = RGB col // 10
    (so the 10 x 10 mean is exactly the ground-truth row / column), channel 2 = 7.
    """
    root.mkdir(parents=True)
    with rasterio.open(root / "2018_IEEE_GRSS_DFC_GT_TR.tif", "w", driver="GTiff", height=GT_ROWS, width=GT_COLS,
                       count=1, dtype="uint8", crs="EPSG:26915", transform=from_origin(X0, Y0, 0.5, 0.5)) as ds:
        ds.write(coded_labels(), 1)
    i, j = np.mgrid[0:GT_ROWS // 2, 0:GT_COLS // 2]
    cube = np.stack([1000.0 * i + j + 0.1 * b for b in range(hsi_bands)]).astype(np.float32)
    if nan_hsi:
        cube[0, 3, 3] = np.nan
    with rasterio.open(root / "2018_IEEE_GRSS_DFC_HSI_TR", "w", driver="ENVI", height=GT_ROWS // 2,
                       width=GT_COLS // 2, count=hsi_bands, dtype="float32", crs="EPSG:26915",
                       transform=from_origin(X0, Y0, 1.0, 1.0)) as ds:
        ds.write(cube)
    tile_w = GT_COLS * 10 // 4
    for t in tile_order:
        r, c = np.mgrid[0:GT_ROWS * 10, t * tile_w:(t + 1) * tile_w]
        img = np.stack([r // 10, c // 10, np.full_like(r, 7)]).astype(np.uint8)
        x = X0 + t * tile_w * 0.05 + (0.013 if shift_tile and t == 1 else 0.0)
        with rasterio.open(root / f"UH_NAD83_{int(x)}_{t}.tif", "w", driver="GTiff", height=img.shape[1],
                           width=img.shape[2], count=3, dtype="uint8", crs="EPSG:26915",
                           transform=from_origin(x, Y0, 0.05, 0.05)) as ds:
            ds.write(img)


def test_discover_finds_envi_hsi_tiles_and_ground_truth(tmp_path: Path) -> None:
    write_coded_scene(tmp_path / "scene")
    files = HoustonFiles.discover(tmp_path / "scene")
    assert files.hsi.name == "2018_IEEE_GRSS_DFC_HSI_TR"
    assert files.ground_truth.name.startswith("2018_IEEE_GRSS_DFC_GT")
    assert len(files.rgb_tiles) == 4


def test_scene_maps_hsi_and_rgb_onto_the_ground_truth_grid(tmp_path: Path) -> None:
    write_coded_scene(tmp_path / "scene")
    with open_scene(tmp_path / "scene", (0, 3)) as scene:
        assert scene.shape == (GT_ROWS, GT_COLS)
        assert scene.hsi.shape == (GT_ROWS, GT_COLS, 2)
        r, c = 17, 41
        assert scene.hsi[r, c, 0] == pytest.approx(1000 * (r // 2) + c // 2)
        assert scene.hsi[r, c, 1] == pytest.approx(1000 * (r // 2) + c // 2 + 0.3)
        # A window that straddles two tiles (tile width = 35 ground-truth columns).
        block = scene.rgb.read_block_means(10, 30, 5, 10)
        assert block.shape == (5, 10, 3)
        np.testing.assert_array_equal(block[..., 0], np.arange(10, 15)[:, None] * np.ones((1, 10)))
        np.testing.assert_array_equal(block[..., 1], np.ones((5, 1)) * np.arange(30, 40)[None, :])
        assert (block[..., 2] == 7).all()


def test_patches_align_both_modalities_pixel_for_pixel(tmp_path: Path) -> None:
    write_coded_scene(tmp_path / "scene")
    out = extract_patches(tmp_path / "scene", tmp_path / "p.h5", PatchSpec(size=5, per_class=3, hsi_bands=(0, 2),
                                                                           seed=4), progress=False)
    with h5py.File(out) as f:
        rgb, hsi, label = f["rgb"][...], f["hsi"][...], f["label"][...]
        rows, cols = f["row"][...], f["col"][...]
        mean, std = f.attrs["hsi_mean"], f.attrs["hsi_std"]
    assert rgb.shape == (60, 5, 5, 3) and hsi.shape == (60, 5, 5, 2)
    assert sorted(np.bincount(label)) == [3] * 20
    labels = coded_labels()
    for k in range(60):
        r, c = rows[k], cols[k]
        assert label[k] == labels[r, c] - 1  # the patch's class is its centre pixel's
        wr = np.arange(r - 2, r + 3)[:, None] * np.ones((1, 5))
        wc = np.ones((5, 1)) * np.arange(c - 2, c + 3)[None, :]
        np.testing.assert_allclose(rgb[k, ..., 0] * 255, wr, atol=1e-3)
        np.testing.assert_allclose(rgb[k, ..., 1] * 255, wc, atol=1e-3)
        raw = hsi[k] * std + mean
        np.testing.assert_allclose(raw[..., 0], 1000 * (wr // 2) + wc // 2, atol=0.05)
        np.testing.assert_allclose(raw[..., 1], 1000 * (wr // 2) + wc // 2 + 0.2, atol=0.05)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("nan", "NaN"),
        ("misaligned", "not aligned"),
        ("no_gt", "ground-truth GeoTIFF"),
        ("band", "band indices"),
        ("corrupt_tile", "cannot read raster"),
    ],
)
def test_bad_scenes_are_clear_data_errors(tmp_path: Path, damage: str, message: str) -> None:
    root = tmp_path / "scene"
    write_coded_scene(root, nan_hsi=damage == "nan", shift_tile=damage == "misaligned")
    bands = (0, 9) if damage == "band" else (0, 1)
    if damage == "no_gt":
        (root / "2018_IEEE_GRSS_DFC_GT_TR.tif").unlink()
    if damage == "corrupt_tile":
        tile = next(root.glob("UH_NAD83_*.tif"))
        tile.write_bytes(tile.read_bytes()[:200])
    with pytest.raises(DataError, match=message):
        extract_patches(root, tmp_path / "p.h5", PatchSpec(size=5, per_class=2, hsi_bands=bands), progress=False)
    assert not (tmp_path / "p.h5").exists()
    assert not list(tmp_path.glob(".p.h5*"))  # no temporary file left behind


def test_synthetic_scene_has_the_contest_layout(tmp_path: Path) -> None:
    layout = SyntheticLayout.at_scale(0.05)
    files = write_synthetic_scene(tmp_path / "syn", scale=0.05, seed=2, progress=False)
    with rasterio.open(files.ground_truth) as gt, rasterio.open(files.hsi) as hsi:
        assert (gt.height, gt.width) == layout.gt_shape
        assert hsi.count == 50 and hsi.driver == "ENVI"
        assert (hsi.height * 2, hsi.width * 2) == layout.gt_shape
        labels = gt.read(1)
    assert set(np.unique(labels)) == set(range(len(CLASS_NAMES)))  # 0..20 all present
    widths = []
    for tile in files.rgb_tiles:
        with rasterio.open(tile) as ds:
            assert ds.count == 3 and ds.height == layout.gt_shape[0] * 10
            widths.append(ds.width)
    assert len(files.rgb_tiles) == 4 and sum(widths) == layout.gt_shape[1] * 10
    with pytest.raises(DataError, match="already exists"):
        write_synthetic_scene(tmp_path / "syn", scale=0.05, progress=False)


def test_synthetic_classes_are_separable_but_not_by_one_pixel(tmp_path: Path) -> None:
    """Class means differ (learnable), yet a nearest-class-mean rule on one HSI pixel is far from perfect."""
    files = write_synthetic_scene(tmp_path / "syn", scale=0.05, seed=5, progress=False)
    data = load_patches(extract_patches(files, tmp_path / "p.h5", PatchSpec(per_class=30, seed=1), progress=False))
    centre = data.hsi[:, 12, 12, :]
    means = np.stack([centre[data.label == k].mean(axis=0) for k in range(20)])
    pred = np.argmin(((centre[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    accuracy = (pred == data.label).mean()
    assert 0.1 < accuracy < 0.95, accuracy


def test_load_patches_refuses_wrong_shapes(tmp_path: Path) -> None:
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["rgb"] = np.zeros((4, 25, 25, 3), np.float32)
        f["hsi"] = np.zeros((4, 25, 25, 11), np.float32)
        f["label"] = np.zeros(4, np.int32)
    assert len(load_patches(path, 25, 11)) == 4
    with pytest.raises(DataError, match="expects 27 x 27"):
        load_patches(path, expected_size=27)
    with pytest.raises(DataError, match="HSI bands"):
        load_patches(path, expected_bands=12)
    with pytest.raises(DataError, match="not found"):
        load_patches(tmp_path / "missing.h5")


def test_cli_writes_a_synthetic_scene_and_its_patches(tmp_path: Path, capsys) -> None:
    from ddl_commodity.cli import main

    out, patches = tmp_path / "scene", tmp_path / "p.h5"
    assert main(["data", "houston", "--synthetic", "--scale", "0.05", "--out", str(out), "--patches", str(patches),
                 "--per-class", "5", "--bands", "0,10,20"]) == 0
    data = load_patches(patches)
    assert len(data) == 100 and data.hsi.shape[-1] == 3 and data.hsi_bands == (0, 10, 20)
    assert main(["data", "houston", "--patches", str(tmp_path / "q.h5")]) == 2
    assert main(["data", "houston", "--scene", str(out), "--patches", str(tmp_path / "q.h5"), "--bands", "1,x"]) == 2
    assert main(["data", "houston", "--scene", str(out), "--patches", str(tmp_path / "q.h5"), "--bands", "60"]) == 2
    assert not (tmp_path / "q.h5").exists()
    assert "error:" in capsys.readouterr().err


def test_patches_as_parquet_are_the_same_patches_in_a_seeded_order(tmp_path: Path) -> None:
    """`--format parquet`: every patch once, numbered by `row`, classes spread over the row groups (the HDF5 file
    is sorted by class), readable with the land-cover experiment's columns."""
    from ddl_commodity.cli import main
    from ddl_commodity.data.parquet import pieces, read_piece
    from ddl_commodity.experiments.landcover import LandcoverConfig, LandcoverExperiment

    write_coded_scene(tmp_path / "scene")
    spec = ["--scene", str(tmp_path / "scene"), "--per-class", "3", "--size", "5", "--bands", "0,2", "--seed", "4"]
    assert main(["data", "houston", *spec, "--patches", str(tmp_path / "p.h5")]) == 0
    assert main(["data", "houston", *spec, "--patches", str(tmp_path / "pq"), "--format", "parquet",
                 "--rows-per-file", "16"]) == 0
    h5 = load_patches(tmp_path / "p.h5")
    cfg = LandcoverConfig.model_validate({"data": {"patch_size": 5, "hsi_bands": [0, 2]}})
    inputs, label = LandcoverExperiment().columns(cfg)
    found = pieces(str(tmp_path / "pq"), [*inputs, label])
    rows = [read_piece(p, [*inputs, label]) for p in found]
    assert np.array_equal(np.concatenate([r["row"] for r in rows]), np.arange(60)) and len(found) == 4
    got = {k: np.concatenate([r[k] for r in rows]) for k in ("rgb", "hsi", "label")}
    def keyed(label, rgb, hsi) -> list:  # one patch's modalities and class stay together
        return sorted(zip(label.tolist(), rgb.sum(axis=(1, 2, 3)).round(3).tolist(),
                          hsi.sum(axis=(1, 2, 3)).round(3).tolist(), strict=True))

    assert keyed(got["label"], got["rgb"], got["hsi"]) == keyed(h5.label, h5.rgb, h5.hsi)
    assert len(set(rows[0]["label"].tolist())) > 5  # not one class per row group
    assert main(["data", "houston", *spec, "--patches", str(tmp_path / "pq"), "--format", "parquet"]) == 2
