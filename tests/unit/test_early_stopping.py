"""epochs_to_plateau must agree with Keras's own EarlyStopping callback, epoch for epoch."""

from __future__ import annotations

import types

import numpy as np
import pytest

from ddl_commodity.artifacts.early_stopping import epochs_to_plateau


def keras_epochs(values: list[float], monitor: str, patience: int, min_delta: float) -> int | None:
    """Replay a curve through the real keras.callbacks.EarlyStopping."""
    import keras  # here, not at collection: every pytest process collects this module, few run it

    mode = "min" if "loss" in monitor else "max"
    cb = keras.callbacks.EarlyStopping(monitor=monitor, patience=patience, min_delta=min_delta, mode=mode)
    model = types.SimpleNamespace(stop_training=False)
    cb.set_model(model)
    cb.on_train_begin()
    for epoch, v in enumerate(values):
        cb.on_epoch_end(epoch, {monitor: v})
        if model.stop_training:
            return epoch + 1
    return None


CURVES = {
    "rising then flat": [0.1, 0.3, 0.5, 0.6, 0.6005, 0.6006, 0.6006, 0.6007],
    "noisy": [0.2, 0.25, 0.24, 0.3, 0.29, 0.31, 0.3102, 0.3101, 0.3103, 0.3104],
    "monotone": list(np.linspace(0.1, 0.9, 12)),
    "loss falling": [5.0, 4.0, 3.5, 3.4999, 3.4998, 3.2, 3.19995, 3.19994],
}


@pytest.mark.parametrize("name", CURVES)
@pytest.mark.parametrize(("patience", "min_delta"), [(1, 0.001), (3, 0.0001), (0, 0.0), (2, 0.01)])
def test_matches_keras(name: str, patience: int, min_delta: float) -> None:
    values = CURVES[name]
    monitor = "loss" if "loss" in name else "accuracy"
    assert epochs_to_plateau(values, monitor, patience, min_delta) == keras_epochs(values, monitor, patience,
                                                                                     min_delta)


def test_hand_example_thesis_criterion_1() -> None:
    # Improvements of 0.2, 0.2, then 0.0005 (< min_delta 0.001): stops after the 4th epoch.
    assert epochs_to_plateau([0.1, 0.3, 0.5, 0.5005, 0.9], "accuracy", 1, 0.001) == 4
    assert epochs_to_plateau([0.1, 0.3, 0.5], "accuracy", 1, 0.001) is None
