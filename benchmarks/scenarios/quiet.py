"""quiet: 2,000 clients in 500 rooms of 4, joined and silent; the server's CPU meanwhile.

A room with nothing to send should cost next to nothing, however many there are: this is the
cost of patch clocks that find no change, and of keepalive pings (both servers ping every 3 s,
their default). Measured over ``duration`` seconds after a settle, with no client sending.
"""

from __future__ import annotations

from ..loadgen import LoadResult
from .base import CPU_SHARE, LoadScenario, Metric, Metrics, cpu_share, per

PER_ROOM = 4


def summarize(load: LoadResult) -> Metrics:
    result, window = load.result, load.window()
    rooms = result["rooms"]
    return {
        "cpu_us_per_room_s": per(window.server_cpu, rooms * window.seconds, 1e6),
        "rooms": rooms,
        "clients": result["clients"],
        "errors": result["error_count"],
        **cpu_share(window),
    }


QUIET = LoadScenario(
    name="quiet",
    title="quiet rooms (2,000 clients in 500 rooms of 4, nobody sends)",
    full={"clients": 2000, "concurrency": 50, "perRoom": PER_ROOM, "settle": 2.0, "duration": 6.0},
    smoke={"clients": 40, "concurrency": 20, "perRoom": PER_ROOM, "settle": 0.2, "duration": 0.5},
    metrics=(
        Metric("cpu_us_per_room_s", "server CPU per quiet room", "µs per second", False, headline=True),
        Metric("rooms", "rooms", "", None),
        Metric("clients", "clients", "", None),
        Metric("errors", "failed joins", "", False),
        *CPU_SHARE,
    ),
    summarize=summarize,
)
