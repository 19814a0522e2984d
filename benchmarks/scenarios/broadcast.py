"""broadcast: 10 rooms × 20 clients, every player moving before each 20 Hz state patch.

The rate is fixed, so delivered frames/s only differ when a server falls behind; what tells
the servers apart is the CPU each patch costs, and from it the capacity: frames delivered per
second of server CPU.
"""

from __future__ import annotations

from ..loadgen import LoadResult
from .base import CPU_SHARE, LoadScenario, Metric, Metrics, cpu_share, per


def summarize(load: LoadResult) -> Metrics:
    result, window = load.result, load.window()
    frames, patches = result["frames"], result["operations"]
    return {
        "frames_per_s": frames / window.seconds,
        "patches_per_s": patches / window.seconds,
        "bytes_per_frame": per(result["bytes"], frames),
        "server_cpu_us_per_patch": per(window.server_cpu, patches, 1e6),
        "frames_per_cpu_s": per(frames, window.server_cpu),
        "rooms": result["rooms"],
        "clients": result["clients"],
        "mode": result["mode"],
        **cpu_share(window),
    }


BROADCAST = LoadScenario(
    name="broadcast",
    title="broadcast (10 rooms × 20 clients, schema state patches at 20 Hz, all players moving)",
    full={"rooms": 10, "perRoom": 20, "warmup": 1.0, "duration": 5.0},
    smoke={"rooms": 2, "perRoom": 5, "warmup": 0.2, "duration": 0.6},
    metrics=(
        Metric("frames_per_s", "delivered frames/s", "frames/s", True),
        Metric("patches_per_s", "patches/s (all rooms)", "patches/s", True),
        Metric("bytes_per_frame", "bytes per frame", "B", False),
        Metric("server_cpu_us_per_patch", "server CPU per patch (20 clients)", "µs", False,
               headline=True),
        Metric("frames_per_cpu_s", "capacity: frames per server CPU-second", "frames", True,
               headline=True),
        Metric("mode", "state sent as", "", None),  # "message": greenroom.schema missing
        Metric("rooms", "rooms", "", None),
        Metric("clients", "clients", "", None),
        *CPU_SHARE,
    ),
    summarize=summarize,
)
