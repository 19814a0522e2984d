"""Which greenroom processes are alive, where they listen and how loaded they are.

Each process keeps a key ``<prefix>:<process_id>`` holding its description, written with an
expiry of ``lease`` seconds and rewritten every ``heartbeat`` seconds by a greenlet. A process
that dies stops rewriting it and drops out once the lease runs out; one that stalls for less
than the lease (a GC pause, a blocking call, a busy host) misses a few beats and is never
declared dead: one missed health check must not hide live rooms (colyseus #968).

The hash ``<prefix>es`` remembers when each process was last seen, so a reaper can find the
processes whose lease ran out and clean up what they left in the driver.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import gevent
import gevent.event

from .drivers.base import Driver
from .presence.base import Presence
from .settings import check_lease

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT = 2.0
DEFAULT_LEASE = 10.0
# A process unseen for this many leases is gone for good: its listings may be removed.
REAP_AFTER_LEASES = 3

Load = Callable[[], tuple[int, int]]


@dataclass
class ProcessInfo:
    process_id: str
    address: str | None = None
    public_address: str | None = None
    rooms: int = 0
    ccu: int = 0
    #: "serving", or "draining" for a worker retired by a reload: it takes no new rooms.
    state: str = "serving"
    #: The pre-fork cluster (master) and generation of a cluster worker; None otherwise.
    cluster: str | None = None
    generation: int | None = None
    #: A cluster worker's hand-off counters (sent, received, failed).
    handoffs: dict[str, int] | None = None
    #: Where this process lists its rooms ("RedisDriver redis://..."): processes that share a
    #: presence but not this would split players between them, so each checks the others'.
    listings: str | None = None
    #: Its room and client limits (greenroom.capacity); None: no limit.
    max_rooms: int | None = None
    max_clients: int | None = None
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    @classmethod
    def from_json(cls, text: str) -> ProcessInfo:
        data = json.loads(text)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class ProcessRegistry:
    def __init__(
        self,
        presence: Presence,
        process_id: str,
        *,
        address: str | None = None,
        public_address: str | None = None,
        heartbeat: float = DEFAULT_HEARTBEAT,
        lease: float = DEFAULT_LEASE,
        load: Load | None = None,
        driver: Driver | None = None,
        on_renewed: Callable[[int], None] | None = None,
        prefix: str = "greenroom:process",
    ) -> None:
        """``load()`` returns (rooms, ccu) at each beat; ``driver`` gets its leases renewed and
        ``on_renewed(count)`` hears how many listings that renewal found (fewer than the process
        holds: a backend lost some, and the owner should list them again)."""
        check_lease(heartbeat, lease)
        self.presence = presence
        self.heartbeat = heartbeat
        self.lease = lease
        self.driver = driver
        self.prefix = prefix
        self.info = ProcessInfo(process_id, address=address, public_address=public_address,
                                listings=_listings_of(driver))
        self._warned_listings: set[str] = set()
        self._load = load
        self._on_renewed = on_renewed
        self._stopping = gevent.event.Event()
        self._beater: gevent.Greenlet | None = None
        self._failing = False
        self._last_reap = time.monotonic()

    @property
    def process_id(self) -> str:
        return self.info.process_id

    @property
    def _seen_key(self) -> str:
        return f"{self.prefix}es"

    def _info_key(self, process_id: str) -> str:
        return f"{self.prefix}:{process_id}"

    # -- this process --------------------------------------------------------------------
    def start(self) -> None:
        """Announce this process now (errors propagate: boot fails) then keep it announced."""
        self.beat()
        self.check_listings()
        self._stopping.clear()
        self._beater = gevent.spawn(self._beat_forever)

    def stop(self, *, unregister: bool = True) -> None:
        """Stop beating; ``unregister`` removes the entry at once instead of letting it lapse."""
        self._stopping.set()
        if self._beater is not None:
            self._beater.join()  # never killed: it may be inside a Redis or Mongo call (D8)
            self._beater = None
        if unregister:
            try:
                self.presence.delete(self._info_key(self.process_id))
                self.presence.hdel(self._seen_key, self.process_id)
            except Exception as exc:  # shutting down: the lease will lapse by itself
                log.warning(
                    "registry: could not unregister process %s (%s); it drops out within %gs",
                    self.process_id,
                    exc,
                    self.lease,
                )

    def set_load(self, rooms: int, ccu: int) -> None:
        self.info.rooms, self.info.ccu = rooms, ccu

    def beat(self) -> None:
        """One heartbeat: refresh this process's entry and the lease of its listings."""
        if self._load is not None:
            self.set_load(*self._load())
        self.info.updated_at = time.time()
        self.presence.setex(
            self._info_key(self.process_id), json.dumps(asdict(self.info)), self.lease
        )
        self.presence.hset(self._seen_key, self.process_id, repr(self.info.updated_at))
        if self.driver is not None:
            renewed = self.driver.renew(self.process_id, self.lease)
            if self._on_renewed is not None:
                self._on_renewed(renewed)

    def _beat_forever(self) -> None:
        while not self._stopping.wait(self.heartbeat):
            try:
                self.beat()
                self._reap_now_and_then()
            except Exception as exc:
                self._beat_failed(exc)
            else:
                self._beat_recovered()

    def _reap_now_and_then(self) -> None:
        if time.monotonic() - self._last_reap >= self.lease:
            self._last_reap = time.monotonic()
            self.reap()
            self.check_listings()

    def check_listings(self) -> list[str]:
        """Log, once per process, every live process that lists its rooms elsewhere than this
        one (say one started with --mongo-uri and one without); their ids."""
        mine = self.info.listings
        others = [info for info in self.alive_processes()
                  if info.process_id != self.process_id and info.listings and mine
                  and info.listings != mine]
        for info in others:
            if info.process_id not in self._warned_listings:
                self._warned_listings.add(info.process_id)
                log.error("registry: process %s lists its rooms in %s but this process %s in %s; "
                          "processes sharing a presence must share one listings backend or their "
                          "players are split between them: give every process the same "
                          "--mongo-uri (GREENROOM_MONGO_URI), or none", info.process_id,
                          info.listings, self.process_id, mine)
        return [info.process_id for info in others]

    def _beat_failed(self, exc: Exception) -> None:
        if not self._failing:
            log.warning(
                "registry: heartbeat of process %s failed (%s: %s); other processes will consider "
                "it dead in %gs unless it recovers",
                self.process_id,
                type(exc).__name__,
                exc,
                self.lease,
            )
        self._failing = True

    def _beat_recovered(self) -> None:
        if self._failing:
            log.warning("registry: heartbeat of process %s recovered", self.process_id)
        self._failing = False

    # -- every process -------------------------------------------------------------------
    def get(self, process_id: str) -> ProcessInfo | None:
        raw = self.presence.get(self._info_key(process_id))
        if raw is None:
            return None
        try:
            return ProcessInfo.from_json(raw)
        except (ValueError, TypeError) as exc:
            log.warning("registry: skipped a malformed entry for process %s: %s", process_id, exc)
            return None

    def is_alive(self, process_id: str) -> bool:
        return self.presence.exists(self._info_key(process_id))

    def alive_processes(self) -> list[ProcessInfo]:
        """Processes whose lease is current, least loaded (by CCU, then rooms) first."""
        alive = [info for pid in self.presence.hgetall(self._seen_key) if (info := self.get(pid))]
        return sorted(alive, key=lambda info: (info.ccu, info.rooms, info.process_id))

    def dead_processes(self, after: float | None = None) -> list[str]:
        """Processes unseen for ``after`` seconds (default: three leases) and not alive now."""
        after = self.lease * REAP_AFTER_LEASES if after is None else after
        cutoff = time.time() - after
        dead = []
        for pid, seen in self.presence.hgetall(self._seen_key).items():
            if _as_float(seen) <= cutoff and not self.is_alive(pid):
                dead.append(pid)
        return dead

    def forget(self, process_id: str) -> int:
        """Remove a process known to have exited (its master saw it die): its entry and its
        listings go now instead of when the lease runs out. Returns the listings removed."""
        removed = self.driver.cleanup(process_id) if self.driver is not None else 0
        self.presence.delete(self._info_key(process_id))
        self.presence.hdel(self._seen_key, process_id)
        log.info("registry: process %s exited; removed its entry and %d listing(s)", process_id, removed)
        return removed

    def reap(self, after: float | None = None) -> list[str]:
        """Forget long-dead processes and remove their listings; safe to run from any process."""
        dead = self.dead_processes(after)
        for pid in dead:
            if self.driver is not None:
                removed = self.driver.cleanup(pid)
                log.info("registry: process %s is gone; removed its %d listing(s)", pid, removed)
            self.presence.hdel(self._seen_key, pid)
        return dead


def _as_float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0


def _listings_of(driver: Driver | None) -> str | None:
    if driver is None:
        return None
    where = getattr(driver, "safe_url", None)
    return f"{type(driver).__name__} {where}" if where else type(driver).__name__
