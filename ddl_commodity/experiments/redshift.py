"""The redshift experiment (thesis chapter 5): simulated galaxy spectra, the 1D CNN of Fig 5.1, trained on
one machine or data parallel with the staleness-weighted PS (``experiment: redshift_data_parallel``).

Example (``configs/quickstart.yaml``)::

    experiment: redshift_data_parallel
    name: quickstart
    data: {samples: 2000}
    training: {workers: 2, epochs: 4, data_distribution: disjoint}
    ps: {s: 2, staleness: inverse}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from ddl_commodity.config import DataSettingsBase, RunConfig, Strict, TrainingSettingsBase
from ddl_commodity.experiments.api import Experiment


class SimulatorSettings(Strict):
    """Spectrum simulator knobs (thesis 5.1); passed to ``data.redshift.SimulatorConfig``."""

    z_distribution: Literal["uniform", "beta"] = "uniform"
    magnitude_mean: float = 21.0
    magnitude_std: float = Field(1.0, ge=0.0)
    noise: bool = True


class RedshiftDataSettings(DataSettingsBase):
    """Where the spectra come from.

    ``path`` names an existing HDF5 file written by ``ddl data redshift``; when it is omitted the run
    generates ``samples`` spectra with ``seed`` (and caches them under ``cache_dir``).
    """

    path: Path | None = None
    samples: int = Field(2000, ge=10, le=10_000_000)
    simulator: SimulatorSettings = SimulatorSettings()


class RedshiftModelSettings(Strict):
    """The 1D CNN of thesis 5.2.1 / Fig 5.1: Conv1D(k) -> ReLU -> Conv1D(k) -> ReLU -> Dropout -> Flatten -> Dense.

    The thesis gives the kernel length (8) but not the filter counts or the dropout rate. The defaults (8 and 8
    filters, dropout 0.2) keep the dense layer at ~11.4M weights (1786 x 8 x 800), a size a 2 GB worker trains
    comfortably and that makes one PS update ~46 MB, the order of traffic the thesis discusses.
    """

    filters: tuple[int, int] = (8, 8)
    kernel_size: int = Field(8, ge=1, le=256)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)

    @field_validator("filters")
    @classmethod
    def _positive_filters(cls, v: tuple[int, int]) -> tuple[int, int]:
        if any(f < 1 or f > 1024 for f in v):
            raise ValueError("filter counts must be in 1..1024")
        return v


class RedshiftTrainingSettings(TrainingSettingsBase):
    """``distributed`` is chapter 5's name for data parallel; ``single`` is its "sequential CNN"."""

    mode: Literal["distributed", "data_parallel", "single"] = "distributed"


class RedshiftConfig(RunConfig):
    """A whole chapter 5 experiment."""

    experiment: Literal["redshift_data_parallel"] = "redshift_data_parallel"
    data: RedshiftDataSettings = RedshiftDataSettings()
    model: RedshiftModelSettings = RedshiftModelSettings()
    training: RedshiftTrainingSettings = RedshiftTrainingSettings()


class RedshiftExperiment(Experiment):
    name = "redshift_data_parallel"
    config_class = RedshiftConfig
    modes = ("single", "data_parallel")

    def data_file(self, cfg: RedshiftConfig, progress: bool | None = None) -> Path:
        """``data.path``, or the cached simulation for (samples, seed), simulated first if missing."""
        from ddl_commodity.data.redshift import GENERATOR_VERSION, SimulatorConfig, write_redshift_h5

        if cfg.data.path is not None:
            return Path(cfg.data.path)
        path = Path(cfg.data.cache_dir) / f"redshift-n{cfg.data.samples}-s{cfg.seed}-v{GENERATOR_VERSION}.h5"
        if not path.is_file():
            s = cfg.data.simulator
            sim = SimulatorConfig(z_distribution=s.z_distribution, magnitude_mean=s.magnitude_mean,
                                  magnitude_std=s.magnitude_std, noise=s.noise)
            write_redshift_h5(path, cfg.data.samples, cfg.seed, sim, progress=progress)
        return path

    def load(self, cfg: RedshiftConfig, path: Path) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        from ddl_commodity.data.redshift import load_redshift_h5

        data = load_redshift_h5(path)
        return (data.spectra,), data.label

    def build_model(self, cfg: RedshiftConfig):
        from ddl_commodity.models.redshift_cnn import build_redshift_cnn

        m = cfg.model
        return build_redshift_cnn(m.filters, m.kernel_size, m.dropout, seed=cfg.seed)

    def describe(self, cfg: RedshiftConfig) -> str:
        t = cfg.training
        if t.engine == "single":
            return "single machine (sequential CNN)"
        return f"{t.workers} workers, {t.data_distribution} data, s={cfg.ps.s}, lambda={cfg.ps.staleness}"

    def scaled_down(self, raw: dict) -> dict:
        # 1,000 spectra at batch 64 left a disjoint-shard worker 5 steps per epoch: no curve plateaued within
        # 8 epochs. 2,000 at batch 32 give it ~19 steps, enough for Tables 5.1/5.2 to measure something.
        raw.setdefault("data", {})["samples"] = 2000
        raw.setdefault("model", {})["filters"] = [4, 4]
        raw.setdefault("training", {}).update(epochs=16, batch_size=32)
        return raw
