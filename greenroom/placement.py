"""Where a new room is created: the placement policy of a deployment of several processes.

The default, :class:`LeastLoaded`, puts a room in the serving process with the fewest clients,
then the fewest rooms, preferring the process that took the request on a tie (no round trip).
Loads come from the process registry, which each process refreshes once per heartbeat; alone,
that would send every room created between two beats to the same "least loaded" process (200
simultaneous joinOrCreate would fill one worker). So each placement is also counted at once in
a shared hash (``greenroom:placements``, one field per process), and the owner settles its
count when its next beat reports the rooms for real: a pending room weighs one room and one
client (its creator). Processes that are draining (a retired generation) get no new rooms, nor
do processes that report being at their room or client limit (greenroom.capacity).

Replace it with ``Server(placement=...)``: any object with ``choose(name, options) -> processId``
(and, optionally, ``settle()``, called at each heartbeat of this process).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from .presence import PresenceUnavailable

__all__ = ["LeastLoaded", "Placement"]

log = logging.getLogger("greenroom.placement")

PENDING_KEY = "greenroom:placements"


class Placement(Protocol):
    def choose(self, name: str, options: Mapping[str, Any]) -> str:
        """The processId that creates the next room ``name`` (may be this process's)."""


class LeastLoaded:
    def __init__(self, registry: Any, presence: Any, process_id: str, key: str = PENDING_KEY) -> None:
        self.registry = registry
        self.presence = presence
        self.process_id = process_id
        self.key = key

    def choose(self, name: str, options: Mapping[str, Any]) -> str:
        try:
            candidates = [p for p in self.registry.alive_processes() if p.state == "serving"]
            if not candidates:
                return self.process_id
            pending = {pid: _as_int(n) for pid, n in self.presence.hgetall(self.key).items()}
        except PresenceUnavailable:
            raise
        except Exception:  # noqa: BLE001 - a registry hiccup only costs the balancing
            log.exception("placement: could not read the process registry; creating locally")
            return self.process_id

        def load(info: Any) -> tuple[int, int, bool, str]:
            extra = pending.get(info.process_id, 0)
            return (info.ccu + extra, info.rooms + extra, info.process_id != self.process_id,
                    info.process_id)

        open_ = [info for info in candidates if not _full(info, pending.get(info.process_id, 0))]
        if not open_:
            return self.process_id  # the matchmaker asks every process before it gives up
        best = min(open_, key=load).process_id
        self.presence.hincrby(self.key, best, 1)
        return best

    def settle(self) -> None:
        """At this process's heartbeat: the rooms placed here are in the load it reports now."""
        pending = _as_int(self.presence.hget(self.key, self.process_id))
        if pending:
            self.presence.hincrby(self.key, self.process_id, -pending)

    def forget(self, process_id: str) -> None:
        self.presence.hdel(self.key, process_id)


def _full(info: Any, pending: int) -> bool:
    """What the registry last heard says this process is at its limit (the process itself
    decides: this only spares it a request it would refuse)."""
    max_rooms, max_clients = getattr(info, "max_rooms", None), getattr(info, "max_clients", None)
    return ((max_rooms is not None and info.rooms + pending >= max_rooms)
            or (max_clients is not None and info.ccu + pending >= max_clients))


def _as_int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
