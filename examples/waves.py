"""Bring your own model: a user's experiment in one file (docs/guides/your-own-model.md). Run it with ``ddl run
examples/waves-data-parallel.yaml`` (Spark input, the PS) or ``examples/waves-model-parallel.yaml`` (two blocks)."""

from pathlib import Path

import numpy as np
from pydantic import Field

from ddl_commodity.config import DataSettingsBase, RunConfig
from ddl_commodity.data.parquet import Column
from ddl_commodity.experiments.api import Experiment


class WaveData(DataSettingsBase):
    path: Path = Path("data/waves.npz")  # x: (N, 64) float32 signals, y: (N,) int labels
    samples: int = Field(1200, ge=100)  # how many to write when the file does not exist yet


class WaveConfig(RunConfig):
    data: WaveData = WaveData()


class WaveExperiment(Experiment):
    """Tell sine, square, saw-tooth and noise apart: a small 1D CNN in two blocks, ``features`` and ``head``."""

    config_class = WaveConfig

    def data_file(self, cfg: WaveConfig, progress: bool | None = None) -> Path:
        path = Path(cfg.data.path)
        if not path.is_file():  # your own file goes in data.path; this writes a demo set once
            rng = np.random.default_rng(cfg.seed)
            n = cfg.data.samples
            y = rng.integers(0, 4, n)
            t = np.linspace(0, 4 * np.pi, 64) * rng.uniform(0.5, 2.0, (n, 1))
            waves = np.stack([np.sin(t), np.sign(np.sin(t)), (t % np.pi) / np.pi - 0.5, rng.normal(0, 0.7, t.shape)])
            x = waves[y, np.arange(n)] + rng.normal(0, 0.3, t.shape)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, x=x.astype(np.float32), y=y.astype(np.int32))
        return path

    def load(self, cfg: WaveConfig, path: Path) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        with np.load(path) as f:
            return (f["x"],), f["y"]

    def columns(self, cfg: WaveConfig):  # the same data as Parquet (data.as_parquet, data.source)
        return (Column("signal", (64,)),), Column("label", (), "int32", (0, 4))

    def build_model(self, cfg: WaveConfig):
        import keras

        init = keras.initializers.GlorotUniform
        inputs = keras.Input((64,), name="signal")
        x = keras.layers.Reshape((64, 1), name="features_reshape")(inputs)
        x = keras.layers.Conv1D(16, 5, activation="relu", kernel_initializer=init(cfg.seed), name="features_conv")(x)
        x = keras.layers.GlobalMaxPooling1D(name="features_pool")(x)
        x = keras.layers.Dense(32, activation="relu", kernel_initializer=init(cfg.seed + 1), name="head_dense")(x)
        outputs = keras.layers.Dense(4, activation="softmax", kernel_initializer=init(cfg.seed + 2), name="head_out")(x)
        return keras.Model(inputs, outputs, name="waves")
