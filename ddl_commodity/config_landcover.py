"""Configuration of the land-cover experiment (thesis chapter 6): ``experiment: landcover_model_parallel``.

Loaded through :func:`ddl_commodity.config.load_config`, which dispatches on ``experiment``. Example
(``configs/landcover-quick.yaml``)::

    experiment: landcover_model_parallel
    name: landcover-quick
    data: {synthetic_scale: 0.1, patches_per_class: 40}
    training: {mode: model_parallel, split: default, epochs: 2, batch_size: 50}
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ddl_commodity.config import (
    THESIS_CRITERIA,
    ClusterSettings,
    EarlyStoppingCriterion,
    FaultSettings,
    OutputSettings,
    ParameterServerSettings,
    _Strict,
    _TfosRun,
)
from ddl_commodity.data.patches import DEFAULT_HSI_BANDS


class HoustonDataSettings(_Strict):
    """Where the patches come from.

    ``patches``: an existing patch file (``ddl data houston --patches``). Otherwise patches are cut from
    ``scene`` (a directory with the contest's rasters) or, when ``scene`` is omitted, from a synthetic scene of
    ``synthetic_scale`` generated with the run's seed; both are cached under ``cache_dir``.
    """

    scene: Path | None = None
    patches: Path | None = None
    synthetic_scale: float = Field(0.1, gt=0.0, le=1.0)
    patches_per_class: int = Field(400, ge=1, le=100_000)
    patch_size: int = Field(25, ge=3, le=101)
    hsi_bands: tuple[int, ...] = DEFAULT_HSI_BANDS
    validation_fraction: float = Field(0.1, ge=0.0, le=0.5)
    cache_dir: Path = Path("data")

    @field_validator("patch_size")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("must be odd (a patch is centred on its labelled pixel)")
        return v

    @field_validator("hsi_bands")
    @classmethod
    def _bands(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or len(set(v)) != len(v) or min(v) < 0 or max(v) > 49:
            raise ValueError("must be distinct band indices in 0..49")
        return v


class MultimodalModelSettings(_Strict):
    """Sizes of the Fig 6.3(a) network (see ``models.multimodal_cnn``; the thesis does not give them)."""

    rgb_filters: tuple[int, int, int] = (16, 32, 32)
    hsi_filters: tuple[int, int, int] = (16, 32, 64)
    fc_units: tuple[int, int] = (256, 128)
    dropout: float = Field(0.3, ge=0.0, lt=1.0)

    @field_validator("rgb_filters", "hsi_filters", "fc_units")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(f < 1 or f > 4096 for f in v):
            raise ValueError("sizes must be in 1..4096")
        return v


class LandcoverTrainingSettings(_Strict):
    """``model_parallel``: TFoS TensorFlow-input mode, blocks placed on workers by ``split`` (a name in
    ``configs/splits/`` or a path), weights on the PS (thesis 6.2.3). ``single``: one process, no cluster
    (the non-distributed curve of Fig 6.4). ``data_parallel``: the same network replicated on every worker,
    Spark-input feeding and the staleness-weighted PS of chapter 5 (``ps`` section), for 6.3.5's comparison;
    ``data_distribution``, ``feed_bundle_batches`` and ``push_every_steps`` mean what they mean there."""

    mode: Literal["model_parallel", "single", "data_parallel"] = "model_parallel"
    split: str = "default"
    workers: int = Field(3, ge=1, le=16)
    epochs: int = Field(10, ge=1, le=10_000)
    batch_size: int = Field(50, ge=1, le=8192)
    learning_rate: float = Field(1e-3, gt=0.0, le=10.0)
    optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"
    steps_per_epoch: int | None = Field(None, ge=1)  # cap, for quick runs; None = the whole training set
    data_distribution: Literal["same", "disjoint"] = "disjoint"
    feed_bundle_batches: int = Field(4, ge=1, le=1024)
    push_every_steps: int | None = Field(None, ge=1)
    baseline: bool = False
    tolerate_worker_loss: bool = False  # data_parallel only; see TrainingSettings in ddl_commodity.config


class MonitorSettings(_Strict):
    """The per-node sampler (the thesis's Ganglia): one row per node every ``interval_s``."""

    interval_s: float = Field(1.0, ge=0.1, le=60.0)


class LandcoverConfig(_TfosRun):
    experiment: Literal["landcover_model_parallel"] = "landcover_model_parallel"
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")] = "landcover"
    description: str = ""
    seed: int = Field(0, ge=0, le=2**31 - 1)
    data: HoustonDataSettings = HoustonDataSettings()
    model: MultimodalModelSettings = MultimodalModelSettings()
    training: LandcoverTrainingSettings = LandcoverTrainingSettings()
    monitor: MonitorSettings = MonitorSettings()
    ps: ParameterServerSettings = ParameterServerSettings(s=2)  # data_parallel only
    cluster: ClusterSettings = ClusterSettings()
    output: OutputSettings = OutputSettings()
    faults: FaultSettings = FaultSettings()
    early_stopping: tuple[EarlyStoppingCriterion, ...] = THESIS_CRITERIA

    @model_validator(mode="after")
    def _scheme_fits(self) -> LandcoverConfig:
        from ddl_commodity.errors import ConfigError
        from ddl_commodity.models.splits import load_scheme

        if self.training.mode == "model_parallel":
            try:
                load_scheme(self.training.split).check_cluster(self.training.workers)
            except ConfigError as err:
                raise ValueError(f"training.split: {err}") from None
        if self.training.mode == "data_parallel" and self.ps.s > self.training.workers:
            raise ValueError(f"ps.s={self.ps.s} exceeds training.workers={self.training.workers}")
        if self.training.mode != "single":
            c = self.cluster
            if c.master == "embedded" and c.spark_workers is not None and c.spark_workers < self.tf_nodes:
                raise ValueError(f"{self.tf_nodes} TF nodes need as many Spark executors, but "
                                 f"cluster.spark_workers={c.spark_workers}")
        return self

    def scheme(self):
        from ddl_commodity.models.splits import load_scheme

        return load_scheme(self.training.split)

