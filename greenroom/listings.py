"""Writing one room's listing to the driver: in order, latest value last, never after disposal.

A room's listing changes from several greenlets (the room itself, matchmaking requests that
reserve seats, the heartbeat listing it again after an outage), and every write is I/O that
yields. Written independently, a slow early write could land after a fast later one and leave
the room listed as full when it is not. So one greenlet at a time writes: a change that
arrives while another greenlet is writing is merged into the pending changes, which the writer
sends once its current write is done. The last write always carries the latest values.

Once the room is disposed (``close``), nothing more is written, and a registration that was in
flight when it happened is taken back, so a disposed room is never listed again (a ghost the
heartbeat would otherwise renew forever).

``on_written(listing)``, when given, runs after each write that succeeded, in the writer's
order: a room with realtime listing publishes its listing to the lobbies there
(greenroom/lobby_channel.py), once the driver holds what the lobbies will be told.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .drivers.base import Driver, DriverUnavailable
from .drivers.listing import RoomListing

log = logging.getLogger("greenroom.matchmaker")


class ListingWriter:
    def __init__(self, driver: Driver, listing: RoomListing,
                 on_written: Callable[[RoomListing], None] | None = None) -> None:
        self.driver = driver
        self.listing = listing
        self.on_written = on_written
        self.closed = False
        self._pending: dict[str, Any] = {}
        self._relist = False
        self._busy = False
        #: A write failed: the stored listing may hold old values until it is written whole
        #: again (``MatchMaker.resync_stale_listings``, at each heartbeat).
        self.stale = False

    @property
    def room_id(self) -> str:
        return self.listing.room_id

    def register(self) -> None:
        """The first write; its errors propagate (a room that cannot be listed is disposed).
        Changes made meanwhile are written right after it."""
        self._busy = True
        try:
            self.driver.register(self.listing)
            if self.closed:  # disposed while we registered: take it back
                self.driver.remove(self.room_id)
            else:
                self._written()
        finally:
            self._busy = False
        self._drain()

    def update(self, **changes: Any) -> None:
        """Write ``changes`` now, or after the write in progress (merged with later changes)."""
        if self.closed:
            return
        self._pending.update(changes)
        self._drain()

    def relist(self) -> None:
        """Write the whole listing again (a backend outage may have lost or staled it)."""
        if self.closed:
            return
        self._relist = True
        self._drain()

    def close(self) -> None:
        """The room is disposed: write nothing more (the caller removes the listing)."""
        self.closed = True
        self._pending.clear()
        self._relist = False

    def _drain(self) -> None:
        if self._busy:
            return  # the greenlet writing now sends these after its current write
        self._busy = True
        try:
            while not self.closed and (self._relist or self._pending):
                if self._relist:
                    self._relist = False
                    self._pending.clear()  # the whole listing carries them
                    try:
                        self._write_all()
                    except BaseException:
                        self._relist = True  # still to do: the next write tries again
                        raise
                    self.stale = False
                else:
                    changes, self._pending = self._pending, {}
                    if self._write(changes):
                        self._written()
        finally:
            self._busy = False

    def _written(self) -> None:
        if self.on_written is not None and not self.closed:
            self.on_written(self.listing)

    def _write(self, changes: dict[str, Any]) -> bool:
        try:
            self.driver.update(self.room_id, **changes)
        except DriverUnavailable as exc:  # an outage, not a bug: one line; the resync after it
            log.warning("room %s: listing update %s failed: %s", self.room_id, sorted(changes), exc)
            self.stale = True
            return False
        except Exception:  # noqa: BLE001 - the room keeps playing; the lease renews the listing
            log.exception("room %s: listing update %s failed", self.room_id, sorted(changes))
            self.stale = True
            return False
        return True

    def _write_all(self) -> None:
        if self.driver.get(self.room_id) is None:
            self.driver.register(self.listing)
            if self.closed:  # disposed while we registered: take it back
                self.driver.remove(self.room_id)
        else:
            fields = self.listing.to_dict()
            fields.pop("room_id")
            self.driver.update(self.room_id, **fields)
        self._written()
