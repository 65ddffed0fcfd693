"""Epochs to a plateau under an early-stopping criterion (thesis Tables 5.1 and 5.2, Figs 5.4 and 5.5).

The thesis reads "epochs needed to achieve stable performance" off Keras's ``EarlyStopping`` callback with
a (monitor, patience, min_delta) triple. :func:`epochs_to_plateau` replays a recorded curve through the
same rule, so the numbers can be computed after the fact for any criterion, per worker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def monitor_mode(monitor: str) -> str:
    """``max`` for accuracies, ``min`` for losses (Keras's ``mode='auto'``)."""
    return "max" if "acc" in monitor else "min"


def epochs_to_plateau(values: Sequence[float], monitor: str, patience: int, min_delta: float) -> int | None:
    """Number of epochs Keras's ``EarlyStopping(monitor, patience, min_delta)`` would have run.

    ``values[i]`` is the monitored quantity after epoch ``i + 1``. An epoch improves on the best so far
    when it beats it by more than ``min_delta``; after ``patience`` epochs without improvement training
    stops, and the epochs run so far are the answer. ``None`` when the curve never plateaus within
    ``len(values)`` epochs.
    """
    sign = 1.0 if monitor_mode(monitor) == "max" else -1.0
    best = -math.inf
    wait = 0
    for epoch, value in enumerate(values):
        wait += 1
        if sign * value - min_delta > best:
            best = sign * value
            wait = 0
            continue
        if wait >= patience and epoch > 0:
            return epoch + 1
    return None
