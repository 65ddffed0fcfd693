"""Staleness scaling factors lambda(tau) of thesis eq. 5.1, registered by name.

``tau`` is how many versions the PS advanced between the moment a worker pulled the weights it trained
from and the moment its update is applied; a stale update is scaled down so it cannot drag the model back.
A new function is one function of ``(tau, decay)`` and one entry in :data:`STALENESS_FUNCTIONS`; the config
(``ps.staleness``) accepts exactly the names registered here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

StalenessFunction = Callable[[int], float]


def constant(tau: int, decay: float = 0.5) -> float:
    """lambda(tau) = 1: plain averaging, staleness ignored."""
    return 1.0


def inverse(tau: int, decay: float = 0.5) -> float:
    """lambda(tau) = 1 / (1 + tau)."""
    return 1.0 / (1.0 + tau)


def exponential(tau: int, decay: float = 0.5) -> float:
    """lambda(tau) = decay ** tau."""
    return decay**tau


STALENESS_FUNCTIONS: dict[str, Callable[..., float]] = {
    "constant": constant,
    "inverse": inverse,
    "exponential": exponential,
}


def make_staleness(name: str, decay: float = 0.5) -> StalenessFunction:
    """The named function with ``decay`` (0 < decay <= 1, used by ``exponential``) bound."""
    if name not in STALENESS_FUNCTIONS:
        raise ValueError(f"unknown staleness function {name!r}; choose one of {', '.join(STALENESS_FUNCTIONS)}")
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"staleness decay must be in (0, 1], got {decay}")
    return partial(STALENESS_FUNCTIONS[name], decay=decay)
