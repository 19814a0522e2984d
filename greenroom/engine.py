"""The engine of one room: what greenroom does for a Room that the game does not see
(docs/architecture.md, "The room engine").

A Room holds one ``RoomEngine`` as ``room._gr`` and no other attribute of greenroom's, so a game
may give its own attributes any name (``self._state``, ``self._clients``, ``self._clock``...).
The matchmaker and the socket layer reach a room only through the engine's public methods:

* matchmaker: ``attach``, ``create``, ``reserve_seat``, ``reserve_seats``, ``reserve_reconnection``,
  ``shutdown``, ``force_dispose``, ``dispose``, ``discard``, ``wait_ended``;
* socket: ``connection_settings``, ``join``, ``ack``, ``message``, ``closed``;
* both, and the Room itself: ``post`` and ``call``, the one seam into the room's line of
  execution. Nothing else touches the inbox, so the mechanism behind it can change.

Methods whose names start with an underscore run in the room's line of execution. Joining and
leaving (who holds a seat) live in membership.py, a base of RoomEngine.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gevent.event import Event

from .clock import Clock, Timer
from .errors import SeatReservationError
from .inbox import Inbox, InboxClosed
from .membership import SEAT_EXPIRED, TOKEN_EXPIRED, Membership
from .metrics import record
from .patch_clock import PatchTick
from .phase import Phase
from .protocol import frames
from .protocol.codes import CloseCode
from .routing import MessageRouter
from .seats import Seats
from .serializer import NoneSerializer, Serializer
from .session import Client, ClientState

if TYPE_CHECKING:
    from .drivers.listing import RoomListing
    from .presence.base import Presence

log = logging.getLogger("greenroom.room")



class RoomHost(Protocol):
    """What a room needs from whoever created it (the matchmaker)."""

    def update_listing(self, room_id: str, **changes: Any) -> None: ...
    def room_disposed(self, engine: RoomEngine) -> None: ...


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """How the socket layer serves this room's connections (the Room's class attributes)."""

    max_message_size: int | None
    send_timeout: float | None
    send_backlog: int | None
    ping_interval: float | None
    pong_timeout: float
    max_messages_per_second: float | None = None


#: Listing fields compared by value in sync_listing (metadata may be the room's own dict,
#: changed in place: always written).
_SCALAR_FIELDS = frozenset({"clients", "locked", "private"})


class RoomEngine(Membership):
    def __init__(self, room: Any) -> None:
        self.room = room
        self.room_id = ""
        self.name = ""
        self.process_id = ""
        self.presence: Presence | None = None
        self.listing: RoomListing | None = None
        self.clients: list[Client] = []
        self.state: Any = None
        self.serializer: Serializer = NoneSerializer()
        self.router = MessageRouter(self.report)
        self.locked_manually = False
        self.locked_full = False
        self.private = False
        #: Kept out of lobby listings (a LobbyRoom lists everything but itself); set in on_create.
        self.unlisted = False
        self.phase = Phase.DETACHED
        self.clock: Clock | None = None
        self.seats: Seats | None = None
        self._inbox: Inbox | None = None
        self._host: RoomHost | None = None
        self._patch_timer: PatchTick | None = None
        self._simulation: Timer | None = None
        self._after_patch: list[tuple[bytes, Any]] = []
        self._own_before_patch = True
        self._subscriptions: list[tuple[str, Callable[[Any], None]]] = []
        self._awaiting_ack: dict[Client, Timer] = {}
        self.options: dict[str, Any] = {}
        #: This room name's figures (greenroom.metrics.record); counts nothing while metrics are off.
        self.meter: record.RoomMeter = record.OFF
        self._metered_clients = 0  # what this room added to the clients gauge
        self._disposed: Event | None = None  # made by the first wait_disposed(), rarely

    # == the line of execution ===================================================================
    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in the room's line of execution, later; returns at once."""
        self._inbox.post(fn, *args)  # type: ignore[union-attr]

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in the room's line of execution and return its result (or raise);
        raises InboxClosed once the room is disposed."""
        return self._inbox.call(fn, *args)  # type: ignore[union-attr]

    @property
    def host(self) -> RoomHost | None:
        """Whoever created the room: the matchmaker (built-in rooms create rooms and query listings)."""
        return self._host

    @property
    def in_room(self) -> bool:
        return self._inbox is not None and self._inbox.in_room

    def wait_ended(self, timeout: float | None = None) -> bool:
        """Wait until the room's line of execution has ended (it ends with the disposal)."""
        return self._inbox is None or self._inbox.join(timeout)

    @property
    def ended(self) -> bool:
        return self._inbox is None or self._inbox.ended

    # == the matchmaker's side ==================================================================
    def attach(self, host: RoomHost, room_id: str, name: str, process_id: str,
               presence: Presence | None) -> None:
        self._host = host
        self.room_id, self.name, self.process_id = room_id, name, process_id
        self.presence = presence
        self._inbox = Inbox(room_id, self._handler_failed)
        self.clock = Clock(self.post, self._inbox.post_first)
        self.seats = Seats(room_id, self.clients, self.clock, self._seat_expired)
        self.phase = Phase.RUNNING
        self.meter = record.active.room(name)
        self.meter.opened()
        self.reset_patch_timer()

    def create(self, options: dict[str, Any]) -> None:
        """Run ``on_create``; its exception propagates (the caller then ``discard``s the room)."""
        self.options = options  # a migration runs on_create again in the new code
        self.call(self.room.on_create, options)

    def discard(self) -> None:
        """Stop a room whose creation failed: timers, subscriptions and line of execution end,
        and no further hook runs (on_create did not complete, so on_dispose is not called)."""
        self.phase = Phase.DISPOSED
        self._release_resources()

    def dispose(self) -> None:
        """Dispose now (after its on_leave and on_dispose), e.g. when the room cannot be listed."""
        try:
            self.call(self._dispose_now)
        except InboxClosed:
            pass

    def reserve_seat(self, session_id: str, options: dict[str, Any], auth: Any = None) -> bool:
        """Claim a seat for ``session_id`` without yielding, so concurrent callers can never both
        take the last one; False when the room is full, locked or closing. ``auth``: what
        ``on_auth_request`` returned, the client's ``auth`` when its socket arrives."""
        return self.reserve_seats([(session_id, options)], auth)

    def reserve_seats(self, seats: Sequence[tuple[str, dict[str, Any]]], auth: Any = None) -> bool:
        """Claim a seat for every ``(session_id, options)`` in one step that does not yield: all
        of them or none (a matched group must not be split by a join that takes the last seat
        between two of its reservations); False when they do not all fit, or the room is locked
        or closing. ``auth`` goes with each seat (see ``reserve_seat``)."""
        assert self.seats is not None
        if self.phase is not Phase.RUNNING or self.locked_manually or not seats:
            return False
        max_clients = self.room.max_clients
        if max_clients is not None and self.seats.taken + len(seats) > max_clients:
            return False
        timeout = self.room.seat_reservation_timeout
        reserved: list[str] = []
        for session_id, options in seats:
            if not self.seats.reserve(session_id, options, timeout, auth=auth):
                for done in reserved:  # a session id given twice: take back the others
                    self.seats.claim(done)
                return False
            reserved.append(session_id)
        self._seats_changed()
        return True

    def reserve_reconnection(self, token: str) -> str | None:
        """Reserve the seat ``token`` reclaims (held by allow_reconnection, or kept by a socket
        that is still open); its session id, or None. Idempotent until the socket arrives."""
        if self.phase is not Phase.RUNNING or self.seats is None:
            return None
        return self.seats.reserve_reconnection(token, self.room.seat_reservation_timeout)

    @property
    def seats_taken(self) -> int:
        return self.seats.taken if self.seats is not None else 0

    def shutdown(self) -> None:
        """Graceful shutdown: lock the room and run its on_before_shutdown."""
        self.post(self._before_shutdown)

    def force_dispose(self, code: int = CloseCode.SERVER_SHUTDOWN) -> None:
        """Close every client with ``code`` and dispose, whatever the room's hooks would do."""
        self.post(self._force_dispose, code)

    # == the socket's side ======================================================================
    def connection_settings(self) -> ConnectionSettings:
        room = self.room
        return ConnectionSettings(room.max_message_size, room.send_timeout, room.send_backlog,
                                  room.ping_interval or None, room.pong_timeout,
                                  room.max_messages_per_second)

    def join(self, client: Client, token: str | None, skip_handshake: bool) -> Client:
        """A socket arrived for a reserved seat. Returns the Client to use from now on (on a
        reconnection, the original one); raises GreenroomError to refuse the socket."""
        try:
            return self.call(self._join, client, token, skip_handshake)
        except InboxClosed:
            raise SeatReservationError(TOKEN_EXPIRED if token else SEAT_EXPIRED) from None

    def ack(self, client: Client) -> None:
        self.post(self._ack, client)

    def message(self, client: Client, frame: frames.ClientFrame) -> None:
        self._inbox.post(self._message, client, frame)  # type: ignore[union-attr]  # post(), inline

    def closed(self, client: Client, transport: Any, code: int) -> None:
        """The socket ``transport`` of ``client`` ended with ``code``. A socket that was replaced
        meanwhile (a reconnection took over) is no longer the client's and is ignored."""
        self.post(self._closed, client, transport, code)

    # == the Room's side (its public methods land here) =========================================
    def set_state(self, value: Any) -> None:
        self.state = value
        if isinstance(self.serializer, NoneSerializer) and value is not None:
            self.serializer = _serializer_for(value)
        self.serializer.reset(value)

    def broadcast(self, frame: bytes, except_: Client | list[Client] | None,
                  after_next_patch: bool) -> None:
        if after_next_patch:
            self._after_patch.append((frame, except_))
            return
        excluded = except_ if isinstance(except_, list) else (except_,)
        for client in self.clients:
            if client not in excluded:
                client.enqueue_raw(frame)

    @property
    def locked(self) -> bool:
        return self.locked_manually or self.locked_full

    def set_locked(self, locked: bool) -> None:
        self.locked_manually = locked
        self.sync_listing(locked=self.locked)

    def set_private(self, private: bool) -> None:
        self.private = private
        self.sync_listing(private=private)

    def sync_listing(self, **changes: Any) -> None:
        """Change the listing here and in the store. A change of seat count, lock or privacy
        that changes nothing is not written: a join takes the seat its reservation already
        counted, and writing that count again cost every join one more listing write (and
        lobbies a ``+`` for nothing; Colyseus writes the count at the reservation only)."""
        if self.listing is not None:
            if all(key in _SCALAR_FIELDS and getattr(self.listing, key) == value
                   for key, value in changes.items()):
                return
            for key, value in changes.items():
                setattr(self.listing, key, value)
        if self._host is not None and self.phase in (Phase.RUNNING, Phase.CLOSING):
            self._host.update_listing(self.room_id, **changes)

    def reset_patch_timer(self) -> None:
        if self._patch_timer is not None and self.clock is not None:
            self.clock.clear_patch_interval(self._patch_timer)
        self._patch_timer = None
        # Room marks its own do-nothing on_before_patch: a room that keeps it needs no tick
        # when nothing changed; one that overrides it gets every tick, as it expects.
        self._own_before_patch = not getattr(self.room.on_before_patch, "greenroom_default", False)
        if self.room.patch_rate and self.clock is not None:
            self._patch_timer = self.clock.set_patch_interval(self._patch_tick, self.room.patch_rate,
                                                              self._patch_wanted)

    def _patch_wanted(self) -> bool:
        """Asked in the hub at every tick of the shared patch clock: does this tick do anything?"""
        return (self._after_patch != [] or self._own_before_patch or self.serializer.has_changes())

    def set_simulation(self, callback: Callable[[float], Any] | None, milliseconds: float) -> None:
        if self._simulation is not None:
            self._simulation.clear()
            self._simulation = None
        if callback is None:
            return
        last = [time.monotonic()]

        def tick() -> None:
            now = time.monotonic()
            delta, last[0] = (now - last[0]) * 1000.0, now
            callback(delta)

        self._simulation = self.clock.set_interval(tick, milliseconds)  # type: ignore[union-attr]

    def subscribe(self, channel: str, callback: Callable[[Any], None]) -> None:
        if self.presence is None:
            raise RuntimeError("this room has no presence")

        def deliver(message: Any) -> None:
            self.post(callback, message)

        self.presence.subscribe(channel, deliver)
        self._subscriptions.append((channel, deliver))

    def disconnect(self, code: int, reason: str, timeout: float) -> None:
        if self.phase is not Phase.RUNNING:
            return
        self.set_locked(True)
        self.phase = Phase.CLOSING
        seats = self.seats
        assert seats is not None and self.clock is not None
        for session_id in list(seats.reserved):
            seats.claim(session_id)
        for held in list(seats.held.values()):
            self._end_hold(held)
        for client in list(self.clients):
            client.close(code, reason)
        self.clock.set_timeout(self._dispose_now, timeout * 1000)
        self.post(self._maybe_dispose)

    # == messages and patches (in the room) =====================================================
    def _message(self, client: Client, frame: frames.ClientFrame) -> None:
        if client.state in (ClientState.LEFT, ClientState.RECONNECTING):
            return
        self.router.dispatch(self.room_id, self.name, client, frame)

    def _patch_tick(self) -> None:
        self._run_handler("on_before_patch", self.room.on_before_patch)
        self._broadcast_patch()
        if self._after_patch:
            pending, self._after_patch = self._after_patch, []
            for frame, except_ in pending:
                self.broadcast(frame, except_, False)

    def _broadcast_patch(self) -> None:
        serializer = self.serializer
        if not serializer.has_changes():
            return
        joined = [c for c in self.clients if c.state is ClientState.JOINED]
        meter = self.meter
        started = time.perf_counter() if meter.enabled else 0.0
        try:
            patches = serializer.encode_patches(joined)
        except Exception:
            log.exception("room %s (%s): cannot encode the state patch", self.room_id, self.name)
            return
        if meter.enabled:
            meter.patch(time.perf_counter() - started, [len(body) for _, body in patches])
        for group, body in patches:
            frame = frames.PATCH + body
            for client in group:
                client.raw(frame)  # type: ignore[attr-defined]

    # == ending (in the room) ===================================================================
    def _before_shutdown(self) -> None:
        if self.phase is not Phase.RUNNING:
            return
        self.set_locked(True)
        self._run_handler("on_before_shutdown", self.room.on_before_shutdown)

    def _force_dispose(self, code: int) -> None:
        if self.phase in (Phase.DISPOSING, Phase.DISPOSED):
            return
        self.phase = Phase.CLOSING
        for client in list(self.clients):
            client.close(code)
        self._dispose_now()

    def will_dispose(self) -> bool:
        """Whether the room is disposed as soon as the change under way is done: nobody holds
        a seat and it disposes when empty."""
        if self.phase not in (Phase.RUNNING, Phase.CLOSING) or self.seats_taken:
            return False
        return self.room.auto_dispose or self.phase is Phase.CLOSING

    def _maybe_dispose(self) -> None:
        if self.will_dispose():
            self._dispose_now()

    def _dispose_now(self) -> None:
        """Dispose whatever is left: held seats end and clients still here leave, then
        on_dispose runs, and nothing of the room runs after it."""
        if self.phase in (Phase.DISPOSING, Phase.DISPOSED):
            return
        self.phase = Phase.DISPOSING
        assert self.seats is not None
        for held in self.seats.cancel_all():
            self._end_hold(held)
        for client in list(self.clients):
            self._remove(client, False)
        self._run_handler("on_dispose", self.room.on_dispose)
        self.phase = Phase.DISPOSED
        if self._host is not None:
            self._host.room_disposed(self)
        self._release_resources()
        if self._disposed is not None:
            self._disposed.set()

    def wait_disposed(self, timeout: float) -> bool:
        """Block (outside the room) until the room is disposed and unlisted, or ``timeout``
        passes: an operator's dispose should not answer while the room is still listed."""
        if self.phase is not Phase.DISPOSED and self._disposed is None:
            self._disposed = Event()
        return self.phase is Phase.DISPOSED or bool(self._disposed and self._disposed.wait(timeout))

    def _release_resources(self) -> None:
        meter, self.meter = self.meter, record.OFF  # idempotent: a room is counted out once
        meter.clients(-self._metered_clients)
        self._metered_clients = 0
        meter.closed()
        if self.clock is not None:
            self.clock.close()
        for channel, deliver in self._subscriptions:
            try:
                self.presence.unsubscribe(channel, deliver)  # type: ignore[union-attr]
            except Exception as exc:  # noqa: BLE001 - the backend may be gone at shutdown
                log.warning("room %s: unsubscribe from %s failed: %s", self.room_id, channel, exc)
        self._subscriptions.clear()
        if self._inbox is not None:
            self._inbox.close()

    # == errors =================================================================================
    def _run_handler(self, where: str, fn: Callable[..., Any], *args: Any,
                     client: Client | None = None) -> Any:
        try:
            return fn(*args)
        except Exception as exc:
            self.report(exc, where, client)
            return None

    def report(self, exc: BaseException, where: str, client: Client | None) -> None:
        """Log an exception of room code (with the traceback: it is the game's bug to fix),
        then give it to the room's on_uncaught_exception."""
        log.error("room %s (%s): %s raised for client %s: %s: %s\n%s", self.room_id, self.name,
                  where, client.session_id if client else "-", type(exc).__name__, exc,
                  traceback.format_exc().rstrip())
        try:
            self.room.on_uncaught_exception(exc, where)
        except Exception:  # noqa: BLE001
            log.exception("room %s: on_uncaught_exception raised", self.room_id)

    def _handler_failed(self, exc: BaseException, fn: Callable[..., Any]) -> None:
        self.report(exc, getattr(fn, "__qualname__", repr(fn)), None)


def _serializer_for(state: Any) -> Serializer:
    # Imported on first use: rooms without state never load the schema package.
    from .schema import Schema, SchemaSerializer

    if isinstance(state, Schema):
        return SchemaSerializer()
    raise TypeError(f"room state must be a greenroom.schema.Schema, not {type(state).__name__}")
