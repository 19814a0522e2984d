"""The server's view of one connected client: what a Room's handlers receive as ``client``."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import Any, Protocol

from .protocol import frames
from .protocol.codes import CloseCode
from .protocol.dialect import Dialect

log = logging.getLogger("greenroom.client")

# Bytes a client may have queued before it acknowledges JOIN_ROOM when its room sets no
# ``send_backlog`` (a send then waits for the socket, but there is no socket to wait for yet).
DEFAULT_QUEUE_LIMIT = 1024 * 1024


class RoomRef(Protocol):
    """What a client knows of its room (``client.room``); the Room class satisfies it."""

    @property
    def room_id(self) -> str: ...
    @property
    def room_name(self) -> str: ...


class Transport(Protocol):
    """What a client needs from its socket; the web layer provides it. Sends and closes may
    come from several greenlets at once (the room, the socket's reader): the transport
    serialises them (greenroom's WebSocket does, under its send lock)."""

    def send(self, data: bytes) -> None: ...
    def close(self, code: int, reason: str = "") -> None: ...
    def terminate(self) -> None: ...


class ClientState(Enum):
    JOINING = "joining"      # JOIN_ROOM sent, ack not yet received
    JOINED = "joined"        # receives state patches and messages
    RECONNECTING = "reconnecting"  # socket gone, seat held by allow_reconnection
    LEFT = "left"


class Client:
    """One client in one room. Send methods may be called from any greenlet."""

    def __init__(self, transport: Transport | None, session_id: str, *, dialect: Dialect = Dialect.V3,
                 request: Any = None) -> None:
        self.transport = transport
        self.session_id = session_id
        self.dialect = dialect
        self.request = request
        self.state = ClientState.JOINING
        #: When its socket arrived (monotonic): the SDKs reconnect by themselves only after
        #: ``minUptime`` (5 s) in the room, which a migration waits for.
        self.joined_at = time.monotonic()
        self.auth: Any = None
        self.user_data: Any = None
        self.view: Any = None  # a StateView, for private state (schema)
        self.reconnection_token: str | None = None
        self.room: RoomRef | None = None
        #: Bytes that may wait for the join acknowledgement; past it the client is dropped.
        self.queue_limit: int = DEFAULT_QUEUE_LIMIT
        #: Told when the client is dropped for overflowing that limit (the room's metrics).
        self.on_overflow: Callable[[], None] | None = None
        self._queued: deque[bytes] = deque()
        self._queued_bytes = 0
        self._overflowed = False

    @property
    def id(self) -> str:
        return self.session_id

    # -- sending ---------------------------------------------------------------------------
    def send(self, message_type: frames.MessageType, message: Any = frames.UNDEFINED) -> None:
        """Send a message; before the client's join ack it is queued and flushed after the state."""
        if self.state is ClientState.JOINED:  # enqueue_raw's first case, one call less per reply
            self.raw(frames.room_data(message_type, message))
        else:
            self.enqueue_raw(frames.room_data(message_type, message))

    def send_bytes(self, message_type: frames.MessageType, data: bytes | bytearray | list[int]) -> None:
        self.enqueue_raw(frames.room_data_bytes(message_type, data))

    def error(self, code: int, message: str = "") -> None:
        self.raw(frames.error(code, message))

    def leave(self, code: int = CloseCode.CONSENTED, reason: str = "") -> None:
        """Close this client's connection; the room's ``on_leave`` follows."""
        self.close(code, reason)

    def enqueue_raw(self, frame: bytes) -> None:
        """Send now if joined; queue until the join acknowledgement if joining (bounded by
        ``queue_limit``: a client that never acknowledges cannot make its room hold its
        messages forever); drop if gone."""
        if self.state is ClientState.JOINED:
            self.raw(frame)
        elif self.state is ClientState.JOINING and not self._overflowed:
            self._queued.append(frame)
            self._queued_bytes += len(frame)
            if self._queued_bytes > self.queue_limit:
                self._overflow()

    def _overflow(self) -> None:
        log.info("client %s: %d bytes queued before it acknowledged JOIN_ROOM (limit %d); "
                 "connection dropped", self.session_id, self._queued_bytes, self.queue_limit)
        self._overflowed = True
        self.clear_queue()
        if self.on_overflow is not None:
            self.on_overflow()
        self.terminate()

    def clear_queue(self) -> None:
        self._queued.clear()
        self._queued_bytes = 0

    def raw(self, frame: bytes) -> None:
        """Write a frame now, whatever the join state. A dead socket is ignored: its reader
        greenlet notices the close and the room hears of the leave from there."""
        transport = self.transport
        if transport is None:
            return
        try:
            transport.send(frame)
        except Exception as exc:  # noqa: BLE001 - a broken pipe is the reader's business
            log.debug("send to %s failed: %s", self.session_id, exc)

    def close(self, code: int = CloseCode.CONSENTED, reason: str = "") -> None:
        transport = self.transport
        if transport is None:
            return
        try:
            transport.close(code, reason)
        except Exception as exc:  # noqa: BLE001
            log.debug("close of %s failed: %s", self.session_id, exc)

    def terminate(self) -> None:
        """Cut the connection without a close handshake, as a network failure would."""
        transport = self.transport
        if transport is not None:
            transport.terminate()

    def flush_queued(self) -> None:
        while self._queued:
            self.raw(self._queued.popleft())
        self._queued_bytes = 0

    def rejoining(self) -> None:
        """A new socket took over this client (reconnection): it must acknowledge again."""
        self.state = ClientState.JOINING
        self._overflowed = False
        self.clear_queue()

    def __repr__(self) -> str:
        return f"<Client {self.session_id} {self.state.value}>"
