"""What a scenario is: parameters for the load generator, and how its raw result becomes metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..loadgen import LoadResult, Window

Metrics = dict[str, float | int | str | None]


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool | None  # None: context (CPU share...), not a score
    headline: bool = False  # shown in the chart


#: A load generator saturating its core means the server was not the bottleneck.
LOADGEN_SATURATED_PCT = 90.0
#: Other processes using this much of a core during a window make its numbers suspect.
BACKGROUND_NOISY_PCT = 15.0

CPU_SHARE = (
    Metric("server_cpu_pct", "server CPU", "% of a core", None),
    Metric("server_kernel_pct", "of which in the kernel", "% of server CPU", None),
    Metric("loadgen_cpu_pct", "load generator CPU", "% of a core", None),
    Metric("other_cpu_pct", "other processes' CPU (noise)", "% of a core", None),
)


@dataclass(frozen=True)
class LoadScenario:
    """Runs loadgen.mjs against each server; ``summarize`` turns its result into metrics."""

    name: str
    title: str
    full: dict[str, Any]
    smoke: dict[str, Any]
    metrics: tuple[Metric, ...]
    summarize: Callable[[LoadResult], Metrics]
    needs_server = True

    def params(self, smoke: bool) -> dict[str, Any]:
        return dict(self.smoke if smoke else self.full)

    def timeout(self, smoke: bool) -> float:
        """Upper bound for one run of the load generator, from its own parameters."""
        p = self.params(smoke)
        return 30.0 + 3 * (p.get("warmup", 0) + p.get("duration", 0) + p.get("settle", 0))


@dataclass(frozen=True)
class LocalScenario:
    """Measured without servers; ``measure`` returns metrics for both sides at once."""

    name: str
    title: str
    metrics: tuple[Metric, ...]
    measure: Callable[[bool], dict[str, Metrics]]
    needs_server = False


Scenario = LoadScenario | LocalScenario


def cpu_share(window: Window) -> Metrics:
    return {"server_cpu_pct": round(window.server_cpu_pct, 1),
            "server_kernel_pct": round(window.server_kernel_pct, 1),
            "loadgen_cpu_pct": round(window.loadgen_cpu_pct, 1),
            "other_cpu_pct": round(window.other_cpu_pct, 1)}


def per(value: float, count: float, scale: float = 1.0) -> float | None:
    """``value / count * scale``, or None when nothing was counted."""
    return value / count * scale if count else None
