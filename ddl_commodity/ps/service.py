"""gRPC front of :class:`~ddl_commodity.ps.server.StalenessWeightedServer`, in the PS task.

No generated protobuf code: each method takes and returns raw bytes in the :mod:`ddl_commodity.ps.wire`
format. Every call must carry the run secret in the ``ddl-secret`` metadata. The service binds to one
given address (the PS node's own), never to all interfaces.
"""

from __future__ import annotations

import grpc

from ddl_commodity.ps.server import (
    ParameterServerStopped,
    ParameterServerTimeout,
    StalenessWeightedServer,
    UpdateRejected,
)
from ddl_commodity.ps.wire import WireFormatError, decode_message, encode_message
from ddl_commodity.rpc import SECRET_METADATA, require_secret, start_server

SERVICE = "ddl.ParameterServer"
__all__ = ["SECRET_METADATA", "SERVICE", "ParameterServerService", "channel_options"]
DEFAULT_MAX_MESSAGE_BYTES = 512 * 2**20


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes)]


class ParameterServerService:
    """Serve Pull / Push / Finish / Stats for one run."""

    def __init__(
        self,
        server: StalenessWeightedServer,
        secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        threads: int | None = None,
    ) -> None:
        if not secret:
            raise ValueError("a run secret is required")
        self.server = server
        self._secret = secret.encode()
        self._host, self._port = host, port
        self._max = max_message_bytes
        # push blocks until its aggregate is applied: every worker may hold a thread at once.
        self._threads = threads or server.num_workers + 4
        self._grpc: grpc.Server | None = None
        self.address = ""

    def start(self) -> int:
        handlers = {name: self._guard(fn) for name, fn in
                    (("Pull", self._pull), ("Push", self._push), ("Finish", self._finish), ("Stats", self._stats))}
        self._grpc, port = start_server(SERVICE, handlers, self._host, self._port, self._threads,
                                        channel_options(self._max))
        self.address = f"{self._host}:{port}"
        return port

    def stop(self, grace: float = 1.0) -> None:
        self.server.stop()
        if self._grpc is not None:
            self._grpc.stop(grace).wait(grace + 5)
            self._grpc = None

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._grpc.wait_for_termination(timeout) if self._grpc else True

    def __enter__(self) -> ParameterServerService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _guard(self, fn):
        def handler(request: bytes, context: grpc.ServicerContext) -> bytes:
            require_secret(context, self._secret)
            try:
                header, arrays = decode_message(request)
                return fn(header, arrays)
            except (WireFormatError, UpdateRejected) as err:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            except ParameterServerTimeout as err:
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(err))
            except ParameterServerStopped as err:
                context.abort(grpc.StatusCode.UNAVAILABLE, str(err))

        return handler

    def _pull(self, header: dict, arrays: list) -> bytes:
        if isinstance(header.get("announce"), dict):
            self.server.announce(int(header.get("worker", -1)), header["announce"])
        version, weights = self.server.pull()
        return encode_message({"version": version}, weights)

    def _push(self, header: dict, arrays: list) -> bytes:
        try:
            worker, base, timeout = int(header["worker"]), int(header["base_version"]), header.get("timeout")
        except (KeyError, TypeError, ValueError):
            raise WireFormatError("push header needs integer 'worker' and 'base_version'") from None
        version, weights = self.server.push(worker, base, arrays, timeout=None if timeout is None else float(timeout))
        return encode_message({"version": version}, weights)

    def _finish(self, header: dict, arrays: list) -> bytes:
        detail = header.get("detail")
        self.server.finish(int(header.get("worker", -1)), str(header.get("reason", "finished")),
                           detail if isinstance(detail, dict) else None)
        return encode_message(self.server.stats())

    def _stats(self, header: dict, arrays: list) -> bytes:
        return encode_message(self.server.stats())
