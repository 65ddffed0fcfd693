"""A user's model with two inputs and three blocks: 16 tabular features of a machine and a (40, 3) trace of its
vibration (40 time steps, 3 axes) say whether it runs normally, is out of balance or has a worn bearing.

    ddl run examples/two-inputs-data-parallel.yaml    # Spark input + the staleness-weighted PS
    ddl run examples/two-inputs-model-parallel.yaml   # each block on its own worker (examples/splits/)
    ddl plan examples/two-inputs-model-parallel.yaml  # predict that split and search for a better one

The model declares its inputs as ``[tabular, trace]``; the trace's branch is the deeper one, so Keras's graph
lists the trace first: what the planner profiles must follow the declared order.
"""

from pathlib import Path

import numpy as np
from pydantic import Field

from ddl_commodity.config import DataSettingsBase, RunConfig, Strict
from ddl_commodity.data.parquet import Column
from ddl_commodity.experiments.api import Experiment

STEPS, AXES, FEATURES, CLASSES = 40, 3, 16, 3


class MachineData(DataSettingsBase):
    path: Path = Path("data/two_inputs.npz")  # tabular: (N, 16), trace: (N, 40, 3) float32; y: (N,) int classes
    samples: int = Field(1200, ge=100)  # how many to write when the file does not exist yet


class TwoInputModel(Strict):
    filters: int = Field(16, ge=1, le=256)  # of each 1D convolution of the trace branch
    units: int = Field(32, ge=1, le=1024)  # of the tabular branch's and the head's dense layers


class TwoInputConfig(RunConfig):
    data: MachineData = MachineData()
    model: TwoInputModel = TwoInputModel()


def synthetic_machines(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(tabular (n, 16), trace (n, 40, 3), labels (n,))``: class 1 adds a once-per-turn wobble to the trace,
    class 2 a fast rattle and a warmer bearing (tabular feature 0); neither input alone is always enough."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    t = np.linspace(0, 2 * np.pi, STEPS)[None, :, None] * rng.uniform(0.8, 1.2, (n, 1, 1))
    trace = np.sin(4 * t) + rng.normal(0, 0.4, (n, STEPS, AXES))
    trace += (y == 1)[:, None, None] * 0.6 * np.sin(t + rng.uniform(0, np.pi, (n, 1, AXES)))
    trace += (y == 2)[:, None, None] * 0.3 * np.sin(15 * t) * rng.uniform(0.2, 1.0, (n, 1, 1))
    tabular = rng.normal(0, 1, (n, FEATURES))
    tabular[:, 0] += 0.8 * (y == 2)
    return tabular.astype(np.float32), trace.astype(np.float32), y.astype(np.int32)


class TwoInputExperiment(Experiment):
    """Blocks (layer-name prefixes): ``trace`` (two 1D convolutions, pooling), ``tab`` (a dense layer) and
    ``head`` (concatenation, dense, softmax)."""

    config_class = TwoInputConfig

    def data_file(self, cfg: TwoInputConfig, progress: bool | None = None) -> Path:
        path = Path(cfg.data.path)
        if not path.is_file():  # your own file goes in data.path; this writes a demo set once
            tabular, trace, y = synthetic_machines(cfg.data.samples, cfg.seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, tabular=tabular, trace=trace, y=y)
        return path

    def load(self, cfg: TwoInputConfig, path: Path) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        with np.load(path) as f:
            return (f["tabular"], f["trace"]), f["y"]  # in the order build_model declares its inputs

    def columns(self, cfg: TwoInputConfig) -> tuple[tuple[Column, ...], Column]:
        """The same data as Parquet (``data.as_parquet``, ``data.source``): both inputs, in the model's order."""
        return (Column("tabular", (FEATURES,)), Column("trace", (STEPS, AXES))), Column("label", (), "int32",
                                                                                       (0, CLASSES))

    def build_model(self, cfg: TwoInputConfig):
        import keras

        m, init = cfg.model, keras.initializers.GlorotUniform
        dense = keras.layers.Dense
        tabular = keras.Input((FEATURES,), name="tabular")
        trace = keras.Input((STEPS, AXES), name="trace")
        x = keras.layers.Conv1D(m.filters, 5, activation="relu", kernel_initializer=init(cfg.seed),
                                name="trace_conv1")(trace)
        x = keras.layers.MaxPooling1D(2, name="trace_pool")(x)
        x = keras.layers.Conv1D(m.filters, 3, activation="relu", kernel_initializer=init(cfg.seed + 1),
                                name="trace_conv2")(x)
        x = keras.layers.GlobalAveragePooling1D(name="trace_mean")(x)
        t = dense(m.units, activation="relu", kernel_initializer=init(cfg.seed + 2), name="tab_dense")(tabular)
        h = keras.layers.Concatenate(name="head_concat")([t, x])
        h = dense(m.units, activation="relu", kernel_initializer=init(cfg.seed + 3), name="head_dense")(h)
        out = dense(CLASSES, activation="softmax", kernel_initializer=init(cfg.seed + 4), name="head_out")(h)
        return keras.Model([tabular, trace], out, name="two_inputs")
