"""Staleness scaling factors lambda(tau) of thesis eq. 5.1.

``tau`` is how many versions the PS advanced between the moment a worker pulled the weights it trained
from and the moment its update is applied; a stale update is scaled down so it cannot drag the model back.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

StalenessFunction = Callable[[int], float]
STALENESS_FUNCTIONS = ("constant", "inverse", "exponential")


def constant(tau: int) -> float:
    """lambda(tau) = 1: plain averaging, staleness ignored."""
    return 1.0


def inverse(tau: int) -> float:
    """lambda(tau) = 1 / (1 + tau)."""
    return 1.0 / (1.0 + tau)


def exponential(tau: int, decay: float) -> float:
    """lambda(tau) = decay ** tau."""
    return decay**tau


def make_staleness(name: str, decay: float = 0.5) -> StalenessFunction:
    """The named function; ``decay`` (0 < decay <= 1) is used by ``exponential`` only."""
    if name == "constant":
        return constant
    if name == "inverse":
        return inverse
    if name == "exponential":
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"exponential staleness needs 0 < decay <= 1, got {decay}")
        return partial(exponential, decay=decay)
    raise ValueError(f"unknown staleness function {name!r}; choose one of {', '.join(STALENESS_FUNCTIONS)}")
