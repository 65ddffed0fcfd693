"""Driver of the land-cover experiment (thesis chapter 6): single machine, or model parallel on TFoS.

:func:`prepare` makes sure the patch file exists (cutting it from the real scene or from a cached
synthetic one) and is well formed, before any cluster starts; :func:`run` trains and writes ``runs/<id>/``:

    workers/<node>.jsonl   per-epoch loss / accuracy of the training client (Fig 6.4)
    nodes/<node>.csv       1 s samples of CPU, CPU wait, memory, network per node (Figs 6.5-6.28)
    nodes.png, curves.png  the plots
    model.keras            the trained model, without placement (loads on one machine)
    summary.json           per-node CPU share and bytes per step, measured and computed from shapes
"""

from __future__ import annotations

import contextlib
import secrets
import time
from pathlib import Path

import numpy as np

from ddl_commodity.config import config_to_dict
from ddl_commodity.config_landcover import LandcoverConfig
from ddl_commodity.errors import RunFailed, UserInputError
from ddl_commodity.runs import record_cluster_info, record_outcome, write_yaml_atomic


def patches_path(cfg: LandcoverConfig) -> Path:
    d = cfg.data
    if d.patches is not None:
        return Path(d.patches)
    bands = "-".join(str(b) for b in d.hsi_bands)
    source = f"scene-{Path(d.scene).name}" if d.scene else synthetic_name(cfg)
    return Path(d.cache_dir) / f"patches-{source}-n{d.patches_per_class}-p{d.patch_size}-b{bands}.h5"


def synthetic_name(cfg: LandcoverConfig) -> str:
    from ddl_commodity.data.houston import SYNTHETIC_VERSION

    return f"synthetic{cfg.data.synthetic_scale:g}-s{cfg.seed}-v{SYNTHETIC_VERSION}"


def prepare(cfg: LandcoverConfig, progress: bool | None = None) -> Path:
    """The validated patch file of this run; generated (scene, then patches) when missing."""
    from ddl_commodity.data.houston import write_synthetic_scene
    from ddl_commodity.data.patches import PatchSpec, extract_patches, load_patches

    d = cfg.data
    path = patches_path(cfg)
    if d.patches is None and not path.is_file():
        scene = Path(d.scene) if d.scene else Path(d.cache_dir) / f"houston-{synthetic_name(cfg)}"
        if d.scene is None and not scene.exists():
            write_synthetic_scene(scene, d.synthetic_scale, cfg.seed, progress=progress)
        extract_patches(scene, path, PatchSpec(d.patch_size, d.patches_per_class, tuple(d.hsi_bands), cfg.seed),
                        progress=progress)
    data = load_patches(path, d.patch_size, len(d.hsi_bands))
    if len(data) < 2 * cfg.training.batch_size and cfg.training.steps_per_epoch is None:
        raise UserInputError(f"{path}: {len(data)} patches are too few for batch size {cfg.training.batch_size}")
    return path


def resume_point(cfg: LandcoverConfig, run_dir: Path) -> dict:
    raise UserInputError(f"{run_dir}: land-cover runs cannot be resumed (they keep no PS checkpoints)")


def describe(cfg: LandcoverConfig) -> str:
    t = cfg.training
    if t.mode == "single":
        return f"single machine, batch {t.batch_size}"
    if t.mode == "data_parallel":
        return (f"data parallel, {t.workers} workers + PS, {t.data_distribution} data, s={cfg.ps.s}, "
                f"lambda={cfg.ps.staleness}, batch {t.batch_size}")
    s = cfg.scheme()
    return f"model parallel, scheme {s.name} ({s.figure}), {t.workers} workers + PS, batch {t.batch_size}"


def run(cfg: LandcoverConfig, run_dir: Path, progress: bool | None = None, resume: bool = False) -> dict:
    if resume:
        raise UserInputError("land-cover runs cannot be resumed (they keep no PS checkpoints); start a new run")
    run_dir = Path(run_dir)
    write_yaml_atomic(run_dir / "config.yaml", config_to_dict(cfg))
    started = time.time()

    def train_and_summarize() -> dict:
        path = prepare(cfg, progress)
        if cfg.training.mode == "single":
            final = train_single(cfg, path, run_dir)
        elif cfg.training.mode == "data_parallel":
            final = train_data_parallel(cfg, path, run_dir)
        else:
            final = train_model_parallel(cfg, path, run_dir)
        return summarize(cfg, run_dir, path, final, time.time() - started)

    return record_outcome(run_dir, train_and_summarize)


def _print_epoch(r: dict, epochs: int) -> None:
    val = f", val accuracy {r['val_accuracy']:.4f}" if r.get("val_accuracy") is not None else ""
    print(f"  {r['worker']} epoch {r['epoch']}/{epochs}: loss {r['loss']:.4f}, accuracy {r['accuracy']:.4f}{val} "
          f"({r['seconds']:.1f} s, {r['steps']} steps)", flush=True)


def train_single(cfg: LandcoverConfig, path: Path, run_dir: Path) -> dict:
    """Fig 6.4's non-distributed curve: the same loop in this process, no placement."""
    import dataclasses

    from ddl_commodity.data.patches import load_patches
    from ddl_commodity.data.redshift import train_validation_split
    from ddl_commodity.experiments.landcover_training import MultimodalTrainer
    from ddl_commodity.runs import write_jsonl_atomic

    data = load_patches(path, cfg.data.patch_size, len(cfg.data.hsi_bands))
    train, val = train_validation_split(len(data), cfg.data.validation_fraction, cfg.seed)
    trainer = MultimodalTrainer(cfg)
    records: list[dict] = []

    def on_epoch(r) -> None:
        rec = {"worker": "single", **dataclasses.asdict(r), "time": time.time()}
        records.append(rec)
        _print_epoch(rec, cfg.training.epochs)

    results = trainer.fit(data, train, val, on_epoch)
    write_jsonl_atomic(run_dir / "workers" / "single.jsonl", records)
    trainer.save(run_dir / "model.keras")
    last = results[-1]
    return {"val_loss": last.val_loss, "val_accuracy": last.val_accuracy}


def train_model_parallel(cfg: LandcoverConfig, path: Path, run_dir: Path) -> dict:
    """TFoS TensorFlow-input run: 1 PS + ``workers`` workers; the scheme places the blocks (Fig 6.3(b) etc.)."""
    from pyspark import SparkContext
    from tensorflowonspark import TFCluster

    from ddl_commodity.cluster.collector import RunCollector
    from ddl_commodity.cluster.failfast import Watchdog, require_executors, spark_error
    from ddl_commodity.cluster.spark import tfos_spark_conf
    from ddl_commodity.experiments.landcover_nodes import main_fun
    from ddl_commodity.experiments.nodes import NodeArgs

    scheme = cfg.scheme()
    client = scheme.input.replace(":", "-")
    sc = SparkContext.getOrCreate(tfos_spark_conf(cfg))
    secret = secrets.token_urlsafe(24)

    def on_record(stream: str, r: dict) -> None:
        if stream.startswith("workers/"):
            _print_epoch(r, cfg.training.epochs)

    collector = RunCollector(run_dir, secret, host=sc.getConf().get("spark.driver.host", cfg.cluster.host),
                             on_record=on_record)
    collector.start()
    watchdog = Watchdog(sc, collector, TFCluster.tf_status, cfg.cluster.heartbeat_timeout_s)
    cluster = None
    args = NodeArgs(config_to_dict(cfg), secret, collector.address, data_file=path.name,
                    driver_lost_s=cfg.cluster.failure_timeout_s / 2)
    try:
        require_executors(sc, cfg)
        sc.addFile(str(path.resolve()))
        watchdog.start()
        cluster = TFCluster.run(sc, main_fun, args, cfg.tf_nodes, num_ps=1,
                                input_mode=TFCluster.InputMode.TENSORFLOW,
                                reservation_timeout=int(cfg.cluster.startup_timeout_s),
                                log_dir=str(run_dir / "tflogs"), release_port=True)
        record_cluster_info(run_dir, cluster.cluster_info)
        while not collector.is_done(client):
            if collector.failure.is_set() or "error" in TFCluster.tf_status or watchdog.failure_message():
                raise RunFailed("a node failed")
            time.sleep(0.5)
        collector.finish()  # the serving nodes return; TFoS then sees every worker task complete
        cluster.shutdown(timeout=int(cfg.cluster.failure_timeout_s) + 120)
        cluster = None
    except UserInputError:
        raise
    except (Exception, SystemExit) as err:
        failure = watchdog.failure_message() or spark_error(str(err))
        raise RunFailed(f"model-parallel run failed: {failure}") from None
    finally:
        watchdog.stop()
        if cluster is not None:
            collector.abort()
            sc.cancelAllJobs()
            time.sleep(3 * args.heartbeat_s)
        collector.stop()
        sc.stop()
    return _save_final_model(cfg, run_dir)


def train_data_parallel(cfg: LandcoverConfig, path: Path, run_dir: Path) -> dict:
    """Thesis 6.3.5's other half: the same network replicated on every worker, fed by Spark (one flat array per
    patch, :func:`~ddl_commodity.models.multimodal_cnn.flatten_patches`) and synchronised through the
    staleness-weighted PS of chapter 5 (the redshift experiment's machinery, unchanged)."""
    from ddl_commodity.data.patches import load_patches
    from ddl_commodity.data.redshift import train_validation_split
    from ddl_commodity.experiments import redshift
    from ddl_commodity.models.multimodal_cnn import flatten_patches

    data = load_patches(path, cfg.data.patch_size, len(cfg.data.hsi_bands))
    x, y = flatten_patches(data.rgb, data.hsi), data.label
    train, val = train_validation_split(len(y), cfg.data.validation_fraction, cfg.seed)
    prepared = redshift.PreparedData(path, train, val, len(y), arrays=lambda: (x, y))
    return redshift.train_distributed(cfg, prepared, run_dir)


def _save_final_model(cfg: LandcoverConfig, run_dir: Path) -> dict:
    from ddl_commodity.experiments.landcover_training import model_spec
    from ddl_commodity.models.multimodal_cnn import MultimodalCNN
    from ddl_commodity.ps.checkpoint import CHECKPOINT_FILE, load_checkpoint
    from ddl_commodity.runs import read_jsonl

    _, weights = load_checkpoint(run_dir / CHECKPOINT_FILE)
    model = MultimodalCNN(model_spec(cfg)).build_on(None)
    model.set_weights(weights)
    model.save(run_dir / "model.keras")
    (run_dir / CHECKPOINT_FILE).unlink()
    with contextlib.suppress(OSError):
        (run_dir / CHECKPOINT_FILE).parent.rmdir()
    records = [r for p in sorted((run_dir / "workers").glob("*.jsonl")) for r in read_jsonl(p)]
    last = max(records, key=lambda r: r["epoch"]) if records else {}
    return {"val_loss": last.get("val_loss"), "val_accuracy": last.get("val_accuracy")}


def node_rows(run_dir: Path) -> dict[str, list[dict]]:
    """Sampler rows per node from ``nodes/<node>.jsonl`` (batches as the nodes sent them)."""
    from ddl_commodity.runs import read_jsonl

    out: dict[str, list[dict]] = {}
    for p in sorted((Path(run_dir) / "nodes").glob("*.jsonl")):
        rows = [row for rec in read_jsonl(p) for row in rec.get("rows", [])]
        if rows:
            out[p.stem] = sorted(rows, key=lambda r: r["time"])
    return out


def measured_per_step(rows: dict[str, list[dict]], windows: list[tuple[float, float, int]]) -> dict[str, dict]:
    """Per node: CPU seconds and network bytes per training step, summed over the training windows
    (start, end, steps) of the epochs, from interpolated cumulative counters (evaluation excluded)."""
    from ddl_commodity.monitor.sampler import counters_at

    steps = sum(w[2] for w in windows)
    out = {}
    for node, rs in rows.items():
        tot = {"cpu_seconds": 0.0, "net_rx_bytes": 0.0, "net_tx_bytes": 0.0}
        for start, end, _ in windows:
            for key in tot:
                tot[key] += counters_at(rs, end, key) - counters_at(rs, start, key)
        wall = sum(e - s for s, e, _ in windows)
        out[node] = {
            "cpu_seconds_per_step": tot["cpu_seconds"] / steps if steps else None,
            "cpu_share_percent": 100.0 * tot["cpu_seconds"] / wall if wall else None,
            "rx_bytes_per_step": tot["net_rx_bytes"] / steps if steps else None,
            "tx_bytes_per_step": tot["net_tx_bytes"] / steps if steps else None,
            "rx_mb_per_s": tot["net_rx_bytes"] / wall / 1e6 if wall else None,
            "tx_mb_per_s": tot["net_tx_bytes"] / wall / 1e6 if wall else None,
            "seconds_per_step": wall / steps if steps else None,
            "method": rs[0].get("net_method"),
            "mean_rss_mb": float(np.mean([r["rss_bytes"] for r in rs])) / 2**20,
        }
    return out


def compare_traffic(measured: dict[str, dict], computed: dict) -> dict[str, dict]:
    """Per node: measured vs shape-computed bytes per step (ratio = measured / computed)."""
    out = {}
    for node, m in sorted(measured.items()):
        c = computed["per_node"].get(node.replace("-", ":"), {"rx_bytes": 0, "tx_bytes": 0})
        row = {}
        for d in ("rx", "tx"):
            got, want = m[f"{d}_bytes_per_step"], c[f"{d}_bytes"]
            row[f"{d}_measured"] = round(got) if got is not None else None
            row[f"{d}_computed"] = want
            row[f"{d}_ratio"] = round(got / want, 3) if want and got is not None else None
        out[node] = row
    return out


def node_averages(rows: dict[str, list[dict]]) -> dict[str, dict]:
    """Per node over the whole run: mean and peak CPU %, mean CPU wait, mean and peak RSS, mean MB/s in and out
    (the quantities of Figs 6.21-6.28)."""
    out = {}
    for node, rs in rows.items():
        span = rs[-1]["time"] - rs[0]["time"] if len(rs) > 1 else 0.0
        cpu = [r["cpu_percent"] for r in rs[1:]] or [0.0]
        out[node] = {
            "cpu_percent_mean": float(np.mean(cpu)), "cpu_percent_max": float(np.max(cpu)),
            "iowait_percent_mean": float(np.mean([r["iowait_percent"] for r in rs])),
            "rss_mb_mean": float(np.mean([r["rss_bytes"] for r in rs])) / 2**20,
            "rss_mb_max": float(np.max([r["rss_bytes"] for r in rs])) / 2**20,
            "rx_mb_per_s": (rs[-1]["net_rx_bytes"] - rs[0]["net_rx_bytes"]) / span / 1e6 if span else None,
            "tx_mb_per_s": (rs[-1]["net_tx_bytes"] - rs[0]["net_tx_bytes"]) / span / 1e6 if span else None,
            "seconds": span,
        }
    return out


def summarize(cfg: LandcoverConfig, run_dir: Path, path: Path, final: dict, seconds: float) -> dict:
    from ddl_commodity.experiments.landcover_training import model_spec
    from ddl_commodity.models.splits import boundary_traffic
    from ddl_commodity.monitor.sampler import write_node_csvs
    from ddl_commodity.report.curves import load_worker_curves, plot_curves
    from ddl_commodity.report.nodes import plot_node_metrics

    curves = load_worker_curves(run_dir)
    if curves:
        plot_curves(curves, run_dir / "curves.png", title=f"{cfg.name}: {describe(cfg)}")
    summary: dict = {
        "name": cfg.name, "experiment": cfg.experiment, "mode": cfg.training.mode, "description": describe(cfg),
        "wall_seconds": round(seconds, 2), "data": str(path),
        "workers": {n: {"epochs": len(r), "final_loss": r[-1]["loss"], "final_accuracy": r[-1]["accuracy"],
                        "final_val_accuracy": r[-1].get("val_accuracy")} for n, r in curves.items()},
        "final": final, "curves": "curves.png" if curves else None,
    }
    if cfg.training.mode == "single":
        return summary
    rows = node_rows(run_dir)
    write_node_csvs([r for rs in rows.values() for r in rs], run_dir / "nodes")
    for p in (run_dir / "nodes").glob("*.jsonl"):  # the CSVs hold the same rows, flat
        p.unlink()
    if rows:
        plot_node_metrics(rows, run_dir / "nodes.png", title=f"{cfg.name}: {describe(cfg)}")
    summary["node_averages"] = node_averages(rows)
    summary["net_method"] = next((rs[0].get("net_method") for rs in rows.values()), None)
    summary["plots"] = {"nodes": "nodes.png" if rows else None}
    if cfg.training.mode == "model_parallel":
        records = [r for rs in curves.values() for r in rs]
        # The first epoch carries graph set-up and function registration: measure from the second on.
        steady = [r for r in records if r["epoch"] > 1] or records
        windows = [(r["train_start"], r["train_end"], r["steps"]) for r in steady]
        scheme = cfg.scheme()
        computed = boundary_traffic(scheme, model_spec(cfg), cfg.training.batch_size)
        measured = measured_per_step(rows, windows)
        summary.update({
            "scheme": {"name": scheme.name, "figure": scheme.figure, "layers": scheme.layers},
            "nodes": measured,
            "traffic_check": compare_traffic(measured, computed),
            "boundary_bytes_per_step": computed,
            "iowait_note": "CPU wait is machine-wide on a one-machine cluster (same value for every node)",
        })
    return summary
