"""``ddl reproduce``: run the thesis's experiment set at one of the sizes of :mod:`~ddl_commodity.reproduce.runsets`,
then a report that sets our numbers beside the thesis's (:mod:`~ddl_commodity.reproduce.report`).

A reproduction directory::

    <out>/reproduce.json      scale, where and when (commit, machine, profile, d), per run: config, run
                              directory, state (succeeded / failed / cut), seconds, the error or why it was cut
    <out>/configs/<run>.yaml  the exact config each run used (the thesis config resized for the scale)
    <out>/runs/<run>/         one run directory per run
    <out>/report/             index.html, report.md, figures/*.png (written by ``ddl report <out>``)

A run that fails is recorded and the set goes on. Ctrl-C or SIGTERM during a run stops the set: the run is
recorded as failed with the error ``interrupted`` (Spark's SIGINT handler may have turned it into a failed
job) and runs again on resume.
With a time budget, a run whose predicted time (the mean of the runs of its config, else of its experiment, so
far) would end past the budget is cut and recorded with the prediction; re-running with the same ``--out`` (and
a larger ``--budget``) continues with what is left.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from ddl_commodity.config import STANDALONE_URL
from ddl_commodity.errors import DdlError, UserInputError, short_error
from ddl_commodity.reproduce import runsets
from ddl_commodity.reproduce.report import adopt_published
from ddl_commodity.reproduce.runsets import THESIS_CONFIGS, config_and_seed
from ddl_commodity.runs import write_bytes_atomic, write_json_atomic


def resized_config(run: str, scale: str) -> dict:
    """The config of ``run`` (a ``configs/thesis/`` name, maybe with ``-seed<k>``) resized for ``scale``."""
    from ddl_commodity.experiments.registry import DEFAULT_EXPERIMENT, get, view_of

    config, seed = config_and_seed(run)
    path = THESIS_CONFIGS / f"{config}.yaml"
    if not path.is_file():
        raise UserInputError(f"{run}: no {path.name} in {THESIS_CONFIGS}")
    doc = yaml.safe_load(path.read_text())
    doc = view_of(get(doc.get("experiment", DEFAULT_EXPERIMENT), str(path))).at_scale(doc, scale)
    doc = runsets.get(scale).adjust(doc)
    if seed is not None:
        doc["seed"] = seed
    doc["name"] = run
    return doc


def experiment_set(scale: str, only: str | None) -> list[str]:
    names = list(runsets.get(scale).runs)
    if only:
        names = [n for n in names if fnmatch.fnmatch(n, only)]
        if not names:
            raise UserInputError(f"--only {only!r} matches no experiment of the {scale} set")
    return names


def reproduce(scale: str, out: Path, only: str | None = None, data_dir: Path = Path("data"),
              profile: str | None = None, budget_minutes: float | None = None, master: str | None = None,
              after_run: Callable[[], None] | None = None, rerun: str | None = None) -> dict:
    """Run the runs of ``scale`` into ``out`` (new, a reproduction of the same scale to continue, or a copy of
    one's published directory: its runs that succeeded are kept as they are).

    Args:
        profile: every run's embedded cluster on this profile (default: the scale's own, unless ``master``).
        budget_minutes: cut runs predicted to end later than this after the start (default: the scale's).
        master: a running standalone cluster (``spark://host:port``) every run is submitted to, as the
            thesis submitted its experiments to its one cluster of PCs; None: an embedded cluster per run.
        after_run: called after each run that ran and was recorded (not after an interrupted one), e.g. to
            publish the report so far.
        rerun: shell pattern of runs to run again although they succeeded (after a change to how they are
            measured): their records are dropped before the set starts, so an interrupted set resumes with them.
    """
    names = experiment_set(scale, only)
    spec = runsets.get(scale)
    _check_options(names, profile, master, rerun)
    profile = None if master else profile or spec.profile
    budget = budget_minutes if budget_minutes is not None else spec.budget_minutes
    out = Path(out).resolve()  # the runs' paths recorded in reproduce.json are then the same from anywhere
    state = _open(out, scale, profile, master)
    if rerun:
        _drop(state, names, rerun, out)
    (out / "configs").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def record(name: str, entry: dict, line: str) -> None:
        state["experiments"][name] = entry
        write_json_atomic(out / "reproduce.json", state)
        print(line, flush=True)

    for i, name in enumerate(names, start=1):
        head = f"[{i}/{len(names)}] {name}"
        if state["experiments"].get(name, {}).get("state") == "succeeded":
            print(f"{head}: already done", flush=True)
            continue
        doc = _placed(resized_config(name, scale), profile, master, data_dir, out)
        if twin := _identical_run(state, doc, out):
            record(name, {**state["experiments"][twin], "same_as": twin},
                   f"{head}: the same run as {twin} at this scale, not run again")
        elif cut := _over_budget(state, name, budget, time.monotonic() - started):
            record(name, {"state": "cut", "reason": cut, "seconds": 0.0, "config": None, "run_dir": None},
                   f"{head}: cut, {cut}")
        else:
            print(f"{head} ...{_time_left(state, names[i - 1:], started)}", flush=True)
            with _interrupts_seen() as interrupted:
                entry = _run(name, doc, out)
            if interrupted() and entry["state"] != "succeeded":
                entry = {**entry, "error": "interrupted"}
            record(name, entry, "    interrupted" if entry["error"] == "interrupted" else
                   f"    {'done' if entry['state'] == 'succeeded' else 'FAILED'} in {entry['seconds']:.0f} s")
            if interrupted() or entry["error"] == "interrupted":
                raise KeyboardInterrupt
            if after_run:
                after_run()
    return state


def _check_options(names: list[str], profile: str | None, master: str | None, rerun: str | None) -> None:
    """Refuse a bad ``--master``, ``--profile`` with ``--master``, a ``--rerun`` that names no run: before
    anything is written."""
    if master is not None and not STANDALONE_URL.match(master):
        raise UserInputError(f"--master must be a standalone cluster's URL like spark://host:7077, got {master!r}")
    if master and profile:
        raise UserInputError("--profile shapes the embedded cluster of each run; with --master the runs go to "
                             "your cluster as it is: give one of them")
    if rerun and not any(fnmatch.fnmatch(n, rerun) for n in names):
        raise UserInputError(f"--rerun {rerun!r} matches no run of the set")


def _drop(state: dict, names: list[str], pattern: str, out: Path) -> None:
    """Forget the runs of ``names`` matching ``pattern`` and every run recorded as the same run as one of them."""
    drop = [n for n in names if fnmatch.fnmatch(n, pattern)]
    experiments = state["experiments"]
    for name in list(experiments):
        if name in drop or experiments[name].get("same_as") in drop:
            del experiments[name]
    write_json_atomic(out / "reproduce.json", state)


@contextlib.contextmanager
def _interrupts_seen():
    """Yields a function telling whether SIGINT or SIGTERM arrived inside the block, whichever Python handler
    took it: the interpreter writes every signal it handles to the wakeup fd. PySpark's SIGINT handler cancels
    the jobs, so a run may end as a failed job rather than a KeyboardInterrupt; it stays installed after its
    context stopped, so SIGINT's handler is put back too."""
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    try:
        previous = signal.set_wakeup_fd(writer.fileno())
        handler = signal.getsignal(signal.SIGINT)
    except ValueError:  # not the main thread: no handler of ours runs there either
        previous = handler = None
    seen: set[int] = set()
    try:
        yield lambda: bool(seen & {signal.SIGINT, signal.SIGTERM})
    finally:
        if previous is not None:
            signal.set_wakeup_fd(previous)
            signal.signal(signal.SIGINT, handler)
        with contextlib.suppress(BlockingIOError):
            while chunk := reader.recv(4096):
                seen.update(chunk)
        reader.close()
        writer.close()


def _open(out: Path, scale: str, profile: str | None, master: str | None) -> dict:
    state_file = out / "reproduce.json"
    if out.exists() and not state_file.is_file():
        raise UserInputError(f"{out}: exists and is not a reproduction directory; choose a new one")
    state = json.loads(state_file.read_text()) if state_file.is_file() else {"scale": scale, "experiments": {}}
    if state["scale"] != scale:
        raise UserInputError(f"{out}: holds a {state['scale']} reproduction, not {scale}")
    state.setdefault("invocations", []).append(where_and_when(profile, master))
    adopt_published(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(state_file, state)
    return state


def where_and_when(profile: str | None, master: str | None = None) -> dict:
    """The exact command, date, commit, machine (cores, memory), cluster (embedded, or the master's URL),
    profile and its d: the report's header."""
    repo = Path(__file__).resolve().parents[2]
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip() or None
    memory = next((int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:")), None) if Path("/proc/meminfo").is_file() else None
    dilation = None
    if profile:
        from ddl_commodity.resources.profiles import load_profile

        dilation = load_profile(profile).resolve().dilation
    return {"command": " ".join(["ddl", *sys.argv[1:]]) if sys.argv[0].endswith(("ddl", "cli.py")) else None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "commit": commit,
            "machine": {"cores": os.cpu_count(), "memory_bytes": memory, "system": platform.platform()},
            "master": master or "embedded", "profile": profile, "dilation": dilation}


def _placed(doc: dict, profile: str | None, master: str | None, data_dir: Path, out: Path) -> dict:
    if profile:
        doc.setdefault("cluster", {})["profile"] = profile
    if master:
        doc.setdefault("cluster", {})["master"] = master
    doc.setdefault("data", {})["cache_dir"] = str(data_dir)
    doc["output"] = {"runs_dir": str(out / "runs")}
    return doc


def _identical_run(state: dict, doc: dict, out: Path) -> str | None:
    """An earlier succeeded run of this set whose config equals ``doc`` but for its name and description
    (at the smoke scale the default-scheme runs of Figs 6.5, 6.6 and 6.21 are one run). With one worker,
    ``same`` and ``disjoint`` data are the same feed, row for row and in the same order (its one shard is
    the whole training set), so the two 1-worker cells of Fig 5.4 are one run too."""
    def key(d: dict) -> dict:
        out = {k: v for k, v in d.items() if k not in ("name", "description")}
        training = out.get("training") or {}
        if training.get("workers") == 1 and "data_distribution" in training:
            out["training"] = {**training, "data_distribution": "either"}
        return out

    for name, e in state["experiments"].items():
        if e.get("state") == "succeeded" and not e.get("same_as") and e.get("config"):
            path = out / e["config"]  # a published copy's paths are relative to it
            if path.is_file() and key(yaml.safe_load(path.read_text())) == key(doc):
                return name
    return None


def _run(name: str, doc: dict, out: Path) -> dict:
    """One run of the set, in this process; its console lines go to ``<out>/logs/<name>.log``."""
    from ddl_commodity.launch.api import run

    cfg_path = out / "configs" / f"{name}.yaml"
    write_bytes_atomic(cfg_path, yaml.safe_dump(doc, sort_keys=False).encode())
    run_dir = out / "runs" / name
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an earlier attempt that did not succeed
    console = out / "logs" / f"{name}.log"
    console.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    error = None
    with open(console, "w", encoding="utf-8") as stream, contextlib.redirect_stdout(stream):
        try:
            run(cfg_path, run_id=name, progress=False)
        except DdlError as err:
            error = short_error(str(err))
        except KeyboardInterrupt:
            error = "interrupted"
    ok = error is None and (run_dir / "summary.json").is_file()
    return {"config": str(cfg_path), "run_dir": str(run_dir), "seconds": round(time.monotonic() - t0, 1),
            "state": "succeeded" if ok else "failed", "error": None if ok else error or "no summary written"}


def _finished(state: dict) -> dict[str, float]:
    """Seconds of every run that succeeded and ran (not the twin of another): a failed or interrupted run's
    seconds say nothing of how long the run takes."""
    return {n: e["seconds"] for n, e in state["experiments"].items()
            if e.get("state") == "succeeded" and e.get("seconds") and not e.get("same_as")}


def _config_seconds(state: dict, name: str) -> list[float]:
    """Seconds of the finished runs of ``name``'s config (any seed)."""
    config = config_and_seed(name)[0]
    return [s for n, s in _finished(state).items() if config_and_seed(n)[0] == config]


def predicted_seconds(state: dict, name: str) -> tuple[float, str] | None:
    """Mean seconds of the runs so far of ``name``'s config (other seeds), else of its experiment (the name's
    first word: redshift, landcover); None before any."""
    experiment = name.split("-")[0]
    for basis, seconds in ((f"the {config_and_seed(name)[0]} runs", _config_seconds(state, name)),
                           (f"the {experiment} runs", [s for n, s in _finished(state).items()
                                                       if n.split("-")[0] == experiment])):
        if seconds:
            return sum(seconds) / len(seconds), f"mean of {len(seconds)} of {basis}"
    return None


def _pace(state: dict) -> float:
    """Measured over expected seconds of the runs so far that the scale expected (1 before any): how much
    slower or faster than :data:`runsets.THESIS_SECONDS` this machine runs the set."""
    pairs = [(s, runsets.estimated_seconds(n, state.get("scale", ""))) for n, s in _finished(state).items()]
    pairs = [(s, e) for s, e in pairs if e]
    return sum(s for s, _ in pairs) / sum(e for _, e in pairs) if pairs else 1.0


def _eta_seconds(state: dict, name: str, pace: float) -> float | None:
    """A run's seconds for the ETA: the mean of its config's runs so far; else the scale's expectation at the
    pace of the runs so far; else the mean of its experiment's runs (None: nothing to go by)."""
    own = _config_seconds(state, name)
    if own:
        return sum(own) / len(own)
    expected = runsets.estimated_seconds(name, state.get("scale", ""))
    if expected is not None:
        return expected * pace
    fallback = predicted_seconds(state, name)
    return fallback[0] if fallback else None


def _over_budget(state: dict, name: str, budget: float | None, elapsed: float) -> str | None:
    """Why ``name`` is cut, or None: no budget, no prediction yet, or it fits."""
    predicted = predicted_seconds(state, name) if budget else None
    if predicted is None or elapsed + predicted[0] <= budget * 60:
        return None
    return (f"predicted {predicted[0] / 60:.1f} min ({predicted[1]}) with {max(0.0, budget - elapsed / 60):.1f} "
            f"of the {budget:g}-minute budget left")


def _time_left(state: dict, remaining: list[str], started: float) -> str:
    """`` (elapsed 4 min, about 11 min left)``: each run still to do at its predicted time."""
    elapsed = f" (elapsed {(time.monotonic() - started) / 60:.0f} min"
    todo = [n for n in remaining if state["experiments"].get(n, {}).get("state") != "succeeded"]
    pace = _pace(state)
    known = [s for s in (_eta_seconds(state, n, pace) for n in todo) if s is not None]
    if not known:
        return elapsed + ")"
    return f"{elapsed}, about {sum(known) / len(known) * len(todo) / 60:.0f} min left)"
