"""Room: the class applications subclass. One room, one line of execution
(docs/architecture.md, "The line of execution").

Application hooks (``on_create``, ``on_join``, ...) and message handlers all run in the room's
line of execution. Everything greenroom keeps for a room lives in one attribute, ``_gr`` (its
RoomEngine), so a subclass may use any other name for its own attributes and methods,
``self._state`` and ``self._clients`` included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .engine import RoomEngine
from .protocol import frames
from .protocol.codes import CloseCode
from .serializer import Serializer
from .session import Client

if TYPE_CHECKING:
    from .clock import Clock
    from .drivers.listing import RoomListing
    from .presence.base import Presence

MessageHandler = Callable[..., Any]


class Room:
    """Subclass it, override the ``on_*`` hooks, register message handlers in ``on_create``."""

    max_clients: int | None = None
    patch_rate: float | None = 50  # ms between state patches; None: no automatic patches
    auto_dispose: bool = True
    seat_reservation_timeout: float = 15.0  # seconds a reserved seat waits for its socket
    max_message_size: int = 64 * 1024  # bytes of one incoming WebSocket message
    # Frames one client may send per second (Colyseus 0.17's maxMessagesPerSecond): the one that
    # goes over closes its connection with 4002 (on_drop / on_leave follow). None (or 0): no
    # limit, the default, as in Colyseus (README, "Limits", says why). Read when a client's
    # socket arrives, so it may be set in on_create.
    max_messages_per_second: float | None = None
    # What a client whose connection does not keep up may cost. Sends never make the room wait:
    # what the socket does not take is queued per client (send_backlog bytes at most) and written
    # by the connection's own greenlet; a client that lets the queue overflow, or reads nothing
    # for send_timeout seconds, is dropped (on_drop / on_leave as for a lost connection).
    # send_backlog = None: no queue, a send waits (send_timeout at most, once) in the room.
    send_timeout: float = 2.0
    send_backlog: int | None = 1024 * 1024
    # Liveness: every ping_interval seconds the connection is pinged (a WebSocket ping frame,
    # which every client answers by itself); one that shows no sign of life for pong_timeout
    # seconds after a ping is dropped (on_drop, so allow_reconnection can hold its seat).
    # ping_interval = None or 0: no pings (TCP keepalive still notices a vanished host, slowly).
    ping_interval: float | None = 3.0
    pong_timeout: float = 6.0
    # With ``greenroom serve --migrate``, a reload moves the room to the new code with its state
    # and clients (README, "Deploying new code without dropping players"); False: it finishes
    # on the code it started with.
    migratable: bool = True

    # -- hooks ------------------------------------------------------------------------------
    def on_create(self, options: dict[str, Any]) -> None:
        """Called once, before anyone joins."""

    @classmethod
    def on_auth_request(cls, token: str | None, options: dict[str, Any], request: Any) -> Any:
        """Override (as a classmethod) to judge a client in its matchmaking request, before any
        room is created or seat reserved (greenroom/auth.py): ``token`` is the client's auth
        token (``Authorization: Bearer``), ``request`` its RequestInfo (None when the matchmaker
        is called from Python). Return a truthy JSON value, kept as ``client.auth`` (on_auth is
        then not called); return False or raise to refuse."""
        return True

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

    on_before_patch.greenroom_default = True  # type: ignore[attr-defined]  # see RoomEngine._patch_wanted

    def on_before_shutdown(self) -> None:
        """Called on graceful shutdown; the default disconnects everyone with 4001."""
        self.disconnect(CloseCode.SERVER_SHUTDOWN)

    def on_dispose(self) -> None:
        """Called once, after the last client left (or on ``disconnect``)."""

    def on_snapshot(self) -> dict[str, Any]:
        """Before the room moves to new code (``--migrate``): what it keeps outside ``state``
        (timers to restart, counters, fields of its own), as JSON. Raising keeps the room here."""
        return {}

    def on_restore(self, data: dict[str, Any]) -> None:
        """In the new code, once, after ``on_create`` and the state are restored: ``data`` is what
        ``on_snapshot`` returned. No ``on_join`` or ``on_leave`` runs for the moved clients."""

    def on_uncaught_exception(self, error: BaseException, where: str) -> None:
        """Called when a handler raised; the error is already logged. The room keeps running."""

    # -- construction -------------------------------------------------------------------------
    def __init__(self) -> None:
        self.metadata: dict[str, Any] = {}
        self._gr = RoomEngine(self)

    @property
    def _gr(self) -> RoomEngine:
        """greenroom's engine for this room: the one name greenroom keeps on a Room."""
        try:
            return self.__dict__["_gr"]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no engine: its __init__ must call "
                                 "super().__init__()") from None

    @_gr.setter
    def _gr(self, engine: RoomEngine) -> None:
        if "_gr" in self.__dict__:
            raise AttributeError(f"{type(self).__name__}._gr is greenroom's engine for this room; "
                                 "give your attribute another name")
        self.__dict__["_gr"] = engine

    # -- identity -----------------------------------------------------------------------------
    @property
    def room_id(self) -> str:
        return self._gr.room_id

    @property
    def room_name(self) -> str:
        return self._gr.name

    @property
    def process_id(self) -> str:
        return self._gr.process_id

    @property
    def clients(self) -> list[Client]:
        """The clients in the room (joined, or joining). Read it; never replace it."""
        return self._gr.clients

    @property
    def clock(self) -> Clock:
        """Timers in the room's line of execution (from on_create on)."""
        return self._gr.clock  # type: ignore[return-value]

    @property
    def presence(self) -> Presence | None:
        return self._gr.presence

    @property
    def listing(self) -> RoomListing | None:
        return self._gr.listing

    # -- state --------------------------------------------------------------------------------
    @property
    def state(self) -> Any:
        return self._gr.state

    @state.setter
    def state(self, value: Any) -> None:
        self._gr.set_state(value)

    def set_state(self, value: Any) -> None:
        self._gr.set_state(value)

    def set_serializer(self, serializer: Serializer) -> None:
        self._gr.serializer = serializer

    # -- messages -----------------------------------------------------------------------------
    def on_message(self, message_type: str | int, handler: MessageHandler | None = None) -> Any:
        """Register ``handler(client, message)`` for a type; ``"*"`` gets ``(client, type, message)``.

        Usable as a decorator: ``@self.on_message("move")``. A handler's return value answers
        a ROOM_REQUEST (@colyseus/sdk 0.18 ``room.request``).
        """
        if handler is None:
            return lambda fn: self.on_message(message_type, fn)
        self._gr.router.on_message(message_type, handler)
        return handler

    def on_bytes(self, message_type: str | int, handler: MessageHandler | None = None) -> Any:
        """Register ``handler(client, data)`` for raw-bytes messages (``room.sendBytes`` on the
        client). As in Colyseus 0.17+, these are kept apart from ``on_message`` handlers: a
        bytes message with no ``on_bytes`` handler goes to the ``"*"`` handler."""
        if handler is None:
            return lambda fn: self.on_bytes(message_type, fn)
        self._gr.router.on_bytes(message_type, handler)
        return handler

    def broadcast(self, message_type: str | int, message: Any = frames.UNDEFINED, *,
                  except_: Client | list[Client] | None = None, after_next_patch: bool = False) -> None:
        self._gr.broadcast(frames.room_data(message_type, message), except_, after_next_patch)

    def broadcast_bytes(self, message_type: str | int, data: bytes, *,
                        except_: Client | list[Client] | None = None,
                        after_next_patch: bool = False) -> None:
        self._gr.broadcast(frames.room_data_bytes(message_type, data), except_, after_next_patch)

    # -- locking, metadata, visibility ---------------------------------------------------------
    @property
    def locked(self) -> bool:
        return self._gr.locked

    def lock(self) -> None:
        """Take the room out of matchmaking; joinById still fails with 522 while locked."""
        self._gr.set_locked(True)

    def unlock(self) -> None:
        self._gr.set_locked(False)

    @property
    def private(self) -> bool:
        return self._gr.private

    def set_private(self, private: bool = True) -> None:
        """A private room is never picked by join/joinOrCreate; joinById still works."""
        self._gr.set_private(private)

    def set_metadata(self, metadata: dict[str, Any]) -> None:
        """Merge into the listing's metadata (what room queries and sort_by see)."""
        self.metadata = {**self.metadata, **metadata}
        self._gr.sync_listing(metadata=self.metadata)

    # -- time ---------------------------------------------------------------------------------
    def set_patch_rate(self, milliseconds: float | None) -> None:
        self.patch_rate = milliseconds
        self._gr.reset_patch_timer()

    def set_simulation_interval(self, callback: Callable[[float], Any] | None,
                                milliseconds: float = 1000 / 60) -> None:
        """Call ``callback(delta_ms)`` every ``milliseconds`` in the room's line of execution.
        A tick that falls due while the previous one still waits for the room is skipped."""
        self._gr.set_simulation(callback, milliseconds)

    # -- presence -----------------------------------------------------------------------------
    def subscribe(self, channel: str, callback: Callable[[Any], None]) -> None:
        """Subscribe to a presence channel; the callback runs in the room's line of execution,
        and the subscription ends with the room."""
        self._gr.subscribe(channel, callback)

    # -- ending -------------------------------------------------------------------------------
    def disconnect(self, code: int = CloseCode.CONSENTED, reason: str = "",
                   timeout: float = 5.0) -> None:
        """Close every client, then dispose of the room once they have left (at most ``timeout`` s)."""
        self._gr.disconnect(code, reason, timeout)

    def allow_reconnection(self, client: Client, seconds: float,
                           callback: Callable[[bool], None] | None = None) -> None:
        """Hold a dropped client's seat for ``seconds``; call from ``on_drop``.

        ``on_reconnect`` follows if it comes back in time, else ``on_leave(client, False)``.
        ``callback(reconnected)`` is called either way.
        """
        self._gr.allow_reconnection(client, seconds, callback)

    def __repr__(self) -> str:
        gr = getattr(self, "_gr", None)
        if gr is None:
            return f"<{type(self).__name__} (not initialised)>"
        return f"<{type(self).__name__} {gr.name}:{gr.room_id} clients={len(gr.clients)}>"
