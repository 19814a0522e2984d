"""echo: 200 clients in a closed loop, each sending ``echo`` and waiting for the reply.

The payload is what @colyseus/sdk sends (msgpackr records), so greenroom pays for decoding the
record extension just as it would with real clients.
"""

from __future__ import annotations

from ..loadgen import LoadResult
from .base import CPU_SHARE, LoadScenario, Metric, Metrics, cpu_share, per


def summarize(load: LoadResult) -> Metrics:
    result, window = load.result, load.window()
    messages = result["operations"]
    return {
        "msgs_per_s": messages / window.seconds,
        "p50_ms": result["latency"]["p50_ms"],
        "p99_ms": result["latency"]["p99_ms"],
        "server_cpu_us_per_msg": per(window.server_cpu, messages, 1e6),
        "clients": result["clients"],
        **cpu_share(window),
    }


ECHO = LoadScenario(
    name="echo",
    title="echo round-trips (closed loop, 200 clients in rooms of 50)",
    full={"clients": 200, "concurrency": 20, "warmup": 1.0, "duration": 5.0},
    smoke={"clients": 20, "concurrency": 10, "warmup": 0.2, "duration": 0.6},
    metrics=(
        Metric("msgs_per_s", "round-trips/s", "msg/s", True, headline=True),
        Metric("p50_ms", "round-trip p50", "ms", False),
        Metric("p99_ms", "round-trip p99", "ms", False, headline=True),
        Metric("server_cpu_us_per_msg", "server CPU per round-trip", "µs", False),
        Metric("clients", "clients", "", None),
        *CPU_SHARE,
    ),
    summarize=summarize,
)
