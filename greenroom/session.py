"""The server's view of one connected client: what a Room's handlers receive as ``client``."""

from __future__ import annotations

import logging
from collections import deque
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from .protocol import frames
from .protocol.codes import CloseCode
from .protocol.dialect import Dialect

if TYPE_CHECKING:
    from .room import Room

log = logging.getLogger("greenroom.client")


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
        self.auth: Any = None
        self.user_data: Any = None
        self.view: Any = None  # a StateView, for private state (schema)
        self.reconnection_token: str | None = None
        self.room: Room | None = None
        self._queued: deque[bytes] = deque()

    @property
    def id(self) -> str:
        return self.session_id

    # -- sending ---------------------------------------------------------------------------
    def send(self, message_type: frames.MessageType, message: Any = frames.UNDEFINED) -> None:
        """Send a message; before the client's join ack it is queued and flushed after the state."""
        self.enqueue_raw(frames.room_data(message_type, message))

    def send_bytes(self, message_type: frames.MessageType, data: bytes | bytearray | list[int]) -> None:
        self.enqueue_raw(frames.room_data_bytes(message_type, data))

    def error(self, code: int, message: str = "") -> None:
        self.raw(frames.error(code, message))

    def leave(self, code: int = CloseCode.CONSENTED, reason: str = "") -> None:
        """Close this client's connection; the room's ``on_leave`` follows."""
        self.close(code, reason)

    def enqueue_raw(self, frame: bytes) -> None:
        if self.state is ClientState.JOINING:
            self._queued.append(frame)
        elif self.state is ClientState.JOINED:
            self.raw(frame)

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

    def __repr__(self) -> str:
        return f"<Client {self.session_id} {self.state.value}>"
