"""The report of a ``ddl reproduce`` directory: ``report/report.md`` and ``report/index.html`` with PNG figures.

It says where and when the set ran (command, commit, machine, profile and d), every claim with our value, a
verdict and the measurement behind it (:mod:`~ddl_commodity.reproduce.claims`), Tables 5.1/5.2, the per-node
tables of the model-parallel runs, which runs were cut or failed and why, and every run's figures.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ddl_commodity.reproduce.claims import claims, plateau_rows
from ddl_commodity.runs import write_bytes_atomic


def load(out: Path) -> tuple[dict, dict[str, dict]]:
    """``reproduce.json`` and the summary of every run that succeeded, by run name; the CPU wait of runs
    summarised before it was defined is recomputed from their samples where these are kept."""
    from ddl_commodity.monitor.metrics import refresh_waits

    state = json.loads((Path(out) / "reproduce.json").read_text())
    summaries = {}
    for name, e in state["experiments"].items():
        path = Path(e["run_dir"] or "-") / "summary.json"
        if e["state"] == "succeeded" and path.is_file():
            summaries[name] = refresh_waits(json.loads(path.read_text()), path.parent)
    return state, summaries


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
    lines += [f"- {i['date']}, commit `{i['commit']}`: `{i['command'] or 'ddl reproduce'}`" for i in invocations]
    lines += [""] if invocations else []
    counts = {k: sum(e["state"] == k for e in runs.values()) for k in ("succeeded", "failed", "cut")}
    hours = sum(e.get("seconds") or 0 for e in runs.values() if not e.get("same_as")) / 3600
    lines += [f"{counts['succeeded']} of {len(runs)} runs succeeded, {counts['failed']} failed, {counts['cut']} "
              f"were cut for time; {hours:.1f} h of runs.", ""]
    return lines


def _claim_lines(summaries: dict) -> list[str]:
    found = claims(summaries)
    lines = ["## Thesis vs measured", "", "| # | claim | thesis | ours | verdict |", "|---|---|---|---|---|"]
    for i, c in enumerate(found, start=1):
        verdict = c["verdict"] if c["verdict"] in ("agree", "not measured") else f"**{c['verdict']}**"
        lines.append(f"| {i} | {c['what']} | {c['thesis']} | {c['ours']} | {verdict} |")
    lines += ["", "What each of our values rests on:", ""]
    lines += [f"{i}. {c['why']}" for i, c in enumerate(found, start=1)]
    return [*lines, ""]


def write_reproduction_report(out: Path) -> Path:
    """``report/report.md`` and ``report/index.html`` with PNG figures, from a reproduction directory."""
    from ddl_commodity.report.node_tables import averages_table, scheme_table

    out = Path(out)
    state, summaries = load(out)
    report_dir = out / "report"
    distinct = {n: s for n, s in summaries.items() if not state["experiments"][n].get("same_as")}
    figures = _figures(distinct, state, report_dir / "figures")
    lines = _header(state) + _claim_lines(summaries)
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
        lines.append(f"| {name} | {e['state']} | {e.get('seconds') or 0:.0f} | {said} |")
    lines += ["", "## Figures", ""] + [f"![{cap}](figures/{f})" for cap, f in figures]
    md = "\n".join(lines) + "\n"
    write_bytes_atomic(report_dir / "report.md", md.encode())
    write_bytes_atomic(report_dir / "index.html", _html(md).encode())
    return report_dir / "index.html"


def publish(out: Path, dest: Path) -> Path:
    """Copy a reproduction's report (``report.md``, ``index.html``, ``figures/``), its ``reproduce.json`` and
    every run's ``config.yaml`` and ``summary.json`` (under ``runs/<name>/``) into ``dest``: what a reader needs,
    without raw run directories. Returns ``dest/index.html``."""
    out, dest = Path(out), Path(dest)
    state, _ = load(out)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(out / "report", dest, ignore=shutil.ignore_patterns("screenshot.png"))
    for png in (dest / "figures").glob("*.png"):
        _palette_png(png)
    for name, e in state["experiments"].items():
        run_dir = Path(e.get("run_dir") or "-")
        if e["state"] != "succeeded" or e.get("same_as") or not run_dir.is_dir():
            continue
        (dest / "runs" / name).mkdir(parents=True)
        for file in ("config.yaml", "summary.json"):
            if (run_dir / file).is_file():
                shutil.copyfile(run_dir / file, dest / "runs" / name / file)
        e["run_dir"] = f"runs/{name}"
        e["config"] = f"runs/{name}/config.yaml"
    (dest / "reproduce.json").write_text(json.dumps(state, indent=1) + "\n")
    return dest / "index.html"


def _palette_png(path: Path) -> None:
    """Re-save a plot with 256 colours: a node plot's file shrinks to about 40% and looks the same (a line
    plot's colours are a few dozen and their anti-aliased blends)."""
    from PIL import Image  # Pillow: a dependency of matplotlib

    with Image.open(path) as im:
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
