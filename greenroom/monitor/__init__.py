"""The monitor: a page and a JSON API to watch and act on the rooms of a deployment.

Off unless enabled, with a token: ``Server(monitor=Monitor(token="..."))``, or the environment
(``GREENROOM_MONITOR_TOKEN``, and ``GREENROOM_MONITOR_PATH``, default ``/monitor``), which is
how ``greenroom serve`` and every worker of a cluster get it. Every process of a distributed
deployment answers the monitor's calls for its own rooms, whether or not it serves the page.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Monitor", "attach", "from_env"]


@dataclass(frozen=True)
class Monitor:
    """Where the monitor is served and the token that opens it."""

    token: str
    path: str = "/monitor"

    def __post_init__(self) -> None:
        from ..web.app import route_prefix
        from ..web.credentials import check_token

        check_token(self.token, "monitor")

        object.__setattr__(self, "path", route_prefix(self.path, "monitor"))


def from_env(environ: Mapping[str, str] | None = None) -> Monitor | None:
    environ = os.environ if environ is None else environ
    token = environ.get("GREENROOM_MONITOR_TOKEN")
    if not token:
        return None
    try:
        return Monitor(token=token, path=environ.get("GREENROOM_MONITOR_PATH") or "/monitor")
    except ValueError as exc:  # name the variables: the operator set them, not the code
        raise ValueError(f"GREENROOM_MONITOR_TOKEN / GREENROOM_MONITOR_PATH: {exc}") from None


def attach(server: Any, monitor: Monitor | bool | None) -> Monitor | None:
    """Serve ``server``'s monitor calls over RPC and, when enabled, add its routes.

    ``monitor``: a Monitor, None (from the environment) or False (off whatever the environment).
    """
    from .deployment import Deployment, register

    matchmaker = server.matchmaker
    if matchmaker.rpc is not None:
        register(matchmaker.rpc, matchmaker)
    if monitor is None:
        monitor = from_env()
    if not monitor:
        return None
    if not isinstance(monitor, Monitor):
        raise TypeError(f"monitor must be a greenroom.monitor.Monitor, not {type(monitor).__name__}")
    from .api import MonitorAPI

    server.routes[monitor.path] = MonitorAPI(Deployment(matchmaker, server.registry), monitor.token)
    logging.getLogger("greenroom.monitor").info(
        "monitor served at %s/ (HTTP Basic or Bearer, with its token)", monitor.path)
    return monitor
