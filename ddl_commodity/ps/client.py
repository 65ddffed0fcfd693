"""A worker's (or the driver's) connection to the parameter server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence

import numpy as np

from ddl_commodity.errors import DdlError
from ddl_commodity.ps.server import ParameterServerError, ParameterServerTimeout, UpdateRejected
from ddl_commodity.ps.service import DEFAULT_MAX_MESSAGE_BYTES
from ddl_commodity.ps.transport import (
    ReceiveBuffers,
    client_handshake,
    recv_message,
    send_message,
)
from ddl_commodity.ps.wire import WireFormatError


class AuthenticationFailed(DdlError):
    """The parameter server refused the run secret."""


class ParameterServerLost(ParameterServerError):
    """The PS stopped answering (connection refused or reset): its process died or its node was lost."""


_ERRORS: dict[str, type[ParameterServerError]] = {
    "invalid": UpdateRejected, "rejected": UpdateRejected, "timeout": ParameterServerTimeout,
    "stopped": ParameterServerLost,
}


class ParameterServerClient:
    """``pull``, ``push``, ``finish`` and ``stats`` over one framed TCP connection, opened on first use and
    again after a failed call; refusals and lost connections become this package's exceptions.

    The weights a call returns live in one of the client's two receive buffers: they stay valid during the
    next call (a worker computes ``dW`` from what it pulled, then pushes it) and are overwritten by the one
    after; copy them (``model.set_weights`` does) to keep them longer.
    """

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
        self._secret = secret.encode()
        self._max = max_message_bytes
        host, port = address.rsplit(":", 1)
        self._endpoint = (host, int(port))
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()  # one call at a time on the connection
        self._buffers = ReceiveBuffers(2)

    def _connect(self, timeout: float) -> socket.socket:
        try:
            sock = socket.create_connection(self._endpoint, timeout=timeout)
        except OSError as err:
            raise ParameterServerLost(
                f"lost the parameter server at {self.address}: the PS process died or its node was lost ({err})"
            ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            accepted = client_handshake(sock, self._secret)
        except OSError as err:
            sock.close()
            raise ParameterServerLost(f"parameter server {self.address} hung up during the handshake ({err})") \
                from None
        if not accepted:
            sock.close()
            raise AuthenticationFailed(f"parameter server {self.address} refused the run secret: invalid run secret")
        return sock

    def _call(self, method: str, header: dict, arrays: Sequence[np.ndarray] = (), timeout: float | None = None):
        with self._lock:
            timeout = timeout or self.timeout
            try:
                if self._sock is None:
                    self._sock = self._connect(timeout)
                self._sock.settimeout(timeout)
                send_message(self._sock, {"method": method, **header}, arrays)
                reply, out = recv_message(self._sock, self._max, self._buffers)
            except TimeoutError:
                self.close()
                raise ParameterServerTimeout(f"parameter server {self.address} {method}: no reply within "
                                             f"{timeout:.0f} s") from None
            except WireFormatError as err:
                self.close()
                raise ParameterServerError(f"parameter server {self.address} {method}: {err}") from None
            except OSError as err:  # refused, reset, or closed mid-message (ConnectionClosed)
                self.close()
                raise ParameterServerLost(
                    f"lost the parameter server at {self.address} during {method}: the PS process died or its "
                    f"node was lost ({err})"
                ) from None
        if "error" in reply:
            raise _ERRORS.get(reply["error"], ParameterServerError)(
                f"parameter server {self.address} {method}: {reply['error']}: {reply.get('message')}")
        return reply, out

    def wait_ready(self, timeout: float) -> None:
        """Block until the server accepts a connection (the PS task may start after the workers)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self._lock:
                    if self._sock is None:
                        self._sock = self._connect(max(0.1, min(5.0, deadline - time.monotonic())))
                return
            except ParameterServerLost:
                if time.monotonic() >= deadline:
                    raise ParameterServerError(
                        f"parameter server {self.address} not reachable within {timeout} s") from None
                time.sleep(0.2)

    def pull(self, announce: dict | None = None) -> tuple[int, list[np.ndarray]]:
        """The global (version, weights); ``announce`` (first pull) tells the PS where this worker runs."""
        header, weights = self._call("pull", {"worker": self.worker, **({"announce": announce} if announce else {})})
        return int(header["version"]), weights

    def push(self, base_version: int, delta: Sequence[np.ndarray]) -> tuple[int, list[np.ndarray]]:
        """Send ``dW = W_pulled - W_local``; returns the new (version, weights) once it is applied."""
        header, weights = self._call(
            "push", {"worker": self.worker, "base_version": base_version, "timeout": self.timeout}, delta,
            timeout=self.timeout + 30,
        )
        return int(header["version"]), weights

    def finish(self, reason: str = "finished", detail: dict | None = None) -> dict:
        """This worker pushes no more (``reason``: ``finished``, or ``lost`` when the driver removes it)."""
        return self._call("finish", {"worker": self.worker, "reason": reason, "detail": detail or {}})[0]

    def final(self, timeout: float | None = None) -> tuple[dict, bytes]:
        """The run's final model as the PS node made it from the current global weights: the PS's reply header
        (``version``, ``stats`` and what the PS's ``final_model`` adds) and the model file's bytes."""
        header, (payload,) = self._call("final", {}, timeout=timeout)
        return header, payload.tobytes()

    def reachable(self, timeout: float = 3.0) -> bool:
        """Does the PS answer a ``stats`` call within ``timeout``? (Who died: the PS or the worker that said so.)"""
        try:
            self._call("stats", {}, timeout=timeout)
        except ParameterServerError:
            return False
        return True

    def stats(self) -> dict:
        return self._call("stats", {})[0]

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> ParameterServerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
