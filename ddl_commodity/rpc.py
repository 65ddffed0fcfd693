"""gRPC with raw-bytes unary methods and the run-secret check, for the run collector (in the driver).

Methods are served through generic handlers, so no protobuf code is generated, and any call whose
``ddl-secret`` metadata is not the run's secret is refused. (The parameter server, whose messages are tens of
megabytes, uses its own framed TCP: :mod:`ddl_commodity.ps.transport`.)
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from concurrent import futures

import grpc

SECRET_METADATA = "ddl-secret"

Handler = Callable[[bytes, grpc.ServicerContext], bytes]


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes)]


def require_secret(context: grpc.ServicerContext, secret: bytes) -> None:
    """Abort the call with UNAUTHENTICATED unless it carries ``secret`` (constant-time comparison)."""
    sent = dict(context.invocation_metadata()).get(SECRET_METADATA, "")
    if not hmac.compare_digest(sent.encode(), secret):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid run secret")


def start_server(
    service: str,
    handlers: dict[str, Handler],
    host: str,
    port: int,
    threads: int,
    options: Sequence[tuple[str, int]] = (),
) -> tuple[grpc.Server, int]:
    """Serve ``/<service>/<method>`` on ``host:port`` only (port 0: any free one); returns (server, port)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads), options=list(options))
    methods = {name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in handlers.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, methods),))
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"{service} could not bind to {host}:{port}")
    server.start()
    return server, bound
