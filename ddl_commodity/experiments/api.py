"""The experiment API: what an experiment is, as opposed to how it is trained.

An :class:`Experiment` declares a config schema (a :class:`~ddl_commodity.config.RunConfig` subclass), where
its data come from, and a Keras model with named layers grouped into blocks. The engines
(:mod:`ddl_commodity.engines`) train it single machine, data parallel with the staleness-weighted PS, or
model parallel with a split scheme over its blocks, and know no experiment by name. Name it in a YAML file
by dotted path (``experiment: mypkg.module:MyExperiment``); the toolkit's own are registered by name in
:mod:`ddl_commodity.experiments.registry`. ``examples/waves.py`` is a complete one in under 60 lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ddl_commodity.config import RunConfig
from ddl_commodity.data.split import train_validation_split
from ddl_commodity.errors import ConfigError, DataError
from ddl_commodity.models.placement import BlockGraph, Placement, device_scope, functional_graph, place_functional
from ddl_commodity.models.splits import SplitScheme, load_scheme

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class Dataset:
    """A run's data: one array per model input and integer labels, split into training and validation rows.

    Shapes: ``inputs[i]`` is ``(N, *input_shape_i)``, ``labels`` ``(N,)``; the two index arrays hold rows.
    """

    path: Path
    inputs: tuple[np.ndarray, ...]
    labels: np.ndarray
    train_index: np.ndarray
    validation_index: np.ndarray

    @property
    def num_rows(self) -> int:
        return len(self.labels)

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(a.shape[1:]) for a in self.inputs]

    def flat(self) -> np.ndarray:
        """``(N, D)`` float32, every input flattened and concatenated: Spark-input feeding ships one array per
        sample; :func:`unflatten` restores the inputs on the worker."""
        n = self.num_rows
        return np.concatenate([a.reshape(n, -1) for a in self.inputs], axis=1).astype(np.float32, copy=False)


def unflatten(x: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Undo :meth:`Dataset.flat` for a batch ``x`` ``(B, D)``: one ``(B, *shape)`` array per input."""
    out, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(x[:, start:start + size].reshape(-1, *shape))
        start += size
    return out


class Experiment:
    """Base class of every experiment. Subclasses set ``config_class`` and implement the three methods in the
    first group; the others have defaults that fit a functional Keras model.

    Layers belong to blocks by name: ``<block>_<anything>`` is in ``<block>``, a name without ``_`` is a
    block of its own (override :meth:`blocks` for another grouping). Split schemes place blocks on nodes.
    """

    #: Registry name; experiments loaded by dotted path are known by that path.
    name: ClassVar[str] = ""
    config_class: ClassVar[type[RunConfig]] = RunConfig
    #: The training modes this experiment supports (``training.mode``).
    modes: ClassVar[tuple[str, ...]] = ("single", "data_parallel", "model_parallel")
    #: The per-epoch record key and axis label of the validation panel of ``curves.png``.
    validation_curve: ClassVar[tuple[str, str]] = ("val_accuracy", "validation accuracy")

    # -- what a subclass provides -------------------------------------------------------------------
    def data_file(self, cfg: RunConfig, progress: bool | None = None) -> Path:
        """The file that holds the run's data, written first if the config asks for generated data."""
        raise NotImplementedError

    def load(self, cfg: RunConfig, path: Path) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """``(inputs, labels)`` from ``path``: one array per model input, integer labels ``(N,)``."""
        raise NotImplementedError

    def build_model(self, cfg: RunConfig) -> keras.Model:
        """The uncompiled model, seeded from ``cfg.seed``: it ends in a softmax over the classes."""
        raise NotImplementedError

    # -- defaults ------------------------------------------------------------------------------------
    def blocks(self, cfg: RunConfig) -> dict[str, list[str]]:
        """Block name -> layer names, the units a split scheme places (by name prefix, see the class doc)."""
        graph = self.block_graph(cfg)
        out: dict[str, list[str]] = {}
        for layer in graph.layers:
            out.setdefault(layer.split("_", 1)[0], []).append(layer)
        return out

    def block_graph(self, cfg: RunConfig) -> BlockGraph:
        """Layers, edges, per-sample shapes and weight counts: what boundary traffic is computed from."""
        return functional_graph(self.build_model(cfg))

    def input_shapes(self, cfg: RunConfig) -> list[tuple[int, ...]]:
        """Per-sample shapes of the model's inputs, in the model's order (the planner feeds random batches)."""
        graph = self.block_graph(cfg)
        return [graph.shapes[name] for name in graph.inputs]

    def placed_model(self, cfg: RunConfig, placement: Placement) -> keras.Model:
        """The model with every variable on ``placement.variables`` and each layer run on its device."""
        with device_scope(placement.variables):
            model = self.build_model(cfg)
        return place_functional(model, placement)

    def scheme(self, cfg: RunConfig) -> SplitScheme:
        """The split scheme of a model-parallel config, checked against this model's blocks."""
        return load_scheme(cfg.training.split, self.blocks(cfg))

    def describe(self, cfg: RunConfig) -> str:
        """One line saying what kind of run ``cfg`` is."""
        t = cfg.training
        if t.engine == "single":
            return f"single machine, batch {t.batch_size}"
        if t.engine == "data_parallel":
            return (f"data parallel, {t.workers} workers + PS, {t.data_distribution} data, s={cfg.ps.s}, "
                    f"lambda={cfg.ps.staleness}, batch {t.batch_size}")
        s = self.scheme(cfg)
        return (f"model parallel, scheme {s.name} ({s.figure or s.source}), {t.workers} workers + PS, "
                f"batch {t.batch_size}")

    def validation_metrics(self, probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Metrics beyond loss and top-1 accuracy from the class probabilities ``(N, C)`` of the validation rows
        and their labels ``(N,)``; recorded every epoch as ``val_<name>`` (none by default)."""
        return {}

    def summary_sections(self, cfg: RunConfig, run_dir: Path, dataset: Dataset) -> dict:
        """Extra top-level keys of ``summary.json`` (none by default)."""
        return {}

    def report_lines(self, summary: dict) -> list[str]:
        """Extra Markdown lines of ``ddl report`` for a run of this experiment (none by default)."""
        return []

    def console_lines(self, summary: dict) -> list[str]:
        """Extra lines of the summary ``ddl run`` prints at the end (none by default)."""
        return []

    def at_scale(self, raw: dict, scale: str) -> dict:
        """The raw config resized for ``ddl reproduce --scale <scale>`` (``smoke``: seconds, ``small``: minutes,
        ``thesis``: the thesis's sizes; see :mod:`ddl_commodity.reproduce.runsets`). Unchanged by default."""
        return raw

    # -- used by the engines -------------------------------------------------------------------------
    def check(self, cfg: RunConfig) -> None:
        """Refuse a mode this experiment lacks, or a split scheme that does not fit; :class:`ConfigError`."""
        if cfg.training.engine not in self.modes:
            raise ConfigError(f"training.mode: {self.name} supports {', '.join(self.modes)}, not "
                              f"{cfg.training.mode!r}")
        if cfg.training.engine == "model_parallel":
            try:
                self.scheme(cfg).check_cluster(cfg.training.workers)
            except ConfigError as err:
                raise ConfigError(f"training.split: {err}") from None

    def dataset(self, cfg: RunConfig, progress: bool | None = None) -> Dataset:
        """Data file, arrays and the seeded train/validation split; too little data is a :class:`DataError`."""
        path = self.data_file(cfg, progress)
        inputs, labels = self.load(cfg, path)
        if any(len(a) != len(labels) for a in inputs):
            raise DataError(f"{path}: inputs and labels have different numbers of rows")
        train, val = train_validation_split(len(labels), cfg.data.validation_fraction, cfg.seed)
        t = cfg.training
        if t.engine == "data_parallel" and len(train) < t.workers * (2 if t.data_distribution == "disjoint" else 1):
            raise DataError(f"{path}: {len(train)} training samples are too few for {t.workers} workers")
        if t.engine != "data_parallel" and t.steps_per_epoch is None and len(train) < 2 * t.batch_size:
            raise DataError(f"{path}: {len(train)} training samples are too few for batch size {t.batch_size}")
        return Dataset(path, tuple(inputs), np.asarray(labels, dtype=np.int32), train, val)


