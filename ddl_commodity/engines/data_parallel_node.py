"""TFoS node functions of the data-parallel engine (thesis 5.2.2), for any experiment's model.

``main_fun(args, ctx)`` is what ``TFCluster.run`` starts on every executor: the ``ps`` task hosts the
staleness-weighted parameter server, each ``worker`` task trains a replica on the bundles Spark feeds it
and synchronises with the PS at every epoch end (or every ``push_every_steps`` steps).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

import numpy as np

from ddl_commodity.config import RunConfig
from ddl_commodity.data.rdd import Bundle, index_digest
from ddl_commodity.engines.node_data import validation_rows
from ddl_commodity.engines.scoring import prefixed
from ddl_commodity.experiments.api import Experiment, unflatten
from ddl_commodity.resources.cgroups import own_node_group, private_memory_group
from ddl_commodity.runtime.feed import Prefetched
from ddl_commodity.runtime.node import NodeArgs, NodeRuntime, node_session, spark_executor_id

PS_STREAM = "ps"


def main_fun(args: NodeArgs, ctx: Any) -> None:
    """TFoS entry point: ``ctx.job_name`` is ``ps`` or ``worker``."""
    with node_session(args, ctx) as (runtime, experiment, cfg):
        if ctx.job_name == "ps":
            run_parameter_server(experiment, cfg, args, ctx, runtime)
        else:
            run_worker(experiment, cfg, args, ctx, runtime)


def ps_address(tfos_address: str, cfg: RunConfig) -> str:
    """Where the PS listens: the port TFoS reserved for the PS task, at that node's own address.

    TFoS finds a node's address with a route lookup, which on a one-machine cluster yields the machine's
    network address; the embedded cluster keeps all traffic on ``cluster.host`` (loopback) instead.
    """
    host, port = tfos_address.rsplit(":", 1)
    return f"{cfg.cluster.host if cfg.cluster.master == 'embedded' else host}:{port}"


def build_model(experiment: Experiment, cfg: RunConfig):
    from ddl_commodity.engines.scoring import Objective
    from ddl_commodity.engines.training import compile_for_training

    return compile_for_training(experiment.build_model(cfg), cfg.training, Objective.of(experiment, cfg))


def run_parameter_server(experiment: Experiment, cfg: RunConfig, args: NodeArgs, ctx: Any,
                         runtime: NodeRuntime) -> None:
    """Serve eq. 5.1 until every worker finished and TFoS stops this node."""
    from ddl_commodity.ps import ParameterServerService, StalenessWeightedServer, make_staleness

    model = build_model(experiment, cfg)
    initial = model.get_weights()
    checkpoints = _Checkpointer(cfg.ps.checkpoint_every, runtime)

    def log_update(record: dict) -> None:
        runtime.record(PS_STREAM, record)
        if record.get("event") == "applied":
            if record["applied_version"] == args.fault.ps_kill_at_version:
                os.kill(os.getpid(), signal.SIGKILL)
            checkpoints.maybe_save(server, record["applied_version"])

    server = StalenessWeightedServer(
        initial,
        num_workers=cfg.training.workers,
        s=cfg.ps.s,
        staleness=make_staleness(cfg.ps.staleness, cfg.ps.decay),
        on_update=log_update,
    )
    if args.resume_checkpoint:
        from pyspark import SparkFiles

        from ddl_commodity.ps.checkpoint import load_checkpoint

        meta, weights = load_checkpoint(SparkFiles.get(args.resume_checkpoint))
        server.load_state_dict({"weights": weights, **meta})
        checkpoints.last_version = server.version
    host, port = ps_address(ctx.cluster_spec["ps"][0], cfg).rsplit(":", 1)
    service = ParameterServerService(
        server, args.secret, host=host, port=int(port), max_message_bytes=cfg.ps.max_message_mb * 2**20,
        final_model=final_model_maker(model, experiment, cfg, args),
    )
    service.start()
    runtime.set_up = True
    try:
        # TFoS marks the node 'stopped' when the driver shuts the cluster down, which the driver does only
        # after it has pulled the final weights.
        while str(ctx.mgr.get("state")) != "'stopped'":
            time.sleep(0.5)
    finally:
        service.stop()


def final_model_maker(model, experiment: Experiment, cfg: RunConfig, args: NodeArgs):
    """The PS service's ``final_model``: the global weights in ``model``, saved as a ``.keras`` file and scored
    (with the experiment's loss and metrics) on the validation set the workers score on. Made here, where
    TensorFlow is loaded anyway, so that the driver never imports it (:mod:`ddl_commodity.runtime.tfos_import`)."""
    from ddl_commodity.engines.scoring import Objective

    objective = Objective.of(experiment, cfg)

    def make(weights: list[np.ndarray]) -> tuple[dict, bytes]:
        from ddl_commodity.engines.scoring import score_model
        from ddl_commodity.engines.training import keras_file_bytes

        model.set_weights(weights)
        x_val, y_val = validation_rows(args)
        scores = score_model(model, x_val, y_val, objective)
        return {"scores": scores}, keras_file_bytes(model)

    return make


class _Checkpointer:
    """Send the PS state to the driver every ``every`` versions: a failed run loses at most K updates."""

    def __init__(self, every: int | None, runtime: NodeRuntime) -> None:
        self.every, self.runtime = every, runtime
        self.last_version = 0
        self._lock = threading.Lock()

    def maybe_save(self, server, version: int) -> None:
        if not self.every or version % self.every:
            return
        with self._lock:
            if version <= self.last_version:
                return
            state = server.state_dict()
            self.last_version = state["version"]
            meta = {"version": state["version"], "applied_updates": state["applied_updates"], "time": time.time()}
            self.runtime.collector.checkpoint(meta, state["weights"])


class _EpochLog:
    """Running training loss/accuracy (``None`` for a model that does not classify), the indices seen and the
    time spent training during one worker epoch.

    ``started`` is when the previous epoch ended, so ``seconds`` includes waiting for this epoch's data;
    ``train_seconds`` counts only the training steps (and mid-epoch pushes): a fast worker waiting for a
    straggler's feed task shows it in the first, not the second.
    """

    def __init__(self) -> None:
        self.indices: list[np.ndarray] = []
        self.loss_sum = 0.0
        self.correct_sum: float | None = 0.0
        self.samples = 0
        self.started = time.monotonic()
        self.train_seconds = 0.0

    def add(self, index: np.ndarray, loss: float, accuracy: float | None, n: int) -> None:
        # A copy: ``index`` is a view into the whole bundle's buffer, which would otherwise stay alive until
        # the epoch ends, so a worker's memory would grow with its shard.
        self.indices.append(np.array(index))
        self.loss_sum += loss * n
        self.correct_sum = None if accuracy is None or self.correct_sum is None else self.correct_sum + accuracy * n
        self.samples += n

    @property
    def accuracy(self) -> float | None:
        return None if self.correct_sum is None else self.correct_sum / self.samples


class _Replica:
    """A worker's model and its link to the PS: pull, train, push ``dW = W_pulled - W_local``, adopt.

    It trains with the single-machine engine's compiled step (:class:`~ddl_commodity.engines.training.Trainer`),
    not Keras's ``train_on_batch``, whose metric bookkeeping makes every step about 10% slower: a worker's
    epoch is then comparable with a single machine's step for step.
    """

    def __init__(self, experiment: Experiment, cfg: RunConfig, args: NodeArgs, ctx: Any, runtime: NodeRuntime):
        from ddl_commodity.engines.scoring import Objective
        from ddl_commodity.engines.training import Trainer
        from ddl_commodity.ps import ParameterServerClient

        self.model = experiment.build_model(cfg)
        self.trainer = Trainer(self.model, cfg.training, seed=cfg.seed, objective=Objective.of(experiment, cfg))
        self.client = ParameterServerClient(ps_address(ctx.cluster_spec["ps"][0], cfg), args.secret,
                                            worker=ctx.task_index, timeout=cfg.ps.push_timeout_s)
        self.client.wait_ready(timeout=cfg.cluster.startup_timeout_s)
        self.version, self.pulled = self.client.pull(announce={
            "node": runtime.name, "executor": spark_executor_id(), "host": os.uname().nodename, "pid": os.getpid()})
        self.model.set_weights(self.pulled)

    def synchronise(self) -> None:
        from ddl_commodity.ps import weights_delta

        self.version, self.pulled = self.client.push(self.version, weights_delta(self.pulled, self.model.get_weights()))
        self.model.set_weights(self.pulled)

    def score(self, x_val: list[np.ndarray], y_val: np.ndarray) -> dict[str, float]:
        """The replica's validation scores, with the compiled forward pass (half the time of eager calls)."""
        return self.trainer.evaluate(x_val, y_val, np.arange(len(y_val)))


def run_worker(experiment: Experiment, cfg: RunConfig, args: NodeArgs, ctx: Any, runtime: NodeRuntime) -> None:
    """Train on fed bundles; synchronise with the PS at every epoch end (or every ``push_every_steps``)."""
    replica = _Replica(experiment, cfg, args, ctx, runtime)
    x_val, y_val = validation_rows(args)
    shapes = [tuple(s) for s in args.input_shapes]
    bs, every = cfg.training.batch_size, cfg.training.push_every_steps
    epoch_no, steps, log, skipping = args.first_epoch, 0, _EpochLog(), False
    feed = Prefetched(ctx.get_data_feed(train_mode=True))
    for item in feed:
        bundle = Bundle(*item)
        if not log.samples and not skipping:  # a partition starts
            skipping = _trained_before(runtime, bundle)
        if skipping:
            skipping = not bundle.last
            continue
        if not log.samples and epoch_no + 1 == args.fault.epoch and ctx.task_index == args.fault.worker:
            inject_fault(args, ctx.task_index, epoch_no + 1)
        for a in range(0, len(bundle.y), bs):
            y = bundle.y[a:a + bs]
            t0 = time.perf_counter()
            loss, acc = replica.trainer.train_batch(unflatten(bundle.x[a:a + bs], shapes), y)
            log.add(bundle.index[a:a + bs], loss, acc, len(y))
            runtime.progress = {"epoch": bundle.epoch + 1, "samples": log.samples}  # a feed epoch, as printed
            runtime.set_up = True
            steps += 1
            if every and steps % every == 0:
                replica.synchronise()
            log.train_seconds += time.perf_counter() - t0
        if bundle.last:
            feed.consumed()  # before the push: with an epoch per feed job, the next job waits for this task's end
            epoch_no += 1
            validation = (x_val, y_val)
            runtime.record(f"workers/{runtime.name}", _end_epoch(replica, log, bundle, epoch_no, validation,
                                                                  sync=not every, name=runtime.name))
            log = _EpochLog()
            if epoch_no == cfg.training.epochs and not cfg.training.tolerate_worker_loss:
                # Fed in one job, a slower worker may still have epochs to push: with s < M its pushes must
                # not wait for this one's, or a push times out while the faster workers, done, wait for the
                # job's end. With an epoch per job a survivor may yet train a lost worker's partition.
                replica.client.finish()
    replica.client.finish()  # the server ignores a second finish
    replica.client.close()


def _trained_before(runtime: NodeRuntime, bundle: Bundle) -> bool:
    """Did a worker already train and record this feed partition? Spark re-runs the task of a worker lost after
    its epoch record reached the driver but before its task completed (a frozen worker, with
    ``tolerate_worker_loss``): its update is at the PS already, so the survivor skips the re-run."""
    by = runtime.collector.trained_by(bundle.epoch, bundle.shard)
    if by is not None:
        print(f"{runtime.name}: feed epoch {bundle.epoch} shard {bundle.shard} was trained by {by}; skipping "
              "Spark's re-run of its task", file=sys.stderr, flush=True)
    return by is not None


def _end_epoch(replica: _Replica, log: _EpochLog, bundle: Bundle, epoch_no: int,
               validation: tuple[list[np.ndarray], np.ndarray], sync: bool, name: str) -> dict:
    """Score the replica, synchronise, score the global model it adopted; the epoch's record."""
    own = replica.score(*validation)
    base = replica.version
    adopted: dict[str, float] = {}
    sync_seconds = 0.0
    if sync:
        sync_started = time.perf_counter()
        replica.synchronise()
        sync_seconds = time.perf_counter() - sync_started
        # The replica's own score above is the thesis's per-worker curve; the weights just pulled are
        # the PS's global model, which is what a user of the run gets (and usually scores higher).
        adopted = replica.score(*validation)
    seen = np.concatenate(log.indices)
    return {
        "worker": name, "epoch": epoch_no, "shard": bundle.shard, "feed_epoch": bundle.epoch,
        "loss": log.loss_sum / log.samples, "accuracy": log.accuracy,
        **prefixed(own, "val_"), **prefixed(adopted, "global_val_"), "samples": log.samples,
        "index_count": int(np.unique(seen).size),
        "index_digest": index_digest(seen), "base_version": base, "ps_version": replica.version,
        "seconds": time.monotonic() - log.started, "train_seconds": round(log.train_seconds, 4),
        "sync_seconds": round(sync_seconds, 4), "time": time.time(),
    }


def inject_fault(args: NodeArgs, worker: int, epoch: int) -> None:
    if args.fault.kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if args.fault.kind == "oom":
        exhaust_memory()
    raise RuntimeError(f"fault injection: worker {worker} fails at epoch {epoch}")


OOM_HEADROOM = 256 * 2**20  # what the fault may allocate above the process's current use
_CHUNK = 32 * 2**20


def exhaust_memory(headroom: int = OOM_HEADROOM) -> None:
    """Allocate until the kernel's OOM killer ends this process, never more than ``headroom`` above its use.

    On a node with a memory cap (a profile or ``node_memory``) the node's cap is the limit: the kernel kills
    a process of that node. Otherwise the limit applies to this one process: it moves itself into a new
    child of its memory cgroup whose limit is its current use + ``headroom`` (a shared machine is never at
    risk). Without a writable cgroup an
    address-space rlimit makes the allocation fail with :class:`MemoryError` instead, which the node reports.
    """
    import resource

    import psutil

    node = own_node_group()
    cap = node.usage().memory_limit if node is not None else None
    if cap is not None:  # a node with a memory cap: allocate past the node's cap, as a leaking model would
        headroom, cgroup = cap, node.dirs.get("memory", node.dirs.get("unified"))
    else:
        cgroup = private_memory_group(psutil.Process().memory_info().rss + headroom)
    if cgroup is None:
        vms = psutil.Process().memory_info().vms
        resource.setrlimit(resource.RLIMIT_AS, (vms + headroom, resource.RLIM_INFINITY))
    blocks = []
    try:
        for _ in range(4 * headroom // _CHUNK):  # bounded: the limit is reached after headroom/_CHUNK blocks
            blocks.append(np.ones(_CHUNK, dtype=np.uint8))  # written, so the pages are really resident
    except MemoryError:
        allocated = len(blocks) * _CHUNK
        blocks.clear()
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        raise MemoryError(f"out of memory after allocating {allocated / 2**20:.0f} MiB "
                          f"(address space capped at {headroom / 2**20:.0f} MiB above use)") from None
    raise RuntimeError(f"fault injection: the OOM killer did not end the process (cgroup {cgroup})")
