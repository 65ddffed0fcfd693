"""`ddl reproduce`'s sizes: every run of every scale is a valid config, the thesis scale keeps the thesis's
sizes with >= 150 steady-state steps per land-cover run, seeds make repetitions, and ``--master`` sends
every run to a standing cluster."""

from __future__ import annotations

import pytest

from ddl_commodity.errors import UserInputError
from ddl_commodity.experiments.registry import parse_config
from ddl_commodity.reproduce.runner import _placed, experiment_set, reproduce, resized_config, where_and_when
from ddl_commodity.reproduce.runsets import CLAIM_RUNS, SCALES, config_and_seed, get


@pytest.mark.parametrize("scale", list(SCALES))
def test_every_run_of_every_scale_is_a_valid_config(scale: str) -> None:
    names = experiment_set(scale, None)
    assert len(names) == len(set(names)) and names
    for name in names:
        cfg = parse_config(resized_config(name, scale), source=name)
        assert cfg.name == name


def test_every_scale_but_full_runs_every_claims_runs() -> None:
    for scale in ("smoke", "small", "thesis"):
        assert set(CLAIM_RUNS) <= set(get(scale).runs), scale


def test_the_thesis_scale_keeps_the_thesis_sizes() -> None:
    assert get("thesis").profile == "thesis" and get("thesis").budget_minutes == 150
    redshift = parse_config(resized_config("redshift-5k-same-3w", "thesis"))
    assert redshift.data.samples == 5000 and redshift.training.epochs == 20
    assert redshift.model == type(redshift.model)()  # the thesis-size default network
    for name in get("thesis").runs:
        if not name.startswith("landcover"):
            continue
        cfg = parse_config(resized_config(name, "thesis"))
        assert cfg.data.patches_per_class in (125, 400), name  # 2.5K and 8K patches
        t = cfg.training
        rows = cfg.data.patches_per_class * 20 * (1 - cfg.data.validation_fraction)
        if t.mode == "data_parallel":
            rows /= t.workers
        per_epoch = min(t.steps_per_epoch or 10**9, int(rows // t.batch_size))
        assert (t.epochs - 1) * per_epoch >= 150, (name, t.epochs, per_epoch)  # epoch 1 carries set-up


def test_seeded_runs_repeat_a_cell_with_another_seed() -> None:
    assert config_and_seed("redshift-5k-same-3w-seed2") == ("redshift-5k-same-3w", 2)
    assert config_and_seed("landcover-fig6_7") == ("landcover-fig6_7", None)
    seeded = [n for n in get("thesis").runs if config_and_seed(n)[1]]
    assert len(seeded) == 8  # 1 and 3 workers, same and disjoint, seeds 2 and 3
    assert parse_config(resized_config("redshift-5k-disjoint-1w-seed3", "thesis")).seed == 3


def test_unknown_scale_and_empty_selection_are_refused() -> None:
    with pytest.raises(UserInputError, match="--scale must be one of smoke, small, thesis, full"):
        get("huge")
    with pytest.raises(UserInputError, match="matches no experiment"):
        experiment_set("smoke", "nothing-*")


@pytest.mark.parametrize(("master", "profile", "says"), [
    ("spark://head", None, "--master must be a standalone cluster's URL like spark://host:7077"),
    ("embedded", None, "--master must be a standalone cluster's URL"),
    ("spark://head:7077", "thesis", "give one of them"),
])
def test_a_bad_master_is_refused_before_anything_is_written(tmp_path, master: str, profile: str | None,
                                                            says: str) -> None:
    with pytest.raises(UserInputError, match=says):
        reproduce("smoke", tmp_path / "repro", master=master, profile=profile)
    assert not (tmp_path / "repro").exists()


def test_runs_of_a_reproduction_on_a_standing_cluster_are_submitted_to_it(tmp_path) -> None:
    """Every run's config names the cluster, no profile is applied, and the header says where it ran."""
    doc = _placed(resized_config("landcover-fig6_7", "thesis"), None, "spark://head:7077", tmp_path, tmp_path)
    assert doc["cluster"]["master"] == "spark://head:7077" and "profile" not in doc["cluster"]
    assert parse_config(doc).cluster.master == "spark://head:7077"
    assert where_and_when(None, "spark://head:7077")["master"] == "spark://head:7077"
