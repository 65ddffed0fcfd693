"""What every experiment configuration shares, validated once at load (scikit-learn style: constraints as data).

An experiment's YAML file has the shared sections defined here (``cluster``, ``ps``, ``faults``, ``output``,
``early_stopping``, ``monitor``) and its own ``data``, ``model`` and ``training`` sections, declared by its
:class:`~ddl_commodity.experiments.api.Experiment` as a subclass of :class:`RunConfig`. Unknown keys and
duplicate keys are errors: a typo must never silently fall back to a default. Which class validates a file
is the experiment registry's business (:func:`ddl_commodity.experiments.registry.load_config`); this module
knows no experiment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ddl_commodity.errors import ConfigError
from ddl_commodity.ps.staleness import STALENESS_FUNCTIONS

#: Optimizers by config name (``training.optimizer``) -> their class in ``keras.optimizers``; a new one is one
#: entry here.
OPTIMIZERS = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop"}


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def _one_of(v: str, names: tuple[str, ...] | dict, what: str) -> str:
    if v not in names:
        raise ValueError(f"unknown {what} {v!r}; choose one of {', '.join(names)}")
    return v


class ParameterServerSettings(Strict):
    """The staleness-weighted PS of thesis eq. 5.1: wait for ``s`` of the M updates, weight each by lambda(tau).

    ``staleness`` names a function of :data:`ddl_commodity.ps.staleness.STALENESS_FUNCTIONS`.
    """

    s: int = Field(1, ge=1, description="updates the PS waits for before it applies them, at most M (eq. 5.1's s; "
                   "s = M: synchronous averaging, s = 1: plain asynchronous SGD)")
    staleness: str = Field("inverse", description="lambda(tau) of eq. 5.1, the weight of an update tau versions "
                           "stale: `constant` 1, `inverse` 1/(1+tau), `exponential` decay^tau")
    decay: float = Field(0.5, gt=0.0, le=1.0, description="the base of `exponential` staleness, lambda(tau) = "
                         "decay^tau (eq. 5.1); the other functions ignore it")
    push_timeout_s: float = Field(900.0, gt=0.0, description="seconds a worker's push may wait for the aggregate "
                                  "it belongs to before the run fails; the feed's and shutdown's waits derive from it")
    max_message_mb: int = Field(512, ge=1, le=2047, description="largest PS message in MiB (a pushed dW, a pulled "
                                "W); a longer one is refused before it is read")
    checkpoint_every: int | None = Field(None, ge=1, description="write a PS checkpoint every K applied aggregates, "
                                         "which `ddl run --resume` continues from; null: none")

    @field_validator("staleness")
    @classmethod
    def _known_staleness(cls, v: str) -> str:
        return _one_of(v, STALENESS_FUNCTIONS, "staleness function")


#: A running standalone cluster's master.
STANDALONE_URL = re.compile(r"^spark://[^\s/]+:\d+$")
_MASTER = re.compile(rf"^(embedded|local(\[\d+\])?|{STANDALONE_URL.pattern[1:-1]})$")


class ClusterSettings(Strict):
    """Where the run executes.

    ``master: embedded`` (default) starts a Spark standalone master and ``spark_workers`` workers on this
    machine and stops them afterwards; ``spark://host:7077`` uses a running standalone cluster.

    The embedded cluster's nodes behave like separate PCs when given a ``profile`` (``configs/clusters/
    <name>.yaml``, e.g. ``thesis``: each node d of a core and 2 GB, times also reported in cluster seconds)
    or explicit ``node_cpus`` (share of one core per node) / ``node_memory`` (cap per node), which override
    the profile's (``master_cpus`` / ``master_memory``: node0's, where the driver runs). Without any of them
    the nodes share the machine, unisolated (fastest).

    ``heartbeat_timeout_s``: the silence after which a node is taken for lost; a node capped at a share c of
    a core gets ``heartbeat_timeout_s / c``, and a node still in its set-up (before it serves or trains a
    step) 3 times that (:class:`~ddl_commodity.runtime.failfast.Watchdog`).
    """

    master: str = Field("embedded", description="`embedded`: a Spark standalone cluster started on this machine "
                        "for the run; or a running standalone master, `spark://host:7077` (thesis chapter 4)")
    spark_workers: int | None = Field(None, ge=1, le=64, description="Spark workers the embedded cluster starts, "
                                      "one 1-core executor each; null: one per TF node (1 PS + M workers)")
    worker_memory: str = Field("2g", description="memory each embedded Spark worker offers its executors, a size "
                               "such as 512m or 2g")
    executor_memory: str = Field("1g", description="each Spark executor JVM's heap (`spark.executor.memory`), a "
                                 "size such as 512m or 1g")
    driver_memory: str = Field("1g", description="the driver JVM's heap (`spark.driver.memory`, Spark's default "
                               "1g); data-parallel feeds pass through it")
    host: str = Field("127.0.0.1", description="the address the embedded cluster, the driver and the PS listen on "
                      "(loopback: no traffic leaves the machine)")
    startup_timeout_s: float = Field(120.0, gt=0.0, description="seconds the cluster's daemons, the executors and "
                                     "the TF nodes may take to start before the run fails")
    failure_timeout_s: float = Field(60.0, gt=0.0, description="seconds of grace around an ending run: a node "
                                     "exits when the driver has not answered for half of it, and a model-parallel "
                                     "shutdown may take it plus 120 s")
    heartbeat_timeout_s: float = Field(15.0, gt=0.0, description="seconds of heartbeat silence after which a node "
                                       "is taken for lost (divided by a CPU share below one core; 3x in set-up)")
    profile: str | None = Field(None, pattern=r"^[\w./-]+$", description="the PCs the nodes emulate, "
                                "`configs/clusters/<name>.yaml` or a path (`thesis`: chapter 4's five 1-core 2 GB "
                                "PCs, scaled by d); null: unisolated nodes")
    node_cpus: float | None = Field(None, gt=0.0, le=64.0, description="CPU share of each node in cores (0.4: 40 "
                                    "ms of every 100 ms), over the profile's; null: the profile's, or unlimited")
    node_memory: str | None = Field(None, description="memory cap of each node (its control group), a size such "
                                    "as 2g, over the profile's; null: the profile's, or none")
    master_cpus: float | None = Field(None, gt=0.0, le=64.0, description="CPU share of node0, the master where the "
                                      "driver runs, in cores; null: as `node_cpus`")
    master_memory: str | None = Field(None, description="memory cap of node0, the master where the driver runs; "
                                      "null: as `node_memory`")

    @field_validator("master")
    @classmethod
    def _known_master(cls, v: str) -> str:
        if not _MASTER.match(v):
            raise ValueError(f"must be 'embedded' or a standalone URL like spark://host:7077, got {v!r}")
        return v

    @field_validator("worker_memory", "executor_memory", "driver_memory", "node_memory", "master_memory")
    @classmethod
    def _memory_size(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not re.fullmatch(r"\d+[kmgt]", v.lower()):
            raise ValueError(f"must be a size such as 512m or 2g, got {v!r}")
        return v.lower()


class EarlyStoppingCriterion(Strict):
    """One (monitor, patience, min_delta) triple, as Keras's ``EarlyStopping`` reads them (Tables 5.1, 5.2)."""

    monitor: Literal["accuracy", "loss", "val_accuracy", "val_loss"] = Field(
        "accuracy", description="the per-epoch curve watched (the thesis watches training `accuracy`, Tables 5.1, "
        "5.2, and the loss for Fig 5.5)")
    patience: int = Field(1, ge=0, description="epochs without improvement after which the curve counts as "
                          "plateaued (Table 5.1: 1, Table 5.2: 3)")
    min_delta: float = Field(0.0, ge=0.0, description="the least change that counts as an improvement (Table 5.1: "
                             "0.001, Table 5.2: 0.0001)")


THESIS_CRITERIA = (
    EarlyStoppingCriterion(monitor="accuracy", patience=1, min_delta=0.001),
    EarlyStoppingCriterion(monitor="accuracy", patience=3, min_delta=0.0001),
)


class FaultSettings(Strict):
    """Fault injection for tests of fail-fast behaviour: worker ``worker`` fails at epoch ``epoch``, by raising
    (``kind: exception``), by killing its own process with SIGKILL (``kind: sigkill``) or by allocating memory
    until the kernel's OOM killer ends it (``kind: oom``; the limit is set on a memory cgroup holding that one
    process, so the machine is never at risk; without a writable cgroup an address-space rlimit makes the
    allocation fail instead).

    ``worker: -1`` (default) injects nothing.
    """

    worker: int = Field(-1, ge=-1, description="index of the worker that fails; -1: no fault")
    epoch: int = Field(1, ge=1, description="the epoch (1-based) at whose start that worker fails")
    kind: Literal["exception", "sigkill", "oom"] = Field(
        "exception", description="how it fails: `exception` raises, `sigkill` kills its own process, `oom` "
        "allocates until the kernel's OOM killer ends it")
    ps_kill_at_version: int | None = Field(None, ge=1, description="the PS kills itself right after applying this "
                                           "version (a test of checkpoints and `--resume`); null: never")


class OutputSettings(Strict):
    runs_dir: Path = Field(Path("runs"), description="where run directories go, `<runs_dir>/<run-id>/`, relative "
                           "to the working directory")


class MonitorSettings(Strict):
    """The per-node sampler (the thesis's Ganglia): one row per node every ``interval_s``."""

    interval_s: float = Field(1.0, ge=0.1, le=60.0, description="seconds between two samples of every node's CPU, "
                              "CPU wait, memory and network (the Ganglia plots of Figs 6.5-6.28)")


class DataSettingsBase(Strict):
    """What every experiment's ``data`` section has: the held-out fraction, where generated data is cached, and
    a data set the executors read where it lies (``source``)."""

    validation_fraction: float = Field(0.1, ge=0.0, le=0.5, description="share of the rows held out for validation")
    cache_dir: Path = Field(Path("data"), description="where generated data (simulated spectra, synthetic "
                            "scenes, patch files) is cached, relative to the working directory")
    source: str | None = Field(None, description=(
        "a Parquet data set the executors read themselves (a directory, a glob, or a URI: file://, hdfs://, "
        "s3a://; written by `ddl data ... --format parquet`): the driver reads only the files' footers, each "
        "worker its shard's row groups. Or HDF5 shards (a directory, glob or file of *.h5 / *.hdf5, one dataset "
        "per column, rows numbered through the files in name order), read in slices from a local path or "
        "file:// only. Data- and model-parallel runs"))
    as_parquet: bool = Field(False, description=(
        "read the run's own data (generated or given as a file) from Parquet: written once as a Parquet data set "
        "under `cache_dir`, then read as `source` is. Data- and model-parallel runs"))
    cache: Literal["memory", "disk", "none"] = Field("none", description=(
        "data parallel from a Parquet source: Spark persists the rows the first epoch reads (`memory`: "
        "MEMORY_ONLY in the executors' storage memory, `disk`: DISK_ONLY on their local disks) and later epochs "
        "read them from there, one feed job per epoch; `none`: every epoch reads the source again, all epochs "
        "in one feed job"))


TrainingMode = Literal["data_parallel", "model_parallel", "single"]


class TrainingSettingsBase(Strict):
    """How a model is trained; an experiment narrows ``mode`` to the modes it supports.

    ``single``: one process, no Spark (the thesis's baseline). ``data_parallel`` (chapter 5's "distributed"
    CNN): TFoS Spark input, the model replicated on ``workers`` workers, synchronised through the
    staleness-weighted PS (``ps`` section); ``data_distribution`` gives every worker the whole training set
    each epoch (``same``) or its own 1/M shard (``disjoint``). ``model_parallel``: TFoS TensorFlow input,
    the model's blocks placed on workers by ``split`` (a name in ``configs/splits/`` or a path), weights on
    the PS.

    ``tolerate_worker_loss`` (data parallel): when a worker's process dies (SIGKILL, kernel OOM killer;
    detected by heartbeat silence) the run goes on with the workers left: the PS lowers ``s`` to the live
    worker count, the dead worker's Spark executor is released and every later epoch is re-dealt among the
    live workers, one Spark job per epoch. A worker's *exception* still ends the run.
    """

    mode: TrainingMode = Field("data_parallel", description="`single` (one process, the thesis's baseline), "
                               "`data_parallel` (chapter 5) or `model_parallel` (chapter 6)")
    workers: int = Field(2, ge=1, le=64, description="M, the TF worker tasks of a distributed run besides the PS "
                         "task (Fig 5.3: 1 to 3)")
    epochs: int = Field(5, ge=1, le=10_000, description="passes over the training data (per worker, data parallel)")
    batch_size: int = Field(64, ge=1, le=65_536, description="samples per training step (per worker, data "
                            "parallel)")
    learning_rate: float = Field(1e-3, gt=0.0, le=10.0, description="the optimizer's learning rate")
    optimizer: str = Field("adam", description="the Keras optimizer, by name")
    data_distribution: Literal["same", "disjoint"] = Field(
        "disjoint", description="data parallel: each worker trains on the whole training set every epoch (`same`) "
        "or on its own 1/M shard (`disjoint`), the two cases of Fig 5.3")
    push_every_steps: int | None = Field(None, ge=1, description="data parallel: synchronise with the PS every K "
                                         "training steps instead of at each epoch's end; null: once per epoch "
                                         "(thesis 5.2.2)")
    feed_bundle_batches: int = Field(4, ge=1, le=1024, description="data parallel: mini-batches per bundle, the "
                                     "record Spark feeds a worker (the RDD bundles of Fig 5.2)")
    steps_per_epoch: int | None = Field(None, ge=1, description="single and model parallel: a cap on training "
                                        "steps per epoch, for quick runs; null: the whole training set")
    split: str = Field("default", description="model parallel: the split scheme that places the model's blocks on "
                       "workers, a name in `configs/splits/` or a path")
    baseline: bool = Field(False, description="data parallel: also train the single-machine baseline (the "
                           "thesis's \"sequential CNN\", Figs 5.3, 5.6) in the same run")
    tolerate_worker_loss: bool = Field(False, description="data parallel: a worker whose process dies is dropped "
                                       "and the run goes on with the others; a worker's exception still ends it")

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, v: str) -> str:
        return _one_of(v, OPTIMIZERS, "optimizer")

    @property
    def engine(self) -> str:
        """``data_parallel``, ``model_parallel`` or ``single``: the engine that trains the run."""
        return self.mode


NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class RunConfig(Strict):
    """The root of every experiment YAML file: the shared sections. Experiments add data, model, training."""

    experiment: str = Field(description="what is trained: a registered name (`redshift`: thesis chapter 5, "
                            "`landcover`: chapter 6) or `package.module:Class` for your own")
    name: Annotated[str, Field(pattern=NAME_PATTERN, description="the run's name: it starts the run directory's "
                               "name and names the Spark application")] = "experiment"
    description: str = Field("", description="free text about the run, kept in its `config.yaml`")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="seed of generated data, the validation split, the "
                      "shards, shuffling and the initial weights")
    data: DataSettingsBase = Field(DataSettingsBase(), description="where the data come from")
    training: TrainingSettingsBase = Field(TrainingSettingsBase(), description="how the model is trained")
    ps: ParameterServerSettings = Field(ParameterServerSettings(), description="the staleness-weighted parameter "
                                        "server of data-parallel runs (thesis eq. 5.1)")
    cluster: ClusterSettings = Field(ClusterSettings(), description="where a distributed run executes: the Spark "
                                     "master and the nodes (thesis chapter 4)")
    early_stopping: tuple[EarlyStoppingCriterion, ...] = Field(
        THESIS_CRITERIA, description="the criteria epochs to a plateau are counted by, per worker (Tables 5.1, "
        "5.2, Figs 5.4, 5.5); default: the thesis's two")
    monitor: MonitorSettings | None = Field(None, description="per-node CPU, memory and network sampling (the "
                                            "thesis's Ganglia, Figs 6.5-6.28); null: off")
    output: OutputSettings = Field(OutputSettings(), description="where the run's directory goes")
    faults: FaultSettings = Field(FaultSettings(), description="fault injection, for tests of fail-fast "
                                  "behaviour; off by default")

    @property
    def tf_nodes(self) -> int:
        """TFoS nodes of a distributed run: one PS task plus M workers."""
        return self.training.workers + 1

    @property
    def embedded_spark_workers(self) -> int:
        """Spark workers the embedded cluster starts (one 1-core executor per TF node by default)."""
        return self.cluster.spark_workers or self.tf_nodes

    @model_validator(mode="after")
    def _cluster_fits(self) -> RunConfig:
        t, c = self.training, self.cluster
        if t.engine == "data_parallel" and self.ps.s > t.workers:
            raise ValueError(f"ps.s={self.ps.s} exceeds training.workers={t.workers}: the PS can wait for at most "
                             "M updates")
        self._data_source_fits()
        if t.engine != "single" and c.master == "embedded" and c.spark_workers is not None \
                and c.spark_workers < self.tf_nodes:
            raise ValueError(f"{self.tf_nodes} TF nodes (1 PS + {t.workers} workers) need as many Spark executors, "
                             f"but cluster.spark_workers={c.spark_workers}")
        return self

    def _data_source_fits(self) -> None:
        d, t = self.data, self.training
        parquet = d.source is not None or d.as_parquet
        if parquet and t.engine == "single":
            raise ValueError("data.source / data.as_parquet: a data set read where it lies (Parquet or HDF5 "
                             "shards) is read by distributed runs (data or model parallel); a single-machine run "
                             "loads its data file")
        if parquet and t.baseline:
            raise ValueError("training.baseline: the single-machine baseline would load the whole data set on the "
                             "driver, which data.source / data.as_parquet exist to avoid: run it as a run of its "
                             "own (training.mode: single, from the data file)")
        if d.cache != "none" and t.engine != "data_parallel":
            raise ValueError("data.cache: Spark persists a data-parallel feed; a model-parallel input node streams "
                             "its pieces itself")


# ---------------------------------------------------------------------------------------------------------
# Reading YAML


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a mapping with the same key twice (PyYAML keeps the last one silently)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[object, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigError(f"duplicate key {key!r} on line {line} (first on line {seen[key]})")
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def read_yaml(path: str | Path) -> object:
    """Parse a YAML file; a missing file, bad syntax or a duplicate key is a :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        text = path.read_text(encoding="utf-8")
        doc = yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML: {where}{err.problem or err.context}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if doc is None and not text.strip():
        raise ConfigError(f"{path}: the file is empty")
    return doc


def merge(base: dict, top: dict) -> dict:
    """``top`` merged into ``base``, nested mappings key by key."""
    out = dict(base)
    for k, v in top.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see configs/quickstart.yaml for the schema)"
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def validate(config_class: type[RunConfig], raw: dict, source: str) -> RunConfig:
    """``config_class`` validated from ``raw``; every problem becomes one :class:`ConfigError`."""
    try:
        return config_class.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}: invalid configuration\n{format_validation_error(err)}") from None


def config_to_dict(cfg: RunConfig) -> dict:
    """JSON/YAML-ready form (paths as strings), used for ``runs/<id>/config.yaml``."""
    return cfg.model_dump(mode="json")
