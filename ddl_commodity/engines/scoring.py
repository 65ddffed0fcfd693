"""Validation scores from class probabilities: loss and top-1 accuracy for every experiment, plus what its
:meth:`~ddl_commodity.experiments.api.Experiment.validation_metrics` adds (the redshift errors, for one).

Every engine scores the same way, so a worker's replica, the PS's global model, the final model (scored on
the PS node) and the single-machine baseline are comparable number for number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

#: probabilities ``(N, C)``, labels ``(N,)`` -> extra metrics by name
ExtraMetrics = Callable[[np.ndarray, np.ndarray], dict[str, float]]
EVAL_BATCH = 256
_EPSILON = 1e-7  # Keras's clip of probabilities before the log


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
    """Class probabilities of ``model`` for every row of ``inputs`` (one array per model input), in batches."""
    parts = [np.asarray(model(model_inputs([a[i:i + EVAL_BATCH] for a in inputs]), training=False))
             for i in range(0, len(inputs[0]), EVAL_BATCH)]
    return np.concatenate(parts)


def score_model(model: keras.Model, inputs: Sequence[np.ndarray], labels: np.ndarray,
                extra: ExtraMetrics | None = None) -> dict[str, float]:
    """:func:`scores_from_probs` of ``model`` on ``inputs``; empty when there is no row to score."""
    if not len(labels):
        return {}
    return scores_from_probs(predict(model, inputs), labels, extra)


def prefixed(scores: dict[str, float], prefix: str) -> dict[str, float | None]:
    """``{"loss": 1.2}`` -> ``{"val_loss": 1.2}``; loss and accuracy are present (``None``) even unscored."""
    out: dict[str, float | None] = {f"{prefix}loss": None, f"{prefix}accuracy": None}
    out.update({f"{prefix}{k}": v for k, v in scores.items()})
    return out
