"""The staleness-weighted parameter server of thesis eq. 5.1, without any networking.

Workers push ``dW_j = W_pulled - W_local``, the descent step they took since they pulled (so with s = 1,
tau = 0 and lambda = 1 the global weights become exactly that worker's weights). The server buffers
updates until it holds ``s`` of them, then applies

    W <- W - (1/s) * sum_j lambda(tau_j) * dW_j,      tau_j = version - base_version_j

(``version`` is the version *before* this apply), increments ``version`` and wakes the pushers, who get
the new weights. ``s = M`` is synchronous averaging; ``s = 1`` is plain asynchronous SGD.

Every array the server hands out is read-only and never changes: a pull or push returns the current arrays
themselves, which the network front sends while the next apply may already be under way, without a 40 MB
copy per caller. An apply writes into arrays nothing refers to any more (fresh memory costs a page fault
per 4 KiB on first write) and into new arrays only when there are none.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
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


def _read_only(arrays: Sequence[np.ndarray], copy: bool) -> list[np.ndarray]:
    """``arrays`` made read-only; ``copy`` first where a caller still holds them."""
    out = [np.array(a, copy=True) if copy else a for a in arrays]
    for a in out:
        a.flags.writeable = False
    return out


def _weighted_sum(terms: list[np.ndarray], scales: Sequence[float], acc: np.ndarray) -> np.ndarray:
    """``sum_j scales[j] * terms[j]``, in ``acc`` (or ``terms[0]`` itself: one term of scale 1). Equal scales
    (synchronous rounds) take s passes and no temporary."""
    if len(terms) == 1 and scales[0] == 1.0:
        return terms[0]
    if len(terms) > 1 and all(scale == scales[0] for scale in scales):
        np.add(terms[0], terms[1], out=acc)
        for term in terms[2:]:
            acc += term
        if scales[0] != 1.0:
            acc *= scales[0]
        return acc
    np.multiply(terms[0], scales[0], out=acc)
    for term, scale in zip(terms[1:], scales[1:], strict=True):
        acc += scale * term
    return acc


def _flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1)


#: Elements of one apply task when several updates are summed (1 MB of float32): the terms, their sum and the
#: weights of a task stay in a core's L2 cache between the passes over them, which whole arrays or halves of
#: them do not; smaller tasks (64K elements and fewer) lose more to Python's per-call cost than they gain.
APPLY_BLOCK = 1 << 18


def _parts(arrays: Sequence[np.ndarray], ways: int, block: int | None,
           min_size: int = 1 << 20) -> list[tuple[int, slice]]:
    """(array index, element range) tasks: arrays of ``min_size`` elements or more cut in blocks of about
    ``block`` elements (None: in ``ways`` pieces), the others whole."""
    tasks = []
    for i, a in enumerate(arrays):
        n = a.size
        k = (-(-n // block) if block else ways) if n >= min_size else 1
        tasks += [(i, slice(j * n // k, (j + 1) * n // k)) for j in range(k)]
    return tasks


def _norm_or_problem(i: int, d: np.ndarray) -> float | str:
    """||d||^2 in one pass, which also finds NaN and Inf (a sum of squares is finite iff every term is,
    unless it overflows: then the slow check decides)."""
    squares = float(np.vdot(d, d))
    if not math.isfinite(squares):
        if not np.isfinite(d).all():
            return f"array {i} holds NaN or Inf"
        squares = float(np.vdot(d.astype(np.float64), d.astype(np.float64)))
    return squares


def _unshared(arrays: list[np.ndarray]) -> bool:
    """Does nothing but ``arrays`` refer to these arrays (no caller, no reply being sent, no view)?"""
    # 2: the list's slot and getrefcount's own argument.
    return all(sys.getrefcount(arrays[i]) == 2 for i in range(len(arrays)))


@dataclass
class _Pending:
    worker: int
    base_version: int
    delta: list[np.ndarray]
    norm: float
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
        self._weights = _read_only(weights, copy=True)
        self._retired: list[np.ndarray] | None = None  # an older version's arrays, reused once unshared
        self._scratch = [np.empty_like(w) for w in self._weights]  # weighted sums; no page is touched until used
        self._cores = len(os.sched_getaffinity(0))
        self._pool = ThreadPoolExecutor(max_workers=self._cores, thread_name_prefix="ps-apply")
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
        """The current (version, weights); the arrays are read-only and never change."""
        with self._cond:
            return self.version, list(self._weights)

    def _check(self, delta: Sequence[np.ndarray]) -> float | str:
        """The update's norm, or why it is refused."""
        if len(delta) != len(self._weights):
            return f"{len(delta)} arrays, expected {len(self._weights)}"
        squares = 0.0
        for i, (d, w) in enumerate(zip(delta, self._weights, strict=True)):
            if d.shape != w.shape or d.dtype != w.dtype:
                return f"array {i} is {d.dtype}{list(d.shape)}, expected {w.dtype}{list(w.shape)}"
            term = _norm_or_problem(i, d)
            if isinstance(term, str):
                return term
            squares += term
        return math.sqrt(squares)

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
        checked = self._check(delta)
        problem = checked if isinstance(checked, str) else None
        with self._cond:
            if self._stopped:
                raise ParameterServerStopped("the parameter server stopped")
            if problem is None and not 0 <= base_version <= self.version:
                problem = f"base version {base_version} is not in 0..{self.version}"
            if problem is not None:
                self.rejected_updates += 1
                self._outbox.append({"event": "rejected", "time": time.time(), "worker": worker,
                           "base_version": base_version, "reason": problem})
                raise UpdateRejected(f"update from worker {worker} refused: {problem}")
            pending = _Pending(worker, base_version, [np.asarray(d) for d in delta], float(checked))
            self._buffer.append(pending)
            self._apply_if_ready()
            self._cond.wait_for(lambda: pending.applied_version is not None or self._stopped, timeout)
            if pending.applied_version is None:
                if self._stopped:
                    raise ParameterServerStopped("the parameter server stopped")
                self._buffer.remove(pending)
                raise ParameterServerTimeout(
                    f"worker {worker}: no aggregate of {self.s_effective} updates within {timeout} s")
            return self.version, list(self._weights)

    def _apply_if_ready(self) -> None:
        """Apply eq. 5.1 while the buffer holds ``s_effective`` updates. Caller holds the lock."""
        while self._buffer and len(self._buffer) >= self.s_effective:
            batch, self._buffer = self._buffer[: self.s_effective], self._buffer[self.s_effective:]
            s = len(batch)
            now = time.time()
            taus = [self.version - p.base_version for p in batch]
            lams = [float(self._staleness(tau)) for tau in taus]
            self._descend(batch, [lam / s for lam in lams])
            self.version += 1
            self.applied_updates += s
            for p, tau, lam in zip(batch, taus, lams, strict=True):
                p.applied_version = self.version
                self._outbox.append({"event": "applied", "time": now, "worker": p.worker,
                                     "base_version": p.base_version, "tau": tau, "lambda": lam, "update_norm": p.norm,
                                     "s": s, "wait_seconds": now - p.received, "applied_version": self.version})
            self._cond.notify_all()

    def _descend(self, batch: list[_Pending], scales: Sequence[float]) -> None:
        """``W <- W - sum_j scales[j] * delta_j`` over ``batch`` (``scales[j] = lambda(tau_j) / s``). Caller
        holds the lock.

        Handed-out arrays never change, so the result goes, in this order of preference: into the current
        arrays when nothing else refers to them (the usual case: a reply has been sent before its worker
        pushes again), into the previous version's when nothing refers to those, into new ones.
        """
        if _unshared(self._weights):
            out = self._weights
        elif self._retired is not None and _unshared(self._retired):
            out, self._retired = self._retired, self._weights
        else:
            out, self._retired = [np.empty_like(w) for w in self._weights], self._weights
        for target in out:
            target.flags.writeable = True

        def descend(i: int, part: slice) -> None:
            total = _weighted_sum([_flat(p.delta[i])[part] for p in batch], scales, _flat(self._scratch[i])[part])
            np.subtract(_flat(self._weights[i])[part], total, out=_flat(out[i])[part])

        # NumPy's loops run on one core and release the GIL, while every pusher waits for this apply: the
        # node's other cores take a share of the large arrays' blocks.
        # One update is one pass (W - scale * dW): nothing to keep in cache, so no blocks' per-call cost.
        tasks = _parts(self._weights, self._cores, APPLY_BLOCK if len(batch) > 1 else None)
        if len(tasks) == len(self._weights):
            for task in tasks:
                descend(*task)
        else:
            list(self._pool.map(lambda task: descend(*task), tasks))
        self._weights = _read_only(out, copy=False)

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
        self._pool.shutdown(wait=False)

    def stats(self) -> dict:
        with self._cond:
            return {"version": self.version, "applied_updates": self.applied_updates,
                    "rejected_updates": self.rejected_updates, "buffered": len(self._buffer),
                    "live_workers": self.num_workers - len(self._finished), "s": self.s,
                    "s_effective": self.s_effective}

    def state_dict(self) -> dict:
        with self._cond:
            return {"version": self.version, "weights": list(self._weights), "applied_updates": self.applied_updates}

    def load_state_dict(self, state: dict) -> None:
        with self._cond:
            weights = state["weights"]
            if [w.shape for w in weights] != [w.shape for w in self._weights]:
                raise ValueError("checkpoint weights do not match the model")
            self._weights, self._retired = _read_only(weights, copy=True), None
            self.version = int(state["version"])
            self.applied_updates = int(state.get("applied_updates", 0))
