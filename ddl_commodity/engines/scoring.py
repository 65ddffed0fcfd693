"""Validation scores from a model's outputs: the loss for every experiment, top-1 accuracy for a classifier,
plus what its :meth:`~ddl_commodity.experiments.api.Experiment.validation_metrics` adds (the redshift errors,
for one). What an experiment is trained and scored on travels as an :class:`Objective`.

Every engine scores the same way, so a worker's replica, the PS's global model, the final model (scored on
the PS node) and the single-machine baseline are comparable number for number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ddl_commodity.experiments.api import CLASSIFIER_LOSS, Experiment

if TYPE_CHECKING:
    import keras

    from ddl_commodity.config import RunConfig

#: outputs ``(N, ...)`` (class probabilities ``(N, C)`` of a classifier), labels ``(N,)`` -> extra metrics by name
ExtraMetrics = Callable[[np.ndarray, np.ndarray], dict[str, float]]
EVAL_BATCH = 256
_EPSILON = 1e-7  # Keras's clip of probabilities before the log


@dataclass(frozen=True)
class Objective:
    """What a model is trained and scored on: the Keras loss (a name, a ``keras.losses.Loss`` or a function of
    ``(y_true, y_pred)``), whether the model classifies (top-1 accuracy recorded) and the extra metrics."""

    loss: Any = CLASSIFIER_LOSS
    classification: bool = True
    metrics: ExtraMetrics | None = None

    @classmethod
    def of(cls, experiment: Experiment, cfg: RunConfig) -> Objective:
        """The experiment's own; call it where TensorFlow is loaded (``Experiment.loss`` may build Keras objects)."""
        return cls(experiment.loss(cfg), experiment.classification, experiment.validation_metrics)

    @property
    def softmax_cross_entropy(self) -> bool:
        """The thesis's loss (a softmax over classes, integer labels), which is scored without TensorFlow."""
        return self.classification and isinstance(self.loss, str) and self.loss == CLASSIFIER_LOSS

    def batch_loss(self) -> Callable[[Any, Any], Any]:
        """``(y_true, y_pred) -> scalar``: the loss as ``model.fit`` computes it, a ``Loss`` object with its own
        reduction, a name or function averaged over the batch."""
        import keras

        if self.softmax_cross_entropy:
            return keras.losses.SparseCategoricalCrossentropy()
        found = keras.losses.get(self.loss)
        if found is None:
            raise ValueError(f"unknown Keras loss {self.loss!r}")
        if isinstance(found, keras.losses.Loss):
            return found
        return lambda y, pred: keras.ops.mean(found(y, pred))


def scores(outputs: np.ndarray, labels: np.ndarray, objective: Objective) -> dict[str, float]:
    """``loss``, a classifier's ``accuracy`` and the extra metrics of ``outputs`` ``(N, ...)`` against ``labels``
    ``(N,)``. The thesis's cross-entropy is computed in NumPy; any other loss with Keras (where it is loaded)."""
    if objective.softmax_cross_entropy:
        return scores_from_probs(outputs, labels, objective.metrics)
    loss = objective.batch_loss()
    total = sum(float(loss(labels[a:a + EVAL_BATCH], outputs[a:a + EVAL_BATCH])) * len(labels[a:a + EVAL_BATCH])
                for a in range(0, len(labels), EVAL_BATCH))
    out = {"loss": total / len(labels)}
    if objective.classification:
        out["accuracy"] = float(np.mean(np.argmax(outputs, axis=1) == np.asarray(labels, np.int64)))
    if objective.metrics is not None:
        out.update(objective.metrics(outputs, labels))
    return out


def scores_from_probs(probs: np.ndarray, labels: np.ndarray, extra: ExtraMetrics | None = None) -> dict[str, float]:
    """``loss`` (mean sparse categorical cross-entropy), ``accuracy`` (top-1) and ``extra``'s metrics."""
    labels = np.asarray(labels, np.int64)
    picked = np.clip(probs[np.arange(len(labels)), labels].astype(np.float64), _EPSILON, 1.0 - _EPSILON)
    out = {"loss": float(-np.mean(np.log(picked))), "accuracy": float(np.mean(np.argmax(probs, axis=1) == labels))}
    if extra is not None:
        out.update(extra(probs, labels))
    return out


def model_inputs(inputs: Sequence):
    """What a Keras model is called with: its one input alone, or the list of them."""
    return inputs[0] if len(inputs) == 1 else list(inputs)


def predict(model: keras.Model, inputs: Sequence[np.ndarray]) -> np.ndarray:
    """Outputs of ``model`` (a classifier's class probabilities) for every row of ``inputs`` (one array per model
    input), in batches."""
    parts = [np.asarray(model(model_inputs([a[i:i + EVAL_BATCH] for a in inputs]), training=False))
             for i in range(0, len(inputs[0]), EVAL_BATCH)]
    return np.concatenate(parts)


def score_model(model: keras.Model, inputs: Sequence[np.ndarray], labels: np.ndarray,
                objective: Objective | None = None) -> dict[str, float]:
    """:func:`scores` of ``model`` on ``inputs`` (the thesis's classifier if no ``objective``); empty when there
    is no row to score."""
    if not len(labels):
        return {}
    return scores(predict(model, inputs), labels, objective or Objective())


def prefixed(scored: dict[str, float], prefix: str) -> dict[str, float | None]:
    """``{"loss": 1.2}`` -> ``{"val_loss": 1.2}``; loss and accuracy are present (``None``) even unscored, and
    accuracy stays ``None`` for a model that does not classify."""
    out: dict[str, float | None] = {f"{prefix}loss": None, f"{prefix}accuracy": None}
    out.update({f"{prefix}{k}": v for k, v in scored.items()})
    return out
