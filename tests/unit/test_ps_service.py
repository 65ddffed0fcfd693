"""The PS over its framed TCP on loopback: two workers, authentication, refusals, size limit, clean stop."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest

from ddl_commodity.ps import (
    AuthenticationFailed,
    ParameterServerClient,
    ParameterServerError,
    ParameterServerService,
    StalenessWeightedServer,
    UpdateRejected,
)

SECRET = "run-secret"


@pytest.fixture
def service():
    server = StalenessWeightedServer([np.zeros(4, np.float32), np.ones((2, 2), np.float32)], num_workers=2, s=2)
    svc = ParameterServerService(server, SECRET, host="127.0.0.1", port=0, max_message_bytes=1 << 20)
    svc.start()
    yield svc
    svc.stop()


def test_two_workers_synchronise(service) -> None:
    results = {}

    def worker(i: int) -> None:
        with ParameterServerClient(service.address, SECRET, worker=i, timeout=10) as c:
            c.wait_ready(5)
            version, w = c.pull()
            local = [w[0] - (i + 1), w[1] * 0.5]
            results[i] = c.push(version, [a - b for a, b in zip(w, local, strict=True)])

    threads = [threading.Thread(target=worker, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert results[0][0] == results[1][0] == 1
    np.testing.assert_allclose(results[0][1][0], np.full(4, -1.5))  # mean of -1 and -2
    np.testing.assert_allclose(results[1][1][1], np.full((2, 2), 0.5))
    with ParameterServerClient(service.address, SECRET, worker=-1) as driver:
        stats = driver.stats()
    assert stats["version"] == 1 and stats["applied_updates"] == 2


def test_wrong_secret_is_refused(service) -> None:
    with ParameterServerClient(service.address, "guess", worker=0, timeout=5) as c:
        with pytest.raises(AuthenticationFailed, match="invalid run secret"):
            c.pull()
        with pytest.raises(AuthenticationFailed):
            c.push(0, [np.ones(4, np.float32), np.ones((2, 2), np.float32)])
    assert service.server.stats()["version"] == 0 and service.server.stats()["buffered"] == 0


def test_nan_update_is_refused(service) -> None:
    with ParameterServerClient(service.address, SECRET, worker=1, timeout=5) as c, \
            pytest.raises(UpdateRejected, match="NaN or Inf"):
        c.push(0, [np.full(4, np.nan, np.float32), np.zeros((2, 2), np.float32)])
    assert service.server.stats()["rejected_updates"] == 1


def test_oversized_message_is_refused(service) -> None:
    refused = r"too_large: a 2097\d+-byte message exceeds the limit of 1048576 bytes"
    with ParameterServerClient(service.address, SECRET, worker=0, timeout=5) as c, \
            pytest.raises(ParameterServerError, match=refused):
        c.push(0, [np.zeros(1 << 19, np.float32), np.zeros((2, 2), np.float32)])  # 2 MiB > 1 MiB limit
    with ParameterServerClient(service.address, SECRET, worker=0, timeout=5) as c:  # and the PS serves on
        assert c.stats()["version"] == 0


def test_a_refused_update_leaves_the_connection_usable(service) -> None:
    with ParameterServerClient(service.address, SECRET, worker=0, timeout=5) as c:
        with pytest.raises(UpdateRejected, match=re.escape("array 1 is float32[3], expected float32[2, 2]")):
            c.push(0, [np.zeros(4, np.float32), np.zeros(3, np.float32)])
        version, weights = c.pull()
    assert version == 0 and [w.shape for w in weights] == [(4,), (2, 2)]


def test_the_secret_never_travels_and_a_wrong_proof_is_cut_off(service) -> None:
    """The server opens with a fresh nonce; a proof that is not HMAC(secret, nonce) ends the connection."""
    import socket

    host, port = service.address.rsplit(":", 1)
    nonces = []
    for _ in range(2):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            nonces.append(sock.recv(16))
            sock.sendall(SECRET.encode().ljust(32, b"\0"))  # the secret itself is no proof
            assert sock.recv(1) == b""  # closed, nothing served
    assert len(nonces[0]) == 16 and nonces[0] != nonces[1]


def test_binds_only_to_the_given_address(service) -> None:
    import psutil

    port = int(service.address.rsplit(":", 1)[1])
    listening = [c.laddr for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == port]
    assert listening and all(addr.ip == "127.0.0.1" for addr in listening)


def test_stop_releases_waiting_pushers() -> None:
    server = StalenessWeightedServer([np.zeros(2, np.float32)], num_workers=2, s=2)
    svc = ParameterServerService(server, SECRET)
    svc.start()
    errors = []

    def lonely() -> None:
        with ParameterServerClient(svc.address, SECRET, worker=0, timeout=30) as c:
            try:
                c.push(0, [np.ones(2, np.float32)])
            except ParameterServerError as err:
                errors.append(err)

    t = threading.Thread(target=lonely)
    t.start()
    while server.stats()["buffered"] == 0:
        pass
    svc.stop()
    t.join(10)
    assert not t.is_alive() and errors


def test_final_returns_the_model_the_ps_node_made_from_the_global_weights() -> None:
    server = StalenessWeightedServer([np.arange(3, dtype=np.float32)], num_workers=1, s=1)
    seen = []

    def final_model(weights: list) -> tuple[dict, bytes]:
        seen.append([w.copy() for w in weights])
        return {"scores": {"loss": 0.5}}, bytes(range(256)) * 3 + b"odd"  # not a multiple of 8 bytes

    with ParameterServerService(server, SECRET, final_model=final_model) as svc, \
            ParameterServerClient(svc.address, SECRET, worker=0, timeout=5) as c:
        c.push(0, [np.ones(3, np.float32)])
        header, payload = c.final()
    assert payload == bytes(range(256)) * 3 + b"odd"
    assert header["version"] == 1 and header["scores"] == {"loss": 0.5} and header["stats"]["applied_updates"] == 1
    (weights,) = seen
    np.testing.assert_array_equal(weights[0], np.arange(3, dtype=np.float32) - 1)


def test_final_is_refused_where_no_final_model_is_made(service) -> None:
    with ParameterServerClient(service.address, SECRET, worker=-1, timeout=5) as c, \
            pytest.raises(ParameterServerError, match="invalid: this parameter server makes no final model"):
        c.final()
