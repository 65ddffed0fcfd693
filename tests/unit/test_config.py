"""Configuration validation: every bad input is one clear ConfigError naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ddl_commodity.config import THESIS_CRITERIA
from ddl_commodity.errors import ConfigError
from ddl_commodity.experiments.registry import load_config, parse_config


def write(tmp_path: Path, doc: object, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return p


def test_all_shipped_configs_load(repo: Path) -> None:
    files = sorted((repo / "configs").rglob("*.yaml"))
    assert files, "no configs shipped"
    for f in files:
        if "splits" in f.parts or "clusters" in f.parts:
            continue
        cfg = load_config(f)
        assert cfg.name


def test_shipped_cluster_profiles_load(repo: Path) -> None:
    from ddl_commodity.resources.profiles import load_profile

    files = sorted((repo / "configs" / "clusters").glob("*.yaml"))
    assert [f.stem for f in files] == ["thesis"]
    thesis = load_profile("thesis").resolve(machine_cores=2)
    # Chapter 4's five 1-core PCs on a 2-core machine: d = 2 / 5; links d x 1 Gbit/s; memory not dilated.
    assert thesis.dilation == 0.4 and thesis.nodes == 5
    assert thesis.worker.cpus == thesis.master.cpus == 0.4
    assert thesis.worker.memory == 2 * 2**30 and thesis.bandwidth == "400mbit"
    assert load_profile("thesis").resolve(machine_cores=8).dilation == 1.0  # never faster than the real PCs


def test_defaults_carry_the_thesis_early_stopping_criteria() -> None:
    cfg = parse_config({})
    assert cfg.early_stopping == THESIS_CRITERIA
    assert [(c.patience, c.min_delta) for c in cfg.early_stopping] == [(1, 0.001), (3, 0.0001)]


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"trainig": {}}, "trainig: unknown key"),
        ({"training": {"epochs": "many"}}, "training.epochs"),
        ({"training": {"workers": 0}}, "training.workers"),
        ({"training": {"workers": 2}, "ps": {"s": 3}}, "ps.s=3 exceeds training.workers=2"),
        ({"training": {"workers": 3}, "cluster": {"spark_workers": 3}}, "need as many Spark executors"),
        ({"training": {"data_distribution": "random"}}, "training.data_distribution"),
        ({"ps": {"staleness": "linear"}}, "ps.staleness"),
        ({"cluster": {"master": "yarn"}}, "cluster.master"),
        ({"cluster": {"worker_memory": "2 GB"}}, "cluster.worker_memory"),
        ({"name": "has space"}, "name"),
        ({"data": {"validation_fraction": 0.9}}, "data.validation_fraction"),
        ({"model": {"filters": [8, 0]}}, "model.filters"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, doc: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, doc))
    assert needle in str(err.value)
    assert str(tmp_path / "c.yaml") in str(err.value)


def test_malformed_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "training: [unclosed"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_overrides_merge_nested(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, {"training": {"workers": 3, "epochs": 2}}),
                      {"training": {"epochs": 7}, "cluster": {"master": "spark://h:7077"}})
    assert (cfg.training.workers, cfg.training.epochs, cfg.cluster.master) == (3, 7, "spark://h:7077")


def test_duplicate_keys_are_refused_with_their_line(tmp_path: Path) -> None:
    path = write(tmp_path, "experiment: redshift\nname: a\nexperiment: landcover\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'experiment' on line 3 \(first on line 1\)"):
        load_config(path)
    nested = write(tmp_path, "training:\n  epochs: 2\n  workers: 2\n  epochs: 3\n", "n.yaml")
    with pytest.raises(ConfigError, match=r"duplicate key 'epochs' on line 4"):
        load_config(nested)


def test_unknown_optimizer_and_experiment_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown optimizer 'adamw'"):
        load_config(write(tmp_path, {"training": {"optimizer": "adamw"}}))
    with pytest.raises(ConfigError, match="cannot be imported"):
        load_config(write(tmp_path, {"experiment": "no_such_module:Thing"}))
    with pytest.raises(ConfigError, match="not an Experiment subclass"):
        load_config(write(tmp_path, {"experiment": "pathlib:Path"}))


def test_every_registered_optimizer_and_staleness_function_resolves() -> None:
    """The registries are the only lists of names: each name the config accepts builds what it names."""
    from ddl_commodity.config import OPTIMIZERS
    from ddl_commodity.engines.training import get_optimizer
    from ddl_commodity.ps.staleness import STALENESS_FUNCTIONS, make_staleness

    for name in OPTIMIZERS:
        assert type(get_optimizer(name, 0.01)).__name__.lower() == name
        assert parse_config({"training": {"optimizer": name}}).training.optimizer == name
    for name in STALENESS_FUNCTIONS:
        assert 0.0 < make_staleness(name, 0.5)(2) <= 1.0
        assert parse_config({"ps": {"staleness": name}}).ps.staleness == name


def test_cluster_profile_and_node_limits_are_validated_at_load() -> None:
    cfg = parse_config({"cluster": {"profile": "thesis", "node_memory": "1G", "master_cpus": 1}})
    assert cfg.cluster.profile == "thesis" and cfg.cluster.node_memory == "1g" and cfg.cluster.master_cpus == 1
    with pytest.raises(ConfigError, match="cluster profile 'nope' not found \\(known: thesis\\)"):
        parse_config({"cluster": {"profile": "nope"}})
    with pytest.raises(ConfigError, match="node_memory"):
        parse_config({"cluster": {"node_memory": "lots"}})
    with pytest.raises(ConfigError, match="node_cpus"):
        parse_config({"cluster": {"node_cpus": 0}})
