"""Network front of :class:`~ddl_commodity.ps.server.StalenessWeightedServer`, in the PS task.

Methods ``pull``, ``push``, ``finish``, ``stats`` and ``final`` over :mod:`ddl_commodity.ps.transport` (framed TCP,
:mod:`ddl_commodity.ps.wire` messages): the request header names the method. Only clients that prove the run
secret are served. The service binds to one given address (the PS node's own), never to all interfaces.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ddl_commodity.ps.server import (
    ParameterServerStopped,
    ParameterServerTimeout,
    StalenessWeightedServer,
    UpdateRejected,
)
from ddl_commodity.ps.transport import FramedServer
from ddl_commodity.ps.wire import WireFormatError

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "ERROR_KINDS", "ParameterServerService"]
DEFAULT_MAX_MESSAGE_BYTES = 512 * 2**20
#: ``weights -> (header, file bytes)``: the run's final global model, made on the PS node
FinalModel = Callable[[list[np.ndarray]], tuple[dict, bytes]]
#: how a refusal travels (first matching class): the client raises the matching exception again
ERROR_KINDS: dict[type[Exception], str] = {
    WireFormatError: "invalid", UpdateRejected: "rejected", ParameterServerTimeout: "timeout",
    ParameterServerStopped: "stopped", ValueError: "invalid", TypeError: "invalid",
}


class ParameterServerService:
    """Serve pull / push / finish / stats for one run, and ``final`` when given ``final_model``.

    ``final_model`` turns the current global weights into the run's final model file and its scores, on the
    PS node: the driver then needs no TensorFlow (:mod:`ddl_commodity.runtime.tfos_import`).
    """

    def __init__(
        self,
        server: StalenessWeightedServer,
        secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        final_model: FinalModel | None = None,
    ) -> None:
        if not secret:
            raise ValueError("a run secret is required")
        self.server = server
        self._secret = secret.encode()
        self._host, self._port = host, port
        self._max = max_message_bytes
        self._final_model = final_model
        self._transport: FramedServer | None = None
        self.address = ""

    def start(self) -> int:
        self._transport = FramedServer(self._dispatch, self._secret, self._host, self._port, self._max,
                                       ERROR_KINDS)
        self.address = f"{self._host}:{self._transport.port}"
        return self._transport.port

    def stop(self) -> None:
        """Release waiting pushers (they get ``stopped``), then close every connection."""
        self.server.stop()
        if self._transport is not None:
            self._transport.stop()
            self._transport = None

    def __enter__(self) -> ParameterServerService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _dispatch(self, header: dict, arrays: list) -> tuple[dict, list]:
        methods = {"pull": self._pull, "push": self._push, "finish": self._finish, "stats": self._stats,
                   "final": self._final}
        method = methods.get(header.get("method"))
        if method is None:
            raise WireFormatError(f"unknown method {header.get('method')!r}")
        return method(header, arrays)

    def _pull(self, header: dict, arrays: list) -> tuple[dict, list]:
        if isinstance(header.get("announce"), dict):
            self.server.announce(int(header.get("worker", -1)), header["announce"])
        version, weights = self.server.pull()
        return {"version": version}, weights

    def _push(self, header: dict, arrays: list) -> tuple[dict, list]:
        try:
            worker, base, timeout = int(header["worker"]), int(header["base_version"]), header.get("timeout")
        except (KeyError, TypeError, ValueError):
            raise WireFormatError("push header needs integer 'worker' and 'base_version'") from None
        version, weights = self.server.push(worker, base, arrays, timeout=None if timeout is None else float(timeout))
        return {"version": version}, weights

    def _finish(self, header: dict, arrays: list) -> tuple[dict, list]:
        detail = header.get("detail")
        self.server.finish(int(header.get("worker", -1)), str(header.get("reason", "finished")),
                           detail if isinstance(detail, dict) else None)
        return self.server.stats(), []

    def _stats(self, header: dict, arrays: list) -> tuple[dict, list]:
        return self.server.stats(), []

    def _final(self, header: dict, arrays: list) -> tuple[dict, list]:
        if self._final_model is None:
            raise ValueError("this parameter server makes no final model")
        version, weights = self.server.pull()
        made, payload = self._final_model(weights)
        return {**made, "version": version, "stats": self.server.stats()}, [np.frombuffer(payload, np.uint8)]
