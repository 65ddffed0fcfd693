"""Data parallelism past one machine: seconds per epoch and time to a target for M = 1..64 PCs, and the
break-even M beyond which one more PC no longer pays.

The staleness-weighted PS of thesis 5.2.2 (eq. 5.1) is the shared resource. A worker trains its samples of
the epoch (all of them with ``same`` data, 1/M with ``disjoint``) at its node's share, slowed by the feeding
rate measured against an in-memory loop, and scores the held-out set at the epoch's end; every
``push_every_steps`` steps (or once an epoch) it pushes ``dW`` (W bytes) and waits for the weights of the
aggregate it joins. The PS waits for ``s`` pushes, applies them, and sends the
``s`` pushers the new weights. Per push the PS spends, at its share ``c_ps``:

* link: W / B in (the push) and W / B out (the pull), its own full-duplex link;
* CPU: ``W x ps_s_per_byte`` to receive and as much to send, and ``W x ps_apply_s_per_byte`` to apply the update
  (plus once per aggregate the new weights), all over ``c_ps``.

A worker's cycle between two pushes is the longer of (a) its compute ``t_c`` plus its group's exchange: the
``s`` pushes of the group arrive one after another through the PS's link (``s x W / B``), the PS applies
them, and the ``s`` pulls leave through it (``s x W / B``), each transfer at least as long as the CPU it
costs either side; and (b) ``M`` times the PS's busiest resource per push (link or CPU): with ``M`` workers
the PS serves ``M`` pushes a cycle and cannot serve them faster. ``s`` as configured decides how many pushes
wait for each other. The run is PS-bound when (b) sets the cycle or when, in (a), the group's exchange through
the PS outlasts the compute.

The time to a target accuracy is the passes over the training set a single worker needs (``target_passes``,
measured or the config's epochs) times the seconds per pass: a pass takes one epoch with ``disjoint`` data
and 1/M of one with ``same`` data (each of the M workers passes over the whole set). The passes needed are
taken as independent of M (statistical efficiency 1): an optimistic bound for the larger M, where the
averaged updates of replicas that saw 1/M of the data each are worth less than one replica's pass. The
break-even M is the one with the shortest time to the target: up to it every PC pays; beyond it the
computation each new PC takes off the others no longer outweighs what its pushes cost the PS.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ddl_commodity.planner.simulate import ClusterModel

FLOAT_BYTES = 4
#: The curve's worker counts: 1..64 PCs.
MAX_WORKERS = 64


@dataclass(frozen=True)
class DataParallelTask:
    """What a data-parallel run asks of each worker and of the PS.

    ``step_s``: one training step on one full core (the profiled step); ``weights``: trainable and other
    weights, all of them pushed and pulled; ``samples``: the training set; ``batch``; ``distribution``:
    ``same`` or ``disjoint``; ``s``: pushes the PS aggregates (at most M; ``None``: s = M, synchronous);
    ``push_every_steps``: steps between pushes (``None``: once an epoch); ``feed_efficiency``: the feeding
    rate against an in-memory loop; ``target_passes``: passes over the training set to the target;
    ``validation_samples``, ``eval_batch`` and ``eval_step_s``: the held-out set each worker scores at every
    epoch's end (its own weights, and after a push the weights it adopted), in batches of ``eval_batch``, and
    one inference pass of such a batch on one core."""

    step_s: float
    weights: int
    samples: int
    batch: int
    distribution: str = "disjoint"
    s: int | None = None
    push_every_steps: int | None = None
    feed_efficiency: float = 1.0
    target_passes: float = 1.0
    validation_samples: int = 0
    eval_step_s: float = 0.0
    eval_batch: int = 256  # the engines' EVAL_BATCH (not imported: it would load Keras for every plan)


@dataclass(frozen=True)
class ScalingPoint:
    """The prediction for M workers; seconds on the cluster the :class:`ClusterModel` describes."""

    workers: int
    epoch_s: float  # one worker's epoch: its share of the set (disjoint) or the whole set (same)
    compute_s: float  # its training steps and its scoring of the held-out set
    exchange_s: float  # its pushes and pulls, waiting for the PS included
    ps_busy_s: float  # the PS's busiest resource (link or CPU) per epoch
    bound: str  # "ps": the PS's queue sets the cycle, or its exchange outlasts the compute; else "workers"
    pass_s: float  # one pass over the training set by the cluster
    time_to_target_s: float

    def to_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def predict_workers(task: DataParallelTask, m: int, cluster: ClusterModel) -> ScalingPoint:
    """The epoch of M workers: see the module's docstring for the model.

    Args:
        task: the run; m: workers (>= 1); cluster: every node's share, the link, latency and transport costs.
    """
    t = cluster.transport
    per_worker = task.samples if task.distribution == "same" else math.ceil(task.samples / m)
    steps = max(1, math.ceil(per_worker / task.batch))
    # a worker counts its steps across epochs and pushes at every multiple: steps / every pushes an epoch
    pushes = steps / task.push_every_steps if task.push_every_steps else 1
    scores = 2 if task.push_every_steps is None else 1  # its own weights, and the adopted ones after the push
    evaluate = scores * math.ceil(task.validation_samples / task.eval_batch) * task.eval_step_s / cluster.cpu_share
    # the node's whole share: with the idle daemons' 0.05 core taken off, as for model parallelism, the epochs of
    # M = 1-3 on the embedded cluster were predicted about 15% high
    compute = steps * task.step_s / cluster.cpu_share / task.feed_efficiency + evaluate
    s = min(task.s or m, m)
    w = task.weights * FLOAT_BYTES
    ps_share = cluster.share("ps:0")
    link = w / cluster.link_bytes_per_s("ps:0")  # what one push or pull occupies the PS's link
    hop = w / min(cluster.bytes_per_s, cluster.link_bytes_per_s("ps:0"))  # the slower end sets a transfer's pace
    # each transfer lasts as long as the slower of the link and the CPU either side spends on it
    transfer = max(hop, w * t.ps_s_per_byte / cluster.cpu_share, w * t.ps_s_per_byte / ps_share)
    apply_update = w * t.ps_apply_s_per_byte / ps_share
    ps_cpu_per_push = (2 * w * t.ps_s_per_byte + w * t.ps_apply_s_per_byte) / ps_share + apply_update / s
    group = s * transfer + s * apply_update + apply_update + s * transfer + 2 * cluster.latency_s
    worker_cycle = compute / pushes + group
    ps_cycle = m * max(link, ps_cpu_per_push)
    cycle = max(worker_cycle, ps_cycle)
    epoch = pushes * cycle
    pass_s = epoch / m if task.distribution == "same" else epoch
    # PS-bound: the PS cannot serve the pushes faster, or a worker waits for its group's exchange through the
    # PS longer than it computes
    bound = "ps" if ps_cycle > worker_cycle or group > compute / pushes else "workers"
    return ScalingPoint(workers=m, epoch_s=epoch, compute_s=compute, exchange_s=epoch - compute,
                        ps_busy_s=pushes * ps_cycle, bound=bound, pass_s=pass_s,
                        time_to_target_s=task.target_passes * pass_s)


def scaling_curve(task: DataParallelTask, cluster: ClusterModel,
                  max_workers: int = MAX_WORKERS) -> dict[int, ScalingPoint]:
    """:func:`predict_workers` for M = 1..``max_workers``."""
    return {m: predict_workers(task, m, cluster) for m in range(1, max_workers + 1)}


def break_even(curve: dict[int, ScalingPoint]) -> int:
    """The M with the shortest time to the target (the smallest such M on a tie): beyond it, a PC does not pay."""
    return min(curve, key=lambda m: (round(curve[m].time_to_target_s, 9), m))
