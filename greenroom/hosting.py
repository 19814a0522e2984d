"""The rooms this process holds and their listings: creating a room (or taking in one that
moves here), listing it, forgetting it when it is disposed or moves away.

A mixin of MatchMaker, which finds rooms and reserves seats; this half holds them. Attributes
it uses (set by MatchMaker): ``driver``, ``presence``, ``process_id``, ``public_address``,
``lease``, ``rooms``, ``_listings``, ``definitions``, ``lobby``, ``capacity``,
``_reserve_local_many``.

Rooms whose definition has realtime listing publish their listing to the lobbies after each
write of it, and their removal once it is removed (greenroom/lobby_channel.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .capacity import ProcessCapacity
from .drivers.base import DriverUnavailable
from .drivers.listing import RoomListing
from .engine import RoomEngine
from .errors import MatchMakeError
from .ids import generate_id
from .listings import ListingWriter
from .lobby_channel import LobbyPublisher
from .presence import PresenceUnavailable
from .protocol.codes import ErrorCode
from .room import Room

if TYPE_CHECKING:
    from .definitions import RoomDefinition, SeatReservation

__all__ = ["RoomHosting"]

log = logging.getLogger("greenroom.matchmaker")


class RoomHosting:
    driver: Any
    presence: Any
    process_id: str
    public_address: str | None
    lease: float | None
    rooms: dict[str, Room]
    definitions: dict[str, RoomDefinition]
    lobby: LobbyPublisher | None
    _listings: dict[str, ListingWriter]
    _removals: set[str]
    capacity: ProcessCapacity

    if TYPE_CHECKING:
        def _reserve_local_many(self, room: Room, seats: list[dict[str, Any]], auth: Any = None,
                                admitted: bool = False) -> list[SeatReservation] | None: ...

    # -- RoomHost (what a room's engine calls) ----------------------------------------------------
    def update_listing(self, room_id: str, **changes: Any) -> None:
        writer = self._listings.get(room_id)
        if writer is not None:
            writer.update(**changes)  # before registration: written right after it

    def room_disposed(self, engine: RoomEngine) -> None:
        room_id = engine.room_id
        self.rooms.pop(room_id, None)
        writer = self._listings.pop(room_id, None)
        if writer is not None:
            writer.close()
        try:
            self.driver.remove(room_id)
        except Exception as exc:  # noqa: BLE001 - removed at a later heartbeat
            self._removals.add(room_id)
            log.warning("room %s: removing its listing failed (removed at the next heartbeat "
                        "that can): %s", room_id, exc)
        if writer is not None and writer.on_written is not None and self.lobby is not None:
            self.lobby.removed(room_id)
        log.info("room %s (%s) disposed", room_id, engine.name)

    def restore_room(self, definition: RoomDefinition, options: dict[str, Any], room_id: str,
                     restore: Callable[[Room], None]) -> Room:
        """A room moving here from another process, with its roomId (greenroom.migration)."""
        return self._create_room(definition, options, room_id=room_id, restore=restore)[0]

    def release(self, room_id: str) -> None:
        """Forget a room that is moving to another process (greenroom.migration): nothing is
        written or renewed from here any more, and its listing goes, for the new owner to
        register under its own processId."""
        self.rooms.pop(room_id, None)
        writer = self._listings.pop(room_id, None)
        if writer is not None:
            writer.close()
        self.driver.remove(room_id)

    def adopt(self, room_id: str, room: Room) -> None:
        """Take back a room whose move failed: listed and renewed from here again."""
        engine = room._gr
        self.rooms[room_id] = room
        if engine.listing is not None:
            if self.lease is not None:
                engine.listing.lease_expires_at = time.time() + self.lease
            writer = self._listings[room_id] = self._listing_writer(engine.name, engine.listing)
            try:
                writer.relist()
            except Exception as exc:  # noqa: BLE001 - the heartbeat lists it again
                log.warning("room %s: listing it again failed: %s", room_id, exc)

    def resync_listings(self) -> None:
        """Write every local room's listing again (after a backend outage lost or staled them).
        A room disposed meanwhile is not listed again (see greenroom/listings.py)."""
        for writer in list(self._listings.values()):
            if self.lease is not None:
                writer.listing.lease_expires_at = time.time() + self.lease
            writer.relist()

    def retry_removals(self) -> None:
        """Remove the listings of disposed rooms whose removal failed (an outage, or a register
        whose reply was lost after it was stored). Their lease would not run out by itself: the
        heartbeat renews every listing of this process, so each would be a room that matchmaking
        offers and nobody hosts, for as long as the process lives."""
        for room_id in list(self._removals):
            try:
                self.driver.remove(room_id)
            except Exception as exc:  # noqa: BLE001 - the next heartbeat tries again
                log.warning("room %s: removing its listing failed again: %s", room_id, exc)
                return
            self._removals.discard(room_id)
            log.info("room %s: its listing is removed", room_id)

    def resync_stale_listings(self) -> None:
        """Write again, whole, the listings whose last write failed (a backend outage that kept
        the stored listings, as a MongoDB restart does: nothing else would correct their old
        seat counts while the room does not change)."""
        for writer in list(self._listings.values()):
            if writer.stale:
                writer.relist()

    # -- creating ---------------------------------------------------------------------------------
    def _create_room(self, definition: RoomDefinition, options: dict[str, Any], *,
                     seats: list[dict[str, Any]] | None = None, room_id: str | None = None,
                     restore: Callable[[Room], None] | None = None,
                     auth: Any = None) -> tuple[Room, list[SeatReservation]]:
        """Create a room and, with ``seats`` (the join options of each), their seats: all taken
        before the room is listed, so concurrent joiners cannot fill a room its creator (or the
        group a QueueRoom matched) then cannot enter. ``auth``: what on_auth_request returned
        for the creator, its client.auth.

        A room moving here from an older worker (greenroom.migration) keeps its ``room_id``,
        and ``restore(room)`` puts its state and clients back after ``on_create``, before it is
        listed; it is never refused. Any other room counts against this process's limits from
        now on, and is refused (ProcessFull) when they are reached."""
        if room_id is not None:
            return self._make_room(definition, options, seats, room_id, restore, auth)
        with self.capacity.admit_room(self.rooms, self.process_id, len(seats or ())):
            return self._make_room(definition, options, seats, None, None, auth)

    def _make_room(self, definition: RoomDefinition, options: dict[str, Any],
                   seats: list[dict[str, Any]] | None, room_id: str | None,
                   restore: Callable[[Room], None] | None,
                   auth: Any) -> tuple[Room, list[SeatReservation]]:
        room = definition.room_cls()
        engine = _engine_of(room)
        if room_id is None:
            room_id = generate_id()
            while room_id in self.rooms:
                room_id = generate_id()
        elif room_id in self.rooms:
            raise MatchMakeError(f'room "{room_id}" already lives here', ErrorCode.MATCHMAKE_UNHANDLED)
        engine.attach(self, room_id, definition.name, self.process_id, self.presence)
        try:
            engine.create(options)
            if restore is not None:
                restore(room)
        except Exception as exc:
            log.exception("room %s (%s): on_create raised", room_id, definition.name)
            engine.discard()
            raise MatchMakeError(str(exc) or type(exc).__name__, ErrorCode.APPLICATION_ERROR) from exc
        engine.listing = RoomListing(
            name=definition.name, room_id=room_id, process_id=self.process_id,
            max_clients=room.max_clients, private=room.private, unlisted=engine.unlisted,
            metadata=dict(room.metadata), filters=definition.filters_for(options),
            public_address=self.public_address,
            lease_expires_at=time.time() + self.lease if self.lease is not None else None)
        writer = self._listings[room_id] = self._listing_writer(definition.name, engine.listing)
        reserved = self._reserve_local_many(room, seats, auth, admitted=True) if seats else []
        if reserved is None:
            self._listings.pop(room_id, None)
            engine.dispose()
            raise MatchMakeError(f'room "{room_id}" has fewer than {len(seats or ())} free '
                                 "seat(s) after creation", ErrorCode.MATCHMAKE_INVALID_CRITERIA)
        engine.listing.clients, engine.listing.locked = engine.seats_taken, room.locked
        self._register(engine, writer)
        self.rooms[room_id] = room
        log.info("room %s (%s) created", room_id, definition.name)
        return room, reserved

    def _listing_writer(self, name: str, listing: RoomListing) -> ListingWriter:
        """The writer of a room's listing; with realtime listing, it tells the lobbies."""
        definition = self.definitions.get(name)
        realtime = definition is not None and definition.realtime_listing and self.lobby is not None
        return ListingWriter(self.driver, listing, self.lobby.updated if realtime else None)  # type: ignore[union-attr]

    def _register(self, engine: RoomEngine, writer: ListingWriter) -> None:
        """List a new room; one that cannot be listed is disposed (on_dispose runs), never left
        running where no matchmaker, shutdown or health check would see it."""
        try:
            writer.register()
        except Exception as exc:
            engine.dispose()
            if isinstance(exc, PresenceUnavailable | DriverUnavailable):
                raise  # 503 with the reason
            log.warning("room %s (%s): could not be listed (%s: %s); disposed", engine.room_id,
                        engine.name, type(exc).__name__, exc)
            raise MatchMakeError(f"the room could not be listed: {exc}",
                                 ErrorCode.MATCHMAKE_UNHANDLED) from exc


def _engine_of(room: Room) -> RoomEngine:
    engine = vars(room).get("_gr")
    if not isinstance(engine, RoomEngine):
        raise TypeError(f"{type(room).__name__}.__init__ must call super().__init__() "
                        "(greenroom.Room keeps its machinery in self._gr)")
    return engine
