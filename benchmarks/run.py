"""``python -m benchmarks.run``: greenroom and Colyseus, side by side, with one command.

Rounds alternate the order of the two servers (round 1: greenroom first; round 2: Colyseus
first; ...), so that neither always runs on a warmer or a more tired machine, and medians over
the rounds are reported. Every scenario gets a freshly started server: memory and caches left
by one scenario must not be measured in the next.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import loadgen, report, servers
from .scenarios import SCENARIOS, LoadScenario, LocalScenario
from .scenarios.base import LOADGEN_SATURATED_PCT, Metrics
from .servers import BENCH_DIR, ROOT, Processes, ServerSpec


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny counts, one round: proves the harness works (≤ 30 s), measures nothing")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3; 1 with --smoke)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--greenroom-cmd", default=servers.GREENROOM_CMD,
                        help="greenroom server command, {port} is replaced; leading NAME=value "
                             "words set the environment (default: %(default)s)")
    parser.add_argument("--colyseus-cmd", default=servers.COLYSEUS_CMD,
                        help="Colyseus server command (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results",
                        help="where latest.json/.md/.png go (default benchmarks/results)")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    if args.rounds is None:
        args.rounds = 1 if args.smoke else 3
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM behaves like Ctrl-C, so the ``finally`` that stops the servers runs."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C must stop the servers even when started from a shell that ignores SIGINT in
    # background jobs (Python then keeps it ignored); SIGTERM takes the same way out.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    specs = {"greenroom": ServerSpec("greenroom", args.greenroom_cmd),
             "colyseus": ServerSpec("colyseus", args.colyseus_cmd)}
    servers.npm_install()
    started = time.monotonic()  # the time budget of --smoke excludes a first npm install
    records: list[dict[str, Any]] = []
    with Processes() as processes:
        try:
            _run_rounds(args, specs, processes, records)
        except KeyboardInterrupt:
            print("\nbenchmarks: interrupted; servers stopped, no report written", file=sys.stderr)
            return 130
    results = report.aggregate(records, args.scenarios)
    full_report = {"meta": _meta(args, argv, time.monotonic() - started), "scenarios": results,
                   "goals": report.goals(results), "records": records}
    written = report.write(full_report, args.out, with_chart=not args.no_chart)
    print()
    print(report.markdown(full_report))
    print("written: " + ", ".join(str(p) for p in written))
    if not args.no_chart and not any(p.suffix == ".png" for p in written):
        print("no chart: pip install matplotlib (the 'bench' extra)")
    return 0


def _run_rounds(args: argparse.Namespace, specs: dict[str, ServerSpec], processes: Processes,
                records: list[dict[str, Any]]) -> None:
    """Every round, every scenario, both servers: appends one record per measurement."""
    for index in range(args.rounds):
        order = ["greenroom", "colyseus"] if index % 2 == 0 else ["colyseus", "greenroom"]
        for name in args.scenarios:
            scenario = SCENARIOS[name]
            tag = f"[round {index + 1}/{args.rounds}] {name:<9}"
            if isinstance(scenario, LocalScenario):
                for server, metrics in scenario.measure(args.smoke).items():
                    records.append({"round": index + 1, "scenario": name, "server": server,
                                    "metrics": metrics})
                    print(f"{tag} {server:<9} {_summary(scenario, metrics)}", flush=True)
                continue
            for server in order:
                record = _measure(processes, scenario, specs[server], args.smoke,
                                  args.out / "tmp" / f"r{index + 1}-{name}-{server}")
                records.append({"round": index + 1, **record})
                summary = _summary(scenario, record.get("metrics"), record.get("error"))
                print(f"{tag} {server:<9} {summary}", flush=True)


def _measure(processes: Processes, scenario: LoadScenario, spec: ServerSpec, smoke: bool,
             log_prefix: Path) -> dict[str, Any]:
    """Start a fresh server, run one scenario against it, stop it; errors become a record."""
    record: dict[str, Any] = {"scenario": scenario.name, "server": spec.name}
    try:
        server = servers.start(processes, spec, log_prefix.with_name(log_prefix.name + "-server.log"))
    except RuntimeError as exc:
        record["error"] = f"server did not start: {exc}"
        return record
    try:
        load = loadgen.run(processes, server, scenario.name, scenario.params(smoke),
                           scenario.timeout(smoke), log_prefix.with_name(log_prefix.name + "-loadgen.log"))
        record["metrics"] = scenario.summarize(load)
    except (loadgen.LoadError, KeyError, ValueError, OSError) as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        code = processes.stop(server.proc)
        if code not in (0, -signal.SIGTERM):
            record["server_exit"] = code  # it crashed, or ignored SIGTERM and was killed
    return record


def _summary(scenario: LoadScenario | LocalScenario, metrics: Metrics | None,
             error: str | None = None) -> str:
    """One progress line: the headline metrics and, for load scenarios, who used the CPU."""
    if error or not metrics or "error" in metrics:
        return f"ERROR {(error or (metrics or {}).get('error') or 'no result')[:300]}"
    parts = []
    for metric in scenario.metrics:
        if metric.headline:
            parts.append(f"{metric.label} {report.fmt(metrics.get(metric.key))} {metric.unit}")
    if "server_cpu_pct" in metrics:
        parts.append(f"CPU: server {report.fmt(metrics['server_cpu_pct'])}%, "
                     f"load generator {report.fmt(metrics['loadgen_cpu_pct'])}%, "
                     f"others {report.fmt(metrics.get('other_cpu_pct'))}%")
        share = metrics["loadgen_cpu_pct"]
        if isinstance(share, int | float) and share >= LOADGEN_SATURATED_PCT:
            parts.append("LOAD GENERATOR SATURATED before the server: throughput is a lower bound")
    if metrics.get("mode") == "message":
        parts.append("(no schema yet)")
    return " | ".join(parts)


def _meta(args: argparse.Namespace, argv: list[str] | None, seconds: float) -> dict[str, Any]:
    words = sys.argv[1:] if argv is None else argv
    return {
        "command": shlex.join(["python", "-m", "benchmarks.run", *words]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "smoke": args.smoke,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "node": _output(["node", "--version"]),
        "git": _output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "greenroom_version": _greenroom_version(),
        "greenroom_cmd": args.greenroom_cmd,
        "colyseus_cmd": args.colyseus_cmd,
        "colyseus_versions": _colyseus_versions(),
        "loadgen": "benchmarks/loadgen.mjs",
        "loadgen_saturated_pct": LOADGEN_SATURATED_PCT,
    }


def _output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _greenroom_version() -> str:
    try:
        from greenroom import __version__
    except ImportError:
        return "?"
    return __version__


def _colyseus_versions() -> str:
    names = ("core", "ws-transport", "schema")
    found = []
    for name in names:
        path = BENCH_DIR / "node_modules" / "@colyseus" / name / "package.json"
        try:
            found.append(f"@colyseus/{name} {json.loads(path.read_text())['version']}")
        except (OSError, ValueError, KeyError):
            found.append(f"@colyseus/{name} ?")
    return ", ".join(found)


if __name__ == "__main__":
    sys.exit(main())
