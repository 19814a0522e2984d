"""encode: the schema encoders alone, through the colleague-owned ``benchmarks/schema_encode.py``.

It runs in a subprocess (its own interpreter, bounded in time) so that a change to that script
or to greenroom.schema shows up here as a reported error instead of a crashed harness. Its Node
side is @colyseus/schema 5 from tests/js (the encoder of Colyseus 0.18; the 0.17 server above
uses schema 4, whose patch encoding is the same).
"""

from __future__ import annotations

import json
import subprocess
import sys

from ..servers import BENCH_DIR, ROOT
from .base import LocalScenario, Metric, Metrics

SCRIPT = BENCH_DIR / "schema_encode.py"

# players, moving players per tick, measured ticks, warm-up ticks
FULL = (1000, 100, 500, 100)
SMOKE = (100, 10, 50, 10)

_PROBE = """
import json, sys
from benchmarks.schema_encode import run_node, run_python
args = [int(a) for a in sys.argv[1:]]
out = {"greenroom": run_python(*args)}
try:
    out["colyseus"] = run_node(*args)
except Exception as exc:
    out["colyseus"] = {"error": f"{type(exc).__name__}: {exc}"}
print(json.dumps(out))
"""

KEYS = ("patch_us", "patch_mean_us", "full_us", "patch_bytes", "full_bytes")


def measure(smoke: bool) -> dict[str, Metrics]:
    if not SCRIPT.is_file():
        note = "benchmarks/schema_encode.py does not exist yet"
        return {"greenroom": {"error": note}, "colyseus": {"error": note}}
    args = [str(n) for n in (SMOKE if smoke else FULL)]
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE, *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode or not lines:
            raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip()[-800:]}")
        raw = json.loads(lines[-1])
    except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
        error = f"schema_encode.py failed: {exc}"
        return {"greenroom": {"error": error}, "colyseus": {"error": error}}
    same = None
    if "sample_patch" in raw["greenroom"] and "sample_patch" in raw["colyseus"]:
        same = "yes" if raw["greenroom"]["sample_patch"] == raw["colyseus"]["sample_patch"] else "no"
    out: dict[str, Metrics] = {}
    for side, numbers in raw.items():
        if "error" in numbers:
            out[side] = {"error": numbers["error"]}
            continue
        out[side] = {key: numbers.get(key) for key in KEYS}
        out[side]["byte_identical"] = same
    return out


ENCODE = LocalScenario(
    name="encode",
    title=(f"schema encode ({FULL[0]} players, {FULL[1]} moving per tick; "
           "Colyseus column: @colyseus/schema 5 in Node)"),
    metrics=(
        Metric("patch_us", "patch encode (median)", "µs", False, headline=True),
        Metric("patch_mean_us", "patch encode (mean)", "µs", False),
        Metric("full_us", "full state encode", "µs", False),
        Metric("patch_bytes", "patch size", "B", False),
        Metric("full_bytes", "full state size", "B", False),
        Metric("byte_identical", "first patch byte-identical", "", None),
    ),
    measure=measure,
)
