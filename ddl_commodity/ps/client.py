"""A worker's (or the driver's) connection to the parameter server."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import numpy as np

from ddl_commodity.errors import DdlError
from ddl_commodity.ps.server import ParameterServerError, ParameterServerTimeout, UpdateRejected
from ddl_commodity.ps.service import DEFAULT_MAX_MESSAGE_BYTES, SECRET_METADATA, SERVICE, channel_options
from ddl_commodity.ps.wire import decode_message, encode_message


class AuthenticationFailed(DdlError):
    """The parameter server refused the run secret."""


class ParameterServerLost(ParameterServerError):
    """The PS stopped answering (connection refused or reset): its process died or its node was lost."""


_ERRORS = {
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationFailed,
    grpc.StatusCode.INVALID_ARGUMENT: UpdateRejected,
    grpc.StatusCode.DEADLINE_EXCEEDED: ParameterServerTimeout,
}


class ParameterServerClient:
    """``pull``, ``push``, ``finish`` and ``stats`` over gRPC; errors become this package's exceptions."""

    def __init__(
        self,
        address: str,
        secret: str,
        worker: int,
        timeout: float = 900.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.address = address
        self.worker = worker
        self.timeout = timeout
        self._metadata = ((SECRET_METADATA, secret),)
        self._channel = grpc.insecure_channel(address, options=channel_options(max_message_bytes))
        self._methods = {m: self._channel.unary_unary(f"/{SERVICE}/{m}") for m in ("Pull", "Push", "Finish", "Stats")}

    def _call(self, method: str, header: dict, arrays: Sequence[np.ndarray] = (), timeout: float | None = None):
        try:
            reply = self._methods[method](encode_message(header, arrays), metadata=self._metadata,
                                          timeout=timeout or self.timeout)
        except grpc.RpcError as err:
            code = err.code()
            if code == grpc.StatusCode.UNAVAILABLE:
                raise ParameterServerLost(
                    f"lost the parameter server at {self.address} during {method}: the PS process died or its "
                    f"node was lost ({err.details()})"
                ) from None
            raise _ERRORS.get(code, ParameterServerError)(
                f"parameter server {self.address} {method}: {code.name}: {err.details()}"
            ) from None
        return decode_message(reply)

    def wait_ready(self, timeout: float) -> None:
        """Block until the server's port answers (the PS task may start after the workers)."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise ParameterServerError(f"parameter server {self.address} not reachable within {timeout} s") from None

    def pull(self, announce: dict | None = None) -> tuple[int, list[np.ndarray]]:
        """The global (version, weights); ``announce`` (first pull) tells the PS where this worker runs."""
        header, weights = self._call("Pull", {"worker": self.worker, **({"announce": announce} if announce else {})})
        return int(header["version"]), weights

    def push(self, base_version: int, delta: Sequence[np.ndarray]) -> tuple[int, list[np.ndarray]]:
        """Send ``dW = W_pulled - W_local``; returns the new (version, weights) once it is applied."""
        header, weights = self._call(
            "Push", {"worker": self.worker, "base_version": base_version, "timeout": self.timeout}, delta,
            timeout=self.timeout + 30,
        )
        return int(header["version"]), weights

    def finish(self, reason: str = "finished", detail: dict | None = None) -> dict:
        """This worker pushes no more (``reason``: ``finished``, or ``lost`` when the driver removes it)."""
        return self._call("Finish", {"worker": self.worker, "reason": reason, "detail": detail or {}})[0]

    def reachable(self, timeout: float = 3.0) -> bool:
        """Does the PS answer a ``Stats`` call within ``timeout``? (Who died: the PS or the worker that said so.)"""
        try:
            self._call("Stats", {}, timeout=timeout)
        except ParameterServerError:
            return False
        return True

    def stats(self) -> dict:
        return self._call("Stats", {})[0]

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ParameterServerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
