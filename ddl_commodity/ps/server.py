"""The staleness-weighted parameter server of thesis eq. 5.1, without any networking.

Workers push ``dW_j = W_pulled - W_local``, the descent step they took since they pulled (so with s = 1,
tau = 0 and lambda = 1 the global weights become exactly that worker's weights). The server buffers
updates until it holds ``s`` of them, then applies

    W <- W - (1/s) * sum_j lambda(tau_j) * dW_j,      tau_j = version - base_version_j

(``version`` is the version *before* this apply), increments ``version`` and wakes the pushers, who get
the new weights. ``s = M`` is synchronous averaging; ``s = 1`` is plain asynchronous SGD.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ddl_commodity.errors import DdlError
from ddl_commodity.ps.staleness import StalenessFunction, inverse

UpdateLog = Callable[[dict], None]


class ParameterServerError(DdlError):
    """A parameter-server call failed."""


class UpdateRejected(ParameterServerError):
    """An update's arrays do not match the weights (count, shape, dtype) or are not finite."""


class ParameterServerTimeout(ParameterServerError):
    """A push waited longer than its timeout for the aggregate it belongs to."""


class ParameterServerStopped(ParameterServerError):
    """The server stopped while a push was waiting."""


def weights_delta(pulled: Sequence[np.ndarray], local: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``dW = W_pulled - W_local``, array by array."""
    return [p - w for p, w in zip(pulled, local, strict=True)]


@dataclass
class _Pending:
    worker: int
    base_version: int
    delta: list[np.ndarray]
    applied_version: int | None = None
    received: float = field(default_factory=time.time)


class StalenessWeightedServer:
    """Global weights, a version counter and the s-of-M buffer; thread-safe.

    ``on_update`` receives one record per applied (``event: applied``) or refused (``event: rejected``)
    update and per worker that leaves (``event: finished``).
    """

    def __init__(
        self,
        weights: Sequence[np.ndarray],
        num_workers: int,
        s: int,
        staleness: StalenessFunction = inverse,
        on_update: UpdateLog | None = None,
    ) -> None:
        if num_workers < 1 or not 1 <= s <= num_workers:
            raise ValueError(f"need 1 <= s <= M, got s={s}, M={num_workers}")
        self._weights = [np.array(w, copy=True) for w in weights]
        self.num_workers = num_workers
        self.s = s
        self._staleness = staleness
        self._log = on_update or (lambda record: None)
        self.version = 0
        self._buffer: list[_Pending] = []
        self._finished: set[int] = set()
        self._cond = threading.Condition()
        self._stopped = False
        self._outbox: list[dict] = []  # log records, sent after the lock is released
        self.applied_updates = 0
        self.rejected_updates = 0

    @property
    def s_effective(self) -> int:
        """``s``, lowered to the number of workers still pushing so the last pushers are never stranded."""
        return max(1, min(self.s, self.num_workers - len(self._finished)))

    def pull(self) -> tuple[int, list[np.ndarray]]:
        with self._cond:
            return self.version, [w.copy() for w in self._weights]

    def _check(self, delta: Sequence[np.ndarray]) -> str | None:
        if len(delta) != len(self._weights):
            return f"{len(delta)} arrays, expected {len(self._weights)}"
        for i, (d, w) in enumerate(zip(delta, self._weights, strict=True)):
            if d.shape != w.shape or d.dtype != w.dtype:
                return f"array {i} is {d.dtype}{list(d.shape)}, expected {w.dtype}{list(w.shape)}"
            if not np.isfinite(d).all():
                return f"array {i} holds NaN or Inf"
        return None

    def push(
        self, worker: int, base_version: int, delta: Sequence[np.ndarray], timeout: float | None = None
    ) -> tuple[int, list[np.ndarray]]:
        """Buffer ``delta``; block until the aggregate holding it is applied; return (version, weights)."""
        try:
            return self._push(worker, base_version, delta, timeout)
        finally:
            self._emit()

    def _emit(self) -> None:
        # The log callback may be a network call (the driver's collector): never make it under the lock,
        # or one slow call would stall every worker.
        with self._cond:
            out, self._outbox = self._outbox, []
        for record in out:
            self._log(record)

    def _push(
        self, worker: int, base_version: int, delta: Sequence[np.ndarray], timeout: float | None
    ) -> tuple[int, list[np.ndarray]]:
        problem = self._check(delta)
        with self._cond:
            if problem is None and not 0 <= base_version <= self.version:
                problem = f"base version {base_version} is not in 0..{self.version}"
            if problem is not None:
                self.rejected_updates += 1
                self._outbox.append({"event": "rejected", "time": time.time(), "worker": worker,
                           "base_version": base_version, "reason": problem})
                raise UpdateRejected(f"update from worker {worker} refused: {problem}")
            pending = _Pending(worker, base_version, [np.asarray(d) for d in delta])
            self._buffer.append(pending)
            self._apply_if_ready()
            self._cond.wait_for(lambda: pending.applied_version is not None or self._stopped, timeout)
            if pending.applied_version is None:
                if self._stopped:
                    raise ParameterServerStopped("the parameter server stopped")
                self._buffer.remove(pending)
                raise ParameterServerTimeout(
                    f"worker {worker}: no aggregate of {self.s_effective} updates within {timeout} s")
            return self.version, [w.copy() for w in self._weights]

    def _apply_if_ready(self) -> None:
        """Apply eq. 5.1 while the buffer holds ``s_effective`` updates. Caller holds the lock."""
        while self._buffer and len(self._buffer) >= self.s_effective:
            batch, self._buffer = self._buffer[: self.s_effective], self._buffer[self.s_effective:]
            s = len(batch)
            now = time.time()
            total = [np.zeros_like(w) for w in self._weights]
            records = []
            for p in batch:
                tau = self.version - p.base_version
                lam = float(self._staleness(tau))
                for acc, d in zip(total, p.delta, strict=True):
                    acc += lam * d
                norm = math.sqrt(sum(float(np.vdot(d, d)) for d in p.delta))
                records.append({"event": "applied", "time": now, "worker": p.worker,
                                "base_version": p.base_version, "tau": tau, "lambda": lam, "update_norm": norm,
                                "s": s, "wait_seconds": now - p.received})
            for w, acc in zip(self._weights, total, strict=True):
                w -= (acc / s).astype(w.dtype, copy=False)
            self.version += 1
            self.applied_updates += s
            for p, r in zip(batch, records, strict=True):
                p.applied_version = r["applied_version"] = self.version
                self._outbox.append(r)
            self._cond.notify_all()

    def finish(self, worker: int, reason: str = "finished", detail: dict | None = None) -> None:
        """``worker`` pushes no more; pending updates of the others are applied if ``s`` now allows.

        ``reason`` is the logged event (``finished``, or ``lost`` when the driver declares a dead worker gone);
        ``detail`` is added to that record (e.g. how the loss was detected).
        """
        with self._cond:
            if worker in self._finished:
                return
            self._finished.add(worker)
            self._outbox.append({**(detail or {}), "event": reason, "time": time.time(), "worker": worker,
                                 "s_effective": self.s_effective})
            self._apply_if_ready()
        self._emit()

    def announce(self, worker: int, info: dict) -> None:
        """Log where ``worker`` runs (``event: joined``): the driver needs its Spark executor to release it."""
        with self._cond:
            self._outbox.append({**info, "event": "joined", "time": time.time(), "worker": worker})
        self._emit()

    def stop(self) -> None:
        """Release every waiting pusher with :class:`ParameterServerStopped`."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def stats(self) -> dict:
        with self._cond:
            return {"version": self.version, "applied_updates": self.applied_updates,
                    "rejected_updates": self.rejected_updates, "buffered": len(self._buffer),
                    "live_workers": self.num_workers - len(self._finished), "s": self.s,
                    "s_effective": self.s_effective}

    def state_dict(self) -> dict:
        with self._cond:
            return {"version": self.version, "weights": [w.copy() for w in self._weights],
                    "applied_updates": self.applied_updates}

    def load_state_dict(self, state: dict) -> None:
        with self._cond:
            weights = state["weights"]
            if [w.shape for w in weights] != [w.shape for w in self._weights]:
                raise ValueError("checkpoint weights do not match the model")
            self._weights = [np.array(w, copy=True) for w in weights]
            self.version = int(state["version"])
            self.applied_updates = int(state.get("applied_updates", 0))
