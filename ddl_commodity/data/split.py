"""The seeded training / validation split every experiment and engine uses."""

from __future__ import annotations

import numpy as np


def train_validation_split(num_samples: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, validation) row indices; deterministic for a seed."""
    if not 0.0 <= validation_fraction <= 0.5:
        raise ValueError("validation_fraction must be in [0, 0.5]")
    order = np.random.default_rng([seed, 0x5EED]).permutation(num_samples)
    n_val = round(num_samples * validation_fraction)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
