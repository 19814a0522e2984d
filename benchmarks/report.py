"""Medians over rounds, ratios greenroom / Colyseus, and the three outputs: JSON, markdown, PNG.

Numbers are kept per round in the JSON as well as their median, so that a surprising median
can be checked against its spread without rerunning anything.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .scenarios import SCENARIOS, Metric
from .scenarios.base import BACKGROUND_NOISY_PCT, LOADGEN_SATURATED_PCT

SERVERS = ("greenroom", "colyseus")
LABELS = {"greenroom": "greenroom", "colyseus": "Colyseus"}


@dataclass(frozen=True)
class Goal:
    """One of issues 5 and 15's goals: ratio greenroom / Colyseus of one metric against 1.0."""

    text: str
    scenario: str
    metric: str
    higher_is_better: bool


GOALS = (
    Goal("echo throughput ≥ 1.0× Colyseus", "echo", "msgs_per_s", True),
    Goal("broadcast throughput ≥ 1.0× Colyseus (capacity: frames per server CPU-second)",
         "broadcast", "frames_per_cpu_s", True),
    Goal("join p99 ≤ Colyseus", "joins", "p99_ms", False),
    Goal("RSS per idle client ≤ Colyseus", "idle", "rss_kb_per_client", False),
    Goal("echo server CPU per round-trip ≤ Colyseus", "echo", "server_cpu_us_per_msg", False),
    Goal("quiet rooms: server CPU ≤ Colyseus", "quiet", "cpu_us_per_room_s", False),
    Goal("schema patch encode ≤ @colyseus/schema's time", "encode", "patch_us", False),
)


def _median(values: list[Any]) -> Any:
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if numbers:
        return statistics.median(numbers)
    others = [v for v in values if v is not None]
    return others[0] if others else None


def aggregate(records: list[dict[str, Any]], scenario_names: list[str]) -> dict[str, Any]:
    """``records``: one dict per (round, scenario, server) with ``metrics`` or ``error``."""
    out: dict[str, Any] = {}
    for name in scenario_names:
        scenario = SCENARIOS[name]
        entry: dict[str, Any] = {"title": scenario.title, "servers": {}, "ratio": {}, "notes": [],
                                 "metrics": [_metric_json(m) for m in scenario.metrics]}
        if scenario.needs_server:
            entry["params"] = {"full": scenario.full, "smoke": scenario.smoke}
        for server in SERVERS:
            rows = [r for r in records if r["scenario"] == name and r["server"] == server]
            rounds = [r.get("metrics") or {"error": r.get("error")} for r in rows]
            good = [r["metrics"] for r in rows if r.get("metrics") and "error" not in r["metrics"]]
            median = {m.key: _median([g.get(m.key) for g in good]) for m in scenario.metrics}
            entry["servers"][server] = {"median": median, "rounds": rounds}
            errors = [r.get("error") or r.get("metrics", {}).get("error") for r in rows]
            for error in filter(None, errors):
                entry["notes"].append(f"{LABELS[server]}: {error}")
            saturated = [g["loadgen_cpu_pct"] for g in good
                         if (g.get("loadgen_cpu_pct") or 0) >= LOADGEN_SATURATED_PCT]
            if saturated:
                entry["notes"].append(
                    f"{LABELS[server]}: the load generator used up to {max(saturated):.0f}% of a "
                    f"core ({len(saturated)} of {len(good)} rounds): it saturated before the "
                    "server, so that throughput is a lower bound")
            noisy = [g["other_cpu_pct"] for g in good
                     if (g.get("other_cpu_pct") or 0) >= BACKGROUND_NOISY_PCT]
            if noisy:
                entry["notes"].append(
                    f"{LABELS[server]}: other processes used up to {max(noisy):.0f}% of a core "
                    f"during {len(noisy)} of {len(good)} rounds: those rounds are noisy")
        gr, cy = entry["servers"]["greenroom"]["median"], entry["servers"]["colyseus"]["median"]
        for m in scenario.metrics:
            a, b = gr.get(m.key), cy.get(m.key)
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
            entry["ratio"][m.key] = a / b if numeric and b else None
        if name == "broadcast" and gr.get("mode") == "message":
            entry["notes"].append("greenroom: (no schema yet) greenroom.schema did not import; its "
                                  "room broadcast the positions as a message instead of a state patch")
        out[name] = entry
    return out


def _metric_json(metric: Metric) -> dict[str, Any]:
    return {"key": metric.key, "label": metric.label, "unit": metric.unit,
            "higher_is_better": metric.higher_is_better}


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for goal in GOALS:
        ratio = results.get(goal.scenario, {}).get("ratio", {}).get(goal.metric)
        met = None if ratio is None else (ratio >= 1.0 if goal.higher_is_better else ratio <= 1.0)
        out.append({"goal": goal.text, "scenario": goal.scenario, "metric": goal.metric,
                    "ratio": ratio, "met": met})
    return out


# ---- formatting ----------------------------------------------------------------------------------
def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or value.is_integer() and abs(value) < 1e6:
        return f"{value:,.0f}"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_ratio(ratio: float | None, digits: int = 2) -> str:
    return "–" if ratio is None else f"{ratio:.{digits}f}×"


def markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    lines = [
        "# greenroom vs Colyseus",
        "",
        f"`{meta['command']}` — {meta['date']}, {meta['rounds']} round(s), medians"
        + (" (**smoke run: tiny counts, not a measurement**)" if meta["smoke"] else ""),
        "",
        f"- machine: {meta['cpus']} cores ({meta['cpu_model']}), {meta['platform']}; "
        "each server and the load generator share those cores",
        f"- greenroom {meta['greenroom_version']} (`{meta['greenroom_cmd']}`), "
        f"Python {meta['python']}, git {meta['git']}",
        f"- Colyseus: {meta['colyseus_versions']} on Node {meta['node']}",
        "- load generator: benchmarks/loadgen.mjs (Node, one process, v3 wire protocol)",
        "",
        "## Goals (issue 5)",
        "",
        "| goal | greenroom / Colyseus | met |",
        "|---|---:|:---:|",
    ]
    for goal in report["goals"]:
        met = {True: "yes", False: "**no**", None: "–"}[goal["met"]]
        # three digits: a goal missed by a hair must not read "1.00×, no" without showing why
        lines.append(f"| {goal['goal']} | {fmt_ratio(goal['ratio'], 3)} | {met} |")
    for entry in report["scenarios"].values():
        lines += ["", f"## {entry['title']}", "",
                  "| metric | greenroom | Colyseus | greenroom / Colyseus | better |",
                  "|---|---:|---:|---:|:---:|"]
        gr = entry["servers"]["greenroom"]["median"]
        cy = entry["servers"]["colyseus"]["median"]
        for metric in entry["metrics"]:
            unit = f" ({metric['unit']})" if metric["unit"] else ""
            ratio = entry["ratio"].get(metric["key"])
            better = ""
            if ratio is not None and metric["higher_is_better"] is not None:
                better = "↑" if metric["higher_is_better"] else "↓"
            lines.append(f"| {metric['label']}{unit} | {fmt(gr.get(metric['key']))} | "
                         f"{fmt(cy.get(metric['key']))} | {fmt_ratio(ratio)} | {better} |")
        for note in entry["notes"]:
            lines.append(f"\n> {note}")
    lines += ["", "↑: higher is better, ↓: lower is better. Per-round values are in latest.json.", ""]
    return "\n".join(lines)


def chart(report: dict[str, Any], path: Path) -> bool:
    """A bar pair per headline metric; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = []
    for name, entry in report["scenarios"].items():
        headlines = {m.key for m in SCENARIOS[name].metrics if m.headline}
        panels += [(name, entry, metric) for metric in entry["metrics"]
                   if metric["key"] in headlines]
    if not panels:
        return False
    columns = 4
    rows = (len(panels) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.0 * rows), squeeze=False)
    colors = {"greenroom": "#2e8b57", "colyseus": "#4f6fad"}
    for ax, (name, entry, metric) in zip(axes.flat, panels, strict=False):
        values = [entry["servers"][s]["median"].get(metric["key"]) for s in SERVERS]
        heights = [v if isinstance(v, int | float) else 0 for v in values]
        bars = ax.bar([LABELS[s] for s in SERVERS], heights, color=[colors[s] for s in SERVERS])
        for bar, value in zip(bars, values, strict=True):
            ax.annotate(fmt(value), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)
        ratio = entry["ratio"].get(metric["key"])
        arrow = "higher is better" if metric["higher_is_better"] else "lower is better"
        ax.set_title(f"{name}: {metric['label']}\n{metric['unit']}, {arrow}; "
                     f"greenroom/Colyseus {fmt_ratio(ratio)}", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.margins(y=0.15)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    meta = report["meta"]
    fig.suptitle(f"greenroom vs Colyseus 0.17 — medians of {meta['rounds']} round(s), "
                 f"{meta['cpus']} cores shared with the load generator"
                 + (" — SMOKE RUN" if meta["smoke"] else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(report: dict[str, Any], out_dir: Path, with_chart: bool = True) -> list[Path]:
    """Write latest.json, latest.md and (matplotlib permitting) latest.png into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    json_path = out_dir / "latest.json"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    written.append(json_path)
    md_path = out_dir / "latest.md"
    md_path.write_text(markdown(report))
    written.append(md_path)
    png_path = out_dir / "latest.png"
    if with_chart and chart(report, png_path):
        written.append(png_path)
    return written
