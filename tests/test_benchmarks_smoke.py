"""The benchmark harness (issue 5) still works end to end: ``python -m benchmarks.run --smoke``.

Benchmarks are not pass/fail, so nothing here judges a number; the test proves that both
servers start, that the load generator drives each scenario against both, and that the report
has a number for every server in every scenario. It is the smoke run CI affords (≤ 30 s once
the reference Colyseus server is installed in benchmarks/node_modules).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Per scenario, metrics that a working harness always measures (a smoke window is too short
# for the CPU-derived ones: 10 ms of CPU-time resolution in /proc).
REQUIRED = {
    "joins": ("joins_per_s", "p50_ms", "p99_ms", "server_cpu_pct", "loadgen_cpu_pct"),
    "echo": ("msgs_per_s", "p50_ms", "p99_ms", "server_cpu_pct", "loadgen_cpu_pct"),
    "broadcast": ("frames_per_s", "patches_per_s", "bytes_per_frame", "server_cpu_us_per_patch"),
    "idle": ("rss_kb_per_client", "rss_baseline_mb", "clients"),
    "quiet": ("rooms", "clients", "server_cpu_pct"),
    "encode": ("patch_us", "full_us", "patch_bytes"),
}
POSITIVE = {"joins_per_s", "msgs_per_s", "frames_per_s", "patches_per_s", "bytes_per_frame",
            "rss_baseline_mb", "clients", "rooms", "patch_us", "full_us", "patch_bytes"}


@pytest.mark.timeout(300)  # a first run installs benchmarks/node_modules with npm
def test_smoke_run_measures_every_scenario_on_both_servers(tmp_path, node_modules):
    if shutil.which("node") is None:
        pytest.fail("Node.js is required for the benchmarks (node not on PATH)")
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    report = json.loads((out / "latest.json").read_text())

    assert set(report["scenarios"]) == set(REQUIRED)
    for name, keys in REQUIRED.items():
        entry = report["scenarios"][name]
        # Notes about CPU saturation or background load are expected on a busy CI machine.
        errors = [n for n in entry["notes"] if "load generator used" not in n
                  and "other processes used" not in n]
        assert not errors, f"{name}: {errors}"
        for server in ("greenroom", "colyseus"):
            median = entry["servers"][server]["median"]
            for key in keys:
                value = median.get(key)
                assert isinstance(value, int | float), f"{name}/{server}/{key} = {value!r}"
                if key in POSITIVE:
                    assert value > 0, f"{name}/{server}/{key} = {value!r}"
    assert report["scenarios"]["broadcast"]["servers"]["greenroom"]["median"]["rooms"] == 2
    assert report["meta"]["smoke"] is True
    # The issue asks for ≤ 30 s; twice that leaves room for a slow CI machine, not for a hang.
    assert report["meta"]["seconds"] <= 60, report["meta"]["seconds"]
    assert (out / "latest.md").read_text().startswith("# greenroom vs Colyseus")
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "latest.png").stat().st_size > 10_000
