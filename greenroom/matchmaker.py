"""Matchmaking: find or create a room, and reserve a seat in it (docs/architecture.md,
"Seats and reservations" and "Processes and leases"; the HTTP side: docs/protocol.md).

The owner of a room decides whether a seat is free (``RoomEngine.reserve_seat`` claims it
without yielding); the driver's listings are only a catalogue to search. Room creation per name
and filter is serialised, across processes by a renewed lock, so simultaneous joinOrCreate calls
fill one room before opening the next (greenroom/creation_lock.py). Seats in rooms of other
processes, and rooms created in them, go through calls to those processes
(greenroom/matchmaking_rpc.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from functools import wraps
from typing import Any, TypeVar

from . import singleton
from .auth import authenticate_request, check_auth_hooks
from .capacity import ProcessCapacity, ProcessFull
from .creation_lock import CreationLocking
from .definitions import RoomDefinition, SeatReservation
from .drivers.base import Driver, DriverUnavailable
from .drivers.listing import RoomListing
from .engine import RoomEngine
from .errors import MatchMakeError, ServiceUnavailable
from .group_seats import GroupSeating
from .hosting import RoomHosting
from .ids import generate_id
from .listings import ListingWriter
from .lobby_channel import LobbyPublisher
from .matchmaking_rpc import MatchmakingRPC, _given
from .presence import PresenceUnavailable
from .protocol.codes import CloseCode, ErrorCode
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


class MatchMaker(RoomHosting, GroupSeating, CreationLocking, MatchmakingRPC):
    #: After the shutdown deadline, seconds rooms get to run their last on_leave/on_dispose.
    shutdown_grace: float = 2.0
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
        self._listings: dict[str, ListingWriter] = {}
        self._removals: set[str] = set()  # disposed rooms whose listing is still to remove
        #: Publishes the listings of realtime-listed rooms to the LobbyRooms of the deployment.
        self.lobby = LobbyPublisher(presence) if presence is not None else None
        self._creation_locks: dict[tuple[str, str], list[Any]] = {}
        #: This process's room and client limits (Server(max_rooms=, max_clients=)).
        self.capacity = ProcessCapacity()
        self._accepting = True
        if rpc is not None:
            self._register_matchmaking_rpc()
            self._register_group_rpc()

    # -- definitions ----------------------------------------------------------------------------
    def define(self, name: str, room_cls: type[Room], **default_options: Any) -> RoomDefinition:
        if not name or "/" in name:
            raise ValueError(f"invalid room name {name!r}")
        definition = RoomDefinition(name, room_cls, default_options)
        check_auth_hooks(name, room_cls)
        self.definitions[name] = definition
        return definition

    def definition(self, name: str) -> RoomDefinition:
        try:
            return self.definitions[name]
        except KeyError:
            raise MatchMakeError(f'provided room name "{name}" not defined',
                                 ErrorCode.MATCHMAKE_NO_HANDLER) from None

    # -- the five matchmaking methods -------------------------------------------------------------
    # ``request`` (a RequestInfo) is what the room class's on_auth_request judges, before any
    # room is created or seat reserved; ``auth``, from a server-side caller that already knows
    # the player, is its client.auth instead (greenroom/auth.py).
    @_backends_required
    def join_or_create(self, name: str, options: Mapping[str, Any] | None = None, *,
                       request: Any = None, auth: Any = None) -> SeatReservation:
        definition = self.definition(name)
        options = self._options(definition, options)
        auth = self._auth(definition, options, request, auth)
        seat = self._join_existing(definition, options, auth)
        if seat is not None:
            return seat
        with self._creation_lock(definition, options) as lease:
            # Another request (of any process) may have created a room while we waited.
            seat = self._join_existing(definition, options, auth)
            if seat is not None:
                return seat
            if not lease:
                raise ServiceUnavailable(f'lost the creation lock of "{name}" while matching '
                                         "(Redis unreachable, or this process stalled); try again")
            singleton.check(self.driver, definition, options, "joinOrCreate")
            return self._create_and_reserve(definition, options, auth)

    @_backends_required
    def create(self, name: str, options: Mapping[str, Any] | None = None, *,
               request: Any = None, auth: Any = None) -> SeatReservation:
        definition = self.definition(name)
        options = self._options(definition, options)
        auth = self._auth(definition, options, request, auth)
        if definition.singleton_scope is None:
            return self._create_and_reserve(definition, options, auth)
        with self._singleton_creation(definition, options, "create"):
            return self._create_and_reserve(definition, options, auth)

    @_backends_required
    def join(self, name: str, options: Mapping[str, Any] | None = None, *,
             request: Any = None, auth: Any = None) -> SeatReservation:
        definition = self.definition(name)
        options = self._options(definition, options)
        auth = self._auth(definition, options, request, auth)
        seat = self._join_existing(definition, options, auth)
        if seat is None:
            raise MatchMakeError(f'no rooms found with provided criteria for "{name}"',
                                 ErrorCode.MATCHMAKE_INVALID_CRITERIA)
        return seat

    @_backends_required
    def join_by_id(self, room_id: str, options: Mapping[str, Any] | None = None, *,
                   request: Any = None, auth: Any = None) -> SeatReservation:
        self._check_accepting()
        listing = self._listing(room_id)
        definition = self.definitions.get(listing.name)
        opts = self._options(definition, options) if definition else dict(options or {})
        if definition is not None:
            auth = self._auth(definition, opts, request, auth)
        seat = self._reserve_listed(listing, opts, auth)
        if seat is None:
            raise MatchMakeError(f'room "{room_id}" is locked', ErrorCode.MATCHMAKE_INVALID_ROOM_ID)
        return seat

    @_backends_required
    def reconnect(self, room_id: str, reconnection_token: str) -> SeatReservation:
        self._check_accepting()
        listing = self._listing(room_id)
        token = str(reconnection_token or "")
        engine = self.engine(room_id)
        if engine is not None:
            session_id = engine.reserve_reconnection(token)
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
        options = self._options(definition, options)
        if definition.singleton_scope is None:
            room = self._create_room(definition, options)[0]
        else:
            with self._singleton_creation(definition, options, "create_room"):
                room = self._create_room(definition, options)[0]
        assert room.listing is not None
        return room.listing

    @_backends_required
    def query(self, name: str | None = None, *, filters: Mapping[str, Any] | None = None,
              available: bool = False, sort: Any = (), limit: int | None = None) -> list[RoomListing]:
        return self.driver.query(name, filters=filters, available=available, sort=sort, limit=limit)

    def reserve_seat(self, room_id: str, options: Mapping[str, Any] | None = None, *,
                     auth: Any = None) -> SeatReservation:
        """Reserve a seat in a given room, e.g. to send a matched group of players there
        (``auth``: their client.auth, if the caller already authenticated them)."""
        return self.join_by_id(room_id, options, auth=auth)

    @_backends_required
    def create_with_seats(self, name: str, seats: Sequence[Mapping[str, Any]],
                          options: Mapping[str, Any] | None = None) -> list[SeatReservation]:
        """Create a room ``name`` (with ``options``, in the process placement chooses) holding a
        seat for each of ``seats`` (the join options of each member), all taken before the room
        is listed; one reservation per seat, in order. Raises MatchMakeError, and then no
        seat and no room are left (greenroom/group_seats.py)."""
        return self._create_with_seats(name, options, seats)

    @_backends_required
    def reserve_seats(self, room_id: str, seats: Sequence[Mapping[str, Any]]) -> list[SeatReservation]:
        """Reserve a seat for each of ``seats`` in the room ``room_id`` (of any process), all of
        them or none: MatchMakeError when they do not all fit, or the room is locked."""
        self._check_accepting()
        return self._reserve_seats(room_id, seats)

    def get_room(self, room_id: str) -> Room | None:
        """The local room instance (only rooms of this process)."""
        return self.rooms.get(room_id)

    def engine(self, room_id: str) -> RoomEngine | None:
        """The engine of a local room: what the socket layer talks to."""
        room = self.rooms.get(room_id)
        return room._gr if room is not None else None

    # -- shutting down ------------------------------------------------------------------------------
    @property
    def accepting(self) -> bool:
        """False once shutdown began: health and readiness report it, matchmaking refuses."""
        return self._accepting

    def stop_accepting(self) -> None:
        self._accepting = False

    def shutdown(self, timeout: float = 10.0) -> None:
        """Graceful: refuse new matchmaking, let every room run on_before_shutdown, and wait for
        them all until one deadline, ``timeout`` seconds from now. Rooms still open then have
        their clients closed with 4001 and are disposed (``shutdown_grace`` more seconds at
        most: a room whose handler never returns cannot be disposed, and is logged)."""
        self.stop_accepting()
        engines = [room._gr for room in self.rooms.values()]
        for engine in engines:
            engine.shutdown()
        late = _wait_all(engines, time.monotonic() + timeout)
        if not late:
            return
        log.warning("shutdown: %d room(s) still open after %g s; closing their clients with "
                    "4001 and disposing them", len(late), timeout)
        for engine in late:
            engine.force_dispose(CloseCode.SERVER_SHUTDOWN)
        stuck = _wait_all(late, time.monotonic() + self.shutdown_grace)
        if stuck:
            log.error("shutdown: %d room(s) did not end within %g s more, a handler is still "
                      "running in each: %s", len(stuck), self.shutdown_grace,
                      ", ".join(f"{e.room_id} ({e.name})" for e in stuck[:10]))

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

    def _auth(self, definition: RoomDefinition, options: dict[str, Any], request: Any,
              auth: Any) -> Any:
        return auth if auth is not None else authenticate_request(
            definition.name, definition.room_cls, options, request)

    def _join_existing(self, definition: RoomDefinition, options: dict[str, Any],
                       auth: Any = None) -> SeatReservation | None:
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
            seat = self._reserve_listed(listing, options, auth)
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

    def _reserve_listed(self, listing: RoomListing, options: dict[str, Any],
                        auth: Any = None) -> SeatReservation | None:
        room = self.rooms.get(listing.room_id)
        if room is not None:
            return self._reserve_local(room, options, auth)
        session_id = self._remote(listing, "reserve_seat", listing.room_id, options,
                                  *_given(auth))
        if session_id is None:
            return None
        return SeatReservation(listing.name, listing.room_id, listing.process_id, session_id,
                               listing.public_address)

    def _create_and_reserve(self, definition: RoomDefinition, options: dict[str, Any],
                            auth: Any = None) -> SeatReservation:
        """Create the room where placement says; a process at its limit (README, "Limits")
        sends it to the next least loaded one, and when none can take it: ProcessFull, 523."""
        target = (self.placement.choose(definition.name, options) if self.placement is not None
                  else self._least_loaded_process())
        tried: set[str] = set()
        refusal: ProcessFull | None = None
        while target is not None:
            tried.add(target)
            if target != self.process_id:
                seat = self._create_remotely(target, definition, options, auth)
                if seat is not None:
                    return seat
                # It made none (it is gone, failed, or is at its limit): here, else the others.
                target = self.process_id if self.process_id not in tried else self._spill_target(tried)
                continue
            try:
                return self._create_room(definition, options, seats=[options], auth=auth)[1][0]
            except ProcessFull as exc:
                refusal = exc
            target = self._spill_target(tried)
        raise ProcessFull(f'no process can create a "{definition.name}" room now: every one is at '
                          f"its room or client limit ({refusal.message if refusal else 'none left'})")

    def _spill_target(self, tried: set[str]) -> str | None:
        """The least loaded serving process not yet asked (None when every one was)."""
        if self.registry is None:
            return None
        for info in self.registry.alive_processes():
            if info.process_id not in tried and info.state == "serving":
                return info.process_id
        return None

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

    def _reserve_local(self, room: Room, options: dict[str, Any],
                       auth: Any = None, admitted: bool = False) -> SeatReservation | None:
        seats = self._reserve_local_many(room, [options], auth, admitted)
        return seats[0] if seats is not None else None

    def _reserve_local_many(self, room: Room, seats: list[dict[str, Any]], auth: Any = None,
                            admitted: bool = False) -> list[SeatReservation] | None:
        """A seat for each of ``seats`` (join options) in a local room: all of them, or None when
        they do not all fit, it is locked, or this process is at its client limit
        (``admitted``: the seats of a room being created, which its creation counted)."""
        if not admitted and self.capacity.seat_refusal(self.rooms, len(seats)) is not None:
            return None
        session_ids = [generate_id() for _ in seats]
        if not room._gr.reserve_seats(list(zip(session_ids, seats, strict=True)), auth):
            return None
        return [SeatReservation(room.room_name, room.room_id, self.process_id, session_id,
                                self.public_address) for session_id in session_ids]



def _wait_all(engines: list[RoomEngine], deadline: float) -> list[RoomEngine]:
    """Wait until every engine has ended or ``deadline`` (monotonic) passed; the ones still open."""
    for engine in engines:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        engine.wait_ended(remaining)
    return [engine for engine in engines if not engine.ended]
