"""``GET /metrics``: the process's (or every worker's) families, and the deployment's listings.

Two kinds of figures:

* what each process counts (``families.py``): with several workers of one host, the sum of all
  of them, read from the multiprocess directory (``multiprocess.py``) by whichever worker the
  scrape reaches; with one process, its own registry. Several hosts are several scrape
  targets: sum them in PromQL.
* ``greenroom_deployment_rooms`` / ``greenroom_deployment_seats``, read from the driver's
  listings at scrape time: the whole deployment, every host included, the same answer from
  any process. Not to be summed over targets.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any

from . import record
from .families import families
from .multiprocess import directory

__all__ = ["DeploymentCollector", "MetricsRoute"]

log = logging.getLogger("greenroom.metrics")

Response = tuple[str, list[tuple[str, str]], bytes]


class DeploymentCollector:
    """Rooms and seats by room name, from the driver: the same answer from any process."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        rooms = GaugeMetricFamily("greenroom_deployment_rooms", "Rooms listed in the whole "
                                  "deployment", labels=["name"])
        seats = GaugeMetricFamily("greenroom_deployment_seats", "Seats taken in the "
                                  "deployment's listed rooms (clients, reservations, held seats)",
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
        taken: Tally[str] = Tally()
        for listing in listings:
            by_name[listing.name] += 1
            taken[listing.name] += listing.clients
        for name in sorted(by_name):
            rooms.add_metric([name], by_name[name])
            seats.add_metric([name], taken[name])
        up.add_metric([], 1)
        yield from (rooms, seats, up)


class MetricsRoute:
    """The route ``Metrics.path`` is served by, in the Prometheus text format."""

    def __init__(self, driver: Any, token: str | None = None) -> None:
        from prometheus_client import CollectorRegistry

        self._token = token.encode() if token else None
        families()
        self.deployment = CollectorRegistry(auto_describe=True)
        self.deployment.register(DeploymentCollector(driver))

    def __call__(self, environ: dict[str, Any], rest: str) -> Response:
        from prometheus_client import (
            CONTENT_TYPE_LATEST,
            REGISTRY,
            CollectorRegistry,
            generate_latest,
        )

        from ..web import credentials

        if self._token is not None and not credentials.authorized(environ, self._token, "metrics"):
            body = b"metrics need their token (Bearer, or Basic password)\n"
            return "401 Unauthorized", [
                ("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                ("WWW-Authenticate", credentials.CHALLENGE.format(realm="greenroom metrics"))], body
        if rest.strip("/") or environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            body = b"not found\n"
            return "404 Not Found", [("Content-Type", "text/plain"),
                                     ("Content-Length", str(len(body)))], body
        record.active.flush()
        if directory() is not None:
            from prometheus_client import multiprocess

            process = CollectorRegistry()
            multiprocess.MultiProcessCollector(process)
        else:
            process = REGISTRY
        body = generate_latest(process) + generate_latest(self.deployment)
        return "200 OK", [("Content-Type", CONTENT_TYPE_LATEST),
                          ("Content-Length", str(len(body)))], body
