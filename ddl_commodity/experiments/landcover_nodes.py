"""TFoS node function of the model-parallel land-cover experiment (TensorFlow-input mode, thesis 6.2.3).

Every node starts a TensorFlow gRPC server for its task (the PS holds the weights, workers compute the
blocks the split scheme gives them). The scheme's ``input`` worker is the client: it reads the patch file
from its own disk (shipped to every executor by Spark, like the thesis's "datasets stored locally in each
worker"), connects to the cluster and runs the training loop, whose ops land on the nodes the scheme names.
The other nodes serve until the driver says the run is over. Every node runs a
:class:`~ddl_commodity.monitor.sampler.NodeSampler`.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from typing import Any

from ddl_commodity.config import parse_config
from ddl_commodity.config_landcover import LandcoverConfig
from ddl_commodity.experiments.nodes import NodeArgs, NodeRuntime


def main_fun(args: NodeArgs, ctx: Any) -> None:
    """TFoS entry point: ``ctx.job_name`` is ``ps`` or ``worker``."""
    from ddl_commodity.monitor.sampler import NodeSampler

    runtime = NodeRuntime(args, ctx.job_name, ctx.task_index)
    runtime.start_heartbeat()
    cfg: LandcoverConfig = parse_config(args.config, "run config")  # type: ignore[assignment]
    stream = f"nodes/{runtime.name}"
    sampler = NodeSampler(runtime.name, lambda rows: runtime.collector.record(stream, {"rows": rows}),
                          cfg.monitor.interval_s).start()
    try:
        with runtime.guard():
            spec = cluster_spec(ctx.cluster_spec, cfg)
            scheme = cfg.scheme()
            if f"{ctx.job_name}:{ctx.task_index}" == scheme.input:
                run_client(cfg, args, spec, ctx, runtime)
            else:
                serve(cfg, spec, ctx, runtime)
    finally:
        sampler.stop()


def cluster_spec(tfos_spec: dict, cfg: LandcoverConfig) -> dict[str, list[str]]:
    """TFoS's cluster spec; on the embedded cluster every address becomes ``cluster.host`` (loopback), since
    TFoS reports a node's network address and its TF server listens on every interface anyway."""
    if cfg.cluster.master != "embedded":
        return {job: list(addrs) for job, addrs in tfos_spec.items()}
    return {job: [f"{cfg.cluster.host}:{a.rsplit(':', 1)[1]}" for a in addrs] for job, addrs in tfos_spec.items()}


def serve(cfg: LandcoverConfig, spec: dict, ctx: Any, runtime: NodeRuntime) -> None:
    """Host this task's TF server until the driver reports the run finished (or TFoS stops a PS)."""
    import tensorflow as tf

    tf.distribute.Server(tf.train.ClusterSpec(spec), job_name=ctx.job_name, task_index=ctx.task_index, start=True)
    while not runtime.collector.run_finished:
        if ctx.job_name == "ps" and str(ctx.mgr.get("state")) == "'stopped'":
            break
        time.sleep(0.5)


def wait_for_servers(spec: dict, me: str, timeout_s: float) -> None:
    """Every other task's server must listen before connecting, or device discovery finds only local CPUs."""
    deadline = time.monotonic() + timeout_s
    pending = [a for addrs in spec.values() for a in addrs if a != me]
    while pending:
        host, port = pending[0].rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                pending.pop(0)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"TF server at {pending[0]} did not start within {timeout_s:.0f} s") from None
            time.sleep(0.2)


def run_client(cfg: LandcoverConfig, args: NodeArgs, spec: dict, ctx: Any, runtime: NodeRuntime) -> None:
    import tensorflow as tf
    from pyspark import SparkFiles

    from ddl_commodity.data.patches import load_patches
    from ddl_commodity.data.redshift import train_validation_split
    from ddl_commodity.experiments.landcover_training import MultimodalTrainer

    me = spec[ctx.job_name][ctx.task_index]
    wait_for_servers(spec, me, cfg.cluster.startup_timeout_s)
    tf.config.experimental_connect_to_cluster(tf.train.ClusterSpec(spec), job_name=ctx.job_name,
                                              task_index=ctx.task_index)
    data = load_patches(SparkFiles.get(args.data_file), cfg.data.patch_size, len(cfg.data.hsi_bands))
    train, val = train_validation_split(len(data), cfg.data.validation_fraction, cfg.seed)
    trainer = MultimodalTrainer(cfg, cfg.scheme().placement())
    stream = f"workers/{runtime.name}"

    def on_epoch(r) -> None:
        runtime.record(stream, {"worker": runtime.name, **dataclasses.asdict(r), "time": time.time()})

    trainer.fit(data, train, val, on_epoch)
    weights = [w for w in trainer.model.get_weights()]
    runtime.collector.checkpoint({"version": cfg.training.epochs, "applied_updates": 0, "time": time.time(),
                                  "kind": "final-model"}, weights)
