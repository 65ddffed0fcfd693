"""Benchmark 2: update latency, updates/s and wire bytes of our parameter server (``ddl_commodity.ps``).

One :class:`~ddl_commodity.ps.StalenessWeightedServer` behind a
:class:`~ddl_commodity.ps.ParameterServerService` listens on loopback (framed TCP) in this process; M client
processes (spawned once, reused for every cell) each hold a
:class:`~ddl_commodity.ps.ParameterServerClient`. For every model size P (float32 parameters, shaped like
the redshift CNN: two conv kernels with biases and one dense matrix with its bias) and every M, with s = M
(synchronous averaging, the case where every push waits for the slowest client):

* every client pulls once, then all start together and push ``rounds`` updates each, one after another;
* **latency** is one ``push`` call as a worker sees it: encode dW, send, wait for the aggregate of s
  updates, receive and decode the new weights (median and p90 over all clients' timed pushes; each
  client's first push is a warm-up and not counted);
* **updates/s** is timed pushes of all clients / the wall time from the first timed push's start to the
  last one's end (versions/s = updates/s / s);
* **bytes**: the request (header + dW) and the reply (header + W) as :func:`ddl_commodity.ps.wire.encode_message`
  builds them, against the raw array bytes (the transport adds an 8-byte length per message);
* **the transport's limit**, in the same run, interleaved with the cell: the same clients send a request of
  the same byte count over a plain TCP socket to a thread of this process, which reads it into a buffer and
  sends a reply of the reply's byte count (no encoding, no PS). The cell's rounds are cut into 5 blocks
  that alternate with raw blocks of as many rounds (PS, raw, PS, raw, ...): measured one after the other,
  the raw median alone can move by 30% between runs while the PS's does not, and the ratio with it.
  ``ratio_to_raw_socket["<size>/M=<m>"]`` is the PS's median push latency over the raw round trip's median;
* **apply time**: s in-process pushes of the same size into a server with s = M (threads, no network):
  the NaN check, eq. 5.1 and the update records, which every push latency above includes once per version
  (``apply_ms["<size>/s=<m>"]``, median).

Every cell is bounded by a round count and a time limit (``--cell-seconds``): a client that reaches the limit
stops and calls ``finish``, which lowers the server's s so nobody waits forever.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import secrets
import socket
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from benchmarks._common import base_parser, environment, latency_stats, table, write_json

NAME = "parameter_server"
FULL_SIZES = (100_000, 1_000_000, 10_000_000)
QUICK_SIZES = (100_000, 1_000_000)
FULL_CLIENTS = (1, 2, 4)
QUICK_CLIENTS = (1, 2)
#: timed pushes per client (full mode), by model size; quick mode uses a fifth, at least 3
FULL_ROUNDS = {100_000: 200, 1_000_000: 60, 10_000_000: 30}
DENSE_UNITS = 800  # the redshift CNN's output layer
PUSH_TIMEOUT_S = 120.0
COMMAND_TIMEOUT_S = 300.0
#: a cell and its raw baseline alternate in this many blocks (each block at least 3 rounds)
BLOCKS = 5


def model_shapes(params: int, filters: int = 8, kernel: int = 8) -> list[tuple[int, ...]]:
    """Array shapes of a redshift-CNN-like model with about ``params`` weights (the dense rows absorb the rest)."""
    small = [(kernel, 1, filters), (filters,), (kernel, filters, filters), (filters,)]
    rest = params - sum(int(np.prod(s)) for s in small) - DENSE_UNITS
    rows = max(1, round(rest / DENSE_UNITS))
    return [*small, (rows, DENSE_UNITS), (DENSE_UNITS,)]


def make_arrays(shapes: list[tuple[int, ...]], scale: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(s) * scale).astype(np.float32) for s in shapes]


def wire_sizes(shapes: list[tuple[int, ...]]) -> dict:
    """Encoded request and reply sizes of one push, and the time to encode and decode them here."""
    from ddl_commodity.ps.wire import decode_message, encode_message

    arrays = make_arrays(shapes, 1e-3, 0)
    raw = sum(a.nbytes for a in arrays)
    t0 = time.perf_counter()
    request = encode_message({"worker": 3, "base_version": 1234, "timeout": PUSH_TIMEOUT_S}, arrays)
    t1 = time.perf_counter()
    decode_message(request)
    t2 = time.perf_counter()
    reply = encode_message({"version": 1235}, arrays)
    return {
        "raw_bytes": raw, "request_bytes": len(request), "reply_bytes": len(reply),
        "request_overhead_ratio": len(request) / raw, "reply_overhead_ratio": len(reply) / raw,
        "request_overhead_bytes": len(request) - raw, "reply_overhead_bytes": len(reply) - raw,
        "encode_ms": (t1 - t0) * 1000.0, "decode_ms": (t2 - t1) * 1000.0,
    }


def client_main(conn: Connection) -> None:
    """A client process: run one cell per ``run`` command until ``stop`` (or the pipe closes)."""
    from ddl_commodity.ps import ParameterServerClient

    while True:
        try:
            command, spec = conn.recv()
        except EOFError:
            return
        if command == "stop":
            return
        try:
            if spec.get("raw"):
                conn.send(("done", raw_client(conn, spec)))
                continue
            delta = make_arrays([tuple(s) for s in spec["shapes"]], 1e-6, 100 + spec["worker"])
            with ParameterServerClient(spec["address"], spec["secret"], worker=spec["worker"],
                                       timeout=PUSH_TIMEOUT_S) as client:
                client.wait_ready(timeout=30.0)
                version, _ = client.pull()
                conn.send(("ready", None))
                if not conn.poll(COMMAND_TIMEOUT_S) or conn.recv()[0] != "go":
                    raise RuntimeError("no go signal")
                deadline = time.monotonic() + spec["seconds"]
                starts, ends = [], []
                for _ in range(spec["rounds"] + 1):  # +1: the first push is a warm-up
                    t0 = time.monotonic()
                    version, _ = client.push(version, delta)
                    starts.append(t0)
                    ends.append(time.monotonic())
                    if t0 > deadline:
                        break
                client.finish()
            conn.send(("done", {"starts": starts[1:], "ends": ends[1:], "final_version": version}))
        except Exception as err:  # reported to the parent, which fails the benchmark with it
            conn.send(("error", f"{type(err).__name__}: {err}"))


def raw_client(conn: Connection, spec: dict) -> dict:
    """The transport's limit: ``rounds`` request/reply round trips of the PS's byte counts over a plain socket."""
    request, reply = bytearray(spec["request_bytes"]), bytearray(spec["reply_bytes"])
    with socket.create_connection(tuple(spec["raw_address"]), timeout=PUSH_TIMEOUT_S) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.send(("ready", None))
        if not conn.poll(COMMAND_TIMEOUT_S) or conn.recv()[0] != "go":
            raise RuntimeError("no go signal")
        starts, ends = [], []
        for _ in range(spec["rounds"] + 1):  # +1: warm-up, as for the PS
            t0 = time.monotonic()
            sock.sendall(request)
            view, got = memoryview(reply), 0
            while got < len(reply):
                got += sock.recv_into(view[got:])
            starts.append(t0)
            ends.append(time.monotonic())
    return {"starts": starts[1:], "ends": ends[1:]}


class RawEchoServer:
    """Per connection: read ``request_bytes`` into a buffer, send ``reply_bytes`` back, until closed."""

    def __init__(self, request_bytes: int, reply_bytes: int) -> None:
        self._sizes = (request_bytes, reply_bytes)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = self._listener.getsockname()[:2]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock) -> None:
        request, reply = bytearray(self._sizes[0]), bytearray(self._sizes[1])
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with sock:
            while True:
                view, got = memoryview(request), 0
                while got < len(request):
                    k = sock.recv_into(view[got:])
                    if k == 0:
                        return
                    got += k
                sock.sendall(reply)

    def close(self) -> None:
        self._listener.close()


class ClientPool:
    """``size`` spawned client processes, each behind a pipe."""

    def __init__(self, size: int) -> None:
        ctx = mp.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs = []
        for i in range(size):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=client_main, args=(child,), name=f"ps-bench-client-{i}", daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    @staticmethod
    def _expect(conn: Connection, what: str) -> object:
        if not conn.poll(COMMAND_TIMEOUT_S):
            raise TimeoutError(f"a client sent no '{what}' within {COMMAND_TIMEOUT_S:.0f} s")
        kind, payload = conn.recv()
        if kind == "error":
            raise RuntimeError(f"client failed: {payload}")
        if kind != what:
            raise RuntimeError(f"client sent {kind!r}, expected {what!r}")
        return payload

    def run_cell(self, specs: list[dict]) -> list[dict]:
        conns = self.conns[: len(specs)]
        for conn, spec in zip(conns, specs, strict=True):
            conn.send(("run", spec))
        for conn in conns:
            self._expect(conn, "ready")
        for conn in conns:
            conn.send(("go", None))
        return [self._expect(conn, "done") for conn in conns]  # type: ignore[misc]

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("stop", None))
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)


def measure_cell(pool: ClientPool, shapes: list[tuple[int, ...]], clients: int, rounds: int, seconds: float) -> dict:
    """One (size, M) cell with s = M; returns latency, throughput and server statistics."""
    from ddl_commodity.ps import ParameterServerService, StalenessWeightedServer
    from ddl_commodity.ps.staleness import inverse

    secret = secrets.token_urlsafe(16)
    server = StalenessWeightedServer(make_arrays(shapes, 0.05, 1), num_workers=clients, s=clients,
                                     staleness=inverse)
    with ParameterServerService(server, secret, host="127.0.0.1", port=0) as service:
        specs = [{"address": service.address, "secret": secret, "worker": w, "shapes": shapes,
                  "rounds": rounds, "seconds": seconds} for w in range(clients)]
        t0 = time.monotonic()
        results = pool.run_cell(specs)
        wall = time.monotonic() - t0
        stats = server.stats()
    starts = [t for r in results for t in r["starts"]]
    ends = [t for r in results for t in r["ends"]]
    latencies = [e - s for r in results for s, e in zip(r["starts"], r["ends"], strict=True)]
    window = max(ends) - min(starts)
    updates_per_s = len(latencies) / window
    return {
        "latencies": latencies,
        "clients": clients, "s": clients, "rounds_requested": rounds,
        "timed_pushes": len(latencies), "pushes_per_client": [len(r["starts"]) for r in results],
        "latency": latency_stats(latencies), "window_seconds": window, "cell_seconds": wall,
        "updates_per_s": updates_per_s, "versions_per_s": updates_per_s / clients,
        "server_version": stats["version"], "server_applied_updates": stats["applied_updates"],
    }


def measure_raw_cell(pool: ClientPool, wire: dict, clients: int, rounds: int) -> dict:
    """The same clients, byte counts and rounds over plain sockets: what the PS's transport could reach."""
    server = RawEchoServer(wire["request_bytes"] + 8, wire["reply_bytes"] + 8)  # + the length prefix
    try:
        specs = [{"raw": True, "raw_address": list(server.address), "request_bytes": wire["request_bytes"] + 8,
                  "reply_bytes": wire["reply_bytes"] + 8, "rounds": rounds} for _ in range(clients)]
        results = pool.run_cell(specs)
    finally:
        server.close()
    latencies = [e - s for r in results for s, e in zip(r["starts"], r["ends"], strict=True)]
    return {"latency": latency_stats(latencies), "latencies": latencies}


def measure_interleaved(pool: ClientPool, shapes: list[tuple[int, ...]], wire: dict, clients: int, rounds: int,
                        seconds: float) -> tuple[dict, dict]:
    """A cell and its raw-socket baseline in ``BLOCKS`` alternating blocks of ``rounds / BLOCKS`` rounds each
    (PS, raw, PS, raw, ...), so a machine whose speed drifts during the cell moves both alike; the statistics
    are over all blocks' round trips."""
    blocks = max(1, min(BLOCKS, rounds // 3))
    per_block = [rounds // blocks + (b < rounds % blocks) for b in range(blocks)]
    cells, raws = [], []
    for n in per_block:
        cells.append(measure_cell(pool, shapes, clients, n, seconds / blocks))
        raws.append(measure_raw_cell(pool, wire, clients, n))
    latencies = [t for c in cells for t in c.pop("latencies")]
    window = sum(c["window_seconds"] for c in cells)
    cell = {**cells[0], "rounds_requested": rounds, "blocks": blocks, "timed_pushes": len(latencies),
            "pushes_per_client": [sum(p) for p in zip(*(c["pushes_per_client"] for c in cells), strict=True)],
            "latency": latency_stats(latencies), "window_seconds": window,
            "cell_seconds": sum(c["cell_seconds"] for c in cells), "updates_per_s": len(latencies) / window,
            "versions_per_s": len(latencies) / window / clients,
            "server_version": [c["server_version"] for c in cells],
            "server_applied_updates": sum(c["server_applied_updates"] for c in cells)}
    return cell, {"latency": latency_stats([t for r in raws for t in r.pop("latencies")])}


def measure_apply(shapes: list[tuple[int, ...]], s: int, rounds: int) -> dict:
    """Median time for s concurrent in-process pushes to be applied (no network): the PS's own compute."""
    from ddl_commodity.ps import StalenessWeightedServer

    server = StalenessWeightedServer(make_arrays(shapes, 0.05, 1), num_workers=s, s=s)
    deltas = [make_arrays(shapes, 1e-6, 100 + w) for w in range(s)]
    times = []
    for _ in range(rounds):
        version = server.version
        threads = [threading.Thread(target=server.push, args=(w, version, deltas[w])) for w in range(s)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(PUSH_TIMEOUT_S)
        times.append(time.perf_counter() - t0)
    return latency_stats(times)


def size_label(params: int) -> str:
    return f"{params / 1e6:g}M"


def run(quick: bool, cell_seconds: float) -> dict:
    sizes = QUICK_SIZES if quick else FULL_SIZES
    client_counts = QUICK_CLIENTS if quick else FULL_CLIENTS
    pool = ClientPool(max(client_counts))
    measurements, ratios, apply_ms = [], {}, {}
    try:
        for params in sizes:
            shapes = model_shapes(params)
            wire = wire_sizes(shapes)
            rounds = max(3, FULL_ROUNDS[params] // 5) if quick else FULL_ROUNDS[params]
            for m in client_counts:
                cell, raw = measure_interleaved(pool, shapes, wire, m, rounds, cell_seconds)
                cell["apply"] = measure_apply(shapes, m, rounds)
                both_ways = wire["request_bytes"] + wire["reply_bytes"]
                cell.update(params_target=params, params=sum(int(np.prod(s)) for s in shapes),
                            shapes=[list(s) for s in shapes], wire=wire, raw_socket=raw,
                            payload_mb_per_s=cell["updates_per_s"] * both_ways / 1e6)
                key = f"{size_label(params)}/M={m}"
                ratios[key] = cell["latency"]["median_ms"] / raw["latency"]["median_ms"]
                apply_ms[f"{size_label(params)}/s={m}"] = cell["apply"]["median_ms"]
                measurements.append(cell)
                print(f"  {params:>10,} params, M = s = {m}: median {cell['latency']['median_ms']:.1f} ms "
                      f"(raw socket {raw['latency']['median_ms']:.1f} ms, x{ratios[key]:.2f}; apply "
                      f"{cell['apply']['median_ms']:.1f} ms), {cell['updates_per_s']:.1f} updates/s", flush=True)
    finally:
        pool.close()
    return {"measurements": measurements, "ratio_to_raw_socket": ratios, "apply_ms": apply_ms}


def summary_table(measurements: list[dict]) -> str:
    rows = [
        (m["params"], m["clients"], m["timed_pushes"], m["latency"]["median_ms"], m["latency"]["p90_ms"],
         m["raw_socket"]["latency"]["median_ms"], m["latency"]["median_ms"] / m["raw_socket"]["latency"]["median_ms"],
         m["apply"]["median_ms"], m["updates_per_s"], m["wire"]["request_bytes"],
         f"{m['wire']['request_overhead_ratio']:.6f}")
        for m in measurements
    ]
    return table(["params", "M = s", "timed pushes", "median ms", "p90 ms", "raw socket ms", "x raw",
                  "apply ms", "updates/s", "request bytes", "request/raw"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--cell-seconds", type=float, default=None,
                        help="time limit of one (size, M) cell (default 10 quick, 40 full)")
    args = parser.parse_args(argv)
    cell_seconds = args.cell_seconds or (10.0 if args.quick else 40.0)
    env = environment()
    print(f"parameter-server benchmark ({'quick' if args.quick else 'full'} mode), {env['cpu_count']} CPUs, "
          "loopback framed TCP, s = M", flush=True)
    started = time.monotonic()
    result = run(args.quick, cell_seconds)
    document = {
        "benchmark": NAME, "mode": "quick" if args.quick else "full", "environment": env,
        "settings": {"cell_seconds": cell_seconds, "push_timeout_s": PUSH_TIMEOUT_S, "staleness": "inverse",
                     "clients_are": "processes", "server": "in the benchmark process, loopback framed TCP",
                     "raw_socket_is": "same clients, byte counts (+ 8-byte length) and rounds; plain sendall/recv_into",
                     "latency_is": "ParameterServerClient.push round trip (encode, send, wait for s, reply, decode)"},
        **result, "seconds": time.monotonic() - started,
    }
    write_json(Path(args.out), document)
    print(summary_table(result["measurements"]))
    print(f"wrote {args.out} ({document['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
