"""Staleness-weighted parameter server (thesis eq. 5.1): math, wire format, framed-TCP service and client."""

from ddl_commodity.ps.client import AuthenticationFailed, ParameterServerClient, ParameterServerLost
from ddl_commodity.ps.server import (
    ParameterServerError,
    ParameterServerStopped,
    ParameterServerTimeout,
    StalenessWeightedServer,
    UpdateRejected,
    weights_delta,
)
from ddl_commodity.ps.service import ParameterServerService
from ddl_commodity.ps.staleness import STALENESS_FUNCTIONS, make_staleness
from ddl_commodity.ps.wire import WireFormatError, decode_message, encode_message

__all__ = [
    "STALENESS_FUNCTIONS",
    "AuthenticationFailed",
    "ParameterServerClient",
    "ParameterServerError",
    "ParameterServerLost",
    "ParameterServerService",
    "ParameterServerStopped",
    "ParameterServerTimeout",
    "StalenessWeightedServer",
    "UpdateRejected",
    "WireFormatError",
    "decode_message",
    "encode_message",
    "make_staleness",
    "weights_delta",
]
