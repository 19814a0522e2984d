"""Room creation one request at a time per room name and filter options, in this process and
across the deployment (docs/architecture.md, "Room creation").

Without it, simultaneous joinOrCreate calls would each find no free seat and each open a room;
serialised, the first opens one and the others find their seat in it before another is opened.
Singleton rooms rely on the same lock for "none exists" to stay true until theirs is listed.

A mixin of MatchMaker; attributes it uses (set by MatchMaker): ``driver``, ``presence``,
``rpc``, ``_creation_locks``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from gevent.lock import Semaphore

from . import singleton
from .definitions import RoomDefinition
from .errors import ServiceUnavailable

__all__ = ["CreationLocking"]

log = logging.getLogger("greenroom.matchmaker")


class CreationLocking:
    #: Seconds the cross-process creation lock lives without renewal (a crashed holder blocks
    #: creation of that name for this long at most); renewed every third of it while held.
    creation_lock_ttl: float = 10.0
    #: Seconds a joinOrCreate waits for the creation lock before answering 503.
    creation_lock_wait: float = 15.0
    driver: Any
    presence: Any
    rpc: Any
    _creation_locks: dict[tuple[str, str], list[Any]]

    @contextmanager
    def _creation_lock(self, definition: RoomDefinition, options: Mapping[str, Any]) -> Iterator[Any]:
        """Serialise creation per name and filters: in this process by a semaphore (no Redis
        round trip for local contention), across processes by a renewed presence lock. Never
        goes on without it: a lock that cannot be had in time is a 503. The wait for both
        together is ``creation_lock_wait``: requests queued in this process behind a slow holder
        (Redis slowed down) get their 503 too, rather than waiting until their client gives up."""
        key = (definition.name, repr(sorted(definition.creation_filters(options).items(), key=repr)))
        entry = self._creation_locks.get(key)
        if entry is None:
            entry = self._creation_locks[key] = [Semaphore(), 0]
        entry[1] += 1  # users of this lock; the entry goes when the last one is done
        deadline = time.monotonic() + self.creation_lock_wait
        try:
            if not entry[0].acquire(timeout=self.creation_lock_wait):
                raise self._creation_busy(definition)
            try:
                if self.rpc is None:
                    yield True
                    return
                with self.presence.lock("greenroom:create:" + "|".join(key),
                                        ttl=self.creation_lock_ttl,
                                        wait=max(0.0, deadline - time.monotonic())) as lease:
                    if not lease:
                        raise self._creation_busy(definition)
                    yield lease
            finally:
                entry[0].release()
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._creation_locks[key]

    @contextmanager
    def _singleton_creation(self, definition: RoomDefinition, options: Mapping[str, Any],
                            method: str) -> Iterator[None]:
        """Hold the creation lock (the one joinOrCreate takes) while a singleton is checked
        for and created, so that no two requests of any process both find none."""
        with self._creation_lock(definition, options) as lease:
            if not lease:
                raise ServiceUnavailable(f'lost the creation lock of "{definition.name}" '
                                         "(Redis unreachable, or this process stalled); try again")
            singleton.check(self.driver, definition, options, method)
            yield

    def _creation_busy(self, definition: RoomDefinition) -> ServiceUnavailable:
        log.warning("matchmaker: creation lock for %s not acquired in %g s; answering 503",
                    definition.name, self.creation_lock_wait)
        return ServiceUnavailable(f'room creation for "{definition.name}" is busy (lock not '
                                  f"acquired in {self.creation_lock_wait:g} s); try again")
