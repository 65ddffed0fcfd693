"""Tables of monitored runs (any experiment): per-node CPU and traffic per training step, measured next to the
bytes the split scheme implies from tensor shapes, and whole-run node averages (thesis 6.3.3-6.3.5)."""

from __future__ import annotations

from ddl_commodity.monitor.cpu_wait import LEGEND, wait_columns


def _mb(v: float | None) -> str:
    return "-" if v is None else f"{v / 1e6:.2f}"


def node_table(summary: dict) -> list[str]:
    """One row per node: CPU share, CPU s/step, MB/step in and out, measured / computed."""
    nodes, check = summary.get("nodes", {}), summary.get("traffic_check", {})
    lines = ["| node | CPU % (of 1 core) | CPU s / step | in MB/step (computed) | out MB/step (computed) "
             "| mean RSS MB |", "|---|---|---|---|---|---|"]
    for node, m in sorted(nodes.items()):
        c = check.get(node, {})
        share = "-" if m["cpu_share_percent"] is None else f"{m['cpu_share_percent']:.0f}"
        per_step = "-" if m["cpu_seconds_per_step"] is None else f"{m['cpu_seconds_per_step']:.3f}"
        lines.append(f"| {node} | {share} | {per_step} | {_mb(m['rx_bytes_per_step'])} ({_mb(c.get('rx_computed'))})"
                     f" | {_mb(m['tx_bytes_per_step'])} ({_mb(c.get('tx_computed'))}) | {m['mean_rss_mb']:.0f} |")
    return lines


def scheme_table(summaries: list[dict]) -> list[str]:
    """Several runs side by side: per scheme, each node's CPU share and MB per step in / out."""
    nodes = sorted({n for s in summaries for n in s.get("nodes", {})})
    head = "| run | scheme | batch | " + " | ".join(f"{n} CPU% / in / out MB" for n in nodes) + " |"
    lines = [head, "|---" * (3 + len(nodes)) + "|"]
    for s in summaries:
        cells = []
        for n in nodes:
            m = s.get("nodes", {}).get(n)
            cells.append("-" if m is None else f"{m['cpu_share_percent']:.0f} / {_mb(m['rx_bytes_per_step'])} / "
                         f"{_mb(m['tx_bytes_per_step'])}")
        batch = s.get("boundary_bytes_per_step", {}).get("batch", "-")
        lines.append(f"| {s['name']} | {s.get('scheme', {}).get('name', s['mode'])} | {batch} | "
                     + " | ".join(cells) + " |")
    return lines


def averages_table(summary: dict) -> list[str]:
    """Whole-run means per node (Figs 6.21-6.28): CPU (of the node's share when it has one), CPU wait per node
    (mean / peak, 0-100) with the run-queue delay beside it, the machine's iowait, memory (group peak / cap when
    the node has a group), MB/s in and out. A summary without the 0-100 CPU wait shows none, and a note under
    the table says its run-queue delay is the number its report printed as CPU wait."""
    lines = ["| node | share (cores) | CPU % mean / max | CPU wait % mean / max | run-queue delay % (sum over "
             "threads) | machine iowait % | RSS MB mean / max | node memory MB peak / cap | in MB/s | out MB/s |",
             "|---" * 10 + "|"]
    old = False
    for node, a in sorted(summary.get("node_averages", {}).items()):
        rx = "-" if a["rx_mb_per_s"] is None else f"{a['rx_mb_per_s']:.2f}"
        tx = "-" if a["tx_mb_per_s"] is None else f"{a['tx_mb_per_s']:.2f}"
        share = "-" if a.get("cpu_share") is None else f"{a['cpu_share']:g}"
        peak, cap = a.get("memory_mb_max"), a.get("memory_limit_mb")
        memory = "-" if peak is None else f"{peak:.0f} / {'none' if cap is None else f'{cap:.0f}'}"
        wait, wait_max, delay = wait_columns(a)
        stale = a.get("run_queue_delay_percent_mean") is None
        old = old or stale
        waits = "-" if wait is None else f"{wait:.1f} / " + ("-" if wait_max is None else f"{wait_max:.0f}")
        delay_cell = "not comparable" if stale else "-" if delay is None else f"{delay:.1f}"
        lines.append(f"| {node} | {share} | {a['cpu_percent_mean']:.0f} / {a['cpu_percent_max']:.0f} | {waits} | "
                     f"{delay_cell} | {a['iowait_percent_mean']:.1f} | "
                     f"{a['rss_mb_mean']:.0f} / {a['rss_mb_max']:.0f} | {memory} | {rx} | {tx} |")
    if old:
        lines += ["", OLD_WAIT_NOTE]
    return lines


#: Under the table of a run whose summary lacks the 0-100 CPU wait and whose samples are not at hand.
OLD_WAIT_NOTE = ("This run's summary has no per-node CPU wait (0-100) and its per-thread counters were not kept, "
                 "so its CPU wait cannot be computed: the number its report printed as \"CPU wait\" "
                 "was the run-queue delay summed over the node's threads, which grows with their number and is not "
                 "comparable with the thesis's CPU wait; it is not shown.")


def parts_table(summary: dict) -> list[str]:
    """Where each node's CPU seconds and peak memory went (sampler parts; empty for runs sampled before)."""
    averages = {n: a for n, a in sorted(summary.get("node_averages", {}).items()) if a.get("cpu_seconds_by_part")}
    if not averages:
        return []
    from ddl_commodity.monitor.sampler import PARTS

    pss_parts = ("TF process", "Spark JVM", "Spark Python workers")
    head = [f"{p} CPU s" for p in PARTS] + [f"{p} PSS MB peak" for p in pss_parts]
    lines = ["| node | " + " | ".join(head) + " |", "|---" * (1 + len(head)) + "|"]
    for node, a in averages.items():
        cpu = [f"{a['cpu_seconds_by_part'].get(p, 0.0):.1f}" for p in PARTS]
        pss = [f"{a.get('pss_mb_max_by_part', {}).get(p, 0.0):.0f}" for p in pss_parts]
        lines.append(f"| {node} | " + " | ".join(cpu + pss) + " |")
    return lines


def node_sections(summary: dict) -> list[str]:
    """The Markdown sections of a monitored run's report (empty for a run without node samples)."""
    lines: list[str] = []
    if summary.get("nodes"):
        lines += ["", "## Per node, per training step (thesis Figs 6.6-6.20)", "",
                  f"Network bytes by `{summary.get('net_method')}`; computed = activations and their gradients "
                  "across every split boundary plus weight reads and gradient writes to the PS, from tensor "
                  "shapes.", ""]
        lines += node_table(summary)
    if summary.get("node_averages"):
        lines += ["", "## Per node, whole run (thesis Figs 6.21-6.28)", ""]
        lines += ["CPU % is of the node's own share when it has one (a profile or node limits), else of one "
                  f"core. {LEGEND}. Run-queue delay: the time the node's threads waited for a CPU, summed over "
                  "them, as % of wall time (the share's throttling included). The machine's iowait is the same on "
                  "every node.", ""]
        lines += averages_table(summary)
        if parts := parts_table(summary):
            lines += ["", "Where each node's CPU seconds and memory went: its TF process's Python main thread (the "
                      "training loop, or the PS task), gRPC threads (the TF server's transport) and other threads "
                      "(TensorFlow's op threads, the feed reader, heartbeats); with a node group also its Spark "
                      "executor JVM and Spark's Python workers (feed tasks, TFoS's queue manager). Memory is the "
                      "proportional set size: pages that Spark's forked Python processes share are split among "
                      "them.", "", *parts]
        lines += ["", "![CPU, CPU wait, memory, network per node](nodes.png)"]
    return lines
