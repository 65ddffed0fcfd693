"""TCP bytes of the sockets a set of processes owns, from the kernel's ``sock_diag`` netlink interface.

What ``ss -tie`` prints (``bytes_received`` and ``bytes_acked`` of every TCP socket's ``tcp_info``), read in
this process: running ``ss`` would cost a fork and an exec per sample (2 ms of CPU on an idle machine, more
from a large TensorFlow process), several times a second on every node.

A connection between two processes of the same node (Spark's executor and its Python workers, a feed task
and TensorFlowOnSpark's queue manager) is the node's loopback traffic: a PC's network interface never carries
it, and neither Ganglia nor a namespace node's interface counters count it. Both its ends are owned by the
node's processes, which is how it is told apart and left out.
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
_MSG_PORTS = struct.Struct("!HH")  # inet_diag_sockid's source and destination ports, at offset 4
_ADDRESS_OFFSETS = (8, 24)  # its source and destination addresses, 16 bytes each (IPv4: the first 4)
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


#: A TCP socket: its received and acked bytes, and its ``(local, remote)`` endpoints as (address, port).
Endpoints = tuple[tuple[bytes, int], tuple[bytes, int]]


def _as_ipv4(address: bytes) -> bytes:
    """An IPv4-mapped IPv6 address (``::ffff:a.b.c.d``, a JVM's dual-stack socket) as ``sock_diag`` gives an
    IPv4 one: its 4 bytes, then zeros; other addresses as they are."""
    return address[12:] + bytes(12) if address[:12] == bytes(10) + b"\xff\xff" else address


def _tcp_bytes(payload: bytes) -> tuple[int, tuple[int, int], Endpoints] | None:
    """(inode, (received, acked), endpoints) of one ``inet_diag_msg`` with its ``INET_DIAG_INFO`` attribute."""
    if len(payload) < _MSG_SIZE:
        return None
    (inode,) = _MSG_INODE.unpack_from(payload, _MSG_SIZE - 4)
    sport, dport = _MSG_PORTS.unpack_from(payload, 4)
    src, dst = (_as_ipv4(bytes(payload[o:o + 16])) for o in _ADDRESS_OFFSETS)
    ends = ((src, sport), (dst, dport))
    offset = _MSG_SIZE
    while offset + _RTATTR.size <= len(payload):
        length, kind = _RTATTR.unpack_from(payload, offset)
        if length < _RTATTR.size:
            return None
        if kind == INET_DIAG_INFO and length - _RTATTR.size >= _TCP_BYTES_OFFSET + _TCP_BYTES.size:
            acked, received = _TCP_BYTES.unpack_from(payload, offset + _RTATTR.size + _TCP_BYTES_OFFSET)
            return inode, (received, acked), ends
        offset += _align(length)
    return None


def _dump(family: int) -> dict[int, tuple[tuple[int, int], Endpoints]]:
    """Inode -> ((received, acked bytes), endpoints) of every TCP socket of ``family`` in this network
    namespace."""
    request = _REQUEST.pack(family, socket.IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), 0, ALL_STATES)
    header = _NLMSG.pack(_NLMSG.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    result: dict[int, tuple[tuple[int, int], Endpoints]] = {}
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
                    result[found[0]] = found[1:]


def tcp_bytes_by_socket(pids: set[int]) -> tuple[dict[int, tuple[int, int]], set[int]]:
    """For the TCP sockets (IPv4 and IPv6) ``pids`` own: socket inode -> (received, acked bytes) of those that
    leave the node, and the inodes of those whose other end ``pids`` own too (the node talking to itself);
    empty where the kernel offers no ``sock_diag``."""
    owned = socket_inodes(pids)
    if not owned:
        return {}, set()
    try:
        every = {**_dump(socket.AF_INET), **_dump(socket.AF_INET6)}
    except OSError:
        return {}, set()
    mine = {inode: found for inode, found in every.items() if inode in owned}
    local_ends = {ends[0] for _, ends in mine.values()}
    internal = {inode for inode, (_, ends) in mine.items() if ends[1] in local_ends}
    return {inode: counts for inode, (counts, _) in mine.items() if inode not in internal}, internal
