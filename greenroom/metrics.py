"""Prometheus metrics: what greenroom counts, and ``/metrics`` to serve it.

Two kinds of figures, aggregated differently under a multi-process deployment:

* **Deployment gauges** (rooms and clients by room name) are read from the driver's listings
  at scrape time. Every process sees the same listings, so whichever worker a scrape reaches
  answers for the whole deployment, with nothing to add up.
* **Counters and histograms** (joins, messages, patch sizes, RPC calls...) are counted where
  things happen, in each worker. With several workers they use prometheus_client's
  multiprocess mode: each worker writes its values to files in ``PROMETHEUS_MULTIPROC_DIR``
  (set by the master before it forks) and a scrape of any worker sums every worker's files.
  That survives worker restarts (a dead worker's counts stay in the sum, as counters must),
  where a master that collected from live workers over a pipe would lose them, and it keeps
  the master free of any metrics code.

The counters are defined here and not yet incremented: the core that would increment them is
being reorganised. The comment above each says where it is to be counted.

Enabled with ``Server(metrics=Metrics())`` or ``GREENROOM_METRICS_PATH=/metrics``; needs the
``prometheus_client`` package (``pip install 'greenroom[metrics]'``).
"""

from __future__ import annotations

import logging
import os
from collections import Counter as Tally
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("greenroom.metrics")


@dataclass(frozen=True)
class Metrics:
    """Where ``/metrics`` is served: a path of its own, never one of greenroom's routes; with a
    ``token``, only to scrapes that present it (greenroom/web/credentials.py: Bearer, or Basic
    with the token as password), since room names and counts tell a stranger what is played."""

    path: str = "/metrics"
    token: str | None = None

    def __post_init__(self) -> None:
        from .web.app import route_prefix
        from .web.credentials import check_token

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
    from .web.credentials import check_token

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
    server.routes[metrics.path] = MetricsRoute(server.matchmaker.driver, metrics.token)
    log.info("Prometheus metrics served at %s%s", metrics.path,
             " (Bearer or Basic, with its token)" if metrics.token else "")
    return metrics


# -- what is counted in each process (multiprocess-mode ready) -----------------------------------
def _define() -> dict[str, Any]:
    from prometheus_client import Counter, Histogram

    latency = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
    return {
        # web/http.MatchmakeRoute, after a seat reservation is returned (label: room name)
        "joins": Counter("greenroom_joins", "Seats reserved by matchmaking", ["name"]),
        # MatchmakeRoute._fail and a refused room socket (socket._refuse), by error code
        "join_failures": Counter("greenroom_join_failures", "Matchmaking requests refused",
                                 ["name", "code"]),
        # around the matchmaker call in MatchmakeRoute.__call__, by method
        "matchmaking_seconds": Histogram("greenroom_matchmaking_seconds",
                                         "Time to answer a matchmaking request", ["method"],
                                         buckets=latency),
        # where a room's seat reservation timer fires (Room._expire_seat today)
        "reservations_expired": Counter("greenroom_seat_reservations_expired",
                                        "Seats reserved but never claimed by a socket", ["name"]),
        # the socket read loop (frames posted to the room) and the client's send path; bytes
        # alongside, from the frame lengths: no extra work per message beyond an increment
        "messages_in": Counter("greenroom_messages_received", "Client messages received", ["name"]),
        "messages_out": Counter("greenroom_messages_sent", "Frames sent to clients", ["name"]),
        "bytes_in": Counter("greenroom_received_bytes", "Bytes received on room sockets", ["name"]),
        "bytes_out": Counter("greenroom_sent_bytes", "Bytes sent on room sockets", ["name"]),
        # around serializer.encode_patches in the room's patch tick, and its output's size
        "patch_seconds": Histogram("greenroom_patch_encode_seconds", "Time to encode a state patch",
                                   ["name"], buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                      0.005, 0.01, 0.025, 0.05, 0.1)),
        "patch_bytes": Histogram("greenroom_patch_bytes", "Size of an encoded state patch",
                                 ["name"], buckets=(16, 64, 256, 1024, 4096, 16384, 65536, 262144)),
        # where web/wsfixes drops a connection whose send backlog overflowed
        "backlog_drops": Counter("greenroom_send_backlog_drops",
                                 "Clients dropped because they did not read fast enough", ["name"]),
        # the cluster's hand-off sender (one per connection passed to its owner)
        "handoffs": Counter("greenroom_handoffs", "Room sockets handed to their owning worker"),
        # presence/rpc.RPC.call: every call, and RemoteCallTimeout
        "rpc_calls": Counter("greenroom_rpc_calls", "Calls to other processes", ["method"]),
        "rpc_timeouts": Counter("greenroom_rpc_timeouts", "Calls to other processes that timed out",
                                ["method"]),
        # where PresenceUnavailable / DriverUnavailable are raised (presence, driver)
        "backend_errors": Counter("greenroom_backend_errors", "Presence or driver calls that failed",
                                  ["backend"]),
        # the master, which has no metrics of its own: counted by the respawned worker at boot
        # (the master passes the restart count in its environment)
        "worker_restarts": Counter("greenroom_worker_restarts", "Workers respawned by the master"),
    }


_counters: dict[str, Any] | None = None


def counters() -> dict[str, Any]:
    """The process's counters and histograms, defined once (prometheus_client refuses twice)."""
    global _counters
    if _counters is None:
        _counters = _define()
    return _counters


# -- what is read from the deployment at scrape time ---------------------------------------------
class DeploymentCollector:
    """Rooms and clients by room name, from the driver: the same answer from any process."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        rooms = GaugeMetricFamily("greenroom_rooms", "Rooms of the deployment", labels=["name"])
        clients = GaugeMetricFamily("greenroom_clients",
                                    "Seats taken in the deployment's rooms (clients and reservations)",
                                    labels=["name"])
        up = GaugeMetricFamily("greenroom_listings_up", "1 when the room listings could be read")
        try:
            listings = self.driver.query(None)
        except Exception as exc:  # noqa: BLE001 - a scrape must still answer, with up=0
            log.warning("metrics: cannot read the room listings: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        by_name: Tally[str] = Tally()
        seats: Tally[str] = Tally()
        for listing in listings:
            by_name[listing.name] += 1
            seats[listing.name] += listing.clients
        for name in sorted(by_name):
            rooms.add_metric([name], by_name[name])
            clients.add_metric([name], seats[name])
        up.add_metric([], 1)
        yield from (rooms, clients, up)


class MetricsRoute:
    """``GET /metrics``: this process's (or, in multiprocess mode, every worker's) counters and
    the deployment gauges, in the Prometheus text format."""

    def __init__(self, driver: Any, token: str | None = None) -> None:
        from prometheus_client import CollectorRegistry

        self._token = token.encode() if token else None
        counters()
        self.deployment = CollectorRegistry(auto_describe=True)
        self.deployment.register(DeploymentCollector(driver))

    def __call__(self, environ: dict[str, Any], rest: str) -> tuple[str, list[tuple[str, str]], bytes]:
        from prometheus_client import (
            CONTENT_TYPE_LATEST,
            REGISTRY,
            CollectorRegistry,
            generate_latest,
        )

        from .web import credentials

        if self._token is not None and not credentials.authorized(environ, self._token, "metrics"):
            body = b"metrics need their token (Bearer, or Basic password)\n"
            return "401 Unauthorized", [
                ("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                ("WWW-Authenticate", credentials.CHALLENGE.format(realm="greenroom metrics"))], body
        if rest.strip("/") or environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            body = b"not found\n"
            return "404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))], body
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            process = CollectorRegistry()
            multiprocess.MultiProcessCollector(process)
        else:
            process = REGISTRY
        body = generate_latest(process) + generate_latest(self.deployment)
        return "200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))], body
