"""TFoS node function of the model-parallel engine (TensorFlow-input mode, thesis 6.2.3).

Every node starts a TensorFlow gRPC server for its task (the PS holds the weights, workers compute the
blocks the split scheme gives them). The scheme's ``input`` node is the client: it reads the data file
from its own disk (shipped to every executor by Spark), connects to the cluster and runs the training loop,
whose ops land on the nodes the scheme names. The other nodes serve until the driver says the run is over.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import numpy as np

from ddl_commodity.config import RunConfig
from ddl_commodity.experiments.api import Experiment
from ddl_commodity.runtime.node import NodeArgs, NodeRuntime, node_session


def main_fun(args: NodeArgs, ctx: Any) -> None:
    """TFoS entry point: ``ctx.job_name`` is ``ps`` or ``worker``."""
    with node_session(args, ctx) as (runtime, experiment, cfg):
        spec = cluster_spec(ctx.cluster_spec, cfg)
        if f"{ctx.job_name}:{ctx.task_index}" == args.input_node:
            run_client(experiment, cfg, args, spec, ctx, runtime)
        else:
            serve(spec, ctx, runtime)


def cluster_spec(tfos_spec: dict, cfg: RunConfig) -> dict[str, list[str]]:
    """TFoS's cluster spec; on the embedded cluster every address becomes ``cluster.host`` (loopback), since
    TFoS reports a node's network address and its TF server listens on every interface anyway."""
    if cfg.cluster.master != "embedded":
        return {job: list(addrs) for job, addrs in tfos_spec.items()}
    return {job: [f"{cfg.cluster.host}:{a.rsplit(':', 1)[1]}" for a in addrs] for job, addrs in tfos_spec.items()}


def serve(spec: dict, ctx: Any, runtime: NodeRuntime) -> None:
    """Host this task's TF server until the driver reports the run finished (or TFoS stops a PS)."""
    import tensorflow as tf

    tf.distribute.Server(tf.train.ClusterSpec(spec), job_name=ctx.job_name, task_index=ctx.task_index, start=True)
    runtime.set_up = True
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


def run_client(experiment: Experiment, cfg: RunConfig, args: NodeArgs, spec: dict, ctx: Any,
               runtime: NodeRuntime) -> None:
    """Connect to the cluster, train with the layers placed as the driver resolved them, send the weights."""
    import tensorflow as tf
    from pyspark import SparkFiles

    from ddl_commodity.data.split import train_validation_split
    from ddl_commodity.engines.node_data import streamed_batches, validation_rows
    from ddl_commodity.engines.scoring import Objective
    from ddl_commodity.engines.training import Trainer
    from ddl_commodity.models.placement import Placement, device_of

    me = spec[ctx.job_name][ctx.task_index]
    wait_for_servers(spec, me, cfg.cluster.startup_timeout_s)
    tf.config.experimental_connect_to_cluster(tf.train.ClusterSpec(spec), job_name=ctx.job_name,
                                              task_index=ctx.task_index)
    placement = Placement({k: device_of(v) for k, v in args.layers.items()}, device_of(args.variables))
    trainer = Trainer(experiment.placed_model(cfg, placement), cfg.training, placement.variables, cfg.seed,
                      objective=Objective.of(experiment, cfg))
    stream = f"workers/{runtime.name}"
    if args.data_pieces:  # a data set read where it lies: batches streamed piece by piece
        x_val, y_val = validation_rows(args, experiment.label_dtype)
        example = (x_val, y_val)
    else:
        inputs, labels = experiment.load(cfg, SparkFiles.get(args.data_file))
        labels = np.asarray(labels, dtype=experiment.label_dtype)  # class indices, or float targets
        train, val = train_validation_split(len(labels), cfg.data.validation_fraction, cfg.seed)
        example = (inputs, labels)

    def on_epoch(r) -> None:
        if r.epoch == 1:
            runtime.record("placement", {"layers": trainer.op_devices(*example, list(args.layers))})
        runtime.record(stream, r.record(runtime.name))

    def on_samples(epoch: int, samples: int) -> None:
        runtime.progress = {"epoch": epoch, "samples": samples}  # sent with the heartbeats: the driver's bar
        runtime.set_up = True

    if args.data_pieces:
        bs, dtype = cfg.training.batch_size, experiment.label_dtype
        trainer.fit_streamed(lambda epoch: streamed_batches(args, epoch, bs, cfg.seed, dtype), (x_val, y_val),
                             sum(p.rows for p in args.data_pieces), on_epoch, on_samples=on_samples)
    else:
        trainer.fit(inputs, labels, train, val, on_epoch, on_samples=on_samples)
    runtime.collector.checkpoint({"version": cfg.training.epochs, "applied_updates": 0, "time": time.time(),
                                  "kind": "final-model-file"}, [final_model_file(experiment, cfg, trainer.model)])


def final_model_file(experiment: Experiment, cfg: RunConfig, trained) -> np.ndarray:
    """The trained weights in a placement-free model, as the bytes of its ``.keras`` file: made here, where
    TensorFlow is loaded anyway, so that the driver need not load it (its split check and traffic figures
    come from the model's layout, :meth:`~ddl_commodity.experiments.api.Experiment.block_graph`)."""
    from ddl_commodity.engines.training import keras_file_bytes

    model = experiment.build_model(cfg)
    model.set_weights(trained.get_weights())
    return np.frombuffer(keras_file_bytes(model), np.uint8)
