"""``ddl reproduce``: run the thesis's experiment set, then a report that sets our numbers beside the thesis's.

A reproduction directory::

    <out>/reproduce.json     scale, experiment list, per experiment: config, run directory, state, seconds
    <out>/configs/<name>.yaml the exact config each run used (the thesis config plus the scale's overrides)
    <out>/runs/<name>/        one run directory per experiment
    <out>/report/             index.html, report.md, figures/*.png (written by ``ddl report <out>``)

``small`` cuts samples, epochs and steps so the set finishes in about half an hour on 2 cores; ``full`` runs the
configs in ``configs/thesis/`` unchanged. A run that fails is recorded and the set goes on. The report never
forces agreement: every comparison states the thesis's value, ours, and whether they agree.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ddl_commodity.errors import UserInputError
from ddl_commodity.runs import write_bytes_atomic, write_json_atomic

THESIS_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "thesis"

#: The experiments of the small scale (the full scale runs every file in configs/thesis/).
SMALL_SET = (
    "redshift-5k-single", "redshift-5k-same-1w", "redshift-5k-same-2w", "redshift-5k-same-3w",
    "redshift-5k-disjoint-1w", "redshift-5k-disjoint-2w", "redshift-5k-disjoint-3w",
    "landcover-default-8k", "landcover-single-8k", "landcover-batch10", "landcover-batch50", "landcover-batch200",
    "landcover-fig6_7", "landcover-fig6_10", "landcover-fig6_15", "landcover-fig6_18",
    "landcover-default-2.5k", "landcover-dp-2.5k",
)

#: Thesis Tables 5.1 and 5.2 (5K samples): epochs to stable training accuracy per worker.
THESIS_TABLES = {
    "accuracy/patience=1/min_delta=0.001": {
        "same": {"single": [8], "1w": [8], "2w": [7, 7], "3w": [6, 6, 6]},
        "disjoint": {"single": [8], "1w": [8], "2w": [6, 5], "3w": [6, 6, 6]},
    },
    "accuracy/patience=3/min_delta=0.0001": {
        "same": {"single": [14], "1w": [16], "2w": [13, 13], "3w": [13, 13, 13]},
        "disjoint": {"single": [14], "1w": [16], "2w": [15, 15], "3w": [10, 10, 10]},
    },
}


def small_overrides(doc: dict) -> dict:
    """The small scale: the same experiment, cut by its own ``scaled_down`` to fit minutes on 2 cores."""
    from ddl_commodity.experiments.registry import DEFAULT_EXPERIMENT, get

    return get(doc.get("experiment", DEFAULT_EXPERIMENT)).scaled_down(copy.deepcopy(doc))


def experiment_set(scale: str, only: str | None) -> list[str]:
    if scale == "full":
        names = sorted(p.stem for p in THESIS_CONFIGS.glob("*.yaml"))
    elif scale == "small":
        names = list(SMALL_SET)
    else:
        raise UserInputError(f"--scale must be small or full, got {scale!r}")
    if only:
        names = [n for n in names if fnmatch.fnmatch(n, only)]
        if not names:
            raise UserInputError(f"--only {only!r} matches no experiment of the {scale} set")
    return names


def reproduce(scale: str, out: Path, only: str | None = None, data_dir: Path = Path("data"),
              profile: str | None = None) -> dict:
    """Run every experiment of ``scale`` into ``out`` (which must be new or a reproduction to continue);
    ``profile``: every run's embedded cluster on that cluster profile (``configs/clusters/<name>.yaml``)."""
    names = experiment_set(scale, only)
    out = Path(out)
    state_file = out / "reproduce.json"
    if out.exists() and not state_file.is_file():
        raise UserInputError(f"{out}: exists and is not a reproduction directory; choose a new one")
    state = json.loads(state_file.read_text()) if state_file.is_file() else {"scale": scale, "experiments": {}}
    if state["scale"] != scale:
        raise UserInputError(f"{out}: holds a {state['scale']} reproduction, not {scale}")
    (out / "configs").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    for i, name in enumerate(names, start=1):
        done = state["experiments"].get(name, {})
        if done.get("state") == "succeeded":
            print(f"[{i}/{len(names)}] {name}: already done", flush=True)
            continue
        doc = yaml.safe_load((THESIS_CONFIGS / f"{name}.yaml").read_text())
        if scale == "small":
            doc = small_overrides(doc)
        doc["name"] = name
        if profile:
            doc.setdefault("cluster", {})["profile"] = profile
        doc.setdefault("data", {})["cache_dir"] = str(data_dir)
        doc["output"] = {"runs_dir": str(out / "runs")}
        cfg_path = out / "configs" / f"{name}.yaml"
        write_bytes_atomic(cfg_path, yaml.safe_dump(doc, sort_keys=False).encode())
        run_dir = out / "runs" / name
        if run_dir.exists():
            shutil.rmtree(run_dir)  # an earlier attempt that did not succeed
        print(f"[{i}/{len(names)}] {name} ...{_time_left(state, names[i - 1:], started)}", flush=True)
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "ddl_commodity.cli", "run", str(cfg_path), "--run-id", name,
                               "--no-progress"], capture_output=True, text=True, check=False)
        seconds = time.monotonic() - t0
        ok = proc.returncode == 0 and (run_dir / "summary.json").is_file()
        state["experiments"][name] = {"config": str(cfg_path), "run_dir": str(run_dir), "seconds": round(seconds, 1),
                                      "state": "succeeded" if ok else "failed",
                                      "error": None if ok else _first_error(proc.stderr)}
        write_json_atomic(state_file, state)
        print(f"    {'done' if ok else 'FAILED'} in {seconds:.0f} s", flush=True)
    return state


def _time_left(state: dict, remaining: list[str], started: float) -> str:
    """`` (elapsed 4 min, about 11 min left)``, from the mean time of the experiments run so far."""
    seconds = [e["seconds"] for e in state["experiments"].values() if e.get("seconds")]
    elapsed = f" (elapsed {(time.monotonic() - started) / 60:.0f} min"
    if not seconds:
        return elapsed + ")"
    todo = sum(state["experiments"].get(n, {}).get("state") != "succeeded" for n in remaining)
    return f"{elapsed}, about {todo * sum(seconds) / len(seconds) / 60:.0f} min left)"


def _first_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    return next((line for line in lines if line.startswith("error:")), lines[-1] if lines else "?")


# ---------------------------------------------------------------------------------------------------------
# The report


def _load(out: Path) -> tuple[dict, dict[str, dict]]:
    state = json.loads((out / "reproduce.json").read_text())
    summaries = {}
    for name, e in state["experiments"].items():
        path = Path(e["run_dir"]) / "summary.json"
        if e["state"] == "succeeded" and path.is_file():
            summaries[name] = json.loads(path.read_text())
    return state, summaries


def _plateau_rows(summaries: dict[str, dict]) -> tuple[list[str], list[dict]]:
    """Tables 5.1 / 5.2 side by side; returns Markdown lines and comparison records."""
    lines, records = [], []
    for criterion, thesis in THESIS_TABLES.items():
        table = "5.1" if "patience=1" in criterion else "5.2"
        lines += [f"### Epochs to stable accuracy, `{criterion}` (thesis Table {table})",
                  "", "| data | cluster | thesis (per worker) | ours (per worker) |", "|---|---|---|---|"]
        for dist in ("same", "disjoint"):
            for size in ("single", "1w", "2w", "3w"):
                name = "redshift-5k-single" if size == "single" else f"redshift-5k-{dist}-{size}"
                s = summaries.get(name)
                ours = "not run"
                if s is not None:
                    per = s.get("epochs_to_plateau", {}).get(criterion, {})
                    ours = ", ".join(str(per[w]) if per[w] is not None else "none" for w in sorted(per)) or "-"
                want = ", ".join(str(v) for v in thesis[dist][size])
                lines.append(f"| {dist} | {size} | {want} | {ours} |")
                records.append({"criterion": criterion, "data": dist, "cluster": size, "thesis": thesis[dist][size],
                                "ours": ours})
        lines.append("")
    return lines, records


def _time_to_plateau(s: dict, criterion: str) -> float | None:
    """Seconds to the first worker's plateau: epochs x mean seconds per epoch of that worker."""
    best = None
    for worker, epochs in s.get("epochs_to_plateau", {}).get(criterion, {}).items():
        w = s["workers"].get(worker)
        if epochs is None or w is None:
            continue
        seconds = s["wall_seconds"] * epochs / max(w["epochs"], 1)
        best = seconds if best is None else min(best, seconds)
    return best


def _less_or_more(percent_less: float | None) -> str:
    if percent_less is None:
        return "not measured"
    return f"{percent_less:.0f}% less" if percent_less >= 0 else f"{-percent_less:.0f}% more"


def _claims(summaries: dict[str, dict]) -> list[dict]:
    """The thesis's headline numbers and ours, each with a verdict."""
    claims = []
    crit = "accuracy/patience=1/min_delta=0.001"
    for dist in ("same", "disjoint"):
        one, three = summaries.get(f"redshift-5k-{dist}-1w"), summaries.get(f"redshift-5k-{dist}-3w")
        t1 = _time_to_plateau(one, crit) if one else None
        t3 = _time_to_plateau(three, crit) if three else None
        ours = None if not (t1 and t3) else 100.0 * (1 - t3 / t1)
        claims.append({"what": f"time to stable accuracy, 3 workers vs 1 ({dist} data, Fig 5.4)",
                       "thesis": "25% less", "ours": _less_or_more(ours),
                       "agree": None if ours is None else ours >= 12.5})

    def cluster_in(s: dict) -> float:
        return sum(n.get("rx_mb_per_s") or 0.0 for n in s.get("nodes", {}).values())

    b10, b50, b200 = (summaries.get(f"landcover-batch{b}") for b in (10, 50, 200))
    if b10 and b50 and b200 and min(cluster_in(b50), cluster_in(b200)) > 0:
        r50, r200 = cluster_in(b10) / cluster_in(b50), cluster_in(b10) / cluster_in(b200)
        claims.append({"what": "cluster incoming traffic, batch 10 vs 50 and 200 (Fig 6.5)", "thesis": "about 5x",
                       "ours": f"{r50:.1f}x and {r200:.1f}x", "agree": min(r50, r200) >= 2.5})
    default, f67 = summaries.get("landcover-default-8k"), summaries.get("landcover-fig6_7")
    a = (default or {}).get("nodes", {}).get("worker-2", {}).get("tx_mb_per_s")
    b = (f67 or {}).get("nodes", {}).get("worker-2", {}).get("tx_mb_per_s")
    if a and b:
        claims.append({"what": "merging worker outgoing traffic, default -> Fig 6.7 scheme (Figs 6.6, 6.8)",
                       "thesis": "about 10 -> 2.5 MB/s", "ours": f"{a:.1f} -> {b:.1f} MB/s", "agree": b < 0.5 * a})
    mp, dp = summaries.get("landcover-default-2.5k"), summaries.get("landcover-dp-2.5k")
    if mp and dp and mp.get("node_averages") and dp.get("node_averages"):
        def workers_mean(s: dict, key: str) -> float:
            vals = [v[key] for k, v in s["node_averages"].items() if k.startswith("worker")]
            return sum(vals) / len(vals)

        for key, label in (("cpu_percent_mean", "CPU % per worker"), ("rss_mb_mean", "memory MB per worker")):
            a, b = workers_mean(mp, key), workers_mean(dp, key)
            claims.append({"what": f"model vs data parallel, {label}, 2.5K patches (Figs 6.21-6.24)",
                           "thesis": "model parallel lower", "ours": f"{a:.0f} vs {b:.0f}", "agree": a < b})
    return claims


def _figures(summaries: dict[str, dict], state: dict, fig_dir: Path) -> list[tuple[str, str]]:
    """Copy every run's PNGs and draw the cross-run figures; returns (caption, file name) pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    figures = []
    fig_dir.mkdir(parents=True, exist_ok=True)
    for name, _s in summaries.items():
        run_dir = Path(state["experiments"][name]["run_dir"])
        for png, what in (("curves.png", "accuracy and loss per epoch"), ("nodes.png", "CPU, memory, network")):
            if (run_dir / png).is_file():
                target = f"{name}-{png}"
                shutil.copyfile(run_dir / png, fig_dir / target)
                figures.append((f"{name}: {what}", target))
    schemes = [(n, s) for n, s in summaries.items() if s.get("traffic_check")]
    if schemes:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        nodes = sorted({k for _, s in schemes for k in s["traffic_check"]})
        width = 0.8 / max(len(nodes), 1)
        for j, node in enumerate(nodes):
            xs = [i + j * width for i in range(len(schemes))]
            axes[0].bar(xs, [s["traffic_check"].get(node, {}).get("rx_measured", 0) / 1e6 for _, s in schemes],
                        width, label=node)
            axes[0].scatter(xs, [s["traffic_check"].get(node, {}).get("rx_computed", 0) / 1e6 for _, s in schemes],
                            marker="_", color="black", s=80)
            axes[1].bar(xs, [s["nodes"].get(node, {}).get("cpu_share_percent") or 0 for _, s in schemes], width,
                        label=node)
        for ax, label in ((axes[0], "MB in per step (bars: measured, -: from shapes)"),
                          (axes[1], "CPU % of one core while training")):
            ax.set_xticks([i + 0.4 - width / 2 for i in range(len(schemes))])
            ax.set_xticklabels([n.replace("landcover-", "") for n, _ in schemes], rotation=30, ha="right")
            ax.set_ylabel(label)
            ax.grid(axis="y", alpha=0.3)
        axes[0].legend(fontsize="small")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        plt.close(fig)
        write_bytes_atomic(fig_dir / "schemes.png", buf.getvalue())
        figures.insert(0, ("per node traffic and CPU for every model-parallel run (Figs 6.6-6.20)", "schemes.png"))
    return figures


def write_reproduction_report(out: Path) -> Path:
    """``report/report.md`` and ``report/index.html`` with PNG figures, from a reproduction directory."""
    from ddl_commodity.report.node_tables import averages_table, scheme_table

    out = Path(out)
    state, summaries = _load(out)
    report_dir = out / "report"
    figures = _figures(summaries, state, report_dir / "figures")
    lines = [f"# Reproduction of the thesis ({state['scale']} scale)", "",
             f"{len(summaries)} of {len(state['experiments'])} experiments succeeded.", "",
             "## Thesis vs measured", "", "| claim | thesis | ours | agree? |", "|---|---|---|---|"]
    for c in _claims(summaries):
        verdict = {True: "yes", False: "**no**", None: "-"}[c["agree"]]
        lines.append(f"| {c['what']} | {c['thesis']} | {c['ours']} | {verdict} |")
    lines += ["", "## Early stopping (Tables 5.1, 5.2)", ""]
    plateau_lines, _ = _plateau_rows(summaries)
    lines += plateau_lines
    mp = [s for s in summaries.values() if s.get("traffic_check")]
    if mp:
        lines += ["## Model-parallel runs: per node CPU % / MB in / MB out per step", ""]
        lines += scheme_table(mp)
        lines.append("")
    for s in summaries.values():
        if s.get("node_averages"):
            lines += [f"### {s['name']}: {s['description']}", "", *averages_table(s), ""]
    lines += ["## Runs", "", "| experiment | state | seconds | description |", "|---|---|---|---|"]
    for name, e in state["experiments"].items():
        desc = summaries.get(name, {}).get("description", e.get("error") or "")
        lines.append(f"| {name} | {e['state']} | {e['seconds']} | {desc} |")
    lines += ["", "## Figures", ""] + [f"![{cap}](figures/{f})" for cap, f in figures]
    md = "\n".join(lines) + "\n"
    write_bytes_atomic(report_dir / "report.md", md.encode())
    write_bytes_atomic(report_dir / "index.html", _html(md).encode())
    return report_dir / "index.html"


def _html(md: str) -> str:
    """A small Markdown subset (headings, tables, images, paragraphs) as a standalone HTML page."""
    import html
    import re

    body, table = [], []

    def flush_table() -> None:
        if table:
            rows = [r for r in table if not re.fullmatch(r"\|(\s*-+\s*\|)+", r.replace("---", "-"))]
            cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows]
            out = "<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in cells[0]) + "</tr>"
            out += "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in cells[1:])
            body.append(out + "</table>")
            table.clear()

    def _inline(text: str) -> str:
        text = html.escape(text)
        text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", text)

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        if m := re.match(r"(#+) (.*)", line):
            n = len(m.group(1))
            body.append(f"<h{n}>{_inline(m.group(2))}</h{n}>")
        elif m := re.match(r"!\[(.*)\]\((.*)\)", line):
            body.append(f'<figure><img src="{html.escape(m.group(2))}" alt="{html.escape(m.group(1))}">'
                        f"<figcaption>{html.escape(m.group(1))}</figcaption></figure>")
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
    flush_table()
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px}img{max-width:100%}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>ddl-commodity reproduction</title>" \
           f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
