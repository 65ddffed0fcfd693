"""The redshift task as a regression, the usual photo-z set-up: the thesis's simulated spectra, a small 1D CNN
ending in one linear unit that predicts z itself, a Huber (or MSE) loss, scored with the same |dz|/(1+z)
metrics as the classifier (``ddl_commodity.data.redshift_metrics``) against the same trivial estimator.

    ddl run examples/redshift-regression-data-parallel.yaml   # Spark input + the staleness-weighted PS
    ddl run examples/redshift-regression-single.yaml          # one process, no Spark
"""

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from ddl_commodity.config import RunConfig, Strict
from ddl_commodity.data.parquet import Column
from ddl_commodity.data.redshift import NUM_BANDS, Z_MAX, Z_MIN
from ddl_commodity.experiments.api import Dataset, Experiment
from ddl_commodity.experiments.redshift import RedshiftDataSettings, RedshiftExperiment
from ddl_commodity.experiments.view import ExperimentView


class RegressionModel(Strict):
    """Per-spectrum normalisation -> Conv1D -> max pool (4) -> Conv1D -> max pool (4) -> Flatten -> Dense ->
    Dense(1, linear): z. Unlike the thesis's classifier it pools; the flattened positions still say where the
    lines are, at a quarter of the weights per step."""

    filters: int = Field(16, ge=1, le=256)
    kernel_size: int = Field(9, ge=1, le=64)
    units: int = Field(32, ge=1, le=1024)
    loss: Literal["huber", "mse"] = "huber"
    huber_delta: float = Field(0.1, gt=0.0)  # in z: errors beyond it count linearly (catastrophic outliers)


class RegressionConfig(RunConfig):
    data: RedshiftDataSettings = RedshiftDataSettings()
    model: RegressionModel = RegressionModel()


class RegressionView(ExperimentView):
    """The held-out |dz|/(1+z) curve, and the final model against always guessing the training median."""

    validation_curve = ("val_dz_median", "median |dz|/(1+z)")

    def console_lines(self, summary: dict) -> list[str]:
        final, trivial = summary.get("final", {}), summary.get("trivial_estimator")
        if final.get("val_dz_median") is None or not trivial:
            return []
        return [f"  held-out |dz|/(1+z): median {final['val_dz_median']:.4f}, NMAD {final['val_dz_nmad']:.4f}, "
                f"outliers (>0.15) {final['val_outlier_fraction']:.1%}; always z = {trivial['z']:.3f}: median "
                f"{trivial['dz_median']:.4f}, NMAD {trivial['dz_nmad']:.4f}"]


class RedshiftRegression(Experiment):
    """z from a spectrum; the data are the redshift experiment's (``data`` takes the same keys)."""

    config_class = RegressionConfig
    classification = False  # float targets, no accuracy
    view = RegressionView

    def data_file(self, cfg: RegressionConfig, progress: bool | None = None) -> Path:
        return RedshiftExperiment().data_file(cfg, progress)

    def load(self, cfg: RegressionConfig, path: Path) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        from ddl_commodity.data.redshift import load_redshift_h5

        data = load_redshift_h5(path)
        return (data.spectra,), data.z.astype(np.float32)

    def columns(self, cfg: RegressionConfig) -> tuple[tuple[Column, ...], Column]:
        """A data set of ``ddl data redshift --format parquet`` (``data.source``): the spectrum in, z out."""
        spectrum = Column("spectrum", (NUM_BANDS,), "float32", aliases=("spectra",))  # "spectra" in the .h5 files
        return (spectrum,), Column("z", (), "float64", (Z_MIN, Z_MAX))

    def build_model(self, cfg: RegressionConfig):
        import keras

        m, init = cfg.model, keras.initializers.GlorotUniform
        inputs = keras.Input((1800,), name="spectrum")
        x = keras.layers.Reshape((1800, 1), name="features_reshape")(inputs)
        x = keras.layers.LayerNormalization(axis=(1, 2), name="features_norm")(x)  # brightness varies by magnitudes
        x = keras.layers.Conv1D(m.filters, m.kernel_size, activation="relu", kernel_initializer=init(cfg.seed),
                                name="features_conv1")(x)
        x = keras.layers.MaxPooling1D(4, name="features_pool1")(x)
        x = keras.layers.Conv1D(m.filters, m.kernel_size, activation="relu", kernel_initializer=init(cfg.seed + 1),
                                name="features_conv2")(x)
        x = keras.layers.MaxPooling1D(4, name="features_pool2")(x)
        x = keras.layers.Flatten(name="features_flatten")(x)  # where a line is, is the redshift: keep positions
        x = keras.layers.Dense(m.units, activation="relu", kernel_initializer=init(cfg.seed + 2), name="head_dense")(x)
        middle = keras.initializers.Constant((Z_MIN + Z_MAX) / 2)  # start at the middle of the range, not z = 0
        z = keras.layers.Dense(1, kernel_initializer=init(cfg.seed + 3), bias_initializer=middle, name="head_z")(x)
        return keras.Model(inputs, z, name="redshift_regression")

    def loss(self, cfg: RegressionConfig):
        import keras

        return keras.losses.Huber(cfg.model.huber_delta) if cfg.model.loss == "huber" else "mse"

    def validation_metrics(self, outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        from ddl_commodity.data.redshift_metrics import point_metrics

        return point_metrics(outputs[:, 0], np.asarray(labels, np.float64))  # outputs: (N, 1) estimates of z

    def summary_sections(self, cfg: RegressionConfig, run_dir: Path, dataset) -> dict:
        from ddl_commodity.data.redshift_metrics import trivial_z_metrics

        if not isinstance(dataset, Dataset) or not len(dataset.validation_index):  # no rows on the driver: none
            return {}
        return {"trivial_estimator": trivial_z_metrics(dataset.labels[dataset.train_index],
                                                       dataset.labels[dataset.validation_index])}
