"""The report of a ``ddl reproduce`` directory: ``report/report.md`` and ``report/index.html`` with PNG figures.

It says where and when the set ran (command, commit, machine, profile and d), every claim of
:mod:`~ddl_commodity.reproduce.claims` with the thesis's words, our number, the verdict, the reason and the
figure it rests on (:mod:`~ddl_commodity.reproduce.figures`), Tables 5.1/5.2, the per-node tables of the
monitored runs, which runs were cut or failed and why. On a published directory (``ddl report --publish``)
it writes the page in place, from the summaries and ``series.json`` files published with it.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

from ddl_commodity.errors import UserInputError
from ddl_commodity.reproduce.claims import claims, plateau_rows
from ddl_commodity.runs import write_bytes_atomic, write_json_atomic

#: Per run, what the claims read besides summary.json (per-epoch curves, per-node samples), kept on publishing.
SERIES = "series.json"


def _run_dir(out: Path, e: dict) -> Path:
    run_dir = Path(e.get("run_dir") or "-")
    return run_dir if run_dir.is_absolute() else Path(out) / run_dir


def published(out: Path, state: dict) -> bool:
    """True for a directory written by :func:`publish`: its run directories relative to it and no ``report/`` (a
    copy continued by ``ddl reproduce`` has its page moved there by :func:`adopt_published`)."""
    dirs = [e["run_dir"] for e in state["experiments"].values()
            if e.get("state") == "succeeded" and e.get("run_dir") and not e.get("same_as")]
    return bool(dirs) and not any(Path(d).is_absolute() for d in dirs) and not (Path(out) / "report").is_dir()


def series(run_dir: Path) -> dict:
    """``epoch_curves`` and ``node_series`` of a run: from its workers' and nodes' files, else its SERIES file."""
    from ddl_commodity.artifacts.curves import load_worker_curves
    from ddl_commodity.artifacts.nodes import node_series
    from ddl_commodity.monitor.metrics import node_rows
    from ddl_commodity.monitor.sampler import read_node_csvs

    if (run_dir / SERIES).is_file():
        return json.loads((run_dir / SERIES).read_text())
    curves = {w: [{k: r.get(k) for k in ("epoch", "loss", "accuracy", "seconds")} for r in recs]
              for w, recs in load_worker_curves(run_dir).items()} if (run_dir / "workers").is_dir() else {}
    nodes = node_series(node_rows(run_dir) or read_node_csvs(run_dir / "nodes")) if (run_dir / "nodes").is_dir() else {}
    return {k: v for k, v in (("epoch_curves", curves), ("node_series", nodes)) if v}


def load(out: Path) -> tuple[dict, dict[str, dict]]:
    """``reproduce.json`` and the summary of every run that succeeded, by run name, with its :func:`series`;
    a summary without the 0-100 CPU wait gets it from the run's samples where these are kept."""
    from ddl_commodity.monitor.metrics import refresh_waits

    state = json.loads((Path(out) / "reproduce.json").read_text())
    summaries = {}
    for name, e in state["experiments"].items():
        run_dir = _run_dir(out, state["experiments"].get(e.get("same_as"), e))  # a twin reads its run
        if e["state"] == "succeeded" and (run_dir / "summary.json").is_file():
            summary = refresh_waits(json.loads((run_dir / "summary.json").read_text()), run_dir)
            summaries[name] = {**summary, **series(run_dir)}
    return state, summaries


def _old_wait(s: dict) -> bool:
    """A run whose summary lacks the 0-100 CPU wait and whose samples are gone (its figures show the
    per-thread run-queue delay instead)."""
    averages = s.get("node_averages") or {}
    return bool(averages) and any(a.get("run_queue_delay_percent_mean") is None for a in averages.values())


def _figures(summaries: dict[str, dict], state: dict, out: Path, fig_dir: Path) -> list[tuple[str, str]]:
    """Copy every run's PNGs (not the node plots of runs whose CPU wait is the old measure) and draw the
    cross-run figure; returns (caption, file name) pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    figures = []
    fig_dir.mkdir(parents=True, exist_ok=True)
    for name, s in summaries.items():
        run_dir = _run_dir(out, state["experiments"][name])
        for png, what in (("curves.png", "accuracy and loss per epoch"), ("nodes.png", "CPU, memory, network")):
            target = fig_dir / f"{name}-{png}"
            if png == "nodes.png" and _old_wait(s):
                target.unlink(missing_ok=True)  # its CPU wait panel is the run-queue delay, not comparable
                continue
            if (run_dir / png).is_file():
                shutil.copyfile(run_dir / png, target)
            if target.is_file():
                figures.append((f"{name}: {what}", target.name))
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


def _header(state: dict) -> list[str]:
    runs = state["experiments"]
    lines = [f"# Reproduction of the thesis ({state['scale']} scale)", ""]
    invocations = state.get("invocations", [])
    for inv in invocations[-1:]:
        m = inv["machine"]
        memory = f", {m['memory_bytes'] / 2**30:.0f} GiB" if m.get("memory_bytes") else ""
        profile = f"profile `{inv['profile']}` (d = {inv['dilation']})" if inv.get("profile") else "no cluster profile"
        cluster = "an embedded cluster per run" if inv.get("master", "embedded") == "embedded" else \
            f"the standing cluster {inv['master']}"
        lines += [f"Run on {m['cores']} cores{memory} ({m['system']}), {cluster}, {profile}, by "
                  f"{'this command' if len(invocations) == 1 else 'these commands, each continuing the last'}:", ""]
    lines += [f"- commit `{i['commit']}`: `{i['command'] or 'ddl reproduce'}`" for i in invocations]
    lines += [""] if invocations else []
    counts = {k: sum(_shown_state(e) == k for e in runs.values())
              for k in ("succeeded", "failed", "cut", "interrupted")}
    hours = sum(e.get("seconds") or 0 for e in runs.values() if not e.get("same_as")) / 3600
    stopped = f", {counts['interrupted']} interrupted (run again when the set continues)" \
        if counts["interrupted"] else ""
    lines += [f"{counts['succeeded']} of {len(runs)} runs succeeded, {counts['failed']} failed, {counts['cut']} "
              f"were cut for time{stopped}; {hours:.1f} h of runs.", ""]
    return lines


def _shown_state(entry: dict) -> str:
    """A run's state as the report says it: a run the user interrupted did not fail, it has yet to run."""
    return "interrupted" if entry["state"] == "failed" and entry.get("error") == "interrupted" else entry["state"]


VERDICT_NOTE = (
    "Verdicts: **agree** (the measured value meets the thesis's threshold or ordering), **partly** (it meets the "
    "weaker threshold, part of the ordering, or the seeds disagree), **no**, and **not testable here** (the reason "
    "is given). Where the thesis gives a reduction, agree means at least half of it; \"similar\" is within 25%. "
    "Claims measured on several seeds are judged per seed and report the median and the range. CPU wait is the "
    "share of a node's time in which a thread of it waited for a CPU, 0-100 (defined in the local cluster guide, "
    "section CPU wait): it stands in for Ganglia's `cpu_wio`, which the thesis read as waiting for resources but "
    "which counts a CPU idle while its I/O is pending, so the two are compared as orderings, not as equals. "
    "Runs whose summaries lack it "
    "and whose per-thread counters were not kept show no CPU wait: the figure they printed (the run-queue delay "
    "summed over threads, above 100 on busy nodes) is not comparable and not shown.")


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def _claim_lines(summaries: dict, fig_dir: Path, figures: list[tuple[str, str]]) -> list[str]:
    """The claims table and, per claim, the thesis's words, our number, the verdict, the reason and its figure."""
    from ddl_commodity.reproduce.figures import draw

    found = claims(summaries)
    counts = Counter(c["verdict"] for c in found)
    lines = ["## Thesis vs measured", "", VERDICT_NOTE, "",
             f"{len(found)} claims: " + ", ".join(f"{counts[v]} {v}" for v in ("agree", "partly", "no",
                                                                             "not testable here")) + ".", "",
             "| # | figure | the thesis says | we measure | ours | verdict |", "|---|---|---|---|---|---|"]
    for i, c in enumerate(found, start=1):
        verdict = c["verdict"] if c["verdict"] in ("agree", "not testable here") else f"**{c['verdict']}**"
        lines.append(f"| {i} | {c['figure']} | \"{_cell(c['words'])}\" | {_cell(c['quantity'])} | "
                     f"{_cell(c['ours'])} | {verdict} |")
    lines += ["", "## Each claim", ""]
    drawn: dict[str, str | None] = {}
    copied = {f for _, f in figures}
    for i, c in enumerate(found, start=1):
        key = c["draws"]
        if key not in drawn:
            drawn[key] = draw(key, summaries, fig_dir)
            if drawn[key] is None and key.startswith("curves:") and f"{key[7:]}-curves.png" in copied:
                drawn[key] = f"{key[7:]}-curves.png"
        lines += [f"### {i}. {c['figure']}: `{c['id']}`", "", f"The thesis: \"{c['words']}\"", "",
                  f"Measured: {c['quantity']}. Judged: {c['rule']}.", "",
                  f"Ours: {c['ours']}. Verdict: **{c['verdict']}**."
                  + (f" The verdict rests on {c['rests_on']}." if c["rests_on"] else ""), ""]
        lines += [f"Also: {a['label']}: {a['ours']}, {a['verdict']}" + (f" ({a['why']})" if a["ours"] == "-" else "")
                  + "." for a in c["also"]]
        lines += ([""] if c["also"] else []) + [f"Why: {c['why']}.", ""]
        lines += [f"![{c['figure']}: {c['id']}](figures/{drawn[key]})" if drawn[key] else
                  f"Figure: none ({key or 'no figure'}: the runs at hand do not hold its samples or curves).", ""]
    return lines


def write_reproduction_report(out: Path) -> Path:
    """``report.md`` and ``index.html`` with PNG figures, from a reproduction directory: under ``report/``, or
    in place for a published one."""
    from ddl_commodity.report.node_tables import averages_table, scheme_table

    out = Path(out)
    state, summaries = load(out)
    report_dir = out if published(out, state) else out / "report"
    distinct = {n: s for n, s in summaries.items() if not state["experiments"][n].get("same_as")}
    figures = _figures(distinct, state, out, report_dir / "figures")
    lines = _header(state) + _claim_lines(summaries, report_dir / "figures", figures)
    lines += ["## Early stopping (Tables 5.1, 5.2)", "", *plateau_rows(summaries)]
    mp = [s for s in distinct.values() if s.get("traffic_check")]
    if mp:
        lines += ["## Model-parallel runs: per node CPU % / MB in / MB out per step", "", *scheme_table(mp), ""]
    for s in distinct.values():
        if s.get("node_averages"):
            lines += [f"### {s['name']}: {s['description']}", "", *averages_table(s), ""]
    lines += ["## Runs", "", "| run | state | seconds | description, error or why it was cut |", "|---|---|---|---|"]
    for name, e in state["experiments"].items():
        twin = f"the run of {e.get('same_as')} (the same config at this scale, or one worker's same feed)"
        said = (twin if e.get("same_as")
                else summaries.get(name, {}).get("description") or e.get("error") or e.get("reason") or "")
        lines.append(f"| {name} | {_shown_state(e)} | {e.get('seconds') or 0:.0f} | {said} |")
    lines += ["", "## Figures", ""] + [f"![{cap}](figures/{f})" for cap, f in figures]
    md = "\n".join(lines) + "\n"
    write_bytes_atomic(report_dir / "report.md", md.encode())
    write_bytes_atomic(report_dir / "index.html", _html(md).encode())
    return report_dir / "index.html"


def adopt_published(out: Path) -> None:
    """Make a copy of a published directory a reproduction to continue: its page and figures move under
    ``report/``, where the report of the continued set is written (the figures of its runs are kept there, as
    their raw run directories are not)."""
    out = Path(out)
    if (out / "report").is_dir() or not (out / "report.md").is_file():
        return  # a reproduction directory already, or a new one
    report_dir = out / "report"
    (report_dir / "figures").mkdir(parents=True, exist_ok=True)
    if (out / "figures").is_dir():
        for png in (out / "figures").iterdir():
            png.rename(report_dir / "figures" / png.name)
        shutil.rmtree(out / "figures")
    for page in ("index.html", "report.md"):
        if (out / page).is_file():
            (out / page).replace(report_dir / page)


def check_destination(out: Path, dest: Path) -> None:
    """Refuse to publish ``out`` into itself, a directory in it, or one around it (the swap would delete it)."""
    here, there = Path(out).resolve(), Path(dest).resolve()
    if here == there or here in there.parents or there in here.parents:
        raise UserInputError(f"--publish {dest}: inside or around the reproduction {out}; choose another directory")


def publish(out: Path, dest: Path) -> Path:
    """Copy a reproduction's report (``report.md``, ``index.html``, ``figures/``), its ``reproduce.json`` and
    every run's ``config.yaml``, ``summary.json`` and :data:`SERIES` (under ``runs/<name>/``) into ``dest``: what
    a reader needs, and ``ddl report dest`` to redraw the page, without raw run directories. Returns
    ``dest/index.html``."""
    out, dest = Path(out), Path(dest)
    check_destination(out, dest)
    if not (out / "report").is_dir():
        raise UserInputError(f"{out}: has no report/ to publish (a published copy is redrawn with `ddl report`)")
    state, _ = load(out)
    final, dest = dest, dest.with_name(f".{dest.name}.publishing")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(out / "report", dest, ignore=shutil.ignore_patterns("screenshot.png"))
    for png in (dest / "figures").glob("*.png"):
        _palette_png(png)
    _publish_runs(out, dest, state["experiments"])
    for invocation in state.get("invocations", []):  # the docs say what ran and where, not when
        invocation.pop("date", None)
    write_json_atomic(dest / "reproduce.json", state)
    if final.exists():  # replaced only once the new copy is whole
        shutil.rmtree(final)
    dest.rename(final)
    return final / "index.html"


def _publish_runs(out: Path, dest: Path, experiments: dict[str, dict]) -> None:
    """Copy every succeeded run's ``config.yaml``, ``summary.json``, :data:`SERIES` and the config the set ran
    it with (``configs/<name>.yaml``: what ``ddl reproduce`` compares to find a twin when the copy is
    continued) into ``dest``, and point the entries at the copies; the entries of runs that did not succeed
    keep their state and error, not the paths of this machine."""
    for name, e in experiments.items():
        run_dir = _run_dir(out, e)
        if e["state"] != "succeeded":
            e["run_dir"] = e["config"] = None
            continue
        if e.get("same_as") or not run_dir.is_dir():
            continue
        (dest / "runs" / name).mkdir(parents=True)
        for file in ("config.yaml", "summary.json"):
            if (run_dir / file).is_file():
                shutil.copyfile(run_dir / file, dest / "runs" / name / file)
        if kept := series(run_dir):
            write_json_atomic(dest / "runs" / name / SERIES, kept)
        ran_with = Path(out) / e["config"] if e.get("config") else None
        e["run_dir"], e["config"] = f"runs/{name}", f"runs/{name}/config.yaml"
        if ran_with is not None and ran_with.is_file():
            (dest / "configs").mkdir(exist_ok=True)
            shutil.copyfile(ran_with, dest / "configs" / f"{name}.yaml")
            e["config"] = f"configs/{name}.yaml"
    for e in experiments.values():  # a twin points at the copy of its run
        if e.get("same_as") and e["state"] == "succeeded" and e["same_as"] in experiments:
            twin = experiments[e["same_as"]]
            e["run_dir"], e["config"] = twin["run_dir"], twin["config"]


def _palette_png(path: Path) -> None:
    """Re-save a plot with 256 colours: a node plot's file shrinks to about 40% and looks the same (a line
    plot's colours are a few dozen and their anti-aliased blends). One that has them already (published before)
    is left as it is: quantized again, its bytes would change with every publishing and nothing else."""
    from PIL import Image  # Pillow: a dependency of matplotlib

    with Image.open(path) as im:
        if im.mode == "P":
            return
        small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, "PNG", optimize=True)


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
