"""TCP bytes of the sockets a set of processes owns, from the kernel's ``sock_diag`` netlink interface.

What ``ss -tie`` prints (``bytes_received`` and ``bytes_acked`` of every TCP socket's ``tcp_info``), read in
this process: running ``ss`` would cost a fork and an exec per sample (2 ms of CPU on an idle machine, more
from a large TensorFlow process), several times a second on every node.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Iterable, Iterator

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
INET_DIAG_INFO = 2
ALL_STATES = 0xFFFFFFFF

_NLMSG = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_REQUEST = struct.Struct("=BBBBI48x")  # inet_diag_req_v2: family, protocol, extensions, pad, states, sockid
_MSG_INODE = struct.Struct("=I")  # inet_diag_msg's last field
_MSG_SIZE = 72  # inet_diag_msg: 4 bytes, the 48-byte sockid, expires, rqueue, wqueue, uid, inode
_RTATTR = struct.Struct("=HH")  # length, type
#: ``struct tcp_info``: tcpi_bytes_acked and tcpi_bytes_received (Linux 4.1+) follow 8 one-byte fields,
#: 24 u32 counters and two u64 pacing rates.
_TCP_BYTES = struct.Struct("=QQ")
_TCP_BYTES_OFFSET = 120


def _align(n: int) -> int:
    return (n + 3) & ~3


def proc_entries(pids: Iterable[int], what: str) -> Iterator[tuple[int, str]]:
    """``(pid, name)`` of every entry of ``/proc/<pid>/<what>`` (``fd``, ``task``); processes gone are skipped."""
    for pid in pids:
        try:
            names = os.listdir(f"/proc/{pid}/{what}")
        except OSError:
            continue
        for name in names:
            yield pid, name


def socket_inodes(pids: set[int]) -> set[int]:
    """Inodes of the sockets ``pids`` hold open (``/proc/<pid>/fd``)."""
    inodes = set()
    for pid, fd in proc_entries(pids, "fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(int(link[8:-1]))
    return inodes


def _messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each netlink message in one datagram."""
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length, kind, _, _, _ = _NLMSG.unpack_from(data, offset)
        if length < _NLMSG.size:
            return
        yield kind, data[offset + _NLMSG.size:offset + length]
        offset += _align(length)


def _tcp_bytes(payload: bytes) -> tuple[int, tuple[int, int]] | None:
    """(inode, (received, acked)) of one ``inet_diag_msg`` with its ``INET_DIAG_INFO`` attribute."""
    if len(payload) < _MSG_SIZE:
        return None
    (inode,) = _MSG_INODE.unpack_from(payload, _MSG_SIZE - 4)
    offset = _MSG_SIZE
    while offset + _RTATTR.size <= len(payload):
        length, kind = _RTATTR.unpack_from(payload, offset)
        if length < _RTATTR.size:
            return None
        if kind == INET_DIAG_INFO and length - _RTATTR.size >= _TCP_BYTES_OFFSET + _TCP_BYTES.size:
            acked, received = _TCP_BYTES.unpack_from(payload, offset + _RTATTR.size + _TCP_BYTES_OFFSET)
            return inode, (received, acked)
        offset += _align(length)
    return None


def _dump(family: int) -> dict[int, tuple[int, int]]:
    """Inode -> (received, acked bytes) of every TCP socket of ``family`` in this network namespace."""
    request = _REQUEST.pack(family, socket.IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), 0, ALL_STATES)
    header = _NLMSG.pack(_NLMSG.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    result: dict[int, tuple[int, int]] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(5.0)  # a sampler must not hang on a kernel that never ends the dump (socket.timeout)
        nl.sendall(header + request)
        while True:
            for kind, payload in _messages(nl.recv(1 << 16)):
                if kind == NLMSG_DONE:
                    return result
                if kind == NLMSG_ERROR:
                    raise OSError(f"sock_diag refused the dump (family {family})")
                if (found := _tcp_bytes(payload)) is not None:
                    result[found[0]] = found[1]


def tcp_bytes_by_socket(pids: set[int]) -> dict[int, tuple[int, int]]:
    """Socket inode -> (received, acked bytes) for every TCP socket (IPv4 and IPv6) one of ``pids`` owns;
    empty where the kernel offers no ``sock_diag``."""
    owned = socket_inodes(pids)
    if not owned:
        return {}
    try:
        every = {**_dump(socket.AF_INET), **_dump(socket.AF_INET6)}
    except OSError:
        return {}
    return {inode: counts for inode, counts in every.items() if inode in owned}
