"""Experiment configuration: one YAML file per experiment, validated once at load.

Every field has a type and a range; unknown keys are errors (a typo must never silently fall back to a
default). :func:`load_config` turns any problem into one :class:`~ddl_commodity.errors.ConfigError` whose
message names the file, the key path and what is wrong.

Example (``configs/quickstart.yaml``)::

    experiment: redshift_data_parallel
    name: quickstart
    data: {samples: 2000}
    training: {workers: 2, epochs: 4, data_distribution: disjoint}
    ps: {s: 2, staleness: inverse}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ddl_commodity.errors import ConfigError

Experiment = Literal["redshift_data_parallel"]
EXPERIMENTS = ("redshift_data_parallel", "landcover_model_parallel")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class SimulatorSettings(_Strict):
    """Spectrum simulator knobs (thesis 5.1); passed to ``data.redshift.SimulatorConfig``."""

    z_distribution: Literal["uniform", "beta"] = "uniform"
    magnitude_mean: float = 21.0
    magnitude_std: float = Field(1.0, ge=0.0)
    noise: bool = True


class DataSettings(_Strict):
    """Where the spectra come from.

    ``path`` names an existing HDF5 file written by ``ddl data redshift``; when it is omitted the run
    generates ``samples`` spectra with ``seed`` (and caches them under ``cache_dir``).
    """

    path: Path | None = None
    samples: int = Field(2000, ge=10, le=10_000_000)
    validation_fraction: float = Field(0.1, ge=0.0, le=0.5)
    cache_dir: Path = Path("data")
    simulator: SimulatorSettings = SimulatorSettings()


class RedshiftModelSettings(_Strict):
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


class TrainingSettings(_Strict):
    """How the model is trained.

    ``mode: single`` is the thesis's "sequential CNN" baseline (one process, no Spark). ``mode: distributed``
    runs TFoS in Spark-input mode with one PS task and ``workers`` worker tasks (thesis 5.2.2).
    ``data_distribution``: ``same`` gives every worker the whole training set each epoch; ``disjoint`` gives
    each worker its own 1/M shard of it (thesis 5.3).

    ``tolerate_worker_loss``: when a worker's process dies (SIGKILL, kernel OOM killer; detected by heartbeat
    silence) the run goes on with the workers left instead of failing: the PS lowers ``s`` to the live worker
    count, the dead worker's Spark executor is released (its unfinished feed partition is re-run on a live
    one) and every later epoch is re-dealt among the live workers, one Spark job per epoch. A worker's
    *exception* still ends the run (it is a bug, which the other workers would hit too). Off by default:
    the thesis's runs, and fail-fast, assume every worker stays.
    """

    mode: Literal["distributed", "single"] = "distributed"
    workers: int = Field(2, ge=1, le=64)
    epochs: int = Field(5, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1, le=65_536)
    learning_rate: float = Field(1e-3, gt=0.0, le=10.0)
    optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"
    data_distribution: Literal["same", "disjoint"] = "disjoint"
    push_every_steps: int | None = Field(None, ge=1)
    feed_bundle_batches: int = Field(4, ge=1, le=1024)
    baseline: bool = False
    tolerate_worker_loss: bool = False


class ParameterServerSettings(_Strict):
    """The staleness-weighted PS of thesis eq. 5.1: wait for ``s`` of the M updates, weight each by lambda(tau)."""

    s: int = Field(1, ge=1)
    staleness: Literal["constant", "inverse", "exponential"] = "inverse"
    decay: float = Field(0.5, gt=0.0, le=1.0)
    push_timeout_s: float = Field(900.0, gt=0.0)
    max_message_mb: int = Field(512, ge=1, le=2047)
    checkpoint_every: int | None = Field(None, ge=1)  # write a checkpoint every K applied aggregates


_MASTER = re.compile(r"^(embedded|local(\[\d+\])?|spark://[^\s/]+:\d+)$")


class ClusterSettings(_Strict):
    """Where the run executes.

    ``master: embedded`` (default) starts a Spark standalone master and ``spark_workers`` workers on this
    machine and stops them afterwards; ``spark://host:7077`` uses a running standalone cluster.
    """

    master: str = "embedded"
    spark_workers: int | None = Field(None, ge=1, le=64)
    worker_memory: str = "2g"
    executor_memory: str = "1g"
    host: str = "127.0.0.1"
    startup_timeout_s: float = Field(120.0, gt=0.0)
    failure_timeout_s: float = Field(60.0, gt=0.0)
    heartbeat_timeout_s: float = Field(15.0, gt=0.0)

    @field_validator("master")
    @classmethod
    def _known_master(cls, v: str) -> str:
        if not _MASTER.match(v):
            raise ValueError(f"must be 'embedded' or a standalone URL like spark://host:7077, got {v!r}")
        return v

    @field_validator("worker_memory", "executor_memory")
    @classmethod
    def _memory_size(cls, v: str) -> str:
        if not re.fullmatch(r"\d+[kmgt]", v.lower()):
            raise ValueError(f"must be a size such as 512m or 2g, got {v!r}")
        return v.lower()


class EarlyStoppingCriterion(_Strict):
    """One (monitor, patience, min_delta) triple, as Keras's ``EarlyStopping`` reads them (Tables 5.1, 5.2)."""

    monitor: Literal["accuracy", "loss", "val_accuracy", "val_loss"] = "accuracy"
    patience: int = Field(1, ge=0)
    min_delta: float = Field(0.0, ge=0.0)


THESIS_CRITERIA = (
    EarlyStoppingCriterion(monitor="accuracy", patience=1, min_delta=0.001),
    EarlyStoppingCriterion(monitor="accuracy", patience=3, min_delta=0.0001),
)


class FaultSettings(_Strict):
    """Fault injection for tests of fail-fast behaviour: worker ``worker`` fails at epoch ``epoch``, by raising
    (``kind: exception``), by killing its own process with SIGKILL (``kind: sigkill``) or by allocating memory
    until the kernel's OOM killer ends it (``kind: oom``; the limit is set on a memory cgroup holding that one
    process, so the machine is never at risk; without a writable cgroup an address-space rlimit makes the
    allocation fail instead).

    ``worker: -1`` (default) injects nothing.
    """

    worker: int = Field(-1, ge=-1)
    epoch: int = Field(1, ge=1)
    kind: Literal["exception", "sigkill", "oom"] = "exception"
    ps_kill_at_version: int | None = Field(None, ge=1)  # the PS kills itself right after applying this version


class OutputSettings(_Strict):
    runs_dir: Path = Path("runs")


class _TfosRun(_Strict):
    """What a TFoS run of 1 PS task + ``training.workers`` workers needs from Spark (both experiments)."""

    @property
    def tf_nodes(self) -> int:
        """TFoS nodes of a distributed run: one PS task plus M workers."""
        return self.training.workers + 1

    @property
    def embedded_spark_workers(self) -> int:
        """Spark workers the embedded cluster starts (one 1-core executor per TF node by default)."""
        return self.cluster.spark_workers or self.tf_nodes


class ExperimentConfig(_TfosRun):
    """A whole experiment; the root of every YAML file in ``configs/``."""

    experiment: Experiment = "redshift_data_parallel"
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")] = "experiment"
    description: str = ""
    seed: int = Field(0, ge=0, le=2**31 - 1)
    data: DataSettings = DataSettings()
    model: RedshiftModelSettings = RedshiftModelSettings()
    training: TrainingSettings = TrainingSettings()
    ps: ParameterServerSettings = ParameterServerSettings()
    cluster: ClusterSettings = ClusterSettings()
    early_stopping: tuple[EarlyStoppingCriterion, ...] = THESIS_CRITERIA
    output: OutputSettings = OutputSettings()
    faults: FaultSettings = FaultSettings()

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        t, c = self.training, self.cluster
        if t.mode == "distributed":
            if self.ps.s > t.workers:
                raise ValueError(
                    f"ps.s={self.ps.s} exceeds training.workers={t.workers}: the PS can wait for at most M updates"
                )
            if c.master == "embedded" and c.spark_workers is not None and c.spark_workers < t.workers + 1:
                raise ValueError(
                    f"{t.workers + 1} TF nodes (1 PS + {t.workers} workers) need as many Spark executors, but "
                    f"cluster.spark_workers={c.spark_workers}"
                )
        return self

def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see configs/quickstart.yaml for the schema)"
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def parse_config(raw: object, source: str = "<config>") -> ExperimentConfig:  # or LandcoverConfig
    """Validate an already-parsed YAML document."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(raw).__name__}")
    experiment = raw.get("experiment", "redshift_data_parallel")
    if experiment not in EXPERIMENTS:
        raise ConfigError(f"{source}: invalid configuration\n  experiment: unknown experiment {experiment!r} "
                          f"(known: {', '.join(EXPERIMENTS)})")
    try:
        if experiment == "landcover_model_parallel":
            from ddl_commodity.config_landcover import LandcoverConfig

            return LandcoverConfig.model_validate(raw)
        return ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}: invalid configuration\n{_format_validation_error(err)}") from None


def load_config(path: str | Path, overrides: dict | None = None) -> ExperimentConfig:
    """Read and validate a YAML experiment file; ``overrides`` (nested dicts) are merged on top."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if overrides:
        raw = _merge(raw if isinstance(raw, dict) else {}, overrides)
    return parse_config(raw, str(path))


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config_to_dict(cfg: ExperimentConfig) -> dict:
    """JSON/YAML-ready form (paths as strings), used for ``runs/<id>/config.yaml``."""
    return cfg.model_dump(mode="json")
