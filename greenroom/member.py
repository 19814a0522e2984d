"""One Server as a member of a pre-fork group on this host: what a worker of ``greenroom serve
--workers N`` and a worker of ``gunicorn -k greenroom.gunicorn.Worker -w N`` have in common.

Both share a listening port with their siblings, so the kernel gives a room socket to any of
them. A member therefore owns a hand-off endpoint (greenroom.web.handoff) that is attached to
its WSGI servers before they accept, finds where a moved room lives (the listings), forgets
the listings of a sibling whose exit its master reports, describes the group in /health, and
drains: no new rooms or seats here, announced to the group before the rooms go.

What differs between the two hosts (who forks, who watches heartbeats, which signals mean
what) stays in greenroom.serving and greenroom.gunicorn.
"""

from __future__ import annotations

import logging
import os
from typing import Any

__all__ = ["ClusterMember", "accept_per_wakeup"]

log = logging.getLogger("greenroom.worker")


def accept_per_wakeup() -> int:
    """Connections one worker accepts per wake-up of the shared listener: small, so that a burst
    of connections is spread over the workers instead of landing on the first one awake."""
    from .cluster.listeners import ACCEPT_PER_WAKEUP

    raw = os.environ.get("GREENROOM_MAX_ACCEPT")
    return int(raw) if raw else ACCEPT_PER_WAKEUP


class ClusterMember:
    """The hand-off, placement and health side of one worker; ``server`` is its greenroom Server
    (whose presence is shared: a member without one could not reach its siblings' rooms)."""

    def __init__(self, server: Any, process_id: str, run_dir: str, generation: int) -> None:
        from .cluster.naming import ProcessName
        from .web.handoff import HandOff

        name = ProcessName.parse(process_id)
        if name is None:
            raise ValueError(f"{process_id!r} is not a cluster processId")
        self.server = server
        self.process_id = process_id
        self.cluster = name.cluster
        self.generation = generation
        self.handoff = HandOff(process_id, run_dir, locate=self._locate, on_exited=self.sibling_exited)
        info = server.registry.info
        info.cluster, info.generation, info.handoffs = self.cluster, generation, self.handoff.counts
        server.health_sections["cluster"] = self.health
        self.draining = False

    def prepare(self, wsgi_server: Any) -> None:
        """Before ``wsgi_server`` accepts: no room socket may ever be served without the hand-off."""
        wsgi_server.max_accept = accept_per_wakeup()
        wsgi_server.handoff = self.handoff

    def share_address(self) -> None:
        """Seat reservations name no host: siblings share the address the client already used
        (path prefix included). ``Server.listen`` advertises the bound address, which would
        send clients around the proxy in front; ``GREENROOM_PUBLIC_ADDRESS`` still wins."""
        if not os.environ.get("GREENROOM_PUBLIC_ADDRESS"):
            self.server.set_public_address(None)

    def open(self, wsgi_server: Any) -> None:
        """Bind the hand-off endpoint; sockets adopted from siblings are served by ``wsgi_server``.
        Last step of a boot: a sibling that finds the endpoint sends sockets to it."""
        self.handoff.serve(wsgi_server)

    # -- serving -------------------------------------------------------------------------------
    def _locate(self, room_id: str) -> str | None:
        listing = self.server.driver.get(room_id)
        return listing.process_id if listing is not None and not listing.is_expired() else None

    def sibling_exited(self, process_id: str) -> None:
        """The master reports a sibling's exit: its listings go now, not at the lease's end."""
        try:
            self.server.registry.forget(process_id)
            forget = getattr(self.server.matchmaker.placement, "forget", None)
            if forget is not None:
                forget(process_id)
        except Exception as exc:  # noqa: BLE001 - the leases remove them later anyway
            log.warning("could not remove the listings of exited process %s: %s", process_id, exc)
        else:
            log.info("worker %s exited: its listings were removed", process_id)

    def health(self) -> dict[str, Any]:
        """The whole group as the registry shows it: every worker of this master."""
        processes = [p for p in self.server.registry.alive_processes() if p.cluster == self.cluster]
        workers = [{"processId": p.process_id, "pid": p.pid, "generation": p.generation,
                    "state": p.state, "rooms": p.rooms, "clients": p.ccu,
                    "handoffs": p.handoffs or {}} for p in sorted(processes, key=lambda p: p.process_id)]
        totals = {key: sum(w["handoffs"].get(key, 0) for w in workers)
                  for key in ("sent", "received", "failed")}
        return {"id": self.cluster, "generation": self.generation,
                "handoffs": dict(self.handoff.counts),
                "handoffLatencyMs": self.handoff.latency(), "workersAlive": len(workers),
                "workers": workers, "handoffsTotal": totals}

    # -- draining ------------------------------------------------------------------------------
    def start_draining(self) -> list[Any]:
        """No new rooms or seats here from now on; reconnections and the seats already reserved
        still reach the rooms (the hand-off endpoint stays open). Returns the rooms."""
        self.draining = True
        rooms = list(self.server.matchmaker.rooms.values())
        for room in rooms:
            room._gr.post(room.lock)
        self.server.registry.info.state = "draining"
        try:
            self.server.registry.beat()  # placements elsewhere skip us from now on
        except Exception as exc:  # noqa: BLE001
            log.warning("worker %s: could not announce that it drains: %s", self.process_id, exc)
        return rooms

    def close(self) -> None:
        self.handoff.close()
