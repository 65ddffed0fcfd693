"""A user's multi-branch model: a field's yield from two inputs in four blocks, three of them branches.

    ddl run examples/field-yield-model-parallel.yaml   # each branch on its own worker (examples/splits/)
    ddl plan examples/field-yield-model-parallel.yaml  # predict that split and search for a better one

Inputs (in the order ``build_model`` declares them): ``field``, a (24, 24, 4) patch of the field in four bands,
and ``weather``, 52 weeks of (rain, temperature, sunshine). Blocks (layer-name prefixes): ``field`` (two 2D
convolutions, pooling), ``weather`` (two 1D convolutions over the weeks), ``season`` (the weekly series
flattened into one dense layer: a second branch on the same input) and ``head`` (concatenation, dense, one
linear unit: the yield in tonnes per hectare). A regression with a Huber loss: the planner profiles it with the
loss it trains with.
"""

from pathlib import Path

import numpy as np
from pydantic import Field

from ddl_commodity.config import DataSettingsBase, RunConfig, Strict
from ddl_commodity.experiments.api import Experiment

SIZE, BANDS, WEEKS, WEATHER = 24, 4, 52, 3


class FieldData(DataSettingsBase):
    path: Path = Path("data/field_yield.npz")  # field: (N, 24, 24, 4), weather: (N, 52, 3) float32; y: (N,) t/ha
    samples: int = Field(1200, ge=100)  # how many to write when the file does not exist yet


class FieldModel(Strict):
    filters: int = Field(16, ge=1, le=256)  # of each convolution of the field and weather branches
    units: int = Field(32, ge=1, le=1024)  # of the season branch's and the head's dense layers


class FieldConfig(RunConfig):
    data: FieldData = FieldData()
    model: FieldModel = FieldModel()


def synthetic_fields(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(field (n, 24, 24, 4), weather (n, 52, 3), yield (n,))``: the yield grows with the green band's cover
    (band 1) and the rain of the growing weeks (10-30), and drops with a hot spell in weeks 20-30."""
    rng = np.random.default_rng(seed)
    cover = rng.uniform(0.2, 1.0, n)
    field = rng.normal(0, 0.2, (n, SIZE, SIZE, BANDS))
    field[..., 1] += cover[:, None, None] * (rng.uniform(0, 1, (n, SIZE, SIZE)) < cover[:, None, None])
    weather = rng.normal(0, 1, (n, WEEKS, WEATHER))
    rain, heat = weather[:, 10:30, 0].mean(axis=1), weather[:, 20:30, 1].max(axis=1)
    y = 4.0 + 3.0 * cover + 1.5 * rain - 0.8 * np.maximum(heat - 1.5, 0) + rng.normal(0, 0.3, n)
    return field.astype(np.float32), weather.astype(np.float32), y.astype(np.float32)


class FieldYieldExperiment(Experiment):
    """The yield of a field from an image of it and its season's weather."""

    config_class = FieldConfig
    classification = False  # float targets, no accuracy

    def data_file(self, cfg: FieldConfig, progress: bool | None = None) -> Path:
        path = Path(cfg.data.path)
        if not path.is_file():  # your own file goes in data.path; this writes a demo set once
            field, weather, y = synthetic_fields(cfg.data.samples, cfg.seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, field=field, weather=weather, y=y)
        return path

    def load(self, cfg: FieldConfig, path: Path) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        with np.load(path) as f:
            return (f["field"], f["weather"]), f["y"]  # in the order build_model declares its inputs

    def build_model(self, cfg: FieldConfig):
        import keras

        m, init, layers = cfg.model, keras.initializers.GlorotUniform, keras.layers
        field = keras.Input((SIZE, SIZE, BANDS), name="field")
        weather = keras.Input((WEEKS, WEATHER), name="weather")
        f = layers.Conv2D(m.filters, 3, activation="relu", kernel_initializer=init(cfg.seed), name="field_conv1")(field)
        f = layers.MaxPooling2D(2, name="field_pool")(f)
        f = layers.Conv2D(m.filters, 3, activation="relu", kernel_initializer=init(cfg.seed + 1),
                          name="field_conv2")(f)
        f = layers.GlobalAveragePooling2D(name="field_mean")(f)
        w = layers.Conv1D(m.filters, 5, activation="relu", kernel_initializer=init(cfg.seed + 2),
                          name="weather_conv1")(weather)
        w = layers.Conv1D(m.filters, 3, activation="relu", kernel_initializer=init(cfg.seed + 3),
                          name="weather_conv2")(w)
        w = layers.GlobalMaxPooling1D(name="weather_max")(w)
        s = layers.Flatten(name="season_flatten")(weather)  # which week it rained matters: keep the positions
        s = layers.Dense(m.units, activation="relu", kernel_initializer=init(cfg.seed + 4), name="season_dense")(s)
        h = layers.Concatenate(name="head_concat")([f, w, s])
        h = layers.Dense(m.units, activation="relu", kernel_initializer=init(cfg.seed + 5), name="head_dense")(h)
        middle = keras.initializers.Constant(6.0)  # start near the typical yield, not 0 t/ha
        out = layers.Dense(1, kernel_initializer=init(cfg.seed + 6), bias_initializer=middle, name="head_yield")(h)
        return keras.Model([field, weather], out, name="field_yield")

    def loss(self, cfg: FieldConfig):
        import keras

        return keras.losses.Huber(1.0)
