"""Matchmaking: find or create a room, and reserve a seat in it (PROTOCOL.md §2, DESIGN D4).

The owner of a room decides whether a seat is free (``Room._reserve_seat`` claims it without
yielding); the driver's listings are only a catalogue to search. Room creation per name and
filter is serialised, so simultaneous joinOrCreate calls fill one room before opening the next.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from gevent.lock import Semaphore

from .drivers.base import Driver
from .drivers.listing import RoomListing
from .errors import MatchMakeError, ServiceUnavailable
from .ids import generate_id
from .protocol.codes import ErrorCode
from .room import Room

log = logging.getLogger("greenroom.matchmaker")

# Listings tried per request before giving up on existing rooms and creating one.
_MAX_JOIN_ATTEMPTS = 16


class RoomDefinition:
    """What ``Server.define`` returns: chain ``filter_by`` / ``sort_by`` on it."""

    def __init__(self, name: str, room_cls: type[Room], default_options: dict[str, Any]) -> None:
        if not (isinstance(room_cls, type) and issubclass(room_cls, Room)):
            raise TypeError(f"room {name!r}: {room_cls!r} is not a greenroom.Room subclass")
        self.name = name
        self.room_cls = room_cls
        self.default_options = default_options
        self.filter_keys: tuple[str, ...] = ()
        self.sort: tuple[tuple[str, int], ...] = ()

    def filter_by(self, *keys: str) -> RoomDefinition:
        """joinOrCreate/join only pick rooms created with the same values of these options."""
        self.filter_keys = tuple(keys)
        return self

    def sort_by(self, *fields: tuple[str, int], **kwargs: int) -> RoomDefinition:
        """Order candidate rooms: ``sort_by(clients=-1)`` fills the fullest room first.

        Keys are listing fields (``clients``, ``max_clients``, ``created_at``) or
        ``metadata.<key>`` (pass those as tuples: ``sort_by(("metadata.level", 1))``).
        """
        spec = list(fields) + list(kwargs.items())
        for key, direction in spec:
            if direction not in (1, -1):
                raise ValueError(f"sort_by {key!r}: direction must be 1 or -1, not {direction!r}")
        self.sort = tuple(spec)
        return self

    def filters_for(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return {key: options.get(key) for key in self.filter_keys}

    def __repr__(self) -> str:
        return f"<RoomDefinition {self.name} {self.room_cls.__name__}>"


@dataclass(slots=True)
class SeatReservation:
    name: str
    room_id: str
    process_id: str
    session_id: str
    public_address: str | None = None
    reconnection_token: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Both shapes at once: flat for @colyseus/sdk, nested ``room`` for colyseus.js 0.16."""
        room: dict[str, Any] = {"name": self.name, "roomId": self.room_id, "processId": self.process_id}
        if self.public_address:
            room["publicAddress"] = self.public_address
        out: dict[str, Any] = {**room, "sessionId": self.session_id, "room": room}
        if self.reconnection_token:
            out["reconnectionToken"] = self.reconnection_token
        return out


class MatchMaker:
    def __init__(self, driver: Driver, *, process_id: str | None = None, presence: Any = None,
                 public_address: str | None = None) -> None:
        self.driver = driver
        self.presence = presence
        self.process_id = process_id or generate_id()
        self.public_address = public_address
        self.definitions: dict[str, RoomDefinition] = {}
        self.rooms: dict[str, Room] = {}
        self._creation_locks: dict[tuple[str, str], list[Any]] = {}
        self._accepting = True

    # -- definitions ----------------------------------------------------------------------------
    def define(self, name: str, room_cls: type[Room], **default_options: Any) -> RoomDefinition:
        if not name or "/" in name:
            raise ValueError(f"invalid room name {name!r}")
        definition = RoomDefinition(name, room_cls, default_options)
        self.definitions[name] = definition
        return definition

    def definition(self, name: str) -> RoomDefinition:
        try:
            return self.definitions[name]
        except KeyError:
            raise MatchMakeError(f'provided room name "{name}" not defined',
                                 ErrorCode.MATCHMAKE_NO_HANDLER) from None

    # -- the five matchmaking methods -------------------------------------------------------------
    def join_or_create(self, name: str, options: Mapping[str, Any] | None = None) -> SeatReservation:
        definition = self.definition(name)
        options = self._options(definition, options)
        seat = self._join_existing(definition, options)
        if seat is not None:
            return seat
        with self._creation_lock(definition, options):
            # Another request may have created a room while we waited for the lock.
            seat = self._join_existing(definition, options)
            if seat is not None:
                return seat
            room = self._create_room(definition, options)
            return self._reserve_in_new_room(room, options)

    def create(self, name: str, options: Mapping[str, Any] | None = None) -> SeatReservation:
        definition = self.definition(name)
        options = self._options(definition, options)
        room = self._create_room(definition, options)
        return self._reserve_in_new_room(room, options)

    def join(self, name: str, options: Mapping[str, Any] | None = None) -> SeatReservation:
        definition = self.definition(name)
        options = self._options(definition, options)
        seat = self._join_existing(definition, options)
        if seat is None:
            raise MatchMakeError(f'no rooms found with provided criteria for "{name}"',
                                 ErrorCode.MATCHMAKE_INVALID_CRITERIA)
        return seat

    def join_by_id(self, room_id: str, options: Mapping[str, Any] | None = None) -> SeatReservation:
        self._check_accepting()
        room = self.rooms.get(room_id)
        if room is None:
            raise MatchMakeError(f'room "{room_id}" not found', ErrorCode.MATCHMAKE_INVALID_ROOM_ID)
        definition = self.definitions.get(room.room_name)
        opts = self._options(definition, options) if definition else dict(options or {})
        seat = self._reserve_local(room, opts)
        if seat is None:
            raise MatchMakeError(f'room "{room_id}" is locked', ErrorCode.MATCHMAKE_INVALID_ROOM_ID)
        return seat

    def reconnect(self, room_id: str, reconnection_token: str) -> SeatReservation:
        self._check_accepting()
        room = self.rooms.get(room_id)
        if room is None:
            raise MatchMakeError(f'room "{room_id}" not found', ErrorCode.MATCHMAKE_INVALID_ROOM_ID)
        session_id = room._reserve_reconnection(str(reconnection_token or ""))
        if session_id is None:
            raise MatchMakeError("reconnection token invalid or expired.", ErrorCode.MATCHMAKE_EXPIRED)
        return SeatReservation(room.room_name, room.room_id, self.process_id, session_id,
                               self.public_address, reconnection_token)

    # -- server-side API ------------------------------------------------------------------------
    def create_room(self, name: str, options: Mapping[str, Any] | None = None) -> RoomListing:
        """Create a room without reserving a seat (e.g. a lobby opening tournament rooms)."""
        definition = self.definition(name)
        room = self._create_room(definition, self._options(definition, options))
        assert room.listing is not None
        return room.listing

    def query(self, name: str | None = None, *, filters: Mapping[str, Any] | None = None,
              available: bool = False, sort: Any = (), limit: int | None = None) -> list[RoomListing]:
        return self.driver.query(name, filters=filters, available=available, sort=sort, limit=limit)

    def reserve_seat(self, room_id: str, options: Mapping[str, Any] | None = None) -> SeatReservation:
        """Reserve a seat in a given room, e.g. to send a matched group of players there."""
        return self.join_by_id(room_id, options)

    def get_room(self, room_id: str) -> Room | None:
        """The local room instance (only rooms of this process)."""
        return self.rooms.get(room_id)

    # -- RoomHost ----------------------------------------------------------------------------------
    def update_listing(self, room: Room, **changes: Any) -> None:
        try:
            self.driver.update(room.room_id, **changes)
        except Exception:  # noqa: BLE001 - the room keeps playing; the lease renews the listing
            log.exception("room %s: listing update %s failed", room.room_id, sorted(changes))

    def room_disposed(self, room: Room) -> None:
        self.rooms.pop(room.room_id, None)
        try:
            self.driver.remove(room.room_id)
        except Exception:  # noqa: BLE001
            log.exception("room %s: removing its listing failed", room.room_id)
        log.info("room %s (%s) disposed", room.room_id, room.room_name)

    # -- shutting down ------------------------------------------------------------------------------
    def stop_accepting(self) -> None:
        self._accepting = False

    def shutdown(self, timeout: float = 10.0) -> None:
        """Graceful: refuse new matchmaking, let each room run on_before_shutdown, wait for disposal."""
        self.stop_accepting()
        rooms = list(self.rooms.values())
        for room in rooms:
            room._inbox.post(room.lock)
            room._inbox.post(room.on_before_shutdown)
        for room in rooms:
            room._inbox.join(timeout)

    # -- internals ------------------------------------------------------------------------------------
    def _check_accepting(self) -> None:
        if not self._accepting:
            raise ServiceUnavailable("server is shutting down")

    def _options(self, definition: RoomDefinition | None, options: Mapping[str, Any] | None) -> dict[str, Any]:
        self._check_accepting()
        if options is None:
            options = {}
        if not isinstance(options, Mapping):
            raise MatchMakeError("join options must be a JSON object", 400)
        defaults = definition.default_options if definition else {}
        return {**defaults, **options}

    @contextmanager
    def _creation_lock(self, definition: RoomDefinition, options: Mapping[str, Any]) -> Iterator[None]:
        key = (definition.name, repr(sorted(definition.filters_for(options).items(), key=repr)))
        entry = self._creation_locks.get(key)
        if entry is None:
            entry = self._creation_locks[key] = [Semaphore(), 0]
        entry[1] += 1  # users of this lock; the entry goes when the last one is done
        try:
            with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._creation_locks[key]

    def _join_existing(self, definition: RoomDefinition, options: dict[str, Any]) -> SeatReservation | None:
        tried: set[str] = set()
        for _ in range(_MAX_JOIN_ATTEMPTS):
            candidates = self.driver.query(
                definition.name, filters=definition.filters_for(options), available=True,
                sort=definition.sort, limit=len(tried) + 1)
            fresh = [c for c in candidates if c.room_id not in tried]
            if not fresh:
                return None
            listing = fresh[0]
            tried.add(listing.room_id)
            seat = self._reserve_listed(listing, options)
            if seat is not None:
                return seat
        return None

    def _reserve_listed(self, listing: RoomListing, options: dict[str, Any]) -> SeatReservation | None:
        room = self.rooms.get(listing.room_id)
        if room is None:
            return None  # another process's room: cross-process seats come with presence IPC
        return self._reserve_local(room, options)

    def _reserve_local(self, room: Room, options: dict[str, Any]) -> SeatReservation | None:
        session_id = generate_id()
        if not room._reserve_seat(session_id, options):
            return None
        return SeatReservation(room.room_name, room.room_id, self.process_id, session_id,
                               self.public_address)

    def _reserve_in_new_room(self, room: Room, options: dict[str, Any]) -> SeatReservation:
        seat = self._reserve_local(room, options)
        if seat is None:
            raise MatchMakeError(f'room "{room.room_id}" has no free seat after creation',
                                 ErrorCode.MATCHMAKE_INVALID_CRITERIA)
        return seat

    def _create_room(self, definition: RoomDefinition, options: dict[str, Any]) -> Room:
        room = definition.room_cls()
        room_id = generate_id()
        while room_id in self.rooms:
            room_id = generate_id()
        room._attach(self, room_id, definition.name, self.process_id, self.presence)
        try:
            room._inbox.call(room.on_create, options)
        except Exception as exc:
            log.exception("room %s (%s): on_create raised", room_id, definition.name)
            room._inbox.close()
            room.clock.clear()
            raise MatchMakeError(str(exc) or type(exc).__name__, ErrorCode.APPLICATION_ERROR) from exc
        room.listing = RoomListing(
            name=definition.name, room_id=room_id, process_id=self.process_id,
            clients=room._seats_taken, max_clients=room.max_clients, locked=room.locked,
            private=room.private, metadata=dict(room.metadata),
            filters=definition.filters_for(options), public_address=self.public_address)
        self.rooms[room_id] = room
        self.driver.register(room.listing)
        log.info("room %s (%s) created", room_id, definition.name)
        return room
