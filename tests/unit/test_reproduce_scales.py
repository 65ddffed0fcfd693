"""`ddl reproduce`'s sizes: every run of every scale is a valid config, the thesis scale runs every claim's runs
at the thesis's sizes with an ETA from the start, seeds make repetitions, and ``--master`` sends every run to a
standing cluster."""

from __future__ import annotations

import pytest

from ddl_commodity.errors import UserInputError
from ddl_commodity.experiments.registry import parse_config
from ddl_commodity.reproduce.claims import CLAIMS
from ddl_commodity.reproduce.runner import _placed, experiment_set, reproduce, resized_config, where_and_when
from ddl_commodity.reproduce.runsets import CLAIM_RUNS, SCALES, config_and_seed, estimated_seconds, get


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


def test_the_thesis_scale_runs_every_claims_runs_at_the_thesis_sizes() -> None:
    """Every run a claim reads, 5K and 15K spectra for 20 epochs, 2.5K and 8K patches for 10 full epochs (at
    least 150 steady steps), on the thesis profile, without a budget (it resumes instead)."""
    thesis = get("thesis")
    assert thesis.profile == "thesis" and thesis.budget_minutes is None
    assert {run for c in CLAIMS for run in c.runs} <= set(thesis.runs)
    redshift = parse_config(resized_config("redshift-5k-same-3w", "thesis"))
    assert redshift.data.samples == 5000 and redshift.training.epochs == 20
    assert redshift.model == type(redshift.model)()  # the thesis-size default network
    assert parse_config(resized_config("redshift-15k-disjoint-3w", "thesis")).data.samples == 15000
    for name in thesis.runs:
        if not name.startswith("landcover"):
            continue
        cfg = parse_config(resized_config(name, "thesis"))
        assert cfg.data.patches_per_class in (125, 400), name  # 2.5K and 8K patches
        t = cfg.training
        rows = cfg.data.patches_per_class * 20 * (1 - cfg.data.validation_fraction)
        if t.mode == "data_parallel":
            rows /= t.workers
        per_epoch = int(rows // t.batch_size)
        assert t.steps_per_epoch is None and t.epochs >= 10, (name, t.epochs)  # full epochs, the thesis's 10
        assert (t.epochs - 1) * per_epoch >= 150, (name, t.epochs, per_epoch)  # epoch 1 carries set-up


def test_the_thesis_scale_has_an_eta_from_the_start() -> None:
    """Every run of the thesis scale has an expected time (the ETA before any run ended): about 9 hours, as
    `--help` says."""
    runs = get("thesis").runs
    seconds = [estimated_seconds(n, "thesis") for n in runs]
    assert None not in seconds and 8 * 3600 < sum(seconds) < 10 * 3600
    assert estimated_seconds("redshift-5k-same-3w", "smoke") is None


def test_seeded_runs_repeat_a_cell_with_another_seed() -> None:
    assert config_and_seed("redshift-5k-same-3w-seed2") == ("redshift-5k-same-3w", 2)
    assert config_and_seed("landcover-fig6_7") == ("landcover-fig6_7", None)
    seeded = {config_and_seed(n) for n in get("thesis").runs if config_and_seed(n)[1]}
    for cell in ("redshift-5k-same-2w", "redshift-5k-disjoint-3w", "redshift-15k-same-1w", "redshift-15k-single"):
        assert {(cell, 2), (cell, 3)} <= seeded, cell  # 3 seeds where the verdicts turn on noise
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
