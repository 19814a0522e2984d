"""Prometheus metrics: the ``Metrics`` setting, and how a Server turns them on.

The package, one idea a module:

* ``record``: what call sites tell the metrics (free no-ops until enabled);
* ``families``: the Prometheus metric families counted in each process;
* ``route``: ``GET /metrics``, the process's (or every worker's) figures and the deployment's;
* ``multiprocess``: how a master makes the figures of all its workers one (before forking,
  and when a worker exits), for ``greenroom serve --workers N`` and gunicorn alike.

Enabled with ``Server(metrics=Metrics())`` or ``GREENROOM_METRICS_PATH=/metrics``; needs the
``prometheus_client`` package (``pip install 'greenroom[metrics]'``). README "Operating" lists
the metrics.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .multiprocess import prepare_multiprocess, process_exited

__all__ = ["Metrics", "attach", "from_env", "prepare_multiprocess", "process_exited"]

log = logging.getLogger("greenroom.metrics")


@dataclass(frozen=True)
class Metrics:
    """Where ``/metrics`` is served: a path of its own, never one of greenroom's routes; with a
    ``token``, only to scrapes that present it (greenroom/web/credentials.py: Bearer, or Basic
    with the token as password), since room names and counts tell a stranger what is played."""

    path: str = "/metrics"
    token: str | None = None

    def __post_init__(self) -> None:
        from ..web.app import route_prefix
        from ..web.credentials import check_token

        object.__setattr__(self, "path", route_prefix(self.path, "metrics"))
        if self.token is not None:
            check_token(self.token, "metrics")


def from_env(environ: Mapping[str, str] | None = None) -> Metrics | None:
    """``GREENROOM_METRICS_PATH`` and/or ``GREENROOM_METRICS_TOKEN`` (either one enables it)."""
    environ = os.environ if environ is None else environ
    path = environ.get("GREENROOM_METRICS_PATH")
    token = environ.get("GREENROOM_METRICS_TOKEN") or None
    if not path and not token:
        return None
    from ..web.credentials import check_token

    try:
        if token is not None:
            check_token(token, "metrics")
    except ValueError as exc:  # name the variable: the operator set it, not the code
        raise ValueError(f"GREENROOM_METRICS_TOKEN: {exc}") from None
    try:
        return Metrics(path or "/metrics", token)
    except ValueError as exc:
        raise ValueError(f"GREENROOM_METRICS_PATH: {exc}") from None


def attach(server: Any, metrics: Metrics | bool | None) -> Metrics | None:
    """Add the metrics route to ``server`` when enabled (None: from the environment)."""
    if metrics is None:
        metrics = from_env()
    if not metrics:
        return None
    if not isinstance(metrics, Metrics):
        raise TypeError(f"metrics must be a greenroom.metrics.Metrics, not {type(metrics).__name__}")
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise RuntimeError(f"metrics at {metrics.path} need the prometheus_client package: "
                           "pip install 'greenroom[metrics]'") from None
    from .record import enable
    from .route import MetricsRoute

    enable()
    server.routes[metrics.path] = MetricsRoute(server.matchmaker.driver, metrics.token)
    log.info("Prometheus metrics served at %s%s", metrics.path,
             " (Bearer or Basic, with its token)" if metrics.token else "")
    return metrics
