"""Redshift errors (|dz|/(1+z) median, NMAD, outliers, within k classes) and the engines' shared scoring."""

from __future__ import annotations

import numpy as np
import pytest

from ddl_commodity.data.redshift import NUM_CLASSES, z_to_label
from ddl_commodity.data.redshift_metrics import class_centres, point_metrics, redshift_metrics, trivial_metrics
from ddl_commodity.engines.scoring import prefixed, scores_from_probs


def one_hot(classes: np.ndarray, n: int = NUM_CLASSES) -> np.ndarray:
    probs = np.zeros((len(classes), n), np.float32)
    probs[np.arange(len(classes)), classes] = 1.0
    return probs


def test_class_centres_fall_in_their_own_class() -> None:
    centres = class_centres()
    assert centres.shape == (NUM_CLASSES,)
    assert np.array_equal(z_to_label(centres), np.arange(NUM_CLASSES))


def test_a_perfect_estimator_has_no_error() -> None:
    labels = np.arange(0, NUM_CLASSES, 7)
    m = redshift_metrics(one_hot(labels), labels)
    assert m["dz_median"] == 0 and m["dz_nmad"] == 0 and m["outlier_fraction"] == 0
    assert m["within_1"] == m["within_5"] == 1.0
    assert m["dz_median_expected"] == pytest.approx(0, abs=1e-12)


def test_nmad_is_the_standard_deviation_of_gaussian_errors() -> None:
    rng = np.random.default_rng(0)
    z = rng.uniform(1.0, 1.8, 200_000)
    dz = rng.normal(0.01, 0.02, z.size)  # a biased but Gaussian estimator
    m = point_metrics(z + dz * (1 + z), z)
    assert m["dz_nmad"] == pytest.approx(0.02, rel=0.02)  # the bias does not count as scatter
    assert m["dz_median"] == pytest.approx(np.median(np.abs(dz)), rel=1e-6)
    assert m["outlier_fraction"] == 0


def test_outliers_and_bins_off() -> None:
    labels = np.array([100, 100, 100, 100])
    predicted = np.array([100, 101, 105, 700])  # 0, 1, 5 and 600 bins off; 600 bins = 0.6 in z
    m = redshift_metrics(one_hot(predicted), labels)
    assert m["within_1"] == 0.5 and m["within_5"] == 0.75
    assert m["outlier_fraction"] == 0.25  # 0.6 / (1 + 1.1) > 0.15; 0.005 / 2.1 is not


def test_softmax_expected_z_averages_the_class_centres() -> None:
    probs = np.zeros((1, NUM_CLASSES), np.float32)
    probs[0, [100, 300]] = 0.5  # expected z lies half-way: 200 bins from both
    m = redshift_metrics(probs, np.array([200]))
    assert m["dz_median_expected"] == pytest.approx(0, abs=1e-6)
    assert m["dz_median"] == pytest.approx(0.1 / (1 + class_centres()[200]), rel=1e-6)


def test_trivial_estimator_is_the_training_median() -> None:
    train = np.array([0, 10, 400, 799, 401])
    t = trivial_metrics(train, np.array([400]))
    assert t["z"] == class_centres()[400]
    assert t["dz_median"] == 0 and t["outlier_fraction"] == 0


def test_scores_match_keras_loss_and_accuracy() -> None:
    import keras

    rng = np.random.default_rng(1)
    logits = rng.normal(size=(64, 10)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 10, 64)
    s = scores_from_probs(probs, labels, extra=lambda p, y: {"rows": float(len(y))})
    keras_loss = float(np.mean(keras.losses.sparse_categorical_crossentropy(labels, probs)))
    assert s["loss"] == pytest.approx(keras_loss, rel=1e-5)
    assert s["accuracy"] == np.mean(probs.argmax(1) == labels) and s["rows"] == 64.0
    assert prefixed(s, "val_")["val_rows"] == 64.0 and prefixed({}, "g_") == {"g_loss": None, "g_accuracy": None}


@pytest.mark.parametrize(("model", "says"), [(0.0004, "193x smaller"), (0.0565, "1.4x smaller"),
                                             (0.075, "NOT clearly better"), (0.2, "NOT clearly better")])
def test_console_verdict_against_the_trivial_estimator(model: float, says: str) -> None:
    from ddl_commodity.experiments.registry import view_of

    summary = {"final": {"val_dz_median": model, "val_dz_nmad": 0.1, "val_outlier_fraction": 0.1,
                         "val_within_1": 0.5},
               "trivial_estimator": {"z": 1.4, "dz_median": 0.0772, "dz_nmad": 0.12, "outlier_fraction": 0.1}}
    lines = view_of("redshift").console_lines(summary)
    assert len(lines) == 3 and says in lines[-1], lines
