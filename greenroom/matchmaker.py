"""Matchmaking: find or create a room, and reserve a seat in it (PROTOCOL.md §2, DESIGN D4).

The owner of a room decides whether a seat is free (``Room._reserve_seat`` claims it without
yielding); the driver's listings are only a catalogue to search. Room creation per name and
filter is serialised, so simultaneous joinOrCreate calls fill one room before opening the next.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from gevent.lock import Semaphore

from .drivers.base import Driver, DriverUnavailable
from .drivers.listing import RoomListing
from .errors import MatchMakeError, ServiceUnavailable
from .ids import generate_id
from .presence import PresenceUnavailable
from .presence.rpc import RemoteCallFailed, RemoteCallTimeout
from .protocol.codes import ErrorCode
from .room import Room

log = logging.getLogger("greenroom.matchmaker")

F = TypeVar("F", bound=Callable[..., Any])


def _backends_required(method: F) -> F:
    """Redis or MongoDB unreachable: the request gets 503 with the reason; rooms play on."""

    @wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (PresenceUnavailable, DriverUnavailable) as exc:
            log.warning("matchmaking unavailable: %s", exc)
            raise ServiceUnavailable(f"matchmaking unavailable: {exc}") from None

    return wrapper  # type: ignore[return-value]

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
    placement: Any = None  # greenroom.placement: where new rooms go (set by Server)

    def __init__(self, driver: Driver, *, process_id: str | None = None, presence: Any = None,
                 public_address: str | None = None, rpc: Any = None, registry: Any = None,
                 lease: float | None = None, rpc_timeout: float = 5.0) -> None:
        """``rpc``/``registry``/``lease`` are given when several processes share presence and
        driver: rooms of other processes are then joined through their owners."""
        self.driver = driver
        self.presence = presence
        self.process_id = process_id or generate_id()
        self.public_address = public_address
        self.rpc = rpc
        self.registry = registry
        self.lease = lease
        self.rpc_timeout = rpc_timeout
        self.definitions: dict[str, RoomDefinition] = {}
        self.rooms: dict[str, Room] = {}
        self._creation_locks: dict[tuple[str, str], list[Any]] = {}
        self._accepting = True
        if rpc is not None:
            rpc.register("reserve_seat", self._serve_reserve_seat)
            rpc.register("reserve_reconnection", self._serve_reserve_reconnection)
            rpc.register("create_and_reserve", self._serve_create_and_reserve)

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
    @_backends_required
    def join_or_create(self, name: str, options: Mapping[str, Any] | None = None) -> SeatReservation:
        definition = self.definition(name)
        options = self._options(definition, options)
        seat = self._join_existing(definition, options)
        if seat is not None:
            return seat
        with self._creation_lock(definition, options):
            # Another request (of any process) may have created a room while we waited.
            seat = self._join_existing(definition, options)
            if seat is not None:
                return seat
            return self._create_and_reserve(definition, options)

    @_backends_required
    def create(self, name: str, options: Mapping[str, Any] | None = None) -> SeatReservation:
        definition = self.definition(name)
        options = self._options(definition, options)
        return self._create_and_reserve(definition, options)

    @_backends_required
    def join(self, name: str, options: Mapping[str, Any] | None = None) -> SeatReservation:
        definition = self.definition(name)
        options = self._options(definition, options)
        seat = self._join_existing(definition, options)
        if seat is None:
            raise MatchMakeError(f'no rooms found with provided criteria for "{name}"',
                                 ErrorCode.MATCHMAKE_INVALID_CRITERIA)
        return seat

    @_backends_required
    def join_by_id(self, room_id: str, options: Mapping[str, Any] | None = None) -> SeatReservation:
        self._check_accepting()
        listing = self._listing(room_id)
        definition = self.definitions.get(listing.name)
        opts = self._options(definition, options) if definition else dict(options or {})
        seat = self._reserve_listed(listing, opts)
        if seat is None:
            raise MatchMakeError(f'room "{room_id}" is locked', ErrorCode.MATCHMAKE_INVALID_ROOM_ID)
        return seat

    @_backends_required
    def reconnect(self, room_id: str, reconnection_token: str) -> SeatReservation:
        self._check_accepting()
        listing = self._listing(room_id)
        token = str(reconnection_token or "")
        room = self.rooms.get(room_id)
        if room is not None:
            session_id = room._reserve_reconnection(token)
        else:
            session_id = self._remote(listing, "reserve_reconnection", room_id, token)
        if session_id is None:
            raise MatchMakeError("reconnection token invalid or expired.", ErrorCode.MATCHMAKE_EXPIRED)
        return SeatReservation(listing.name, room_id, listing.process_id, session_id,
                               listing.public_address, token)

    # -- server-side API ------------------------------------------------------------------------
    @_backends_required
    def create_room(self, name: str, options: Mapping[str, Any] | None = None) -> RoomListing:
        """Create a room without reserving a seat (e.g. a lobby opening tournament rooms)."""
        definition = self.definition(name)
        room = self._create_room(definition, self._options(definition, options))[0]
        assert room.listing is not None
        return room.listing

    @_backends_required
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
        if room.room_id not in self.rooms:
            return  # not listed yet: _create_room lists it with these values
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
                if self.rpc is None:
                    yield
                else:
                    with self.presence.lock("greenroom:create:" + "|".join(key), ttl=10, wait=15) as held:
                        if not held:
                            log.warning("matchmaker: creation lock for %s not acquired in 15 s; "
                                        "creating without it", definition.name)
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

    def _listing(self, room_id: str) -> RoomListing:
        room = self.rooms.get(room_id)
        if room is not None and room.listing is not None:
            return room.listing
        listing = self.driver.get(room_id) if self.rpc is not None else None
        if listing is None or listing.is_expired():
            raise MatchMakeError(f'room "{room_id}" not found', ErrorCode.MATCHMAKE_INVALID_ROOM_ID)
        return listing

    def _reserve_listed(self, listing: RoomListing, options: dict[str, Any]) -> SeatReservation | None:
        room = self.rooms.get(listing.room_id)
        if room is not None:
            return self._reserve_local(room, options)
        session_id = self._remote(listing, "reserve_seat", listing.room_id, options)
        if session_id is None:
            return None
        return SeatReservation(listing.name, listing.room_id, listing.process_id, session_id,
                               listing.public_address)

    def _remote(self, listing: RoomListing, method: str, *args: Any) -> Any:
        """Ask the owner of ``listing``; None when it cannot answer (it may be dead: its lease
        will take it out of the listings)."""
        if self.rpc is None or listing.process_id == self.process_id:
            return None
        try:
            return self.rpc.call(listing.process_id, method, *args, timeout=self.rpc_timeout)
        except RemoteCallFailed as exc:
            log.warning("room %s: owner %s did not answer %s: %s", listing.room_id,
                        listing.process_id, method, exc)
            return None

    def _create_and_reserve(self, definition: RoomDefinition, options: dict[str, Any]) -> SeatReservation:
        target = (self.placement.choose(definition.name, options) if self.placement is not None
                  else self._least_loaded_process())
        if target != self.process_id:
            seat = self._create_remotely(target, definition, options)
            if seat is not None:
                return seat
        return self._create_room(definition, options, reserve=True)[1]

    def _least_loaded_process(self) -> str:
        if self.registry is None:
            return self.process_id
        try:
            alive = self.registry.alive_processes()
        except PresenceUnavailable:
            raise
        except Exception:  # noqa: BLE001 - a registry hiccup only costs the balancing
            log.exception("matchmaker: could not read the process registry; creating locally")
            return self.process_id
        mine = next((p for p in alive if p.process_id == self.process_id), None)
        best = alive[0] if alive else None
        if best is None or mine is None or (best.ccu, best.rooms) == (mine.ccu, mine.rooms):
            return self.process_id
        return best.process_id

    def _create_remotely(self, target: str, definition: RoomDefinition,
                         options: dict[str, Any]) -> SeatReservation | None:
        request_id = uuid.uuid4().hex  # a retry with the same id never makes a second room
        for attempt in (1, 2):
            try:
                answer = self.rpc.call(target, "create_and_reserve", definition.name, options,
                                       timeout=self.rpc_timeout, request_id=request_id)
            except RemoteCallTimeout:
                log.warning("matchmaker: process %s did not answer create (attempt %d)", target, attempt)
                continue
            except RemoteCallFailed as exc:
                log.warning("matchmaker: process %s failed to create a %s room: %s", target,
                            definition.name, exc)
                return None
            if "error" in answer:
                raise MatchMakeError(answer["error"], answer["code"])
            return SeatReservation(**answer)
        return None

    # -- served to other processes ------------------------------------------------------------------
    def _serve_reserve_seat(self, room_id: str, options: dict[str, Any]) -> str | None:
        room = self.rooms.get(room_id)
        seat = self._reserve_local(room, dict(options or {})) if room is not None else None
        return seat.session_id if seat is not None else None

    def _serve_reserve_reconnection(self, room_id: str, token: str) -> str | None:
        room = self.rooms.get(room_id)
        return room._reserve_reconnection(token) if room is not None else None

    def _serve_create_and_reserve(self, name: str, options: dict[str, Any]) -> dict[str, Any]:
        try:
            definition = self.definition(name)
            options = self._options(definition, options)
            seat = self._create_room(definition, options, reserve=True)[1]
        except MatchMakeError as exc:
            return {"error": exc.message, "code": exc.code}
        return {"name": seat.name, "room_id": seat.room_id, "process_id": seat.process_id,
                "session_id": seat.session_id, "public_address": seat.public_address}

    def resync_listings(self) -> None:
        """Write every local room's listing again (after a backend outage lost or staled them)."""
        for room in list(self.rooms.values()):
            listing = room.listing
            if listing is None:
                continue
            if self.lease is not None:
                listing.lease_expires_at = time.time() + self.lease
            if self.driver.get(room.room_id) is None:
                self.driver.register(listing)
            else:
                fields = listing.to_dict()
                fields.pop("room_id")
                self.driver.update(room.room_id, **fields)

    def _reserve_local(self, room: Room, options: dict[str, Any]) -> SeatReservation | None:
        session_id = generate_id()
        if not room._reserve_seat(session_id, options):
            return None
        return SeatReservation(room.room_name, room.room_id, self.process_id, session_id,
                               self.public_address)

    def _create_room(self, definition: RoomDefinition, options: dict[str, Any], *,
                     reserve: bool = False) -> tuple[Room, SeatReservation]:
        """Create a room and, with ``reserve``, the creator's seat: taken before the room is
        listed, so concurrent joiners cannot fill a room its creator then cannot enter."""
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
            max_clients=room.max_clients, private=room.private, metadata=dict(room.metadata),
            filters=definition.filters_for(options), public_address=self.public_address,
            lease_expires_at=time.time() + self.lease if self.lease is not None else None)
        seat = self._reserve_local(room, options) if reserve else None
        if reserve and seat is None:
            room._inbox.close()
            room.clock.clear()
            raise MatchMakeError(f'room "{room_id}" has no free seat after creation',
                                 ErrorCode.MATCHMAKE_INVALID_CRITERIA)
        room.listing.clients, room.listing.locked = room._seats_taken, room.locked
        self.driver.register(room.listing)
        self.rooms[room_id] = room  # from here on, seat changes reach the driver
        log.info("room %s (%s) created", room_id, definition.name)
        return room, seat  # type: ignore[return-value]
