"""Driver-side collector: the only place that writes a run's per-node records.

On a real cluster the executors cannot see the driver's ``runs/<id>/`` directory, so every node sends
its records (per-epoch metrics, applied PS updates) and its failure, if any, to this small gRPC service
in the driver. That gives three things at once: results land in one directory whatever the cluster,
the driver learns of a node's exception within a second (fail fast, with the node's traceback), and the
nodes learn that the run was aborted (they poll :meth:`CollectorClient.heartbeat`).

Messages are JSON documents; the run secret travels in the ``ddl-secret`` metadata of every call.

Liveness (heartbeats) has a lock of its own: a record's file write can wait on a busy disk, and a heartbeat
that waited behind it would make a live node look silent to the watchdog. At :meth:`RunCollector.stop`,
``heartbeats.json`` says per node how many heartbeats came, the longest gap between two and when it ended,
and the slowest heartbeat call the node saw: how close the run came to ``heartbeat_timeout_s``, and whether
a gap was the node's (slow to send) or the way's (slow to arrive).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from ddl_commodity.errors import NodeFailure
from ddl_commodity.ps.checkpoint import CHECKPOINT_FILE, save_checkpoint
from ddl_commodity.ps.wire import WireFormatError, decode_message, encode_message
from ddl_commodity.rpc import SECRET_METADATA, channel_options, require_secret, start_server

SERVICE = "ddl.RunCollector"
HEARTBEATS_FILE = "heartbeats.json"
_STREAM = re.compile(r"^(ps|placement|tasks|workers/[A-Za-z0-9_.-]+|nodes/[A-Za-z0-9_.-]+)$")


class RunCollector:
    """Receives ``Record``, ``Fail`` and ``Heartbeat`` calls; records go to ``<run_dir>/<stream>.jsonl``.

    ``failure`` is set by the first node that reports one; :attr:`first_failure` says who and why.
    """

    def __init__(
        self,
        run_dir: Path,
        secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        on_record: Callable[[str, dict], None] | None = None,
        max_message_bytes: int = 512 * 2**20,
    ) -> None:
        self.run_dir = Path(run_dir)
        self._max_message_bytes = max_message_bytes
        self._on_record_hook = on_record
        self._secret = secret.encode()
        self._host = host
        self._port = port
        self._lock = threading.Lock()  # records and their files
        self._liveness_lock = threading.Lock()  # _last_seen, _done, _set_up, progress, _heartbeats
        self._files: dict[str, object] = {}
        self.records: dict[str, list[dict]] = {}
        self.failure = threading.Event()
        self._last_seen: dict[str, float] = {}
        self.progress: dict[str, dict] = {}  # node -> its last heartbeat's progress (e.g. epoch, samples)
        self._done: set[str] = set()
        self._set_up: set[str] = set()  # nodes that said they serve or train (their set-up is over)
        self._heartbeats: dict[str, dict] = {}  # node -> count, longest gap (s) and its end, slowest call (s)
        self.first_failure: NodeFailure | None = None
        self.aborted = False
        self._aborted_at = 0.0
        self.finished = False
        self._server: grpc.Server | None = None
        self.address = ""

    def start(self) -> str:
        handlers = {
            "Record": self._on_record,
            "Fail": self._on_fail,
            "Heartbeat": self._on_heartbeat,
            "TrainedBy": self._on_trained_by,
        }
        methods = {name: self._authenticated(fn) for name, fn in handlers.items()}
        methods["Checkpoint"] = self._on_checkpoint
        self._server, port = start_server(SERVICE, methods, self._host, self._port, 16,
                                          channel_options(self._max_message_bytes))
        self.address = f"{self._host}:{port}"
        return self.address

    def stop(self) -> None:
        """Stop serving and publish every stream as ``<stream>.jsonl``, written atomically."""
        from ddl_commodity.runs import write_json_atomic, write_jsonl_atomic

        if self._server is not None:
            self._server.stop(grace=1).wait(5)
            self._server = None
        with self._lock:
            for stream, f in self._files.items():
                f.close()  # type: ignore[attr-defined]
                write_jsonl_atomic(self.run_dir / f"{stream}.jsonl", self.records[stream])
                self._partial_path(stream).unlink(missing_ok=True)
            self._files.clear()
        with self._liveness_lock:
            if self._heartbeats:
                write_json_atomic(self.run_dir / HEARTBEATS_FILE, {"nodes": self._heartbeats})

    def _partial_path(self, stream: str) -> Path:
        # Live records go to a .partial file so that a crash never leaves a torn file that looks final.
        return self.run_dir / f"{stream}.jsonl.partial"

    def __enter__(self) -> RunCollector:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def preload(self, stream: str, records: list[dict]) -> None:
        """Start ``stream`` with the records of an earlier attempt (``ddl run --resume``)."""
        with self._lock:
            for record in records:
                self._append(stream, record)

    def finish(self) -> None:
        """Tell every node (at its next heartbeat) that the run's work is done and it may return."""
        self.finished = True

    def is_set_up(self, node: str) -> bool:
        """Has ``node`` said that its set-up is over (it serves, or has trained a step)?"""
        with self._liveness_lock:
            return node in self._set_up

    def is_done(self, node: str) -> bool:
        """Has ``node`` said goodbye (its work finished normally)?"""
        with self._liveness_lock:
            return node in self._done

    def abort(self) -> None:
        """Tell every node (at its next heartbeat) that the run is over."""
        if not self.aborted:
            self._aborted_at = time.monotonic()
        self.aborted = True

    def wait_heard(self, timeout_s: float) -> list[str]:
        """After :meth:`abort`: wait until every node that was alive has heartbeated since (and so heard it and
        exits by itself), at most ``timeout_s``; nodes silent for ``timeout_s`` before the abort count as gone.
        Returns the nodes that did not hear it in time."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._liveness_lock:
                pending = sorted(n for n, t in self._last_seen.items() if n not in self._done
                                 and t < self._aborted_at and self._aborted_at - t < timeout_s)
            if not pending or time.monotonic() > deadline:
                return pending
            time.sleep(0.1)

    def _authenticated(self, fn):
        def handler(request: bytes, context: grpc.ServicerContext) -> bytes:
            require_secret(context, self._secret)
            try:
                doc = json.loads(request)
            except ValueError:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request is not JSON")
            return json.dumps(fn(doc, context)).encode()

        return handler

    def _on_record(self, doc: dict, context: grpc.ServicerContext) -> dict:
        stream, record = doc.get("stream", ""), doc.get("record")
        if not _STREAM.match(stream) or not isinstance(record, dict):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad record for stream {stream!r}")
        with self._lock:
            self._append(stream, record)
        if self._on_record_hook is not None:
            self._on_record_hook(stream, record)
        return {"ok": True, "abort": self.aborted}

    def _append(self, stream: str, record: dict) -> None:
        self.records.setdefault(stream, []).append(record)
        f = self._files.get(stream)
        if f is None:
            path = self._partial_path(stream)
            path.parent.mkdir(parents=True, exist_ok=True)
            f = self._files[stream] = path.open("w", encoding="utf-8")
        f.write(json.dumps(record) + "\n")  # type: ignore[attr-defined]
        f.flush()  # type: ignore[attr-defined]

    def _on_checkpoint(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """Raw bytes in the PS wire format: header = checkpoint metadata, arrays = the global weights."""
        require_secret(context, self._secret)
        try:
            meta, weights = decode_message(request)
        except WireFormatError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        save_checkpoint(self.run_dir / CHECKPOINT_FILE, meta, weights)
        return b"{}"

    def _on_fail(self, doc: dict, context: grpc.ServicerContext) -> dict:
        with self._lock:
            if self.first_failure is None:
                self.first_failure = NodeFailure(str(doc.get("node")), "raised", f"node {doc.get('message')}")
        self.failure.set()
        return {"ok": True, "abort": True}

    def _on_heartbeat(self, doc: dict, context: grpc.ServicerContext) -> dict:
        node = str(doc.get("node"))
        with self._liveness_lock:
            now = time.monotonic()
            self._note_heartbeat(node, now, doc)
            self._last_seen[node] = now
            if isinstance(doc.get("progress"), dict):
                self.progress[node] = doc["progress"]
            if doc.get("done"):
                self._done.add(node)
            if doc.get("set_up"):
                self._set_up.add(node)
        return {"ok": True, "abort": self.aborted or self.failure.is_set(), "finished": self.finished}

    def _note_heartbeat(self, node: str, now: float, doc: dict) -> None:
        stats = self._heartbeats.setdefault(node, {"heartbeats": 0, "longest_gap_s": 0.0, "longest_gap_ended": None,
                                                   "slowest_call_s": 0.0, "failed_calls": 0})
        stats["heartbeats"] += 1
        last_call_s, failed = doc.get("last_call_s"), doc.get("failed_calls")
        if isinstance(failed, int):
            stats["failed_calls"] = failed
        if node in self._last_seen and now - self._last_seen[node] > stats["longest_gap_s"]:
            stats["longest_gap_s"] = round(now - self._last_seen[node], 3)
            stats["longest_gap_ended"] = round(time.time(), 3)
        if isinstance(last_call_s, int | float) and last_call_s > stats["slowest_call_s"]:
            stats["slowest_call_s"] = round(float(last_call_s), 3)

    def _on_trained_by(self, doc: dict, context: grpc.ServicerContext) -> dict:
        return {"worker": self.trained_by(doc.get("feed_epoch"), doc.get("shard"))}

    def trained_by(self, feed_epoch: object, shard: object) -> str | None:
        """The worker whose epoch record covers feed epoch ``feed_epoch``'s shard ``shard``, if one arrived."""
        with self._lock:
            for stream, records in self.records.items():
                if stream.startswith("workers/") and any(
                        r.get("feed_epoch") == feed_epoch and r.get("shard") == shard for r in records):
                    return stream.removeprefix("workers/")
        return None

    def silent_nodes(self, timeout_s: float) -> list[tuple[str, float]]:
        """Nodes that heartbeated before, have not said goodbye, and were silent for ``timeout_s``.

        A node killed by SIGKILL or by the kernel's OOM killer reports nothing; silence is the only sign.
        """
        now = time.monotonic()
        with self._liveness_lock:
            return [(n, now - t) for n, t in self._last_seen.items() if n not in self._done and now - t > timeout_s]


class CollectorClient:
    """What a node uses to talk to the driver's :class:`RunCollector`."""

    def __init__(self, address: str, secret: str, node: str, timeout_s: float = 30.0,
                 max_message_bytes: int = 512 * 2**20) -> None:
        self.node = node
        self._timeout = timeout_s
        self._metadata = ((SECRET_METADATA, secret),)
        self._channel = grpc.insecure_channel(address, options=channel_options(max_message_bytes))
        self.run_finished = False  # set from heartbeat replies: the driver says the run's work is done
        self._last_call_s: float | None = None  # how long the previous heartbeat call took
        self._failed_calls = 0  # heartbeat calls that raised (the driver hears of them at the next one through)
        self._calls = {
            name: self._channel.unary_unary(f"/{SERVICE}/{name}")
            for name in ("Record", "Fail", "Heartbeat", "Checkpoint", "TrainedBy")
        }

    def _call(self, name: str, doc: dict) -> dict:
        reply = self._calls[name](json.dumps(doc).encode(), timeout=self._timeout, metadata=self._metadata)
        return json.loads(reply)

    def record(self, stream: str, record: dict) -> bool:
        """Append ``record`` to ``<stream>.jsonl``; returns True when the driver has aborted the run."""
        return bool(self._call("Record", {"stream": stream, "record": record}).get("abort"))

    def fail(self, message: str) -> None:
        self._call("Fail", {"node": self.node, "message": message})

    def checkpoint(self, meta: dict, weights: list) -> None:
        """Send the PS state to the driver, which replaces ``checkpoints/ps.npz`` atomically."""
        self._calls["Checkpoint"](encode_message(meta, weights), timeout=self._timeout * 4, metadata=self._metadata)

    def trained_by(self, feed_epoch: int, shard: int) -> str | None:
        """Which worker already trained (and recorded) this feed partition, if any."""
        return self._call("TrainedBy", {"feed_epoch": feed_epoch, "shard": shard}).get("worker")

    def heartbeat(self, done: bool = False, progress: dict | None = None, set_up: bool = True) -> bool:
        """Tell the driver this node is alive (``done``: it finished normally; ``progress``: how far its work
        is, e.g. ``{"epoch": 2, "samples": 640}``; ``set_up``: it serves or trains, its set-up is over);
        True when the run is aborted."""
        start = time.monotonic()
        try:
            reply = self._call("Heartbeat", {"node": self.node, "done": done, "progress": progress,
                                             "set_up": set_up, "last_call_s": self._last_call_s,
                                             "failed_calls": self._failed_calls})
        except Exception:
            self._failed_calls += 1
            raise
        self._last_call_s = time.monotonic() - start
        self.run_finished = bool(reply.get("finished"))
        return bool(reply.get("abort"))

    def close(self) -> None:
        self._channel.close()
