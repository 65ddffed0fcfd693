"""The ``ddl`` command: generate data, manage the local cluster, run experiments, report on runs.

Exit codes: 0 success, 1 a run failed, 2 bad input (config, data, arguments), 130 interrupted.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import time
from pathlib import Path
from typing import NoReturn

from ddl_commodity.errors import DdlError, RunFailed, UserInputError, joined_lines, short_error
from ddl_commodity.reproduce.runsets import SCALES

EPILOG = """examples:
  ddl data redshift --samples 5000 --seed 1 --out data/redshift-5k.h5
  ddl run configs/quickstart.yaml              # starts and stops an embedded Spark cluster
  ddl run configs/thesis/redshift-5k-disjoint-3w.yaml --master spark://head:7077
  ddl plan configs/landcover-quick.yaml --profile thesis   # predict splits, write a better one
  ddl report runs/<run-id>
  ddl compare runs/<run-a> runs/<run-b>        # overlaid curves, differing config keys, final metrics
  tensorboard --logdir runs/                   # every run's per-epoch scalars and PS updates
  ddl cluster up --nodes 5 && ddl cluster status && ddl cluster down
"""


class _Parser(argparse.ArgumentParser):
    """Bad arguments as every other bad input: one line on stderr, exit 2 (not the usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ddl",
        description="Distributed deep learning on commodity CPU clusters (TensorFlowOnSpark on Spark).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                metavar="{data,cluster,run,predict,pack,plan,report,compare,reproduce}")
    for add in (_add_data_parser, _add_cluster_parser, _add_run_parser, _add_predict_parser, _add_pack_parser,
                _add_plan_parser, _add_report_parsers):
        add(sub)
    return parser


def _add_data_parser(sub) -> None:
    data = sub.add_parser("data", help="generate or inspect data sets", description="Generate data sets.")
    data_sub = data.add_subparsers(dest="dataset", required=True)
    red = data_sub.add_parser(
        "redshift",
        help="simulate galaxy spectra for redshift estimation (thesis 5.1)",
        description="Simulate N spectra (1800 bands over 1.1-2.0 um, z in [1, 1.8) as 800 classes) into an "
        "HDF5 file with datasets spectra, z, label. Deterministic for a seed; streamed to disk in chunks.",
    )
    red.add_argument("--samples", type=int, required=True, help="number of spectra to simulate")
    red.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    red.add_argument("--out", type=Path, required=True,
                     help="output: an HDF5 file, or with --format parquet a new directory (written atomically)")
    red.add_argument("--format", choices=["h5", "parquet"], default="h5",
                     help="h5: one HDF5 file (datasets spectra, z, label); parquet: a directory of Parquet files "
                     "with the global row index as column `row` (default h5)")
    red.add_argument("--rows-per-file", type=int, default=4096, metavar="N",
                     help="with --format parquet: rows per Parquet file (default 4096)")
    red.add_argument("--z-distribution", choices=["uniform", "beta"], default="uniform")
    red.add_argument("--magnitude-mean", type=float, default=21.0)
    red.add_argument("--magnitude-std", type=float, default=1.0)
    red.add_argument("--no-noise", action="store_true", help="noiseless spectra (for checks)")
    hou = data_sub.add_parser(
        "houston",
        help="Houston (GRSS DFC 2018) scenes and 25x25 patches (thesis 6.1, 6.2.1)",
        description="Write a synthetic scene with the contest's layout (--synthetic: 50-band ENVI HSI at 1 m, "
        "4 RGB GeoTIFF tiles at 5 cm, ground truth at 0.5 m with classes 0..20) and/or cut multimodal patches "
        "from a scene (--patches): N random patches per class 1..20, RGB and the chosen HSI bands over the same "
        "ground-truth pixels, into an HDF5 file.",
        epilog="examples:\n  ddl data houston --synthetic --scale 0.1 --out data/houston-synthetic\n"
        "  ddl data houston --scene data/houston-synthetic --patches data/patches-8k.h5 --per-class 400\n"
        "  ddl data houston --scene /data/GRSS_DFC_2018 --patches data/patches-real.h5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    hou.add_argument("--synthetic", action="store_true", help="generate a synthetic scene into --out")
    hou.add_argument("--scale", type=float, default=0.1,
                     help="synthetic extent as a fraction of the contest's 601 x 2384 m (default 0.1)")
    hou.add_argument("--seed", type=int, default=0, help="random seed (scene and patch sampling)")
    hou.add_argument("--out", type=Path, help="directory for the synthetic scene (must not exist)")
    hou.add_argument("--scene", type=Path, help="scene directory to cut patches from (real or synthetic)")
    hou.add_argument("--patches", type=Path,
                     help="output: an HDF5 patch file, or with --format parquet a new directory (written atomically)")
    hou.add_argument("--format", choices=["h5", "parquet"], default="h5",
                     help="h5: one HDF5 file; parquet: a directory of Parquet files (columns row, rgb, hsi, label), "
                     "the patches in a seeded random order (default h5)")
    hou.add_argument("--rows-per-file", type=int, default=1024, metavar="N",
                     help="with --format parquet: patches per Parquet file (default 1024)")
    hou.add_argument("--per-class", type=int, default=400, help="patches per class (thesis: 400 -> 8000)")
    hou.add_argument("--size", type=int, default=25, help="patch size in ground-truth pixels (odd; default 25)")
    hou.add_argument("--bands", default=None,
                     help="comma-separated 0-based HSI bands (default: 11 evenly spaced of 50, as the thesis)")


def _add_cluster_parser(sub) -> None:
    cl = sub.add_parser("cluster", help="start, inspect or stop the local Spark standalone cluster",
                        description="Manage a Spark standalone cluster on this machine (1 master + workers).")
    cl_sub = cl.add_subparsers(dest="action", required=True)
    up = cl_sub.add_parser("up", help="start a master and N-1 workers",
                           description="Start a master and N-1 one-core workers; the driver runs on the master.")
    up.add_argument("--nodes", type=int, help="nodes including the master (default: the profile's, else 5: 1 + 4)")
    up.add_argument("--cores", type=int, default=1, help="cores per worker (default 1)")
    up.add_argument("--memory", default="2g", help="memory per worker (default 2g, as the thesis's PCs)")
    up.add_argument("--host", default="127.0.0.1", help="address of loopback process nodes (without --netns)")
    up.add_argument("--netns", action="store_true",
                    help="one Linux network namespace per node on a bridge (10.77.0.10+i), so each node's "
                    "traffic is an interface counter and its link can be shaped; needs root and iproute2, "
                    "falls back to loopback process nodes without them")
    up.add_argument("--bandwidth", metavar="RATE",
                    help="shape every node's link, both directions, with tc tbf (e.g. 1gbit, 100mbit); --netns")
    up.add_argument("--latency", metavar="DELAY",
                    help="add this one-way delay per link direction with tc netem (e.g. 0.2ms); --netns")
    _add_node_resource_options(up)
    for name, helptext in (("status", "show each node: address, Spark state, live CPU / memory / traffic"),
                           ("down", "stop every process of the local cluster, remove its namespaces and links "
                            "(idempotent; also cleans up after a crash)")):
        p = cl_sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument("--state-dir", type=Path, default=Path(".cluster"), help=argparse.SUPPRESS)
    up.add_argument("--state-dir", type=Path, default=Path(".cluster"), help=argparse.SUPPRESS)
    sbm = cl_sub.add_parser(
        "submit", help="run an experiment on the running cluster, driver on the master node",
        description="`ddl run CONFIG --master <cluster>` with the driver on node0 (inside its namespace with "
        "--netns); on a namespace cluster, each node's interface byte deltas over the run are written to "
        "<run dir>/nodes/traffic.json, with the TFoS tasks (ps-0, worker-i) each node ran.")
    sbm.add_argument("config", type=Path, help="experiment YAML (see configs/)")
    sbm.add_argument("--run-id", help="name of the run directory (default: time-name-random)")
    sbm.add_argument("--state-dir", type=Path, default=Path(".cluster"), help=argparse.SUPPRESS)
    _add_fault_parser(cl_sub)


def _add_node_resource_options(up) -> None:
    res = up.add_argument_group(
        "node resources", "each node in its own control group (cgroup v1 or v2), like a separate PC; "
        "without these the nodes share the machine's cores, unisolated")
    res.add_argument("--profile", metavar="NAME",
                     help="a cluster profile from configs/clusters/ (e.g. thesis: 5 nodes, each 0.4 of a core "
                     "and 2 GB on a 2-core machine, links 400mbit with --netns); the options below override it")
    res.add_argument("--node-cpus", type=float, metavar="SHARE",
                     help="CPU share of every node, in cores (0.4 = 40 ms of CPU per 100 ms)")
    res.add_argument("--node-memory", metavar="SIZE", help="memory cap of every node (e.g. 2g); past it the "
                     "kernel's OOM killer ends a process of that node")
    res.add_argument("--master-cpus", type=float, metavar="SHARE", help="CPU share of the master (node0)")
    res.add_argument("--master-memory", metavar="SIZE", help="memory cap of the master (node0)")


def _add_fault_parser(cl_sub) -> None:
    fault = cl_sub.add_parser(
        "fault", help="hang, cut off or slow down one node of the running cluster",
        description="Node faults as a user would cause them: freeze|thaw (its processes stop being scheduled, "
        "alive but silent), partition|heal (its link down/up; --netns clusters), slow FACTOR (its CPU share "
        "divided by FACTOR: a straggler; slow 1 restores it).")
    fault.add_argument("node", help="node name as `ddl cluster status` shows it (node0 is the master)")
    fault.add_argument("action_name", metavar="ACTION", choices=["freeze", "thaw", "partition", "heal", "slow"],
                       help="freeze, thaw, partition, heal or slow")
    fault.add_argument("factor", nargs="?", type=float, help="for slow: divide the node's CPU share by this")
    fault.add_argument("--state-dir", type=Path, default=Path(".cluster"),
                       help="the cluster's state directory (an embedded run's: <run dir>/cluster)")


def _add_run_parser(sub) -> None:
    run = sub.add_parser(
        "run", help="run an experiment from a YAML config",
        description="Validate CONFIG, prepare its data, and run it with the driver in this process (as "
        "ddl_commodity.run does from Python), on an embedded local cluster started and stopped around the run "
        "when cluster.master is 'embedded'. Results go to runs/<run-id>/.",
        epilog="examples:\n  ddl run configs/quickstart.yaml\n"
        "  ddl run configs/thesis/redshift-5k-disjoint-3w.yaml --master spark://head:7077\n"
        "  ddl run --resume runs/<run-id>",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("config", type=Path, nargs="?", help="experiment YAML (see configs/)")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR",
                     help="continue a failed distributed run from its last PS checkpoint (ps.checkpoint_every)")
    run.add_argument("--master", help="use this Spark master instead of the config's cluster.master")
    run.add_argument("--run-id", help="name of the run directory (default: time-name-random)")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bars (default: only on a terminal)")
    run.add_argument("--spark-submit", action="store_true",
                     help="start the driver under spark-submit (jobs/experiment.py) in a child process instead")
    run.add_argument("--env", type=Path, metavar="ARCHIVE",
                     help="ship this environment (from `ddl pack`) to the executors and run their Python from it: "
                     "worker hosts need no toolkit, only Java 17, Spark and Python 3.11")


def _add_predict_parser(sub) -> None:
    pred = sub.add_parser(
        "predict", help="score a Parquet data set with a run's final model, on the cluster",
        description="Score DATA with the final model of RUN on the executors (one model load per executor, whole "
        "row groups, several per task) and write Parquet files into OUT: column `row` (the global index) and the "
        "experiment's predictions (a classifier's class and probability, a regression's value; redshift adds "
        "z). Runs on the run's cluster (an embedded one is started and stopped) or --master.",
        epilog="example: ddl predict runs/<run-id> --data data/redshift-100k --out predictions/redshift-100k",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    pred.add_argument("run_dir", type=Path, metavar="RUN", help="a finished run's directory (its model.keras)")
    pred.add_argument("--data", required=True, metavar="SOURCE",
                      help="Parquet data set: a directory, a glob, or file://, hdfs://, s3a://")
    pred.add_argument("--out", type=Path, required=True, help="a new directory for the predictions")
    pred.add_argument("--master", help="Spark master to score on (default: the run's cluster.master)")
    pred.add_argument("--env", type=Path, metavar="ARCHIVE",
                      help="ship this environment (from `ddl pack`) to the executors, as `ddl run --env`")


def _add_pack_parser(sub) -> None:
    pack = sub.add_parser(
        "pack", help="pack this Python environment into an archive Spark ships to the executors",
        description="Write the toolkit, TensorFlow, TFoS and everything else the toolkit needs, as installed "
        "here (the toolkit built as a wheel when it is installed from a checkout), plus the packages named with "
        "--with, into one venv-pack archive. `ddl run --env ARCHIVE` ships it (spark.archives ARCHIVE#environment) "
        "and the executors run ./environment/bin/python, so a worker host needs Java 17, Spark and a Python 3.11 "
        "at the path printed at the end (a venv links to its interpreter), and no toolkit.",
        epilog="examples:\n  ddl pack --out env.tar.gz\n  ddl pack --out env.tar.gz --with ../my-experiments\n"
        "  ddl run my.yaml --master spark://head:7077 --env env.tar.gz",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    pack.add_argument("--out", type=Path, default=Path("env.tar.gz"),
                      help="the archive to write: .tar.gz, .tgz or .zip (default env.tar.gz; must not exist)")
    pack.add_argument("--with", dest="with_packages", type=Path, action="append", default=[], metavar="PATH",
                      help="also ship this package: a source directory (built as a wheel) or a wheel file; "
                      "repeatable")


def _add_plan_parser(sub) -> None:
    plan = sub.add_parser(
        "plan", help="predict a split's step time, CPU, memory and traffic, and find a better split",
        description="Before running anything: for a model-parallel CONFIG, predict every shipped split scheme "
        "(configs/splits/) on the cluster -- step time, each node's CPU and memory, MB per step on each link -- "
        "then search the placements of the model's blocks for the shortest predicted step within the nodes' "
        "memory, and write the best as a split YAML. For a data-parallel CONFIG, predict the seconds per "
        "epoch and to the target with 1 to 64 workers and the break-even beyond which a worker no longer pays "
        "(also as a PNG). Layer timings are profiled once per model and batch size on one core (tens of "
        "seconds), the transport's CPU costs once per profile (about 20 s), and both cached.",
        epilog="example: ddl plan configs/landcover-quick.yaml --profile thesis --bandwidth 40mbit",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    plan.add_argument("config", type=Path, help="experiment YAML")
    plan.add_argument("--profile", metavar="NAME",
                      help="cluster profile: a name in configs/clusters/ (e.g. thesis) or the path of your own "
                      "profile YAML; default: the config's")
    plan.add_argument("--bandwidth", metavar="RATE", help="link rate per node on this machine, e.g. 400mbit "
                      "(default: the profile's d x its link; without a profile, unshaped loopback)")
    plan.add_argument("--workers", type=int, help="workers to plan for (default: the config's)")
    plan.add_argument("--latency-ms", type=float, default=0.5,
                      help="cost of each tensor sent between nodes besides its bytes (default 0.5 ms)")
    plan.add_argument("--out", type=Path,
                      help="model parallel: the best split's path (default <name>-split.yaml, after the config's "
                      "name), its predictions beside it as .json; data parallel: the predictions' path (default "
                      "<name>-plan.json), the plot beside it as .png")
    plan.add_argument("--refresh", action="store_true",
                      help="profile the layers and the transport again instead of the cache")


def _add_report_parsers(sub) -> None:
    rep = sub.add_parser("report", help="tables and plots of a finished run, or of a reproduction",
                         description="For a run directory: rebuild curves.png and print per-worker results, "
                         "epochs to plateau (thesis Tables 5.1/5.2) and, for land cover, per-node CPU and traffic; "
                         "writes report.md into the run. For a `ddl reproduce` directory: report/index.html and "
                         "report/report.md with PNG figures and the thesis-vs-measured table.")
    rep.add_argument("run_dir", type=Path, help="a directory under runs/, or one written by `ddl reproduce`")
    rep.add_argument("--publish", type=Path, metavar="DIR",
                     help="for a reproduction: also copy what a reader needs into DIR (the report, its figures, "
                     "reproduce.json, every run's config and summary; no raw run directories), e.g. "
                     "docs/reproduction")

    cmp = sub.add_parser("compare", help="overlay the curves of runs and tabulate how they differ",
                         description="Compare runs, e.g. a YAML experiment rerun with one change: compare.png "
                         "overlays training accuracy, loss and the held-out score per epoch (one colour per run); "
                         "compare.md (also printed) lists the config keys whose values differ and each run's final "
                         "metrics. For TensorBoard instead: tensorboard --logdir runs/")
    cmp.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN", help="two or more run directories")
    cmp.add_argument("--out", type=Path, default=None, help="where to write (default runs/compare-<time>)")

    repro = sub.add_parser(
        "reproduce", help="run the thesis's experiment set and write the comparison report",
        description="Run the experiments of configs/thesis/ one after another on the embedded cluster, then "
        "write <out>/report/index.html and report.md: each thesis claim beside ours with a verdict and the "
        "measurement behind it, Tables 5.1/5.2, per-node tables and figures. Scales: "
        + "; ".join(f"{s.name}: {s.about}" for s in SCALES.values()) + ". Re-running with the same --out "
        "continues: runs that succeeded are kept, cut and failed ones run again.")
    repro.add_argument("--scale", choices=list(SCALES), default="small")
    repro.add_argument("--only", help="shell pattern of run names to run, e.g. 'landcover-*'")
    repro.add_argument("--out", type=Path, default=None,
                       help="reproduction directory (default runs/reproduce-<scale>-<time>)")
    repro.add_argument("--profile", metavar="NAME",
                       help="run every experiment's embedded cluster on this cluster profile (e.g. thesis: "
                       "nodes like the thesis's PCs, times also in cluster seconds; see configs/clusters/); "
                       "--scale thesis uses thesis unless told otherwise")
    repro.add_argument("--master", metavar="URL",
                       help="submit every run to this running standalone cluster (spark://host:7077: your PCs, "
                       "or `ddl cluster up`) instead of starting an embedded one per run; not with --profile")
    repro.add_argument("--budget", type=float, metavar="MINUTES",
                       help="cut the runs predicted to end later than this after the start, saying so in the "
                       "report (default: none; a later run with the same --out goes on where this one stopped)")
    repro.add_argument("--rerun", metavar="PATTERN",
                       help="run again the runs matching this shell pattern although they succeeded (after a "
                       "change to how they are measured, e.g. 'landcover-*'); their earlier results are dropped "
                       "first, so an interrupted set resumes without the option")
    repro.add_argument("--publish", type=Path, metavar="DIR",
                       help="after every run, write the report so far and publish it into DIR as `ddl report "
                       "--publish` does (e.g. docs/reproduction). A copy of a published directory given as --out "
                       "continues the set: its runs that succeeded are kept")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"data": cmd_data, "cluster": cmd_cluster, "run": cmd_run, "predict": cmd_predict, "plan": cmd_plan,
                "report": cmd_report, "compare": cmd_compare, "reproduce": cmd_reproduce, "pack": cmd_pack}
    # `kill`, a CI timeout or a scheduler sends SIGTERM: unwind like Ctrl-C, so that an embedded cluster, a
    # spark-submit child and the run's status are cleaned up instead of orphaned.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return handlers[args.command](args)
    except RunFailed as err:
        print(f"error: {_failure_text(err)}", file=sys.stderr)
        return err.exit_code
    except DdlError as err:
        print(f"error: {joined_lines(str(err))}", file=sys.stderr)
        return getattr(err, "exit_code", 1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _failure_text(err: RunFailed) -> str:
    """The failure in one line (a node's traceback reduced to its exception), a line per node the kernel's
    OOM killer hit, and where the whole story is."""
    lines = [short_error(str(err))] + [f.detail for f in err.failures if f.cause == "out_of_memory"]
    if err.run_dir is not None:
        logs = [str(p) for p in (err.run_dir / n for n in ("job.log", "driver.log", "cluster")) if p.exists()]
        lines.append(f"(full error: {err.run_dir / 'status.json'}; logs: {', '.join(logs)})")
    return "\n".join(lines)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def cmd_data(args: argparse.Namespace) -> int:
    if args.dataset == "houston":
        return cmd_data_houston(args)
    from ddl_commodity.data.redshift import SimulatorConfig, write_redshift_h5, write_redshift_parquet
    from ddl_commodity.errors import UserInputError

    if args.samples < 1:
        raise UserInputError("--samples must be at least 1")
    try:
        sim = SimulatorConfig(z_distribution=args.z_distribution, magnitude_mean=args.magnitude_mean,
                              magnitude_std=args.magnitude_std, noise=not args.no_noise)
    except ValueError as err:  # named as the flags the user gave
        flags = ("z_distribution", "magnitude_mean", "magnitude_std")
        raise UserInputError(re.sub(rf"\b({'|'.join(flags)})\b", lambda m: "--" + m[1].replace("_", "-"),
                                    str(err))) from None
    t0 = time.monotonic()
    if args.format == "parquet":
        if args.rows_per_file < 1:
            raise UserInputError("--rows-per-file must be at least 1")
        path = write_redshift_parquet(args.out, args.samples, args.seed, args.rows_per_file, sim)
    else:
        path = write_redshift_h5(args.out, args.samples, args.seed, sim)
    print(f"wrote {args.samples} spectra to {path} in {time.monotonic() - t0:.1f} s")
    return 0


def cmd_data_houston(args: argparse.Namespace) -> int:
    from ddl_commodity.data.houston import write_synthetic_scene
    from ddl_commodity.data.patches import DEFAULT_HSI_BANDS, PatchSpec, extract_patches
    from ddl_commodity.errors import UserInputError

    if not args.synthetic and not args.patches:
        raise UserInputError("nothing to do: give --synthetic --out DIR and/or --patches FILE")
    if args.synthetic and not args.out:
        raise UserInputError("--synthetic needs --out DIR")
    scene = args.scene
    if args.synthetic:
        t0 = time.monotonic()
        write_synthetic_scene(args.out, args.scale, args.seed)
        print(f"wrote a synthetic scene (scale {args.scale:g}) to {args.out} in {time.monotonic() - t0:.1f} s")
        scene = scene or args.out
    if args.patches:
        if scene is None:
            raise UserInputError("--patches needs --scene DIR (or --synthetic --out DIR)")
        try:
            bands = tuple(int(b) for b in args.bands.split(",")) if args.bands else DEFAULT_HSI_BANDS
        except ValueError:
            raise UserInputError(f"--bands must be comma-separated integers, got {args.bands!r}") from None
        t0 = time.monotonic()
        spec = PatchSpec(args.size, args.per_class, bands, args.seed)
        if args.format == "parquet":
            _patches_as_parquet(scene, args.patches, spec, args.rows_per_file)
        else:
            extract_patches(scene, args.patches, spec)
        print(f"wrote {20 * args.per_class} patches to {args.patches} in {time.monotonic() - t0:.1f} s")
    return 0


def _patches_as_parquet(scene: Path, out: Path, spec, rows_per_file: int) -> None:
    """Cut the patches into a temporary HDF5 file beside ``out``, then write them as Parquet into ``out``."""
    import tempfile

    from ddl_commodity.data.patches import extract_patches, patches_to_parquet

    if rows_per_file < 1:
        raise UserInputError("--rows-per-file must be at least 1")
    if out.exists():
        raise UserInputError(f"{out}: exists; choose a new directory for the data set")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        extract_patches(scene, Path(tmp) / "patches.h5", spec)
        patches_to_parquet(Path(tmp) / "patches.h5", out, rows_per_file, spec.seed)


def cmd_cluster(args: argparse.Namespace) -> int:
    from ddl_commodity.cluster import local

    if args.action == "up":
        return _cluster_up(args)
    if args.action == "down":
        t0 = time.monotonic()
        n = local.stop_recorded_cluster(args.state_dir)
        print(f"cluster down: {n} processes stopped in {time.monotonic() - t0:.1f} s")
        return 0
    state = local.read_state(args.state_dir)
    if state is None and args.action != "status":
        raise UserInputError(f"no local cluster recorded in {args.state_dir}; start one with `ddl cluster up`")
    if state is None:
        print(f"no local cluster recorded in {args.state_dir}")
        return 1
    if args.action == "submit":
        return _cluster_submit(args, state)
    if args.action == "fault":
        from ddl_commodity.cluster.faults import apply_fault

        print(apply_fault(state, args.state_dir, args.node, args.action_name, args.factor))
        return 0
    return _cluster_status(state)


def _cluster_status(state) -> int:
    from ddl_commodity.cluster import local

    try:
        # A master on a node with a CPU share and busy work of its own answers slowly, but it answers.
        status = local.master_status(state, timeout_s=15.0)
    except OSError as err:
        print(f"recorded cluster {state.master_url} does not answer: {err}")
        return 1
    net = f"network namespaces on a bridge, links {state.bandwidth or 'unshaped'}" + (
        f", +{state.latency} delay" if state.latency else "") if state.netns else "loopback process nodes"
    print(f"master {state.master_url}  UI {state.master_ui}  status {status.get('status')}  ({net})")
    if state.profile:
        print(f"profile {state.profile}: time dilation d = {state.dilation:g}")
    mb = 2**20
    print(f"  {'node':6s} {'role':7s} {'address':12s} {'spark':8s} {'procs':>5s} {'share':>6s} {'cpu%':>6s}"
          f" {'wait%':>6s} {'mem MB / cap':>14s} {'rx MB':>8s} {'tx MB':>8s} {'rx MB/s':>8s} {'tx MB/s':>8s}")
    for row in local.node_status(state):
        print("  " + _status_line(row, mb))
    print("  share: CPU cores the node may use; cpu%: of its share (of one core without one); wait%: CPU wait, "
          "0-100: % of the node's time (as the PC it stands for, slowed to its share d) in which a thread of it "
          "waited for a CPU; the throttling that slows the PC to d is not waiting")
    for app in status.get("activeapps", []):
        print(f"  app {app.get('name')} ({app.get('id')}) {app.get('state')}")
    return 0


def _status_line(row: dict, mb: int) -> str:
    traffic = (f" {row['rx_bytes'] / mb:8.1f} {row['tx_bytes'] / mb:8.1f} {row['rx_rate'] / mb:8.2f}"
               f" {row['tx_rate'] / mb:8.2f}" if "rx_bytes" in row else "   (loopback: no per-node counter)")
    if "cpu_percent_of_share" in row:
        share = "-" if row["cpu_share"] is None else f"{row['cpu_share']:g}"
        cap = "none" if row["memory_limit"] is None else f"{row['memory_limit'] / mb:.0f}"
        memory = f"{row['memory_bytes'] / mb:.0f} / {cap}"
        cpu = f"{share:>6s} {row['cpu_percent_of_share']:6.0f} {row['cpu_wait_percent']:6.0f} {memory:>14s}"
    else:
        memory = f"{row['rss_bytes'] / mb:.0f} / -"
        cpu = f"{'-':>6s} {row['cpu_percent']:6.0f} {'-':>6s} {memory:>14s}"
    faults = ", ".join(k if v is True else f"{k} x{v:g}" for k, v in row.get("faults", {}).items())
    return (f"{row['name']:6s} {row['role']:7s} {row['address']:12s} {row['spark_state']:8s}"
            f" {row['processes']:5d} {cpu}{traffic}{'  ' + faults if faults else ''}")


def _cluster_up(args: argparse.Namespace) -> int:
    """``ddl cluster up``: namespace nodes when asked and possible, loopback process nodes otherwise."""
    from ddl_commodity.cluster import local

    resources, profile = local.node_resource_options(args.profile, args.node_cpus, args.node_memory,
                                                     args.master_cpus, args.master_memory)
    nodes = args.nodes or (profile.nodes if profile else 5)
    if nodes < 2:
        raise UserInputError("--nodes must be at least 2 (a master and one worker)")
    if args.cores < 1:
        raise UserInputError("--cores must be at least 1")
    bandwidth = args.bandwidth or (profile.bandwidth if profile and args.netns else None)
    t0 = time.monotonic()
    kwargs = {"workers": nodes - 1, "cores": args.cores, "memory": args.memory, "host": args.host,
              "state_dir": args.state_dir, **resources}
    try:
        state = local.LocalStandaloneCluster(**kwargs, netns=args.netns, bandwidth=bandwidth,
                                             latency=args.latency).start()
    except local.NetnsUnavailable as err:
        print(f"warning: --netns is not possible here ({err}); starting loopback process nodes instead"
              f"{' without link shaping' if bandwidth or args.latency else ''}", file=sys.stderr)
        state = local.LocalStandaloneCluster(**kwargs).start()
    print(f"cluster up in {time.monotonic() - t0:.1f} s: {state.master_url} "
          f"({state.workers} workers x {state.cores} core, {state.memory}); UI {state.master_ui}")
    if profile:
        links = f"links {state.bandwidth}" if state.netns else "links not shaped (loopback nodes: add --netns)"
        print(f"profile {profile.name}: time dilation d = {profile.dilation:g} (1 s here = {profile.dilation:g} "
              f"cluster s); {links}")
    for node in state.nodes:
        where = f"namespace {node['namespace']}" if node.get("namespace") else "loopback"
        print(f"  {node['name']}: {node['role']:6s} {node['address']:12s} {where}  {_limits_text(node)}")
    return 0


def _limits_text(node: dict) -> str:
    cpus = f"{node['cpus']:g} core" if node.get("cpus") is not None else "cpu unlimited"
    memory = f"{node['memory'] / 2**30:.1f} GiB" if node.get("memory") is not None else "memory uncapped"
    return f"{cpus}, {memory}"


def _cluster_submit(args: argparse.Namespace, state) -> int:
    """``ddl cluster submit``: the run on the standing cluster with its driver on the master node, as on the
    thesis's cluster (in its control group and, on a namespace cluster, in its network); interface counters
    read around it."""
    from ddl_commodity.cluster import netns
    from ddl_commodity.launch.api import DriverPlacement, run

    master = state.nodes[0] if state.nodes else {"name": "node0", "address": state.host}
    # Nodes reach the driver and the PS at the master's address, not at the config's (loopback) cluster.host;
    # the run records the profile (and d) of the cluster it ran on.
    overrides = {"cluster": {"host": master["address"], **({"profile": state.profile} if state.profile else {})}}
    before = netns.counters_snapshot(state.nodes) if state.netns else {}
    if master.get("namespace"):
        netns.enter(master["namespace"])  # before the run starts a thread: every one of them lives there
    summary = run(args.config, master=state.master_url, run_id=args.run_id, overrides=overrides, progress=False,
                  driver=DriverPlacement(master["address"], state.groups().get(master["name"])))
    _print_summary(summary)
    if state.netns:
        nodes = [dict(n, roles=["master", "driver"] if n["role"] == "master" else ["spark-worker"])
                 for n in state.nodes]
        path = netns.record_run_traffic(summary.run_dir, nodes, before, netns.counters_snapshot(state.nodes))
        print(f"per-node traffic: {path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ddl_commodity.launch.api import run

    summary = run(args.config, master=args.master, run_id=args.run_id, resume=args.resume,
                  progress=args.progress, spark_submit=args.spark_submit, env=args.env)
    _print_summary(summary)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from ddl_commodity.launch.predict import predict

    done = predict(args.run_dir, args.data, args.out, master=args.master, env=args.env)
    print(f"scored {done['rows']} rows of {args.data} with {args.run_dir}'s model in {done['seconds']:.0f} s: "
          f"{done['out']} ({done['files']} files)")
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from ddl_commodity.launch.pack import pack

    done = pack(args.out, args.with_packages)
    print(f"packed {done.distributions} distributions into {done.path} ({done.size_bytes / 1e6:.0f} MB) in "
          f"{done.seconds:.0f} s; worker hosts need Java 17, Spark and a Python 3.11 at {done.python}")
    return 0


def _print_summary(summary) -> None:
    """What a finished run prints under its progress lines: per-worker results, the final model's score, the
    experiment's own lines, the data distribution's check and where the results are."""
    from ddl_commodity.experiments.registry import view_of

    doc = summary.to_dict()
    cluster = doc.get("cluster") or {}
    dilated = f" ({cluster['wall_cluster_seconds']:.0f} cluster s at d = {cluster['dilation']:g})" \
        if cluster.get("wall_cluster_seconds") else ""
    print(f"\n{summary.name}: {summary.description}; {summary.wall_seconds:.0f} s{dilated}")
    for name, w in summary.workers.items():
        accuracy = f"  accuracy {w.final_accuracy:.4f}" if w.final_accuracy is not None else ""  # none: regression
        print(f"  {name:10s} epochs {w.epochs:3d}  loss {w.final_loss:.4f}{accuracy}")
    final = summary.final
    if final.get("val_accuracy") is not None:
        print(f"  final model: validation loss {final['val_loss']:.4f}, accuracy {final['val_accuracy']:.4f}")
    elif final.get("val_loss") is not None:
        print(f"  final model: validation loss {final['val_loss']:.4f}")
    for line in view_of(summary.experiment).console_lines(doc):
        print(line)
    check = doc.get("data_distribution_check")
    if check:
        verdict = "confirmed by index digests" if check["consistent"] else "NOT confirmed: " + "; ".join(
            check["problems"])
        print(f"  data distribution '{check['mode']}': {verdict}")
    print(f"results: {summary.run_dir}")


def cmd_plan(args: argparse.Namespace) -> int:
    from ddl_commodity.launch.logs import native_noise_dropped
    from ddl_commodity.planner.command import run_plan

    with native_noise_dropped():
        return run_plan(args.config, args.profile, args.bandwidth, args.workers, args.latency_ms / 1000, args.out,
                        args.refresh)


def cmd_report(args: argparse.Namespace) -> int:
    from ddl_commodity.report.run_report import write_run_report

    if (args.run_dir / "reproduce.json").is_file():
        from ddl_commodity.reproduce.report import write_reproduction_report

        path = write_reproduction_report(args.run_dir)
        print((path.parent / "report.md").read_text())
        print(f"report: {path}")
        if args.publish:
            from ddl_commodity.reproduce.report import publish

            print(f"published: {publish(args.run_dir, args.publish)}")
        return 0
    if args.publish:
        raise UserInputError(f"--publish is for a `ddl reproduce` directory; {args.run_dir} is not one")
    path = write_run_report(args.run_dir)
    print(path.read_text())
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ddl_commodity.report.compare import compare_runs

    out = args.out or Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    path = compare_runs(args.run_dirs, out)
    print(path.read_text())
    print(f"comparison: {path}" + (f", {path.parent / 'compare.png'}" if (path.parent / "compare.png").is_file()
                                   else ""))
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from ddl_commodity.reproduce.report import check_destination, publish, write_reproduction_report
    from ddl_commodity.reproduce.runner import reproduce

    out = args.out or Path("runs") / f"reproduce-{args.scale}-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.profile:
        from ddl_commodity.resources.profiles import load_profile

        load_profile(args.profile)  # a bad name ends here, exit 2, before any run
    if args.budget is not None and not args.budget > 0:
        raise UserInputError(f"--budget must be a positive number of minutes, got {args.budget:g}")
    if args.publish:
        check_destination(out, args.publish)

    def report() -> Path:
        path = write_reproduction_report(out)
        if args.publish:
            publish(out, args.publish)
        return path

    state = reproduce(args.scale, out, args.only, profile=args.profile, budget_minutes=args.budget,
                      master=args.master, after_run=report if args.publish else None, rerun=args.rerun)
    path = report()
    failed = [n for n, e in state["experiments"].items() if e["state"] == "failed"]
    cut = [n for n, e in state["experiments"].items() if e["state"] == "cut"]
    print(f"report: {path}" + (f"; failed: {', '.join(failed)}" if failed else "")
          + (f"; cut for time: {len(cut)} (re-run with the same --out and a larger --budget)" if cut else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
