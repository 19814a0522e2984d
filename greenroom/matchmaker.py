"""Matchmaking: find or create a room, and reserve a seat in it (docs/architecture.md,
"Seats and reservations" and "Processes and leases"; the HTTP side: docs/protocol.md).

The owner of a room decides whether a seat is free (``RoomEngine.reserve_seat`` claims it
without yielding); the driver's listings are only a catalogue to search. Room creation per name
and filter is serialised, across processes by a renewed lock, so simultaneous joinOrCreate calls
fill one room before opening the next.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar

from gevent.lock import Semaphore

from . import singleton
from .auth import authenticate_request, check_auth_hooks
from .capacity import ProcessCapacity, ProcessFull
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
from .presence import PresenceUnavailable
from .presence.rpc import RemoteCallFailed, RemoteCallTimeout, RemoteProcessGone
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


class MatchMaker(RoomHosting, GroupSeating):
    #: Seconds the cross-process creation lock lives without renewal (a crashed holder blocks
    #: creation of that name for this long at most); renewed every third of it while held.
    creation_lock_ttl: float = 10.0
    #: Seconds a joinOrCreate waits for the creation lock before answering 503.
    creation_lock_wait: float = 15.0
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
        #: Publishes the listings of realtime-listed rooms to the LobbyRooms of the deployment.
        self.lobby = LobbyPublisher(presence) if presence is not None else None
        self._creation_locks: dict[tuple[str, str], list[Any]] = {}
        #: This process's room and client limits (Server(max_rooms=, max_clients=)).
        self.capacity = ProcessCapacity()
        self._accepting = True
        if rpc is not None:
            rpc.register("reserve_seat", self._serve_reserve_seat)
            rpc.register("reserve_reconnection", self._serve_reserve_reconnection)
            rpc.register("create_and_reserve", self._serve_create_and_reserve)
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

    def _remote(self, listing: RoomListing, method: str, *args: Any) -> Any:
        """Ask the owner of ``listing``; None when it cannot answer (it may be dead: its lease
        will take it out of the listings)."""
        if self.rpc is None or listing.process_id == self.process_id:
            return None
        try:
            # with an id, a request delivered twice (redis-py sends a PUBLISH again when the
            # connection drops before its reply) reserves one seat, not two
            return self.rpc.call(listing.process_id, method, *args, timeout=self.rpc_timeout,
                                 request_id=uuid.uuid4().hex)
        except RemoteProcessGone as exc:
            log.info("room %s: %s", listing.room_id, exc)
            return None
        except RemoteCallFailed as exc:
            log.warning("room %s: owner %s did not answer %s: %s", listing.room_id,
                        listing.process_id, method, exc)
            return None

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

    def _create_remotely(self, target: str, definition: RoomDefinition,
                         options: dict[str, Any], auth: Any = None) -> SeatReservation | None:
        """A seat in a room ``target`` creates; None when ``target`` certainly made none."""
        answer = self._ask_creator(target, "create_and_reserve", definition, options, *_given(auth))
        return SeatReservation(**answer) if answer is not None else None

    def _ask_creator(self, target: str, method: str, definition: RoomDefinition, *args: Any) -> Any:
        """Have ``target`` create a room (``method(name, *args)``); its answer, or None when
        ``target`` certainly made none (it is gone, or it failed), so this process may create it
        instead. When ``target`` does not answer, it may have made the room: creating another
        would make two, so the request answers 503 (its retry finds the room, if it was made)."""
        request_id = uuid.uuid4().hex  # a retry with the same id never makes a second room
        for attempt in (1, 2):
            try:
                answer = self.rpc.call(target, method, definition.name, *args,
                                       timeout=self.rpc_timeout, request_id=request_id)
            except RemoteCallTimeout:
                log.warning("matchmaker: process %s did not answer create (attempt %d)", target, attempt)
                continue
            except RemoteCallFailed as exc:
                log.warning("matchmaker: process %s failed to create a %s room: %s; creating it "
                            "here", target, definition.name, exc)
                return None
            if answer.get("full"):
                log.debug("matchmaker: process %s is at its limit: %s", target, answer["error"])
                return None
            if "error" in answer:
                raise MatchMakeError(answer["error"], answer["code"])
            return answer
        raise ServiceUnavailable(
            f'process {target} did not answer a request to create a "{definition.name}" room '
            f"within {2 * self.rpc_timeout:g} s; it may have created it: try again")

    # -- served to other processes ------------------------------------------------------------------
    def _serve_reserve_seat(self, room_id: str, options: dict[str, Any],
                            auth: Any = None) -> str | None:
        room = self.rooms.get(room_id)
        seat = self._reserve_local(room, dict(options or {}), auth) if room is not None else None
        return seat.session_id if seat is not None else None

    def _serve_reserve_reconnection(self, room_id: str, token: str) -> str | None:
        engine = self.engine(room_id)
        return engine.reserve_reconnection(token) if engine is not None else None

    def _serve_create_and_reserve(self, name: str, options: dict[str, Any],
                                  auth: Any = None) -> dict[str, Any]:
        try:
            definition = self.definition(name)
            options = self._options(definition, options)
            seat = self._create_room(definition, options, seats=[options], auth=auth)[1][0]
        except ProcessFull as exc:
            return {"error": exc.message, "code": exc.code, "full": True}
        except MatchMakeError as exc:
            return {"error": exc.message, "code": exc.code}
        return {"name": seat.name, "room_id": seat.room_id, "process_id": seat.process_id,
                "session_id": seat.session_id, "public_address": seat.public_address}

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


def _given(auth: Any) -> tuple[Any, ...]:
    """The auth argument of a call to another process, left out when there is none: a worker of
    an older generation (during a reload) takes the call as it knows it."""
    return () if auth is None else (auth,)


def _wait_all(engines: list[RoomEngine], deadline: float) -> list[RoomEngine]:
    """Wait until every engine has ended or ``deadline`` (monotonic) passed; the ones still open."""
    for engine in engines:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        engine.wait_ended(remaining)
    return [engine for engine in engines if not engine.ended]
