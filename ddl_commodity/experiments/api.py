"""The experiment API: what an experiment is, as opposed to how it is trained.

An :class:`Experiment` declares a config schema (a :class:`~ddl_commodity.config.RunConfig` subclass), where
its data come from, a Keras model with named layers grouped into blocks, and the loss it is trained with (a
softmax classifier's by default; any compiled Keras loss, e.g. a regression head's). The engines
(:mod:`ddl_commodity.engines`) train it single machine, data parallel with the staleness-weighted PS, or
model parallel with a split scheme over its blocks, and know no experiment by name. Name it in a YAML file
by dotted path (``experiment: mypkg.module:MyExperiment``); the toolkit's own are registered by name in
:mod:`ddl_commodity.experiments.registry`. ``examples/waves.py`` is a complete one in under 60 lines,
``examples/redshift_regression.py`` a regression. How runs are shown is an
:class:`~ddl_commodity.experiments.view.ExperimentView`'s business, which an experiment may name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ddl_commodity.config import RunConfig
from ddl_commodity.data.parquet import Column, Piece
from ddl_commodity.data.split import train_validation_split
from ddl_commodity.errors import ConfigError, DataError
from ddl_commodity.experiments.view import ExperimentView
from ddl_commodity.models.placement import BlockGraph, Placement, device_scope, functional_graph, place_functional
from ddl_commodity.models.splits import SplitScheme, load_scheme

if TYPE_CHECKING:
    import keras

#: The loss of an experiment that declares none: a softmax over the classes, integer labels.
CLASSIFIER_LOSS = "sparse_categorical_crossentropy"


@dataclass(frozen=True)
class Dataset:
    """A run's data: one array per model input and the labels (targets), split into training and validation rows.

    Shapes: ``inputs[i]`` is ``(N, *input_shape_i)``, ``labels`` ``(N,)``, int32 class indices for a classifier,
    float32 targets otherwise (:attr:`Experiment.classification`); the two index arrays hold rows.
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

    def shards(self, workers: int, seed: int) -> np.ndarray:
        """The shard (0..M-1) of every row for ``workers`` shards, -1 for validation rows (Fig 5.2)."""
        from ddl_commodity.data.rdd import shard_assignment

        return shard_assignment(self.num_rows, self.train_index, workers, seed)

    def flat(self) -> np.ndarray:
        """``(N, D)`` float32, every input flattened and concatenated: Spark-input feeding ships one array per
        sample; :func:`unflatten` restores the inputs on the worker."""
        n = self.num_rows
        return np.concatenate([a.reshape(n, -1) for a in self.inputs], axis=1).astype(np.float32, copy=False)


@dataclass(frozen=True)
class SourceData:
    """A data set the executors read where it lies (``data.source``): the driver knows its pieces (row groups,
    from the files' footers), never its rows. Training and validation are whole pieces
    (:mod:`ddl_commodity.data.streaming`).

    Args:
        path: the source as configured (a directory, glob or URI).
        pieces: every row group, in global row order.
        inputs: the input columns, fed flattened in this order; ``label``: the target column.
        validation: positions in ``pieces`` of the validation pieces.
    """

    path: str
    pieces: tuple[Piece, ...]
    inputs: tuple[Column, ...]
    label: Column
    validation: tuple[int, ...]

    @property
    def num_rows(self) -> int:
        return sum(p.rows for p in self.pieces)

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        return [c.shape for c in self.inputs]

    @property
    def validation_pieces(self) -> list[Piece]:
        return [self.pieces[i] for i in self.validation]

    @property
    def train_index(self) -> np.ndarray:
        """The training rows' global indices, ``(n,)`` int64 (8 bytes a row: indices, not rows)."""
        held_out = set(self.validation)
        spans = [np.arange(p.first_row, p.first_row + p.rows) for i, p in enumerate(self.pieces) if i not in held_out]
        return np.concatenate(spans) if spans else np.empty(0, np.int64)

    @property
    def validation_index(self) -> np.ndarray:
        spans = [np.arange(p.first_row, p.first_row + p.rows) for p in self.validation_pieces]
        return np.concatenate(spans) if spans else np.empty(0, np.int64)

    def shards(self, workers: int, seed: int) -> np.ndarray:
        """The shard of every row for ``workers`` shards of whole pieces, -1 for validation rows."""
        from ddl_commodity.data.streaming import piece_shards

        return piece_shards(self.pieces, self.validation, workers, seed)


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
    first group; the others have defaults that fit a functional Keras softmax classifier. A regression sets
    ``classification = False`` and returns its loss from :meth:`loss`.

    Layers belong to blocks by name: ``<block>_<anything>`` is in ``<block>``, a name without ``_`` is a
    block of its own (override :meth:`blocks` for another grouping). Split schemes place blocks on nodes.
    """

    #: Registry name; experiments loaded by dotted path are known by that path.
    name: ClassVar[str] = ""
    config_class: ClassVar[type[RunConfig]] = RunConfig
    #: The training modes this experiment supports (``training.mode``).
    modes: ClassVar[tuple[str, ...]] = ("single", "data_parallel", "model_parallel")
    #: True: integer class labels, top-1 accuracy recorded; False: float targets, no accuracy (``None``).
    classification: ClassVar[bool] = True
    #: How runs are shown (curves, console, reports, ``ddl reproduce`` sizes); see
    #: :func:`~ddl_commodity.experiments.registry.view_of`.
    view: ClassVar[type[ExperimentView]] = ExperimentView

    # -- what a subclass provides -------------------------------------------------------------------
    def data_file(self, cfg: RunConfig, progress: bool | None = None) -> Path:
        """The file that holds the run's data, written first if the config asks for generated data."""
        raise NotImplementedError

    def load(self, cfg: RunConfig, path: Path) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """``(inputs, labels)`` from ``path``: one array per model input, labels ``(N,)`` (integer classes, or
        float targets if the experiment does not classify)."""
        raise NotImplementedError

    def build_model(self, cfg: RunConfig) -> keras.Model:
        """The uncompiled model, seeded from ``cfg.seed``: a softmax over the classes for the default loss, or
        the head :meth:`loss` expects (e.g. ``Dense(1)`` for a regression)."""
        raise NotImplementedError

    # -- what is trained for -------------------------------------------------------------------------
    def loss(self, cfg: RunConfig) -> str | keras.losses.Loss:
        """The Keras loss the model is trained and scored with: a name ``keras.losses.get`` knows (``"mse"``,
        ``"huber"``), a ``keras.losses.Loss`` or a function ``(y_true, y_pred) -> (N,)`` losses. Called only
        where TensorFlow runs (the nodes, the single-machine process), never on the driver."""
        return CLASSIFIER_LOSS

    @property
    def label_dtype(self) -> type[np.number]:
        """int32 class indices for a classifier, float32 targets otherwise: what labels are fed as."""
        return np.int32 if self.classification else np.float32

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

    def validation_metrics(self, outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Metrics beyond the loss (and a classifier's top-1 accuracy) from the model's outputs for the validation
        rows (``(N, C)`` class probabilities, or e.g. ``(N, 1)`` estimates) and their labels ``(N,)``; recorded
        every epoch as ``val_<name>`` (none by default)."""
        return {}

    def columns(self, cfg: RunConfig) -> tuple[tuple[Column, ...], Column]:
        """``(input columns, label column)`` of this experiment's data in Parquet (``data.source``): one column
        per model input, in the model's order, and the target."""
        raise ConfigError(f"data.source: {self.name or type(self).__name__} declares no Parquet columns "
                          "(Experiment.columns)")

    def predictions(self, outputs: np.ndarray) -> dict[str, np.ndarray]:
        """What ``ddl predict`` writes for the model's outputs ``(N, C)`` (or ``(N, 1)``): a classifier's most
        probable ``class`` and its ``probability``; otherwise the ``value`` estimated. Columns of ``(N,)``."""
        if self.classification:
            best = outputs.argmax(axis=1).astype(np.int32)
            return {"class": best, "probability": outputs[np.arange(len(best)), best].astype(np.float32)}
        return {"value": outputs.reshape(len(outputs), -1)[:, 0].astype(np.float32)}

    def summary_sections(self, cfg: RunConfig, run_dir: Path, dataset: Dataset | SourceData) -> dict:
        """Extra top-level keys of ``summary.json`` (none by default)."""
        return {}

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

    def dataset(self, cfg: RunConfig, progress: bool | None = None) -> Dataset | SourceData:
        """Data file, arrays and the seeded train/validation split; too little data is a :class:`DataError`.
        With ``data.source``, the data set's pieces only, checked against :meth:`columns` (:class:`SourceData`)."""
        if cfg.data.source is not None:
            return self._source_data(cfg)
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
        return Dataset(path, tuple(inputs), np.asarray(labels, dtype=self.label_dtype), train, val)

    def _source_data(self, cfg: RunConfig) -> SourceData:
        from ddl_commodity.data.parquet import pieces
        from ddl_commodity.data.streaming import piece_shards, validation_pieces

        if cfg.training.engine == "single":
            raise ConfigError("data.source: a data set read where it lies is read by distributed runs (data "
                              "or model parallel), not single-machine ones")
        inputs, label = self.columns(cfg)
        found = tuple(pieces(cfg.data.source, [*inputs, label]))
        shards = cfg.training.workers if cfg.training.engine == "data_parallel" else 1
        validation = tuple(validation_pieces(found, cfg.data.validation_fraction, cfg.seed, keep=shards))
        piece_shards(found, validation, shards, cfg.seed)  # too few row groups ends here
        return SourceData(cfg.data.source, found, tuple(inputs), label, validation)
