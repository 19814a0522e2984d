"""idle: 2,000 clients joined and silent; the server's resident memory per client.

Measured as (RSS with the clients − RSS after a warm-up join/leave) / clients, after a short
settle. Node's heap grows in steps and collects lazily, so expect some noise on that side.
"""

from __future__ import annotations

from ..loadgen import LoadResult
from .base import LoadScenario, Metric, Metrics, per


def summarize(load: LoadResult) -> Metrics:
    before, after = load.marks["baseline"], load.marks["connected"]
    clients = load.result["clients"]
    return {
        "rss_kb_per_client": per(after.server.rss_bytes - before.server.rss_bytes, clients, 1 / 1024),
        "rss_baseline_mb": before.server.rss_bytes / 2**20,
        "rss_connected_mb": after.server.rss_bytes / 2**20,
        "clients": clients,
        "errors": load.result["error_count"],
    }


IDLE = LoadScenario(
    name="idle",
    title="idle connections (2,000 clients in rooms of 50)",
    full={"clients": 2000, "concurrency": 50, "settle": 2.0},
    smoke={"clients": 100, "concurrency": 20, "settle": 0.2},
    metrics=(
        Metric("rss_kb_per_client", "server RSS per idle client", "KiB", False, headline=True),
        Metric("rss_baseline_mb", "server RSS before", "MiB", False),
        Metric("rss_connected_mb", "server RSS with the clients", "MiB", False),
        Metric("clients", "clients connected", "", None),
        Metric("errors", "failed joins", "", False),
    ),
    summarize=summarize,
)
