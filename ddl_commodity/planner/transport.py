"""What moving tensors costs a node's CPU, and what the input worker does per step besides the model: measured
once per cluster profile and cached, like the layer timings.

The layer timings (:mod:`ddl_commodity.planner.costs`) leave out everything a step does because the model is
spread over several nodes: the input worker's dispatch of the step's work to every remote task (TensorFlow's
``RunGraph`` call per partition, and on the remote side serving it), the CPU that every tensor crossing
between two nodes costs each side whatever its size (a ``RecvTensor`` call: a weight, a gradient, an
activation), and the CPU that a tensor's bytes cost the node that sends them and the node that receives them
(gRPC's copies, framing and checksums). All are measured here on loopback, in a one-thread profiling
process that acts as the input worker and a one-thread TensorFlow server in a child process that acts as the
remote task; each side's CPU seconds are read from its own process, so sending and receiving are told apart.
The parameter server of data parallelism (its own framed TCP, :mod:`ddl_commodity.ps.transport`, and a numpy
apply) is measured the same way.

Times are CPU seconds on one full core; a node with CPU share ``c`` takes ``t / c``. Cached per profile and
machine under ``~/.cache/ddl-commodity/plan-costs/transport-<key>.json``: measuring takes about 20 s.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from ddl_commodity.planner.errors import PlanError, one_line, write_log

#: Part of the cache key: a change to how the transport is measured (models, steps, rounds, sizes) invalidates
#: every cached calibration.
METHOD_VERSION = 4
#: Transfer sizes the per-byte costs are fitted over (bytes).
SIZES = (4, 4_000_000, 16_000_000)
#: Hidden layers of the tiny models whose training step gives the per-step and per-tensor costs.
HIDDEN_LAYERS = (1, 8, 16)
#: Timed training steps per model and round, their batch, and the rounds (the least CPU of them is kept).
STEPS, STEP_BATCH, ROUNDS = 80, 32, 3
#: Timed calls per size (the remote process's CPU clock ticks in 10 ms: enough calls to resolve a call).
CALLS = 40
CALIBRATION_TIMEOUT_S = 600


@dataclass(frozen=True)
class TransportCosts:
    """CPU seconds on one full core.

    ``remote_call_s``: the input worker's dispatch of one step's work to one remote task (per task that
    computes or holds weights for the step); ``remote_serve_s``: the same call on the remote task's side;
    ``send_s_per_byte`` / ``recv_s_per_byte``: TensorFlow's gRPC transfer, sender's and receiver's side;
    ``send_s_per_tensor`` / ``recv_s_per_tensor``: the same transfer's fixed cost per tensor, each side;
    ``ps_s_per_byte``: the parameter server's framed TCP, each side (send or receive) of a pushed or pulled
    byte; ``ps_apply_s_per_byte``: the PS's numpy work per byte of weights per applied update
    (``W <- W - lambda dW / s``)."""

    remote_call_s: float
    remote_serve_s: float
    send_s_per_byte: float
    recv_s_per_byte: float
    ps_s_per_byte: float
    ps_apply_s_per_byte: float
    profile: str = ""
    send_s_per_tensor: float = 0.0
    recv_s_per_tensor: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


#: No transport cost: what the planner assumed before it measured one (and what hand-built tests use).
FREE = TransportCosts(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, "free")


def calibration_key(profile: str) -> str:
    """A stable hash of what the calibration depends on: the profile, this machine's CPU and TensorFlow."""
    from importlib import metadata

    try:
        tf_version = metadata.version("tensorflow-cpu")
    except metadata.PackageNotFoundError:
        tf_version = "?"
    doc = json.dumps([profile, platform.processor(), platform.machine(), _cpu_model(), tf_version, METHOD_VERSION])
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def transport_costs(profile: str, cache_dir: Path, refresh: bool = False) -> TransportCosts:
    """The transport calibration for ``profile`` on this machine: cached, else measured in a subprocess
    (``python -m ddl_commodity.planner.transport``).

    Args:
        profile: the cluster profile's name (or ``"none"``): part of the cache key.
        cache_dir: where ``transport-<key>.json`` (and a failed calibration's ``.log``) go.
        refresh: measure again even if cached.

    Raises:
        PlanError: the calibration failed; one line naming why and the log file.
    """
    cache = cache_dir / f"transport-{calibration_key(profile)}.json"
    if cache.is_file() and not refresh:
        try:
            return TransportCosts(**json.loads(cache.read_text()))
        except (ValueError, TypeError):  # an older layout or a torn file: measure again
            pass
    costs = _run_calibration(profile, cache.with_suffix(".log"))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(costs.to_dict(), indent=1))
    tmp.replace(cache)
    return costs


def _run_calibration(profile: str, log: Path) -> TransportCosts:
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "ddl_commodity.planner.transport", profile]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=CALIBRATION_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired as err:
        write_log(log, f"$ {' '.join(cmd)}\n--- stdout\n{err.stdout or ''}\n--- stderr\n{err.stderr or ''}")
        raise PlanError(f"measuring the transport's CPU costs took more than {CALIBRATION_TIMEOUT_S} s "
                        f"(its output: {log})") from None
    lines = proc.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else {}
    except ValueError:
        result = {}
    if proc.returncode == 0 and isinstance(result, dict) and "send_s_per_byte" in result:
        return TransportCosts(**result)
    write_log(log, f"$ {' '.join(cmd)}\nexit code {proc.returncode}\n--- stdout\n{proc.stdout}\n"
                   f"--- stderr\n{proc.stderr}")
    reason = result.get("error") if isinstance(result, dict) and result.get("error") else \
        one_line(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}")
    raise PlanError(f"measuring the transport's CPU costs failed: {reason} (its output: {log})")


# ---------------------------------------------------------------------------------------------------------
# The calibration process


def fit_line(sizes: list[float], seconds: list[float]) -> tuple[float, float]:
    """``(intercept, slope)`` of the least-squares line through ``(size, seconds)``, both clipped at 0.

    Args:
        sizes: what each call moves (bytes, or weight variables), at least two distinct; seconds: CPU seconds
            per call at each size.
    """
    n = len(sizes)
    mx, my = sum(sizes) / n, sum(seconds) / n
    sxx = sum((x - mx) ** 2 for x in sizes)
    slope = sum((x - mx) * (y - my) for x, y in zip(sizes, seconds, strict=True)) / sxx
    return max(0.0, my - slope * mx), max(0.0, slope)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _RemoteTask:
    """A one-thread TensorFlow server (task 1 of job ``worker``) in a child process, its CPU clock readable."""

    def __init__(self, spec: dict) -> None:
        import psutil

        code = ("import sys, tensorflow as tf; tf.distribute.Server(tf.train.ClusterSpec(" + repr(spec) +
                "), job_name='worker', task_index=1, start=True); print('up', flush=True); sys.stdin.read()")
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        if self.proc.stdout.readline().strip() != "up":
            raise RuntimeError("the remote TensorFlow server of the calibration did not start")
        self.ps = psutil.Process(self.proc.pid)

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _per_call(fn, remote: _RemoteTask | None, calls: int = CALLS, warm_up: int = 3) -> tuple[float, float]:
    """(this process's, the remote task's) CPU seconds per call of ``fn``, after ``warm_up`` calls."""
    import time

    for _ in range(warm_up):
        fn()
    r0 = remote.cpu_s() if remote else 0.0
    t0 = time.process_time()
    for _ in range(calls):
        fn()
    here = (time.process_time() - t0) / calls
    return here, ((remote.cpu_s() - r0) / calls if remote else 0.0)


def _grpc_costs() -> dict[str, float]:
    """The step's dispatch on both sides, and gRPC's CPU per tensor and per byte sent and received."""
    import tensorflow as tf

    spec = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    remote = _RemoteTask(spec)
    try:
        tf.config.experimental_connect_to_cluster(tf.train.ClusterSpec(spec), job_name="worker", task_index=0)
        here, far = "/job:worker/replica:0/task:0/device:CPU:0", "/job:worker/replica:0/task:1/device:CPU:0"
        return {**_step_costs(here, far, remote), **_byte_costs(here, far, remote)}
    finally:
        remote.close()


def _byte_costs(here: str, far: str, remote: _RemoteTask) -> dict[str, float]:
    """Calls moving one tensor of each of :data:`SIZES` bytes, each way: each side's CPU per byte (the slope)."""
    import tensorflow as tf

    sent: list[tuple[int, float, float]] = []
    received: list[tuple[int, float, float]] = []
    for size in SIZES:
        with tf.device(here):
            x = tf.Variable(tf.zeros((size // 4,)))
        with tf.device(far):
            y = tf.Variable(tf.zeros((size // 4,)))

        @tf.function
        def send(x=x):
            with tf.device(far):
                return tf.reduce_sum(x.read_value())

        @tf.function
        def receive(y=y):
            with tf.device(here):
                return tf.reduce_sum(y.read_value())

        sent.append((size, *_per_call(lambda: send().numpy(), remote)))
        received.append((size, *_per_call(lambda: receive().numpy(), remote)))
    _, send_b = fit_line([s for s, _, _ in sent], [h for _, h, _ in sent])
    _, recv_b = fit_line([s for s, _, _ in sent], [r for _, _, r in sent])
    _, recv_here_b = fit_line([s for s, _, _ in received], [h for _, h, _ in received])
    _, send_far_b = fit_line([s for s, _, _ in received], [r for _, _, r in received])
    # each side measured in both directions: the mean of the two
    return {"send_s_per_byte": (send_b + send_far_b) / 2, "recv_s_per_byte": (recv_b + recv_here_b) / 2}


def _step_costs(here: str, far: str, remote: _RemoteTask) -> dict[str, float]:
    """The engine's training step (:class:`~ddl_commodity.engines.training.Trainer`) of tiny Dense models, with
    every weight on the remote task and, to compare, in this process alone. Over the models' weight variables,
    the intercepts are the input worker's dispatch of a step and the remote task's serving of it; the slopes
    are what a variable costs each side, less what it costs one process: a read and a write of it, i.e. two
    tensors each side (the same per tensor sent as received: one side of a read is the other side of a write).
    """
    rows = []
    for hidden in HIDDEN_LAYERS:
        here_s, far_s = _trainer_step_cpu(hidden, far, remote)
        alone_s, _ = _trainer_step_cpu(hidden, here, None)
        rows.append((2 * (hidden + 1), here_s, far_s, alone_s))
    variables, here_cpu, far_cpu, alone_cpu = (list(column) for column in zip(*rows, strict=True))
    call, here_per_variable = fit_line(variables, here_cpu)
    serve, far_per_variable = fit_line(variables, far_cpu)
    alone, alone_per_variable = fit_line(variables, alone_cpu)
    per_tensor = max(0.0, here_per_variable + far_per_variable - alone_per_variable) / 4
    return {"remote_call_s": max(0.0, call - alone), "remote_serve_s": serve, "send_s_per_tensor": per_tensor,
            "recv_s_per_tensor": per_tensor}


def _trainer_step_cpu(hidden: int, variables: str, remote: _RemoteTask | None) -> tuple[float, float]:
    """(this process's, the remote task's) CPU seconds per training step of ``hidden`` Dense(4) layers and a
    softmax output, batch :data:`STEP_BATCH`, weights and optimizer state on ``variables``."""
    import keras
    import numpy as np
    import tensorflow as tf

    from ddl_commodity.config import TrainingSettingsBase
    from ddl_commodity.engines.training import Trainer

    with tf.device(variables):
        x = h = keras.Input((4,))
        for _ in range(hidden):
            h = keras.layers.Dense(4)(h)
        model = keras.Model(x, keras.layers.Dense(2, activation="softmax")(h))
    trainer = Trainer(model, TrainingSettingsBase(batch_size=STEP_BATCH, epochs=1), variables)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((STEPS * STEP_BATCH, 4)).astype("float32")]
    labels = rng.integers(0, 2, STEPS * STEP_BATCH).astype("int32")
    trainer.train_epoch(inputs, labels, np.arange(10 * STEP_BATCH), rng)  # traced and warm
    rounds = [_per_call(lambda: trainer.train_epoch(inputs, labels, np.arange(STEPS * STEP_BATCH), rng), remote,
                        calls=1, warm_up=0) for _ in range(ROUNDS)]
    # the least of each side: what other work on the machine adds to a CPU clock is never negative
    return min(r[0] for r in rounds) / STEPS, min(r[1] for r in rounds) / STEPS


def _ps_costs(size: int = 16_000_000) -> dict[str, float]:
    """The PS transport's CPU per byte (a socket pair on loopback, one side per thread, both counted: half is
    one side) and the numpy apply per byte of weights."""
    import socket
    import threading
    import time

    import numpy as np

    payload = np.ones(size // 4, np.float32)
    buffer = bytearray(size)
    a, b = socket.socketpair()

    def read_all() -> None:
        view, got = memoryview(buffer), 0
        while got < size:
            got += b.recv_into(view[got:])

    def one() -> None:
        reader = threading.Thread(target=read_all)
        reader.start()
        a.sendall(memoryview(payload).cast("B"))
        reader.join()

    try:
        both = _per_call(one, None, calls=10)[0]
    finally:
        a.close()
        b.close()
    weights, delta = np.ones(size // 4, np.float32), np.full(size // 4, 1e-3, np.float32)

    def apply() -> None:
        np.subtract(weights, np.float32(0.5) * delta, out=weights)

    t0, calls = time.process_time(), 20
    for _ in range(calls):
        apply()
    return {"ps_s_per_byte": both / 2 / size, "ps_apply_s_per_byte": (time.process_time() - t0) / calls / size}


def calibrate(profile: str) -> TransportCosts:
    """Measure every cost of :class:`TransportCosts` on this process's threads (see the module's docstring)."""
    return TransportCosts(**_grpc_costs(), **_ps_costs(), profile=profile)


def main(argv: list[str]) -> int:
    """``python -m ddl_commodity.planner.transport PROFILE``: the costs as the last stdout line, or
    ``{"error": one line}`` there and the traceback on stderr (exit code 3)."""
    try:
        costs = calibrate(argv[0] if argv else "none")
    except Exception as err:
        traceback.print_exc()
        print(json.dumps({"error": one_line(err)}))
        return 3
    print(json.dumps(costs.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
