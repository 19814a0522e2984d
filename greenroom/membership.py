"""Clients joining, reclaiming held seats and leaving a room: the half of the room engine that
decides who is in it (docs/architecture.md, "Seats and reservations").

``Membership`` is a base of ``RoomEngine`` (engine.py), kept apart because the rules for who
takes, keeps and gives back a seat are one idea and the engine's plumbing (line of execution,
listings, patches, disposal) another. Every method here runs in the room's line of execution.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import AuthError, GreenroomError, SeatReservationError
from .ids import generate_id
from .phase import Phase
from .protocol import frames
from .protocol.codes import CloseCode, ErrorCode
from .protocol.dialect import Dialect
from .seats import HeldSeat, Seats
from .session import DEFAULT_QUEUE_LIMIT, Client, ClientState

if TYPE_CHECKING:
    from .clock import Clock, Timer
    from .metrics.record import RoomMeter
    from .serializer import Serializer

log = logging.getLogger("greenroom.room")

SEAT_EXPIRED = "seat reservation expired."
TOKEN_EXPIRED = "reconnection token invalid or expired."


class Membership:
    # Provided by RoomEngine.
    room: Any
    room_id: str
    name: str
    phase: Phase
    clients: list[Client]
    seats: Seats | None
    clock: Clock | None
    serializer: Serializer
    locked: bool
    locked_full: bool
    _awaiting_ack: dict[Client, Timer]
    meter: RoomMeter
    _metered_clients: int

    if TYPE_CHECKING:
        def post(self, fn: Callable[..., Any], *args: Any) -> None: ...
        def sync_listing(self, **changes: Any) -> None: ...
        def _broadcast_patch(self) -> None: ...
        def _maybe_dispose(self) -> None: ...
        def will_dispose(self) -> bool: ...
        def _run_handler(self, where: str, fn: Callable[..., Any], *args: Any,
                         client: Client | None = None) -> Any: ...

    def allow_reconnection(self, client: Client, seconds: float,
                           callback: Callable[[bool], None] | None) -> None:
        assert self.seats is not None
        held = self.seats.held.get(client.session_id)
        if held is None:
            token = client.reconnection_token or generate_id()
            held = self.seats.hold(client, token, seconds, self._end_hold)
            client.state = ClientState.RECONNECTING
            client.transport = None
            self._stop_ack_timer(client)
        if held is not None and callback is not None:
            held.callbacks.append(callback)

    # == joining ======================================================================
    def _join(self, fresh: Client, token: str | None, skip_handshake: bool) -> Client:
        assert self.seats is not None
        if self.phase is not Phase.RUNNING:
            raise SeatReservationError(TOKEN_EXPIRED if token else SEAT_EXPIRED)
        if token:
            client = self.seats.client_for_token(token)
            if client is not None and client.session_id == fresh.session_id:
                return self._reclaim(client, fresh, skip_handshake)
        reservation = self.seats.reserved.get(fresh.session_id)
        if reservation is None or reservation.reconnect is not None:
            # A held seat is reclaimed by its token only: a socket with the session id alone
            # neither takes it over nor consumes the reservation made for it.
            raise SeatReservationError(TOKEN_EXPIRED if token else SEAT_EXPIRED)
        self.seats.claim(fresh.session_id)
        return self._admit(fresh, reservation.options, skip_handshake, reservation.auth)

    def _admit(self, client: Client, options: dict[str, Any], skip_handshake: bool,
               auth: Any = None) -> Client:
        """``auth``: what on_auth_request returned in the matchmaking request; without it,
        on_auth decides now."""
        client.room = self.room
        client.queue_limit = self.room.send_backlog or DEFAULT_QUEUE_LIMIT
        client.on_overflow = self.meter.backlog_dropped
        self.clients.append(client)  # counts as a seat from here on
        try:
            client.auth = auth if auth is not None else self._authenticate(client, options)
            self._call_hook("on_join", client, options, client.auth)
        except BaseException:
            self.clients.remove(client)
            client.state = ClientState.LEFT
            self._seats_changed()
            self.post(self._maybe_dispose)
            raise
        self._send_join_room(client, skip_handshake)
        self._seats_changed()
        return client

    def _reclaim(self, client: Client, fresh: Client, skip_handshake: bool) -> Client:
        """A reconnection token for ``client``: resume its held seat. If its old socket is still
        open (a half-open connection nobody noticed yet), that socket is closed and counts as
        dropped first, so on_drop (and allow_reconnection) decide as for any lost connection."""
        assert self.seats is not None
        self.seats.claim(client.session_id)  # the reservation of POST /matchmake/reconnect, if any
        if client in self.clients:
            log.info("room %s: client %s reconnected while its old socket was still open; "
                     "closing the stale socket", self.room_id, client.session_id)
            stale, client.transport = client.transport, None
            if stale is not None:
                stale.terminate()
            self._lost(client, CloseCode.ABNORMAL)
        held = self.seats.held.get(client.session_id)
        if held is None:
            raise SeatReservationError(TOKEN_EXPIRED)
        return self._resume(held, fresh, skip_handshake)

    def _resume(self, held: HeldSeat, fresh: Client, skip_handshake: bool) -> Client:
        self.seats.release(held)  # type: ignore[union-attr]
        client = held.client
        client.transport, client.request, client.dialect = fresh.transport, fresh.request, fresh.dialect
        client.rejoining()
        self.clients.append(client)
        self._send_join_room(client, skip_handshake)
        self._seats_changed()
        if held.migrated:
            return client  # the same client, moved with its room: nothing happened to the game
        self._run_handler("on_reconnect", self.room.on_reconnect, client, client=client)
        for callback in held.callbacks:
            self._run_handler("reconnection callback", callback, True)
        return client

    def _authenticate(self, client: Client, options: dict[str, Any]) -> Any:
        try:
            auth = self.room.on_auth(client, options, client.request)
        except GreenroomError:
            raise
        except Exception as exc:
            raise AuthError(str(exc) or type(exc).__name__, ErrorCode.APPLICATION_ERROR) from exc
        if not auth:
            raise AuthError("onAuth failed")
        return auth

    def _call_hook(self, name: str, *args: Any) -> Any:
        """Call a hook that may refuse a join: its exception becomes error 526."""
        try:
            return getattr(self.room, name)(*args)
        except GreenroomError:
            raise
        except Exception as exc:
            log.error("room %s (%s): %s raised for client %s:\n%s", self.room_id, self.name, name,
                      args[0].session_id if args else "-", traceback.format_exc().rstrip())
            raise GreenroomError(str(exc) or type(exc).__name__, ErrorCode.APPLICATION_ERROR) from exc

    def _send_join_room(self, client: Client, skip_handshake: bool) -> None:
        client.reconnection_token = generate_id()
        handshake = b"" if skip_handshake else self.serializer.handshake(client.dialect)
        client.raw(frames.join_room(client.dialect, client.reconnection_token, self.serializer.id,
                                    handshake))
        # A client that never acknowledges would hold its seat (and its queue) forever.
        self._awaiting_ack[client] = self.clock.set_timeout(  # type: ignore[union-attr]
            self._ack_overdue, self.room.seat_reservation_timeout * 1000, client)

    def _ack(self, client: Client) -> None:
        """The client decoded JOIN_ROOM: others get the pending patch first, then it gets the
        full state and what was queued for it (docs/protocol.md, "Joining")."""
        if client.state is not ClientState.JOINING:
            return
        self._stop_ack_timer(client)
        self._broadcast_patch()
        try:
            body = self.serializer.full_state(client)
        except Exception:
            log.exception("room %s (%s): cannot encode the full state for %s", self.room_id,
                          self.name, client.session_id)
            body = None
        if body is not None:
            client.raw(frames.STATE + body)
        client.state = ClientState.JOINED
        client.flush_queued()

    def _ack_overdue(self, client: Client) -> None:
        self._awaiting_ack.pop(client, None)
        if client.state is not ClientState.JOINING or client not in self.clients:
            return
        log.info("room %s: client %s did not acknowledge JOIN_ROOM within %g s; closing its "
                 "connection", self.room_id, client.session_id, self.room.seat_reservation_timeout)
        transport = client.transport
        self._leave(client, False)
        if transport is not None:
            transport.close(CloseCode.WITH_ERROR, "join not acknowledged")

    def _log_unacknowledged(self, client: Client, code: int) -> None:
        """A client that closes between JOIN_ROOM and its ack could not decode JOIN_ROOM: what
        a client of the other wire dialect does (an @colyseus/sdk 0.18 client on a v3 endpoint
        fails in the browser with "typeContext.get(...) is not a constructor")."""
        if client.dialect is Dialect.V3:
            other = "v5 (@colyseus/sdk 0.18)"
        else:
            other = "v3 (colyseus.js 0.16, @colyseus/sdk 0.17)"
        log.warning("room %s: client %s closed (code %s) right after JOIN_ROOM without acknowledging "
                    "it, as a client of the other wire dialect does; this endpoint speaks %s. To "
                    "serve %s clients too, give them a path: Server(dialects={\"/v18\": \"v5\"}) "
                    "(docs/protocol.md, dialects)", self.room_id, client.session_id, code,
                    client.dialect.value, other)

    def _stop_ack_timer(self, client: Client) -> None:
        timer = self._awaiting_ack.pop(client, None)
        if timer is not None:
            timer.clear()

    # == leaving ======================================================================
    def _closed(self, client: Client, transport: Any, code: int) -> None:
        if client.transport is not transport or client not in self.clients:
            return  # already gone, or a reconnection replaced this socket
        self._lost(client, code)

    def _lost(self, client: Client, code: int) -> None:
        """The client's connection is gone: a drop (the room may hold the seat) or a leave."""
        if client in self._awaiting_ack and client.state is ClientState.JOINING:
            self._log_unacknowledged(client, code)
        self._stop_ack_timer(client)
        consented = code == CloseCode.CONSENTED
        if not consented and client.state is ClientState.JOINED and self.phase is Phase.RUNNING:
            self._run_handler("on_drop", self.room.on_drop, client, code, client=client)
            if client.state is ClientState.RECONNECTING:  # allow_reconnection holds its seat
                self.clients.remove(client)
                self._count_clients()
                return
        self._leave(client, consented)

    def _leave(self, client: Client, consented: bool) -> None:
        self._remove(client, consented)
        self._seats_changed()
        self._maybe_dispose()

    def _remove(self, client: Client, consented: bool) -> None:
        self._stop_ack_timer(client)
        self.clients.remove(client)
        client.state = ClientState.LEFT
        client.transport = None
        self._run_handler("on_leave", self.room.on_leave, client, consented, client=client)

    def _end_hold(self, held: HeldSeat) -> None:
        """A held seat was not reclaimed in time (or the room is closing): the client leaves."""
        seats = self.seats
        assert seats is not None
        if not seats.release(held):
            return
        client = held.client
        seats.claim(client.session_id)
        if client in self.clients:
            self.clients.remove(client)
        client.state = ClientState.LEFT
        self._run_handler("on_leave", self.room.on_leave, client, False, client=client)
        for callback in held.callbacks:
            self._run_handler("reconnection callback", callback, False)
        self._seats_changed()
        self._maybe_dispose()

    def _seat_expired(self) -> None:
        self.meter.reservation_expired()
        self._seats_changed()
        self._maybe_dispose()

    def _seats_changed(self) -> None:
        seats = self.seats
        assert seats is not None
        self.locked_full = not seats.has_free(self.room.max_clients)
        # The gauge first: the listing write below may wait on Redis, and a client that already
        # has its JOIN_ROOM must find itself counted by a scrape made meanwhile.
        self._count_clients()
        # Both, always: listing writes are ordered, so the last one is the truth. Not when
        # the last seat went and the room disposes next: its listing is removed right after,
        # and lobbies see it go (``-``) without an empty room first, as with Colyseus.
        if not self.will_dispose():
            self.sync_listing(clients=seats.taken, locked=self.locked)

    def _count_clients(self) -> None:
        """Bring the clients gauge to this room's sockets (it moves by the difference)."""
        delta = len(self.clients) - self._metered_clients
        if delta:
            self._metered_clients += delta
            self.meter.clients(delta)

