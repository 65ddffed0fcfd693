"""The experiment API: what is trained (``Experiment``) apart from how it is shown (``ExperimentView``), former
names refused with the new one, and a model that does not classify (float targets, any Keras loss) trained and
scored like a classifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from ddl_commodity.config import RunConfig
from ddl_commodity.errors import ConfigError
from ddl_commodity.experiments.api import Experiment
from ddl_commodity.experiments.registry import experiment_and_config, get, load, view_of
from ddl_commodity.experiments.view import ExperimentView, LossView

REPO = Path(__file__).resolve().parents[2]


class _Classifier(Experiment):
    """A user's experiment: no view of its own."""


class _Regression(Experiment):
    """Float targets ``(N,)`` from inputs ``(N, 4)``: ``y = x . w + 1``, learnt by one linear unit with MSE."""

    classification = False

    def data_file(self, cfg: RunConfig, progress: bool | None = None) -> Path:
        return Path("in-memory")

    def load(self, cfg: RunConfig, path: Path) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        x = np.random.default_rng(cfg.seed).normal(size=(256, 4)).astype(np.float32)
        return (x,), x @ np.array([0.5, -1.0, 2.0, 0.25]) + 1.0  # float64: the dataset makes it float32

    def build_model(self, cfg: RunConfig):
        import keras

        inputs = keras.Input((4,), name="x")
        return keras.Model(inputs, keras.layers.Dense(1, name="head_y")(inputs))

    def loss(self, cfg: RunConfig) -> str:
        return "mse"

    def validation_metrics(self, outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        return {"mae": float(np.mean(np.abs(outputs[:, 0] - labels)))}


def test_an_experiment_holds_only_what_is_trained() -> None:
    for shown in ("console_lines", "report_lines", "at_scale", "validation_curve"):
        assert not hasattr(Experiment, shown), shown
    view = ExperimentView()
    assert view.validation_curve == ("val_accuracy", "validation accuracy")
    assert view.console_lines({"final": {}}) == [] and view.report_lines({"final": {}}) == []
    raw = {"training": {"epochs": 3}}
    assert view.at_scale(raw, "smoke") is raw and raw == {"training": {"epochs": 3}}


def test_views_of_the_builtin_and_of_user_experiments() -> None:
    from ddl_commodity.experiments.landcover import LandcoverView
    from ddl_commodity.experiments.redshift import RedshiftView

    assert type(view_of(get("redshift"))) is RedshiftView and type(view_of("landcover")) is LandcoverView
    assert view_of("redshift").validation_curve == ("val_dz_median", "median |dz|/(1+z)")
    assert type(view_of(_Classifier())) is ExperimentView
    assert type(view_of(_Regression())) is LossView and LossView.validation_curve[0] == "val_loss"
    # a run directory of before the rename is still shown as its experiment's
    assert type(view_of("redshift_data_parallel")) is RedshiftView
    with pytest.raises(ConfigError, match="unknown experiment 'nope'"):
        view_of("nope")


def test_the_views_size_reproduction_runs() -> None:
    smoke = view_of("redshift").at_scale({"data": {"samples": 5000}}, "smoke")
    assert smoke["data"]["samples"] == 400 and smoke["training"]["epochs"] == 3
    small = view_of("landcover").at_scale({"training": {"epochs": 10}}, "small")
    assert small["training"] == {"epochs": 3, "steps_per_epoch": 20}


@pytest.mark.parametrize(("old", "new"), [("redshift_data_parallel", "redshift"),
                                          ("landcover_model_parallel", "landcover")])
def test_a_former_experiment_name_is_refused_naming_the_new_one(tmp_path: Path, old: str, new: str) -> None:
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({"experiment": old, "name": "x"}))
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(err.value) == f"{path}: experiment {old!r} was renamed: use {new!r} (training.mode says how)"
    assert "\n" not in str(err.value)


def test_the_distributed_mode_is_refused_naming_data_parallel() -> None:
    with pytest.raises(ConfigError) as err:
        experiment_and_config({"experiment": "redshift", "training": {"mode": "distributed"}}, "c.yaml")
    assert str(err.value) == "c.yaml: training.mode 'distributed' was renamed: use 'data_parallel'"
    with pytest.raises(ConfigError, match=r"training\.mode"):  # not an alias behind the registry's back either
        experiment_and_config({"experiment": "landcover", "training": {"mode": "distributed"}})
    experiment, cfg = experiment_and_config({"training": {"mode": "data_parallel", "workers": 2}})
    assert experiment.name == "redshift" and cfg.experiment == "redshift" and cfg.training.engine == "data_parallel"


def test_shipped_example_configs_load() -> None:
    files = sorted((REPO / "examples").glob("*.yaml"))
    assert len(files) >= 5
    for f in files:
        experiment, cfg = load(f)
        assert cfg.name and experiment.check(cfg) is None


def test_labels_keep_the_task_s_dtype() -> None:
    cfg = RunConfig(experiment="x", training={"mode": "single", "batch_size": 16})
    data = _Regression().dataset(cfg)
    assert data.labels.dtype == np.float32 and data.labels.shape == (256,)
    assert _Classifier().label_dtype == np.int32


def test_float_labels_travel_through_the_feed_unchanged() -> None:
    """The chunks Spark packs and the bundles a worker gets keep the labels' dtype and values."""
    from ddl_commodity.data.rdd import Chunk, _pack, _select

    rows = [(i, (np.full(3, i, np.float32), np.float32(0.25 * i + 1.0))) for i in range(5)]
    chunk = next(_pack(iter(rows)))
    assert chunk.y.dtype == np.float32 and chunk.y.tolist() == [1.0, 1.25, 1.5, 1.75, 2.0]
    picked = _select(Chunk(*chunk), np.array([0, -1, 0, 1, 0]), 0)
    assert picked.y.dtype == np.float32 and picked.y.tolist() == [1.0, 1.5, 2.0]
    classes = next(_pack(iter([(0, (np.zeros(3, np.float32), np.int32(7)))])))
    assert classes.y.dtype == np.int32


def test_scores_of_a_regression_with_any_keras_loss() -> None:
    import keras

    from ddl_commodity.engines.scoring import Objective, prefixed, scores

    y = np.array([1.0, 1.5, 2.0, 1.2], np.float32)
    out = np.array([[1.1], [1.3], [2.6], [1.2]], np.float32)
    mse = scores(out, y, Objective("mse", classification=False))
    assert mse == {"loss": pytest.approx(np.mean((out[:, 0] - y) ** 2), rel=1e-6)}
    huber = scores(out, y, Objective(keras.losses.Huber(0.1), False, lambda o, t: {"n": float(len(t))}))
    err = np.abs(out[:, 0] - y)
    expected = np.mean(np.where(err <= 0.1, 0.5 * err**2, 0.1 * err - 0.005))
    assert huber["loss"] == pytest.approx(expected, rel=1e-5) and huber["n"] == 4.0 and "accuracy" not in huber
    record = prefixed(mse, "val_")
    assert record["val_accuracy"] is None and record["val_loss"] == mse["loss"]


def test_the_classifier_scores_as_before_and_through_keras() -> None:
    """The default objective is the NumPy cross-entropy; the same loss as a Keras object (any
    classifier's own loss goes that way) gives the same numbers."""
    import keras

    from ddl_commodity.engines.scoring import Objective, scores, scores_from_probs

    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]], np.float32)
    labels = np.array([0, 1, 1], np.int32)
    assert scores(probs, labels, Objective()) == scores_from_probs(probs, labels)
    through_keras = scores(probs, labels, Objective(keras.losses.SparseCategoricalCrossentropy()))
    assert through_keras["accuracy"] == pytest.approx(2 / 3)
    assert through_keras["loss"] == pytest.approx(scores_from_probs(probs, labels)["loss"], rel=1e-5)


def test_a_regression_trains_and_scores_in_single_mode(tmp_path: Path) -> None:
    from ddl_commodity.engines.single import train_single

    experiment = _Regression()
    cfg = RunConfig(experiment="x", training={"mode": "single", "epochs": 4, "batch_size": 16,
                                              "learning_rate": 0.05})
    final = train_single(experiment, cfg, experiment.dataset(cfg), tmp_path)
    records = [json.loads(line) for line in (tmp_path / "workers" / "single.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert all(r["accuracy"] is None and r["val_accuracy"] is None for r in records)
    assert records[-1]["val_loss"] < records[0]["val_loss"] / 2 and records[-1]["loss"] < records[0]["loss"]
    assert set(final) == {"val_loss", "val_mae"} and final["val_loss"] == records[-1]["val_loss"]
    assert (tmp_path / "model.keras").is_file()


def test_the_regression_example_beats_the_median_in_single_mode(tmp_path: Path, monkeypatch) -> None:
    """examples/redshift_regression.py, tiny: trained on float z, scored by |dz|/(1+z) like the classifier."""
    from ddl_commodity.engines.single import train_single

    monkeypatch.chdir(REPO)  # the example is imported by dotted path from the checkout, as a user runs it
    experiment, cfg = load(REPO / "examples" / "redshift-regression-single.yaml", {
        "data": {"samples": 1200, "cache_dir": str(tmp_path / "data")}, "training": {"epochs": 3}})
    data = experiment.dataset(cfg)
    assert data.labels.dtype == np.float32 and 1.0 <= data.labels.min() < data.labels.max() < 1.8
    final = train_single(experiment, cfg, data, tmp_path, save_model=False)
    trivial = experiment.summary_sections(cfg, tmp_path, data)["trivial_estimator"]
    assert {"val_loss", "val_dz_median", "val_dz_nmad", "val_outlier_fraction"} <= set(final)
    assert final["val_dz_median"] < trivial["dz_median"], (final, trivial)
