"""Land-cover experiment configs: validated once at load, with the key path in every error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ddl_commodity.errors import ConfigError
from ddl_commodity.experiments.landcover import LandcoverConfig, LandcoverExperiment
from ddl_commodity.experiments.registry import load_config


def write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"experiment": "landcover", **doc}))
    return path


def test_quick_and_thesis_configs_load(repo: Path) -> None:
    paths = [repo / "configs" / "landcover-quick.yaml", *sorted((repo / "configs" / "thesis").glob("landcover-*.yaml"))]
    for path in paths:
        cfg = load_config(path)
        assert isinstance(cfg, LandcoverConfig), path
        if cfg.training.mode == "model_parallel":
            LandcoverExperiment().scheme(cfg).check_cluster(cfg.training.workers)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"training": {"split": "fig9_99"}}, "training.split.*not found"),
        ({"training": {"split": "default", "workers": 2}}, "has 2 workers"),
        ({"data": {"patch_size": 24}}, "data.patch_size.*odd"),
        ({"data": {"hsi_bands": [3, 3]}}, "data.hsi_bands"),
        ({"data": {"hsi_bands": [0, 50]}}, "data.hsi_bands"),
        ({"model": {"rgb_filters": [8, 16]}}, "model.rgb_filters"),
        ({"monitor": {"interval_s": 0}}, "monitor.interval_s"),
        ({"experiment": "landcover_model_paralel"}, "unknown experiment"),
    ],
)
def test_bad_landcover_configs(tmp_path: Path, doc: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, doc))
