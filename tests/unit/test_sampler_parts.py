"""Where a node's CPU seconds and memory go: the sampler splits them among the TF process's main
thread, its gRPC threads and its other threads, and the node's other processes; threads that end keep theirs."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import threading
import time

import pytest

from ddl_commodity.monitor.metrics import node_averages
from ddl_commodity.monitor.sampler import MIN_RATE_WINDOW_S, NodeSampler


def spin(cpu_seconds: float) -> None:
    start = time.thread_time()
    while time.thread_time() - start < cpu_seconds:
        pass


class NamedSpinner(threading.Thread):
    """A thread that names itself, uses ``cpu_seconds`` of CPU, then waits for :meth:`finish` to end."""

    def __init__(self, name: bytes, cpu_seconds: float) -> None:
        super().__init__()
        self.native_name, self.cpu_seconds = name, cpu_seconds
        self.spun, self._finish = threading.Event(), threading.Event()
        self.start()

    def run(self) -> None:
        ctypes.CDLL(None).prctl(15, ctypes.c_char_p(self.native_name), 0, 0, 0)  # PR_SET_NAME: /proc/.../comm
        spin(self.cpu_seconds)
        self.spun.set()
        self._finish.wait(30)

    def finish(self) -> None:
        self._finish.set()
        self.join()


def test_cpu_seconds_and_memory_are_split_by_part() -> None:
    sampler = NodeSampler("worker-0", lambda rows: None)
    sampler._group = None  # this test's process and its children, whatever group pytest runs in
    child = subprocess.Popen([sys.executable, "-c",
                              "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
                              "time.sleep(30)"])
    try:
        first = sampler.sample()
        threads = [NamedSpinner(b"grpc_global_tim", 0.3), NamedSpinner(b"tf_Compute", 0.2)]
        spin(0.25)
        for t in threads:
            t.spun.wait(30)
        sampler.sample()  # the last sample that sees the two threads
        for t in threads:
            t.finish()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the child has spun its 0.3 s (on a busy machine it takes longer)
            last = sampler.sample()
            if last.cpu_seconds_by_part.get("Spark Python workers", 0) >= 0.29:
                break
            time.sleep(0.1)
    finally:
        child.kill()
    rows = [vars(first), vars(last)]
    for r in rows:
        r["cpu_percent"] = r["cpu_percent"] or 0.0
    a = node_averages({"worker-0": rows})["worker-0"]
    cpu = a["cpu_seconds_by_part"]
    # the two named threads ended before the last sample: what they used is kept
    assert 0.29 <= cpu["TF gRPC threads"] < 0.45, cpu
    assert cpu["TF other threads"] >= 0.19, cpu  # tf_Compute, and this test's other threads
    assert cpu["TF main thread"] >= 0.24, cpu
    pss = a["pss_mb_max_by_part"]
    assert pss["TF process"] > 20 and 1 < pss["Spark Python workers"] < pss["TF process"], pss


def _mapped_server(host: str):
    """A listening socket on ``host``: an IPv6 one bound to ``::ffff:127.0.0.1`` takes IPv4 connections as a
    JVM's dual-stack socket does (its ends are then IPv4-mapped)."""
    import socket

    if host.startswith("::ffff:"):
        server = socket.socket(socket.AF_INET6)
        server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        server.bind((host, 0))
        server.listen()
        return server, "127.0.0.1"
    return socket.create_server((host, 0), family=socket.AF_INET6 if ":" in host else socket.AF_INET), host


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_tcp_bytes_are_those_of_the_nodes_sockets_that_leave_it(host: str) -> None:
    """Bytes another process sends to this one: counted for this process (the same counts as iproute2's ``ss
    -tie`` reads from the kernel), not for another; a connection whose two ends this process holds is the node
    talking to itself over loopback, left out as a PC's network interface would not carry it."""
    import os
    import re
    import shutil
    import socket

    from ddl_commodity.monitor.tcp import tcp_bytes_by_socket

    server, address = _mapped_server(host)
    port = server.getsockname()[1]
    code = ("import socket, sys; s = socket.create_connection((sys.argv[1], int(sys.argv[2]))); "
            "s.sendall(b'x' * 300_000); s.recv(1)")
    sender = subprocess.Popen([sys.executable, "-c", code, address, str(port)])
    peer, _ = server.accept()
    client = inner = None
    try:
        got = 0
        while got < 300_000:
            got += len(peer.recv(65536))
        mine, internal = tcp_bytes_by_socket({os.getpid()})
        receiving = os.fstat(peer.fileno()).st_ino
        assert mine[receiving][0] >= 300_000 and receiving not in internal, mine
        if shutil.which("ss"):
            out = subprocess.run(["ss", "-tineH"], capture_output=True, text=True, check=True).stdout
            by_ss, inode = {}, None
            for line in out.splitlines():  # a socket's line, then its tcp_info line (indented)
                if not line.startswith((" ", "\t")):
                    inode = int(m[1]) if (m := re.search(r"\bino:(\d+)", line)) else None
                elif inode == receiving:
                    rx, tx = re.search(r"bytes_received:(\d+)", line), re.search(r"bytes_acked:(\d+)", line)
                    by_ss[inode] = (int(rx[1]) if rx else 0, int(tx[1]) if tx else 0)
            assert by_ss == {receiving: mine[receiving]}, (by_ss, mine)
        client = socket.create_connection((address, port))
        inner, _ = server.accept()
        client.sendall(b"y" * 100_000)
        got = 0
        while got < 100_000:
            got += len(inner.recv(65536))
        mine, internal = tcp_bytes_by_socket({os.getpid()})
        ends = {os.fstat(client.fileno()).st_ino, os.fstat(inner.fileno()).st_ino}
        assert ends <= internal and not ends & mine.keys() and receiving in mine, (mine, internal)
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            assert tcp_bytes_by_socket({other.pid}) == ({}, set())
        finally:
            other.kill()
    finally:
        peer.sendall(b"!")
        sender.wait(timeout=30)
        for s in (client, inner, peer, server):
            if s is not None:
                s.close()


@pytest.mark.serial  # it reads the sampling's own CPU rate, which a loaded machine inflates
def test_a_rate_is_never_taken_over_a_window_of_a_few_milliseconds() -> None:
    """The sample taken at stop comes right after the loop's last one; over the few ms between them a node can
    have spent a CFS period's quota on both cores (several times its share). Its rate is taken against
    the sample before, at least ``MIN_RATE_WINDOW_S`` earlier."""
    sampler = NodeSampler("worker-0", lambda rows: None)
    sampler._group = None
    rows = [sampler.sample()]
    time.sleep(MIN_RATE_WINDOW_S + 0.05)  # idle: what the node used here is only the sampling itself
    rows += [sampler.sample(), sampler.sample()]
    assert rows[2].time - rows[1].time < MIN_RATE_WINDOW_S
    want = 100.0 * (rows[2].cpu_seconds - rows[0].cpu_seconds) / (rows[2].time - rows[0].time)
    assert rows[2].cpu_percent == pytest.approx(want, abs=1.0)
    assert rows[2].cpu_percent < 20


def test_a_connection_inside_the_node_stays_left_out_when_one_end_closes_first() -> None:
    """The feed's connections close one end before the other: the end left open must not then count its bytes
    as traffic that left the node."""
    import os
    import socket

    from ddl_commodity.monitor.sampler import _TcpTotals

    totals = _TcpTotals()
    before = totals.update({os.getpid()})
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    inner, _ = server.accept()
    try:
        client.sendall(b"z" * 200_000)
        got = 0
        while got < 200_000:
            got += len(inner.recv(65536))
        assert totals.update({os.getpid()}) == before
        client.close()
        assert totals.update({os.getpid()}) == before  # inner is still open, its peer gone
    finally:
        for s in (client, inner, server):
            s.close()
