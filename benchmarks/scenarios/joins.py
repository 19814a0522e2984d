"""joins: matchmake + WebSocket + JOIN_ROOM + ack, then a consented leave, in a closed loop.

A join counts when the room's ``welcome`` arrives: both servers queue it until they have
processed the client's JOIN_ROOM ack, so the latency covers the whole handshake.
"""

from __future__ import annotations

from ..loadgen import LoadResult
from .base import CPU_SHARE, LoadScenario, Metric, Metrics, cpu_share, per


def summarize(load: LoadResult) -> Metrics:
    result, window = load.result, load.window()
    joins = result["operations"]
    return {
        "joins_per_s": joins / window.seconds,
        "p50_ms": result["latency"]["p50_ms"],
        "p99_ms": result["latency"]["p99_ms"],
        "server_cpu_ms_per_join": per(window.server_cpu, joins, 1e3),
        "errors": result["error_count"],
        **cpu_share(window),
    }


JOINS = LoadScenario(
    name="joins",
    title="joins (matchmake + connect + JOIN_ROOM + ack, 20 concurrent joiners)",
    full={"concurrency": 20, "warmup": 1.0, "duration": 5.0},
    smoke={"concurrency": 4, "warmup": 0.2, "duration": 0.6},
    metrics=(
        Metric("joins_per_s", "joins/s", "joins/s", True, headline=True),
        Metric("p50_ms", "join p50", "ms", False),
        Metric("p99_ms", "join p99", "ms", False, headline=True),
        Metric("server_cpu_ms_per_join", "server CPU per join (incl. leave)", "ms", False),
        Metric("errors", "failed joins", "", False),
        *CPU_SHARE,
    ),
    summarize=summarize,
)
