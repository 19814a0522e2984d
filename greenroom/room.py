"""Room: the class applications subclass. One room, one line of execution (DESIGN D2).

Application hooks (``on_create``, ``on_join``, ...) and message handlers all run in the room's
inbox greenlet. The methods with a leading underscore are the room's side of the contract with
the matchmaker and the socket layer; applications never call them.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .clock import Clock, Timer
from .errors import AuthError, GreenroomError, SeatReservationError
from .ids import generate_id
from .inbox import Inbox
from .protocol import frames
from .protocol.codes import CloseCode, Code, ErrorCode, ResponseStatus
from .serializer import NoneSerializer, Serializer
from .session import Client, ClientState

if TYPE_CHECKING:
    from .drivers.listing import RoomListing
    from .presence.base import Presence

log = logging.getLogger("greenroom.room")

MessageHandler = Callable[..., Any]


class RoomHost(Protocol):
    """What a room needs from whoever created it (the matchmaker)."""

    def update_listing(self, room: Room, **changes: Any) -> None: ...
    def room_disposed(self, room: Room) -> None: ...


@dataclass(slots=True)
class Reservation:
    session_id: str
    options: dict[str, Any]
    expires: Timer | None = None
    reconnect: Client | None = None  # the client whose seat this reclaims


@dataclass(slots=True)
class _Reconnection:
    client: Client
    token: str
    expires: Timer | None = None
    callbacks: list[Callable[[bool], None]] = field(default_factory=list)


class Room:
    """Subclass it, override the ``on_*`` hooks, register message handlers in ``on_create``."""

    max_clients: int | None = None
    patch_rate: float | None = 50  # ms between state patches; None: no automatic patches
    auto_dispose: bool = True
    seat_reservation_timeout: float = 15.0  # seconds a reserved seat waits for its socket
    max_message_size: int = 64 * 1024  # bytes of one incoming WebSocket message
    # What a client whose connection does not keep up may cost. Sends never make the room wait:
    # what the socket does not take is queued per client (send_backlog bytes at most) and written
    # by the connection's own greenlet; a client that lets the queue overflow, or reads nothing
    # for send_timeout seconds, is dropped (on_drop / on_leave as for a lost connection).
    # send_backlog = None: no queue, a send waits (send_timeout at most, once) in the room.
    send_timeout: float = 2.0
    send_backlog: int | None = 1024 * 1024

    # -- hooks ------------------------------------------------------------------------------
    def on_create(self, options: dict[str, Any]) -> None:
        """Called once, before anyone joins."""

    def on_auth(self, client: Client, options: dict[str, Any], request: Any) -> Any:
        """Return a truthy value (kept as ``client.auth``) to admit, False or raise to refuse."""
        return True

    def on_join(self, client: Client, options: dict[str, Any], auth: Any) -> None:
        """Called when a client's socket has claimed its seat."""

    def on_leave(self, client: Client, consented: bool) -> None:
        """Called when a client is gone for good (``consented`` when it asked to leave)."""

    def on_drop(self, client: Client, code: int) -> None:
        """Called when a client's socket closes without consent; call ``allow_reconnection`` here
        to hold the seat. Without it, ``on_leave`` follows at once."""

    def on_reconnect(self, client: Client) -> None:
        """Called when a dropped client is back (after ``allow_reconnection``)."""

    def on_before_patch(self) -> None:
        """Called before every patch tick: last chance to change the state for this patch."""

    def on_before_shutdown(self) -> None:
        """Called on graceful shutdown; the default disconnects everyone with 4001."""
        self.disconnect(CloseCode.SERVER_SHUTDOWN)

    def on_dispose(self) -> None:
        """Called once, after the last client left (or on ``disconnect``)."""

    def on_uncaught_exception(self, error: BaseException, where: str) -> None:
        """Called when a handler raised; the error is already logged. The room keeps running."""

    # -- construction (by the matchmaker) ------------------------------------------------------
    def __init__(self) -> None:
        self.room_id: str = ""
        self.room_name: str = ""
        self.process_id: str = ""
        self.clients: list[Client] = []
        self.metadata: dict[str, Any] = {}
        self.presence: Presence | None = None
        self.listing: RoomListing | None = None
        self.clock: Clock
        self._state: Any = None
        self._serializer: Serializer = NoneSerializer()
        self._handlers: dict[Any, MessageHandler] = {}
        self._byte_handlers: dict[Any, MessageHandler] = {}
        self._reserved: dict[str, Reservation] = {}
        self._reconnections: dict[str, _Reconnection] = {}
        self._locked_manually = False
        self._locked_full = False
        self._private = False
        self._disposing = False
        self._closing = False
        self._patch_timer: Timer | None = None
        self._simulation: Timer | None = None
        self._after_patch: list[tuple[bytes, Client | None]] = []
        self._subscriptions: list[tuple[str, Callable[[Any], None]]] = []
        self._host: RoomHost | None = None
        self._inbox: Inbox

    def _attach(self, host: RoomHost, room_id: str, name: str, process_id: str,
                presence: Presence | None) -> None:
        self._host = host
        self.room_id = room_id
        self.room_name = name
        self.process_id = process_id
        self.presence = presence
        self._inbox = Inbox(room_id, self._handler_failed)
        self.clock = Clock(self._inbox.post)
        self._reset_patch_timer()

    # -- state --------------------------------------------------------------------------------
    @property
    def state(self) -> Any:
        return self._state

    @state.setter
    def state(self, value: Any) -> None:
        self._state = value
        if not isinstance(self._serializer, NoneSerializer) or value is None:
            self._serializer.reset(value)
            return
        self._serializer = self._serializer_for(value)
        self._serializer.reset(value)

    def set_state(self, value: Any) -> None:
        self.state = value

    @staticmethod
    def _serializer_for(state: Any) -> Serializer:
        # Imported on first use: rooms without state never load the schema package.
        from .schema import Schema, SchemaSerializer

        if isinstance(state, Schema):
            return SchemaSerializer()
        raise TypeError(f"room state must be a greenroom.schema.Schema, not {type(state).__name__}")

    def set_serializer(self, serializer: Serializer) -> None:
        self._serializer = serializer

    # -- messages -----------------------------------------------------------------------------
    def on_message(self, message_type: str | int, handler: MessageHandler | None = None) -> Any:
        """Register ``handler(client, message)`` for a type; ``"*"`` gets ``(client, type, message)``.

        Usable as a decorator: ``@self.on_message("move")``. A handler's return value answers
        a ROOM_REQUEST (@colyseus/sdk 0.18 ``room.request``).
        """
        if handler is None:
            return lambda fn: self.on_message(message_type, fn)
        frames.encode_type(message_type) if message_type != "*" else None  # validates the type
        self._handlers[message_type] = handler
        return handler

    def on_bytes(self, message_type: str | int, handler: MessageHandler | None = None) -> Any:
        """Register ``handler(client, data)`` for raw-bytes messages (``room.sendBytes`` on the
        client). As in Colyseus 0.17+, these are kept apart from ``on_message`` handlers: a
        bytes message with no ``on_bytes`` handler goes to the ``"*"`` handler."""
        if handler is None:
            return lambda fn: self.on_bytes(message_type, fn)
        frames.encode_type(message_type)
        self._byte_handlers[message_type] = handler
        return handler

    def broadcast(self, message_type: str | int, message: Any = frames.UNDEFINED, *,
                  except_: Client | list[Client] | None = None, after_next_patch: bool = False) -> None:
        self._broadcast_frame(frames.room_data(message_type, message), except_, after_next_patch)

    def broadcast_bytes(self, message_type: str | int, data: bytes, *,
                        except_: Client | list[Client] | None = None,
                        after_next_patch: bool = False) -> None:
        self._broadcast_frame(frames.room_data_bytes(message_type, data), except_, after_next_patch)

    def _broadcast_frame(self, frame: bytes, except_: Client | list[Client] | None,
                         after_next_patch: bool) -> None:
        if after_next_patch:
            self._after_patch.append((frame, except_))
            return
        excluded = except_ if isinstance(except_, list) else (except_,)
        for client in self.clients:
            if client not in excluded:
                client.enqueue_raw(frame)

    # -- locking, metadata, visibility ---------------------------------------------------------
    @property
    def locked(self) -> bool:
        return self._locked_manually or self._locked_full

    def lock(self) -> None:
        """Take the room out of matchmaking; joinById still fails with 522 while locked."""
        self._locked_manually = True
        self._sync_listing(locked=True)

    def unlock(self) -> None:
        self._locked_manually = False
        self._sync_listing(locked=self.locked)

    @property
    def private(self) -> bool:
        return self._private

    def set_private(self, private: bool = True) -> None:
        """A private room is never picked by join/joinOrCreate; joinById still works."""
        self._private = private
        self._sync_listing(private=private)

    def set_metadata(self, metadata: dict[str, Any]) -> None:
        """Merge into the listing's metadata (what room queries and sort_by see)."""
        self.metadata = {**self.metadata, **metadata}
        self._sync_listing(metadata=self.metadata)

    # -- time ---------------------------------------------------------------------------------
    def set_patch_rate(self, milliseconds: float | None) -> None:
        self.patch_rate = milliseconds
        self._reset_patch_timer()

    def set_simulation_interval(self, callback: Callable[[float], Any] | None,
                                milliseconds: float = 1000 / 60) -> None:
        """Call ``callback(delta_ms)`` every ``milliseconds`` in the room's line of execution."""
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

        self._simulation = self.clock.set_interval(tick, milliseconds)

    def _reset_patch_timer(self) -> None:
        if self._patch_timer is not None:
            self._patch_timer.clear()
            self._patch_timer = None
        if self.patch_rate:
            self._patch_timer = self.clock.set_interval(self._patch_tick, self.patch_rate)

    # -- presence -----------------------------------------------------------------------------
    def subscribe(self, channel: str, callback: Callable[[Any], None]) -> None:
        """Subscribe to a presence channel; the callback runs in the room's line of execution,
        and the subscription ends with the room."""
        if self.presence is None:
            raise RuntimeError("this room has no presence")

        def deliver(message: Any) -> None:
            self._inbox.post(callback, message)

        self.presence.subscribe(channel, deliver)
        self._subscriptions.append((channel, deliver))

    # -- ending -------------------------------------------------------------------------------
    def disconnect(self, code: int = CloseCode.CONSENTED, reason: str = "",
                   timeout: float = 5.0) -> None:
        """Close every client, then dispose of the room once they have left (at most ``timeout`` s)."""
        self.lock()
        self._closing = True
        for session_id in list(self._reserved):
            self._release_reservation(session_id)
        for reconnection in list(self._reconnections.values()):
            self._fail_reconnection(reconnection)
        for client in list(self.clients):
            client.close(code, reason)
        self.clock.set_timeout(self._dispose_now, timeout * 1000)
        self._inbox.post(self._maybe_dispose)

    def allow_reconnection(self, client: Client, seconds: float,
                           callback: Callable[[bool], None] | None = None) -> None:
        """Hold a dropped client's seat for ``seconds``; call from ``on_drop``.

        ``on_reconnect`` follows if it comes back in time, else ``on_leave(client, False)``.
        ``callback(reconnected)`` is called either way.
        """
        if client.session_id in self._reconnections:
            return
        token = client.reconnection_token or generate_id()
        reconnection = _Reconnection(client, token)
        if callback is not None:
            reconnection.callbacks.append(callback)
        reconnection.expires = self.clock.set_timeout(self._fail_reconnection, seconds * 1000, reconnection)
        client.state = ClientState.RECONNECTING
        client.transport = None
        self._reconnections[client.session_id] = reconnection

    # ==========================================================================================
    # The room's side of the matchmaker/socket contract. Everything below runs either in the
    # inbox greenlet or without yielding (so it is atomic under gevent).
    # ==========================================================================================
    @property
    def _seats_taken(self) -> int:
        # A reservation that reclaims a held seat (manual reconnect over HTTP) takes none of its
        # own: that seat is already counted in _reconnections until the socket resumes it or the
        # reconnection fails, whether or not the reservation expires first.
        reserved = sum(1 for reservation in self._reserved.values() if reservation.reconnect is None)
        return len(self.clients) + reserved + len(self._reconnections)

    def _has_free_seat(self) -> bool:
        return self.max_clients is None or self._seats_taken < self.max_clients

    def _reserve_seat(self, session_id: str, options: dict[str, Any], *,
                      reconnect: Client | None = None) -> bool:
        """Claim a seat for ``session_id``; False when full, locked or disposed. Never yields
        before the claim is recorded, so concurrent callers cannot both take the last seat."""
        if self._disposing or self._closing or session_id in self._reserved:
            return False
        if reconnect is None:
            if self._locked_manually or not self._has_free_seat():
                return False
        reservation = Reservation(session_id, options, reconnect=reconnect)
        self._reserved[session_id] = reservation
        reservation.expires = self.clock.set_timeout(
            self._expire_seat, self.seat_reservation_timeout * 1000, session_id)
        self._seats_changed()
        return True

    def _reserve_reconnection(self, token: str) -> str | None:
        """The session id whose seat ``token`` reclaims, reserved again; None if unknown/expired."""
        for reconnection in self._reconnections.values():
            if reconnection.token == token:
                client = reconnection.client
                if self._reserve_seat(client.session_id, {}, reconnect=client):
                    return client.session_id
        return None

    def _expire_seat(self, session_id: str) -> None:
        reservation = self._reserved.pop(session_id, None)
        if reservation is None:
            return
        log.info("room %s: seat of %s expired after %.0f s without a connection",
                 self.room_id, session_id, self.seat_reservation_timeout)
        self._seats_changed()
        self._maybe_dispose()

    def _release_reservation(self, session_id: str) -> Reservation | None:
        """Take a reservation out of the room and stop its expiry timer."""
        reservation = self._reserved.pop(session_id, None)
        if reservation is not None and reservation.expires is not None:
            reservation.expires.clear()
        return reservation

    def _seats_changed(self) -> None:
        full = not self._has_free_seat()
        changes: dict[str, Any] = {"clients": self._seats_taken}
        if full != self._locked_full:
            self._locked_full = full
            changes["locked"] = self.locked
        self._sync_listing(**changes)

    def _sync_listing(self, **changes: Any) -> None:
        if self.listing is not None:
            for key, value in changes.items():
                setattr(self.listing, key, value)
        if self._host is not None and not self._disposing:
            self._host.update_listing(self, **changes)

    def _join(self, client: Client, reconnection_token: str | None, skip_handshake: bool) -> Client:
        """A socket arrived for a reserved seat (runs in the room). Raises GreenroomError to refuse.

        Returns the Client to use from now on: ``client`` itself, or on a reconnection the
        original Client object (so ``user_data`` and references held by the game survive).
        """
        session_id = client.session_id
        previous = self._reconnections.get(session_id)
        if reconnection_token and previous is not None and previous.token == reconnection_token:
            self._release_reservation(session_id)  # manual reconnect reserved it over HTTP
            return self._resume(previous, client, skip_handshake)
        reserved = self._reserved.get(session_id)
        if reserved is not None and reserved.reconnect is not None:
            # A held seat is reclaimed by its reconnection token only (handled above); a socket
            # with the session id alone must neither take it over nor consume its reservation.
            raise SeatReservationError("reconnection token invalid or expired.")
        reservation = self._release_reservation(session_id)
        if reservation is None or self._disposing or self._closing:
            if reconnection_token:
                raise SeatReservationError("reconnection token invalid or expired.")
            raise SeatReservationError("seat reservation expired.")
        client.room = self
        self.clients.append(client)  # counts as a seat from here on
        try:
            client.auth = self._authenticate(client, reservation.options)
            self._call_hook("on_join", client, reservation.options, client.auth)
        except BaseException:
            self.clients.remove(client)
            client.state = ClientState.LEFT
            self._seats_changed()
            self._inbox.post(self._maybe_dispose)
            raise
        self._send_join_room(client, skip_handshake)
        self._seats_changed()
        return client

    def _authenticate(self, client: Client, options: dict[str, Any]) -> Any:
        try:
            auth = self.on_auth(client, options, client.request)
        except GreenroomError:
            raise
        except Exception as exc:
            raise AuthError(str(exc) or type(exc).__name__, ErrorCode.APPLICATION_ERROR) from exc
        if not auth:
            raise AuthError("onAuth failed")
        return auth

    def _call_hook(self, name: str, *args: Any) -> Any:
        """Call an application hook that may refuse a join: its exception becomes error 526."""
        try:
            return getattr(self, name)(*args)
        except GreenroomError:
            raise
        except Exception as exc:
            log.error("room %s (%s): %s raised for client %s:\n%s", self.room_id, self.room_name,
                      name, args[0].session_id if args else "-", traceback.format_exc().rstrip())
            raise GreenroomError(str(exc) or type(exc).__name__, ErrorCode.APPLICATION_ERROR) from exc

    def _send_join_room(self, client: Client, skip_handshake: bool) -> None:
        client.reconnection_token = generate_id()
        handshake = b"" if skip_handshake else self._serializer.handshake(client.dialect)
        client.raw(frames.join_room(client.dialect, client.reconnection_token,
                                    self._serializer.id, handshake))

    def _resume(self, reconnection: _Reconnection, fresh: Client, skip_handshake: bool) -> Client:
        del self._reconnections[fresh.session_id]
        if reconnection.expires is not None:
            reconnection.expires.clear()
        client = reconnection.client
        client.transport, client.request, client.dialect = fresh.transport, fresh.request, fresh.dialect
        client.state = ClientState.JOINING
        self.clients.append(client)
        self._send_join_room(client, skip_handshake)
        self._seats_changed()
        self._run_handler("on_reconnect", self.on_reconnect, client, client=client)
        for callback in reconnection.callbacks:
            self._run_handler("reconnection callback", callback, True)
        return client

    def _fail_reconnection(self, reconnection: _Reconnection) -> None:
        session_id = reconnection.client.session_id
        if self._reconnections.get(session_id) is not reconnection:
            return
        del self._reconnections[session_id]
        if reconnection.expires is not None:
            reconnection.expires.clear()
        self._release_reservation(session_id)
        client = reconnection.client
        if client in self.clients:
            self.clients.remove(client)
        client.state = ClientState.LEFT
        self._run_handler("on_leave", self.on_leave, client, False)
        for callback in reconnection.callbacks:
            self._run_handler("reconnection callback", callback, False)
        self._seats_changed()
        self._maybe_dispose()

    def _ack(self, client: Client) -> None:
        """The client decoded JOIN_ROOM: give it the state, then what was queued for it."""
        if client.state is not ClientState.JOINING:
            return
        self._broadcast_patch()  # ordering rule (PROTOCOL.md §4.1): others first, then the full state
        try:
            body = self._serializer.full_state(client)
        except Exception:
            log.exception("room %s (%s): cannot encode the full state for %s",
                          self.room_id, self.room_name, client.session_id)
            body = None
        if body is not None:
            client.raw(frames.STATE + body)
        client.state = ClientState.JOINED
        client.flush_queued()

    def _message(self, client: Client, frame: frames.ClientFrame) -> None:
        if client.state in (ClientState.LEFT, ClientState.RECONNECTING):
            return
        if frame.code == Code.ROOM_REQUEST:
            self._request(client, frame)
            return
        handlers = self._byte_handlers if frame.code == Code.ROOM_DATA_BYTES else self._handlers
        handler = handlers.get(frame.type)
        if handler is not None:
            self._run_handler(f"handler for {frame.type!r}", handler, client, frame.payload,
                              client=client)
        elif "*" in self._handlers:
            self._run_handler("handler for '*'", self._handlers["*"], client, frame.type,
                              frame.payload, client=client)
        else:
            log.warning("room %s (%s): no handler for message %r from %s", self.room_id,
                        self.room_name, frame.type, client.session_id)
            client.error(ErrorCode.INVALID_PAYLOAD,
                         f'room onMessage for "{frame.type}" not registered.')

    def _request(self, client: Client, frame: frames.ClientFrame) -> None:
        """A ROOM_REQUEST (sdk 0.18): only the type's own handler answers, never ``"*"``."""
        handler = self._handlers.get(frame.type)
        if handler is None:
            log.warning("room %s (%s): no handler for request %r from %s", self.room_id,
                        self.room_name, frame.type, client.session_id)
            client.raw(frames.room_response(frame.request_id or 0, ResponseStatus.ERROR, {
                "name": "no_handler",
                "message": f'room "{self.room_name}" has no onMessage("{frame.type}") handler '
                           "to answer this request."}))
            return
        self._answer_request(client, frame, handler, (client, frame.payload))

    def _answer_request(self, client: Client, frame: frames.ClientFrame, handler: MessageHandler,
                        args: tuple[Any, ...]) -> None:
        request_id = frame.request_id or 0
        try:
            result = handler(*args)
        except GreenroomError as exc:
            client.raw(frames.room_response(request_id, ResponseStatus.REJECTED, exc.message))
            return
        except Exception as exc:
            self._report(exc, f"request handler for {frame.type!r}", client)
            client.raw(frames.room_response(request_id, ResponseStatus.ERROR,
                                            {"name": type(exc).__name__, "message": str(exc)}))
            return
        client.raw(frames.room_response(request_id, ResponseStatus.OK,
                                        frames.UNDEFINED if result is None else result))

    def _closed(self, client: Client, code: int) -> None:
        """The client's socket is gone (runs in the room)."""
        if client.state in (ClientState.LEFT, ClientState.RECONNECTING) or client not in self.clients:
            return
        consented = code == CloseCode.CONSENTED
        if not consented and client.state is ClientState.JOINED and not (self._disposing or self._closing):
            self._run_handler("on_drop", self.on_drop, client, code, client=client)
            if client.state is ClientState.RECONNECTING:
                self.clients.remove(client)
                return
        self.clients.remove(client)
        client.state = ClientState.LEFT
        client.transport = None
        self._run_handler("on_leave", self.on_leave, client, consented, client=client)
        self._seats_changed()
        self._maybe_dispose()

    def _patch_tick(self) -> None:
        self._run_handler("on_before_patch", self.on_before_patch)
        self._broadcast_patch()
        if self._after_patch:
            pending, self._after_patch = self._after_patch, []
            for frame, except_ in pending:
                self._broadcast_frame(frame, except_, False)

    def _broadcast_patch(self) -> None:
        serializer = self._serializer
        if not serializer.has_changes():
            return
        joined = [c for c in self.clients if c.state is ClientState.JOINED]
        try:
            patches = serializer.encode_patches(joined)
        except Exception:
            log.exception("room %s (%s): cannot encode the state patch", self.room_id, self.room_name)
            return
        for group, body in patches:
            frame = frames.PATCH + body
            for client in group:
                client.raw(frame)

    def _maybe_dispose(self) -> None:
        if self._disposing or self._seats_taken or not (self.auto_dispose or self._closing):
            return
        self._dispose_now()

    def _dispose_now(self) -> None:
        """Dispose whatever is left: clients that never closed their sockets leave now."""
        if self._disposing:
            return
        for client in list(self.clients):
            self.clients.remove(client)
            client.state = ClientState.LEFT
            client.transport = None
            self._run_handler("on_leave", self.on_leave, client, False, client=client)
        self._disposing = True
        self._run_handler("on_dispose", self.on_dispose)
        self.clock.clear()
        for channel, deliver in self._subscriptions:
            try:
                self.presence.unsubscribe(channel, deliver)  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001
                log.exception("room %s: unsubscribe from %s failed", self.room_id, channel)
        self._subscriptions.clear()
        if self._host is not None:
            self._host.room_disposed(self)
        self._inbox.close()

    # -- errors ---------------------------------------------------------------------------------
    def _run_handler(self, where: str, fn: Callable[..., Any], *args: Any,
                     client: Client | None = None) -> Any:
        try:
            return fn(*args)
        except Exception as exc:
            self._report(exc, where, client)
            return None

    def _report(self, exc: BaseException, where: str, client: Client | None) -> None:
        log.error("room %s (%s): %s raised for client %s: %s: %s\n%s", self.room_id, self.room_name,
                  where, client.session_id if client else "-", type(exc).__name__, exc,
                  traceback.format_exc().rstrip())
        try:
            self.on_uncaught_exception(exc, where)
        except Exception:  # noqa: BLE001
            log.exception("room %s: on_uncaught_exception raised", self.room_id)

    def _handler_failed(self, exc: BaseException, fn: Callable[..., Any]) -> None:
        name = getattr(fn, "__qualname__", repr(fn))
        self._report(exc, name, None)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.room_name}:{self.room_id} clients={len(self.clients)}>"
