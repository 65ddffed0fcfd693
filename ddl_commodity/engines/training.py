"""The training loop every engine shares, and the optimizers by name.

Model parallelism needs more than ``model.fit``: the backward pass must run where the forward pass ran and
the optimizer where the weights live, or every layer's saved activations travel to the client and the
"distributed" model is computed on one node (Fig 6.3's default scheme at batch 50: 48 MB per step out of the
HSI worker and 6x its CPU on the client). So :class:`Trainer`'s step takes gradients with
``tf.gradients`` (which puts each gradient op on its forward op's device) inside a ``tf.function`` and
applies them under the variable device. The single-machine engine runs the same loop without placement.

The loss is the experiment's (:class:`~ddl_commodity.engines.scoring.Objective`): the thesis's softmax
cross-entropy on integer classes by default, or any Keras loss on float targets; a model that does not classify
records no accuracy (``None``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ddl_commodity.config import OPTIMIZERS, TrainingSettingsBase
from ddl_commodity.engines.scoring import EVAL_BATCH, Objective, model_inputs, prefixed, scores
from ddl_commodity.models.placement import device_scope

if TYPE_CHECKING:
    import keras


def get_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """A Keras optimizer by its config name (``training.optimizer``: :data:`~ddl_commodity.config.OPTIMIZERS`)."""
    import keras

    return getattr(keras.optimizers, OPTIMIZERS[name])(learning_rate=learning_rate)


def compile_for_training(model: keras.Model, training: TrainingSettingsBase,
                         objective: Objective | None = None) -> keras.Model:
    """Compile with the objective's loss, and accuracy for a classifier; by default sparse categorical
    cross-entropy and accuracy, the thesis's two curves (Figs 5.3, 5.6)."""
    objective = objective or Objective()
    model.compile(optimizer=get_optimizer(training.optimizer, training.learning_rate),
                  loss=objective.loss, metrics=["accuracy"] if objective.classification else [])
    return model


def keras_file_bytes(model: keras.Model) -> bytes:
    """``model`` saved as a ``.keras`` file, as bytes: what a node sends for the driver to write as
    ``model.keras`` (the driver loads no TensorFlow, :mod:`ddl_commodity.runtime.tfos_import`)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="ddl-model-") as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        return path.read_bytes()


@dataclass
class EpochResult:
    """One epoch of :meth:`Trainer.fit`; ``validation`` holds :mod:`~ddl_commodity.engines.scoring`'s scores;
    ``accuracy`` is ``None`` for a model that does not classify."""

    epoch: int
    loss: float
    accuracy: float | None
    validation: dict[str, float]
    samples: int
    steps: int
    train_start: float
    train_end: float
    seconds: float

    def record(self, worker: str) -> dict:
        """The epoch's line in ``workers/<worker>.jsonl``: validation scores as ``val_<name>``."""
        out = {"worker": worker, "epoch": self.epoch, "loss": self.loss, "accuracy": self.accuracy,
               **prefixed(self.validation, "val_")}
        out.update(samples=self.samples, steps=self.steps, train_start=self.train_start, train_end=self.train_end,
                   seconds=self.seconds, time=time.time())
        return out


class Trainer:
    """Trains ``model`` (already placed, variables on ``variables``) with the config's optimizer.

    Args:
        model: a Keras model taking a list of input batches, ending in the head the objective's loss expects
            (a softmax for the default).
        training: the config's ``training`` section (optimizer, rate, batch size, epochs, steps cap).
        variables: the device that holds the weights (model parallel), or ``None``.
        seed: shuffling seed.
        objective: the experiment's loss, task and extra validation metrics (:meth:`Objective.of`); the
            thesis's classifier by default.
    """

    def __init__(self, model: keras.Model, training: TrainingSettingsBase, variables: str | None = None,
                 seed: int = 0, objective: Objective | None = None) -> None:
        import tensorflow as tf

        self.model, self.training, self.variables, self.seed = model, training, variables, seed
        self.objective = objective or Objective()
        self.optimizer = get_optimizer(training.optimizer, training.learning_rate)
        with self._on_variables():
            self.optimizer.build(self.model.trainable_variables)
        self._loss = self.objective.batch_loss()
        self._train_step = tf.function(self._train_step_fn)
        self._eval_step = tf.function(self._eval_step_fn)

    def _on_variables(self):
        return device_scope(self.variables)

    def _train_step_fn(self, inputs, y):
        import tensorflow as tf

        outputs = self.model(model_inputs(inputs), training=True)
        n = tf.cast(tf.shape(y)[0], tf.float32)
        loss = tf.cast(self._loss(y, outputs), tf.float32)  # the batch mean, as model.fit reduces it
        variables = self.model.trainable_variables
        grads = tf.gradients(loss, [v.value for v in variables])  # colocated with the forward ops
        with self._on_variables():
            self.optimizer.apply(grads, variables)
        correct = _correct(outputs, y) if self.objective.classification else tf.constant(0.0)
        return loss * n, correct

    def _eval_step_fn(self, inputs):
        return self.model(model_inputs(inputs), training=False)

    def train_batch(self, inputs: Sequence[np.ndarray], labels: np.ndarray) -> tuple[float, float | None]:
        """One compiled train step on one batch (one array per model input): its mean loss and accuracy
        (``None`` for a model that does not classify)."""
        loss, correct = self._train_step(tuple(inputs), labels)
        return float(loss) / len(labels), self._accuracy(float(correct), len(labels))

    def _accuracy(self, correct: float, samples: int) -> float | None:
        return correct / samples if self.objective.classification else None

    def train_epoch(self, inputs: Sequence[np.ndarray], labels: np.ndarray, index: np.ndarray,
                    rng: np.random.Generator, bar: Callable[[int], None] | None = None
                    ) -> tuple[float, float | None, int, int, float, float]:
        """One pass over ``index`` (or ``steps_per_epoch`` batches); returns loss, accuracy (``None`` for a model
        that does not classify), samples, steps, start and end time of the training part. ``bar`` is told of
        every step's samples."""
        bs = self.training.batch_size
        order = rng.permutation(index)
        batches = [np.sort(order[a:a + bs]) for a in range(0, len(order), bs)]  # h5-style fancy indexing order
        return self.train_batches(((tuple(a[idx] for a in inputs), labels[idx]) for idx in batches), bar)

    def train_batches(self, batches: Iterable[tuple[tuple[np.ndarray, ...], np.ndarray]],
                      bar: Callable[[int], None] | None = None) -> tuple[float, float | None, int, int, float, float]:
        """One epoch over ``batches`` of ``(inputs, labels)`` (at most ``steps_per_epoch`` of them), as
        :meth:`train_epoch` returns it."""
        loss_sum = correct = 0.0
        seen = steps = 0
        start = time.time()
        for x, y in batches:
            loss, ok = self._train_step(x, y)
            loss_sum += float(loss)
            correct += float(ok)
            seen, steps = seen + len(y), steps + 1
            if bar is not None:
                bar(len(y))
            if steps == self.training.steps_per_epoch:
                break
        return loss_sum / seen, self._accuracy(correct, seen), seen, steps, start, time.time()

    def evaluate(self, inputs: Sequence[np.ndarray], labels: np.ndarray, index: np.ndarray) -> dict[str, float]:
        """Scores of the rows ``index`` (empty when there are none), computed where the model is placed."""
        if not len(index):
            return {}
        outputs = np.concatenate([np.asarray(self._eval_step(tuple(x[index[a:a + EVAL_BATCH]] for x in inputs)))
                                  for a in range(0, len(index), EVAL_BATCH)])
        return scores(outputs, labels[index], self.objective)

    def op_devices(self, inputs: Sequence[np.ndarray], labels: np.ndarray, layers: list[str]) -> dict[str, list[str]]:
        """Layer -> the devices of every op of its forward and backward pass in the compiled training step:
        where the graph really puts each layer, to hold against the split scheme."""
        bs = self.training.batch_size
        graph = self._train_step.get_concrete_function(tuple(a[:bs] for a in inputs), labels[:bs]).graph
        out: dict[str, set[str]] = {layer: set() for layer in layers}
        for op in graph.get_operations():
            if not op.device:  # variable reads: colocated with their variable, on the PS
                continue
            for part in op.name.split("/"):
                name = re.sub(r"_\d+$", "", part) if part not in out else part  # "head_dense_1": a 2nd call
                if name in out:
                    out[name].add(op.device)
        return {layer: sorted(devices) for layer, devices in out.items()}

    def fit(self, inputs: Sequence[np.ndarray], labels: np.ndarray, train_index: np.ndarray, val_index: np.ndarray,
            on_epoch: Callable[[EpochResult], None], progress: bool | None = False,
            on_samples: Callable[[int, int], None] | None = None) -> list[EpochResult]:
        """Train every epoch, scoring the validation rows after each. ``progress``: a bar within each epoch
        (``None``: only on a terminal); ``on_samples(epoch, samples so far)`` after every step."""
        rng = np.random.default_rng(self.seed)
        return self._fit(lambda epoch, bar: self.train_epoch(inputs, labels, train_index, rng, bar),
                         lambda: self.evaluate(inputs, labels, val_index),
                         samples_per_epoch(self.training, len(train_index)), on_epoch, progress, on_samples)

    def fit_streamed(self, epoch_batches: Callable[[int], Iterable[tuple[tuple[np.ndarray, ...], np.ndarray]]],
                     validation: tuple[Sequence[np.ndarray], np.ndarray], rows: int,
                     on_epoch: Callable[[EpochResult], None],
                     on_samples: Callable[[int, int], None] | None = None) -> list[EpochResult]:
        """:meth:`fit` over batches read while training: ``epoch_batches(epoch)`` gives epoch ``epoch``'s
        (1-based) batches of ``(inputs, labels)``; ``validation`` is ``(inputs, labels)``; ``rows`` the training
        rows an epoch holds."""
        x_val, y_val = validation
        return self._fit(lambda epoch, bar: self.train_batches(epoch_batches(epoch), bar),
                         lambda: self.evaluate(x_val, y_val, np.arange(len(y_val))),
                         samples_per_epoch(self.training, rows), on_epoch, False, on_samples)

    def _fit(self, train_one: Callable[[int, Callable[[int], None]], tuple], validate: Callable[[], dict],
             per_epoch: int, on_epoch: Callable[[EpochResult], None], progress: bool | None,
             on_samples: Callable[[int, int], None] | None) -> list[EpochResult]:
        from tqdm.auto import tqdm

        results = []
        for epoch in range(1, self.training.epochs + 1):
            t0 = time.monotonic()
            with tqdm(total=per_epoch, unit="sample", desc=f"epoch {epoch}/{self.training.epochs}",
                      leave=False, disable=None if progress is None else not progress) as bar:
                loss, acc, seen, steps, start, end = train_one(epoch, _StepCounter(epoch, bar, on_samples))
            result = EpochResult(epoch, loss, acc, validate(), seen, steps, start, end, time.monotonic() - t0)
            results.append(result)
            on_epoch(result)
        return results


def samples_per_epoch(training: TrainingSettingsBase, rows: int) -> int:
    """Samples one epoch trains on: every training row, or ``steps_per_epoch`` batches of them."""
    return min(rows, training.steps_per_epoch * training.batch_size) if training.steps_per_epoch else rows


class _StepCounter:
    """Told of every training step's samples: moves the epoch's bar and reports ``(epoch, samples so far)``."""

    def __init__(self, epoch: int, bar, on_samples: Callable[[int, int], None] | None) -> None:
        self.epoch, self.bar, self.on_samples, self.samples = epoch, bar, on_samples, 0

    def __call__(self, n: int) -> None:
        self.bar.update(n)
        self.samples += n
        if self.on_samples is not None:
            self.on_samples(self.epoch, self.samples)


def _correct(probs, y):
    import tensorflow as tf

    return tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probs, axis=1, output_type=tf.int32), y), tf.float32))
