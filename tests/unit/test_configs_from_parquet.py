"""The switch that runs the thesis configs and the examples from Parquet (``data.as_parquet``): every
distributed config takes it, and its experiment declares the Parquet columns its data is written with."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: Examples whose experiment declares no Parquet columns yet: the switch is refused for them in one line.
WITHOUT_COLUMNS = {"field-yield-model-parallel"}
CONFIGS = sorted([*(REPO / "configs" / "thesis").glob("*.yaml"), *(REPO / "examples").glob("*.yaml")])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_distributed_config_runs_from_parquet_with_one_key(path: Path, monkeypatch) -> None:
    from ddl_commodity.config import merge, read_yaml
    from ddl_commodity.errors import ConfigError
    from ddl_commodity.experiments.registry import experiment_and_config

    monkeypatch.chdir(REPO)  # examples are named by dotted path from the repository's root
    monkeypatch.syspath_prepend(str(REPO))
    raw = read_yaml(path)
    switched = merge(raw, {"data": {"as_parquet": True}})
    _, cfg = experiment_and_config(raw, str(path), check=False)  # no model built: the schema only
    if cfg.training.engine == "single":  # a single-machine run loads its data file: refused, in one line
        with pytest.raises(ConfigError, match="read by distributed runs"):
            experiment_and_config(switched, str(path), check=False)
        return
    experiment, parquet = experiment_and_config(switched, str(path), check=False)
    if path.stem in WITHOUT_COLUMNS:
        with pytest.raises(ConfigError, match="declares no Parquet columns"):
            experiment.columns(parquet)
        return
    inputs, label = experiment.columns(parquet)
    assert inputs and all(c.shape for c in inputs) and label.shape == () and parquet.data.as_parquet
