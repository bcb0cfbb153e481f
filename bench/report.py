"""Turn a results document into a terminal table, a Markdown table and a PNG chart.

Every cell shows the peer's median and its ratio to the baseline *from the same run*:
``ratio = peer / baseline`` for every metric, so for "lower is better" metrics
(latency, memory, CPU per op) a ratio below 1 means the peer is better.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from wirehub.loadgen.workloads import WORKLOADS, Metric

Row = tuple[str, str, Metric]  # (workload, label, metric)
LOADGEN_BOUND = "*"
NOISY = "~"  # every run of the cell overlapped other processes' CPU use


def rows(doc: dict[str, Any]) -> list[Row]:
    return [(w, m.label, m) for w in doc["workloads"] for m in WORKLOADS[w].metrics]


def cpu_rows(doc: dict[str, Any]) -> list[Row]:
    unit = {
        "echo_latency": "round trip",
        "echo_throughput": "message",
        "idle_memory": "connection",
        "idle_memory_deflate": "connection",
        "handshakes_seq": "handshake",
        "handshakes_50": "handshake",
    }
    return [
        (
            w,
            f"server µs/{'client back' if 'storm' in w else unit.get(w, 'delivery')}: {w}",
            Metric("server_cpu_us_per_op", w, False, "{:,.1f}"),
        )
        for w in doc["workloads"]
    ]


def value(doc: dict[str, Any], server: str, workload: str, key: str) -> float | None:
    cell = doc["summary"].get(server, {}).get(workload)
    if not cell or not cell.get("ok_runs") or not isinstance(cell.get(key), int | float):
        return None
    return float(cell[key])


def cell_text(doc: dict[str, Any], server: str, row: Row) -> str:
    workload, _, metric = row
    cell = doc["summary"].get(server, {}).get(workload)
    if cell is None:
        return "n/a"  # peer lacks the feature (e.g. no permessage-deflate)
    if not cell.get("ok_runs"):
        pct = cell.get("delivered_pct")
        return f"DNF ({pct:.0f}%)" if isinstance(pct, int | float) else "failed"
    own = value(doc, server, workload, metric.key)
    if own is None:
        return "—"
    text = metric.fmt.format(own)
    base = value(doc, doc["baseline"], workload, metric.key)
    if base and server != doc["baseline"]:
        text += f" ({own / base:.2f}x)"
    if cell.get("loadgen_saturated"):
        text += LOADGEN_BOUND
    if cell.get("noisy"):
        text += NOISY
    if cell["ok_runs"] < cell["runs"]:
        text += f" [{cell['ok_runs']}/{cell['runs']} ok]"
    return text


def ordered_servers(doc: dict[str, Any]) -> list[str]:
    base = doc["baseline"]
    return [base] + [s for s in doc["servers"] if s != base and s in doc["summary"]]


def noise(doc: dict[str, Any]) -> str:
    # Windows under 1 s are too short for 10 ms tick counters.
    values = sorted(
        r["other_cpu_pct"] for r in doc["runs"] if "other_cpu_pct" in r and r["wall_s"] >= 1
    )
    if not values:
        return ""
    median = values[len(values) // 2]
    limit = doc["meta"].get("max_noise_pct")
    cells = [c for per_server in doc["summary"].values() for c in per_server.values()]
    dropped = sum(c.get("noisy_runs_dropped", 0) for c in cells)
    left_out = (
        f" {dropped} run(s) above {limit:.0f} % were left out of medians that had a quieter run."
        if limit is not None
        else ""
    )
    return (
        f"Machine noise: during the measured windows other processes kept a median "
        f"{median:.0f} % of one core busy on cores 0-1 (range {values[0]:.0f}-{values[-1]:.0f} %)."
        + left_out
    )


def markdown(doc: dict[str, Any]) -> str:
    servers = ordered_servers(doc)
    meta = doc["meta"]
    out = [
        f"Command: `{meta['command']}` — {meta['date']}, commit {meta.get('git', '?')}, "
        f"{meta['repeat']} run(s) per cell (median), Python {meta['python']}, "
        f"{meta['cpus']} cores (server on core {meta['cores']['server']}, "
        f"load generator on core {meta['cores']['loadgen']}).",
        "",
        f"Baseline: **{doc['baseline']}**. Cells: median (ratio to baseline). "
        f"`{LOADGEN_BOUND}` = load generator above 90 % of its core (the number is a lower bound "
        "for the server). `~` = every run was noisy (other processes busy on the benchmark "
        "cores). `n/a` = feature not supported, `DNF` = did not finish in time.",
        "",
        noise(doc),
        "",
    ]
    for title, table_rows in (
        ("metric", rows(doc)),
        ("server CPU per operation (↓)", cpu_rows(doc)),
    ):
        out.append(f"| {title} | " + " | ".join(servers) + " |")
        out.append("|---" * (len(servers) + 1) + "|")
        for row in table_rows:
            arrow = "↑" if row[2].higher_is_better else "↓"
            label = row[1] if title != "metric" else f"{row[1]} {arrow}"
            out.append(f"| {label} | " + " | ".join(cell_text(doc, s, row) for s in servers) + " |")
        out.append("")
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    out.append(f"Versions: {versions}.")
    return "\n".join(out) + "\n"


def terminal(doc: dict[str, Any], console: Console) -> None:
    servers = ordered_servers(doc)
    for title, table_rows in (("metric", rows(doc)), ("server CPU µs per op ↓", cpu_rows(doc))):
        table = Table(title=f"{title} — baseline {doc['baseline']} (ratio x)", title_justify="left")
        table.add_column(title, style="bold")
        for server in servers:
            table.add_column(server, justify="right")
        for row in table_rows:
            arrow = "" if title != "metric" else (" ↑" if row[2].higher_is_better else " ↓")
            table.add_row(row[1] + arrow, *(cell_text(doc, s, row) for s in servers))
        console.print(table)


def chart(doc: dict[str, Any], path: Path) -> None:
    """Grouped bars of relative performance (>1 = better than the baseline), log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = ordered_servers(doc)
    base = doc["baseline"]
    chart_rows = rows(doc)
    height = 0.8 / max(len(servers), 1)
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(chart_rows) * max(1, len(servers) / 4) + 1.5))
    for i, server in enumerate(servers):
        ys, xs = [], []
        for r, (workload, _, metric) in enumerate(chart_rows):
            own = value(doc, server, workload, metric.key)
            ref = value(doc, base, workload, metric.key)
            if own and ref:
                ys.append(r + i * height)
                xs.append(own / ref if metric.higher_is_better else ref / own)
        ax.barh(ys, xs, height=height, label=server)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks([r + 0.4 - height / 2 for r in range(len(chart_rows))])
    ax.set_yticklabels([label for _, label, _ in chart_rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"relative to {base} (>1 = better; lower-is-better metrics inverted)")
    ax.set_title(f"WebSocket servers vs {base} — {doc['meta']['date']}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(doc: dict[str, Any], png: Path, md: Path) -> None:
    console = Console()
    if not console.is_terminal:  # piped / logged: don't squeeze the table into 80 columns
        console = Console(width=200)
    terminal(doc, console)
    md.write_text(markdown(doc))
    chart(doc, png)
