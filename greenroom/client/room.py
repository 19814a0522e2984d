"""A joined room on the Python client's side: one socket, one reader greenlet.

This is the room as a test or bot uses it from its own greenlet, shaped like the SDKs' Room:
callbacks, sending, waiting for messages, state, pings and requests, leaving and resuming. What
the reader greenlet does with each server frame is in reader.py (``RoomReader``, mixed in here).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import gevent
import gevent.event

from ..protocol.codes import Code, ResponseStatus
from ..protocol.dialect import Dialect
from ..wsclient import (
    ConnectionClosed,
    WebSocket,
)
from .errors import (
    ClientError,
    ClientTimeout,
    MessageType,
    RequestError,
    RoomClosed,
)
from .reader import RoomReader, _remaining
from .wire import (
    _NOTHING,
    JoinRoom,
    SeatReservation,
    StateDecoder,
    encode_bytes_message,
    encode_message,
    encode_request,
)


class RoomEndpoint(Protocol):
    """What a room needs from the client that joined it (``Client`` is one)."""

    dialect: Dialect
    message_buffer: int
    max_message_size: int
    ssl_context: Any

    def state_decoder(self) -> StateDecoder: ...
    def room_url(self, reservation: SeatReservation, extra: dict[str, str] | None = None) -> str: ...


class _Waiter:
    __slots__ = ("msg_type", "result")

    def __init__(self, msg_type: MessageType | None) -> None:
        self.msg_type = msg_type
        self.result = gevent.event.AsyncResult()


def _remover(lst: list, item: Any) -> Callable[[], None]:
    def remove() -> None:
        try:
            lst.remove(item)
        except ValueError:
            pass
    return remove


class Room(RoomReader):
    """A joined room. Obtain one from :class:`Client`; all methods are greenlet-safe."""

    def __init__(self, client: RoomEndpoint, reservation: SeatReservation) -> None:
        self.client = client
        self.reservation = reservation
        self.dialect = client.dialect
        self.name = reservation.name
        self.room_id = reservation.room_id
        self.process_id = reservation.process_id
        self.session_id = reservation.session_id
        self.reconnection_token: str | None = None  # "roomId:token", after JOIN_ROOM
        self.serializer_id: str | None = None
        self.handshake = b""
        self.join_sections: dict[int, bytes] = {}
        #: The latest JOIN_ROOM as decoded (a resume() gets a new one, usually without handshake).
        self.last_join: JoinRoom | None = None
        self.state_decoder: StateDecoder = client.state_decoder()
        #: How many ROOM_STATE / ROOM_STATE_PATCH frames were applied.
        self.state_version = 0
        #: ERROR frames received after the join, as (code, message).
        self.errors: list[tuple[int, str]] = []
        #: Frames this client could not make sense of; a test can assert it stays empty.
        self.protocol_errors: list[str] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.joined = False
        self.url = ""

        self._ws: WebSocket | None = None
        self._reader: gevent.Greenlet | None = None
        self._join_result = gevent.event.AsyncResult()
        self._join_error: tuple[int, str] | None = None
        self._released = gevent.event.Event()
        self._closed = gevent.event.Event()
        self._message_handlers: dict[MessageType, list[Callable]] = {}
        self._leave_handlers: list[Callable] = []
        self._error_handlers: list[Callable] = []
        self._state_handlers: list[Callable] = []
        self._buffer: deque[tuple[MessageType, Any]] = deque(maxlen=client.message_buffer)
        self._waiters: list[_Waiter] = []
        self._state_event = gevent.event.Event()
        self._pings: deque[tuple[float, gevent.event.AsyncResult]] = deque()
        self._requests: dict[int, tuple[MessageType, gevent.event.AsyncResult]] = {}
        self._next_request_id = 0

    def __repr__(self) -> str:
        state = "open" if self.joined and not self._closed.is_set() else f"closed {self.close_code}"
        return f"<Room {self.name} {self.room_id} session={self.session_id} {state}>"

    def __enter__(self) -> Room:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Leave (consented) so a failing test does not leave a seat and a reader behind."""
        if self._closed.is_set():
            return
        try:
            self.leave()
        except (ClientError, RuntimeError):
            self.drop()

    # -------------------------------------------------------------- properties

    @property
    def state(self) -> Any:
        """The decoder's state (the raw body of the last state frame with the default decoder)."""
        return self.state_decoder.state

    @property
    def state_frames(self) -> deque[bytes]:
        """Whole ROOM_STATE / ROOM_STATE_PATCH frames kept by :class:`RawStateDecoder`."""
        frames = getattr(self.state_decoder, "frames", None)
        if frames is None:
            raise AttributeError(f"{type(self.state_decoder).__name__} keeps no raw frames")
        return frames

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def ws(self) -> WebSocket | None:
        """The underlying WebSocket, for tests that need frame-level control."""
        return self._ws

    # -------------------------------------------------------------- callbacks

    def on_message(self, msg_type: MessageType, callback: Callable) -> Callable[[], None]:
        """``callback(payload)`` for ``msg_type``; ``"*"`` gets ``(type, payload)`` for types without
        a handler of their own (as in the SDKs). Returns a function that unregisters it."""
        handlers = self._message_handlers.setdefault(msg_type, [])
        handlers.append(callback)
        return _remover(handlers, callback)

    def on_leave(self, callback: Callable[[int, str], Any]) -> Callable[[], None]:
        """``callback(code, reason)`` when the socket closes after the join, whoever closed it."""
        self._leave_handlers.append(callback)
        return _remover(self._leave_handlers, callback)

    def on_error(self, callback: Callable[[int, str], Any]) -> Callable[[], None]:
        """``callback(code, message)`` for each ERROR frame after the join."""
        self._error_handlers.append(callback)
        return _remover(self._error_handlers, callback)

    def on_state_change(self, callback: Callable[[Any], Any]) -> Callable[[], None]:
        """``callback(state)`` after every full state and patch; ``state`` is the decoder's ``.state``."""
        self._state_handlers.append(callback)
        return _remover(self._state_handlers, callback)

    # -------------------------------------------------------------- sending

    def send(self, msg_type: MessageType, payload: Any = _NOTHING) -> None:
        """ROOM_DATA. Without ``payload`` no payload bytes are sent; ``None`` sends msgpack nil."""
        self._send(encode_message(msg_type, payload))

    def send_bytes(self, msg_type: MessageType, data: bytes | bytearray | memoryview) -> None:
        """ROOM_DATA_BYTES."""
        self._send(encode_bytes_message(msg_type, data))

    def send_raw(self, frame: bytes | bytearray | memoryview) -> None:
        """Send ``frame`` as one binary WebSocket message, unchanged (for malformed-frame tests)."""
        self._send(bytes(frame))

    def _send(self, frame: bytes) -> None:
        ws = self._ws
        if ws is None or self._closed.is_set():
            raise RoomClosed(self.close_code, self.close_reason or "", "cannot send")
        try:
            ws.send(frame)
        except (ConnectionClosed, OSError) as exc:
            code = getattr(exc, "code", 1006)
            raise RoomClosed(code, getattr(exc, "reason", str(exc)), "cannot send") from exc

    # -------------------------------------------------------------- waiting

    def _check_not_reader(self, what: str) -> None:
        if gevent.getcurrent() is self._reader:
            raise RuntimeError(f"cannot wait for {what} inside a callback of the same room: the callback "
                               "runs in the greenlet that would have to deliver it (spawn a greenlet)")

    def wait_for_message(self, msg_type: MessageType = "*", timeout: float | None = 10.0) -> Any:
        """Return the payload of the next message of ``msg_type``, buffered or yet to come.

        Messages nobody waited for are buffered (the newest ``Client.message_buffer``), so a
        message that arrived before this call is returned, oldest first. ``"*"`` takes the next
        message of any type and returns ``(type, payload)``.
        """
        for i, (t, payload) in enumerate(self._buffer):
            if msg_type == "*" or t == msg_type:
                del self._buffer[i]
                return (t, payload) if msg_type == "*" else payload
        if self._closed.is_set():
            raise RoomClosed(self.close_code, self.close_reason or "", f"no message {msg_type!r} buffered")
        self._check_not_reader(f"message {msg_type!r}")
        waiter = _Waiter(msg_type)
        self._waiters.append(waiter)
        try:
            return waiter.result.get(timeout=timeout)
        except gevent.Timeout:
            if waiter.result.successful():  # handed over in the very iteration the timer fired
                return waiter.result.value
            raise ClientTimeout(f"no message {msg_type!r} in room {self.room_id} within {timeout} s") from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def wait_for_state(self, predicate: Callable[[Any], bool] | None = None,
                       timeout: float | None = 10.0) -> Any:
        """Wait until ``predicate(room.state)`` holds (checked now, then after each state frame)
        and return the state. Without a predicate: until a first state frame arrived."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            event = self._state_event  # taken before the check: a frame after it wakes us
            if self.state_version > 0 and (predicate is None or predicate(self.state)):
                return self.state
            if self._closed.is_set():
                raise RoomClosed(self.close_code, self.close_reason or "", "state condition not reached")
            self._check_not_reader("a state change")
            remaining = None if deadline is None else _remaining(deadline)
            if remaining is not None and remaining <= 0:
                raise ClientTimeout(f"state of room {self.room_id} did not reach the condition within {timeout} s")
            event.wait(remaining)

    def ping(self, timeout: float = 5.0) -> float:
        """PING (0x12) round trip in seconds (0.17/0.18 servers)."""
        self._check_not_reader("a PING reply")
        result = gevent.event.AsyncResult()
        entry = (time.perf_counter(), result)
        self._pings.append(entry)
        try:
            self._send(b"\x12")
        except RoomClosed:
            self._pings.remove(entry)
            raise
        try:
            return result.get(timeout=timeout)
        except gevent.Timeout:
            if result.successful():
                return result.value
            # The entry stays queued: a late reply must be matched to it, not to a newer ping.
            raise ClientTimeout(f"no PING reply from room {self.room_id} within {timeout} s") from None

    def request(self, msg_type: MessageType, payload: Any = _NOTHING, timeout: float = 10.0) -> Any:
        """v5 ROOM_REQUEST; returns the OK payload, raises :class:`RequestError` otherwise."""
        self._check_not_reader(f"a response to {msg_type!r}")
        request_id = self._next_request_id
        self._next_request_id += 1
        frame = encode_request(request_id, msg_type, payload)
        result = gevent.event.AsyncResult()
        self._requests[request_id] = (msg_type, result)
        try:
            self._send(frame)
            status, answer = result.get(timeout=timeout)
        except gevent.Timeout:
            if result.successful():
                status, answer = result.value
            else:
                hint = " (ROOM_REQUEST exists only in the v5 dialect)" if self.dialect is Dialect.V3 else ""
                raise ClientTimeout(f"no ROOM_RESPONSE to request #{request_id} {msg_type!r} "
                                    f"within {timeout} s{hint}") from None
        finally:
            self._requests.pop(request_id, None)
        if status == ResponseStatus.OK:
            return answer
        raise RequestError(status, answer, msg_type)

    # -------------------------------------------------------------- leaving

    def leave(self, consented: bool = True, timeout: float = 5.0) -> int | None:
        """Leave and return the server's close code (4000 for a consented leave).

        ``consented=False`` closes the socket without LEAVE_ROOM (no close code, as a browser
        does). From inside a callback of this room it only starts leaving and returns None.
        """
        if self._closed.is_set():
            return self.close_code
        ws = self._ws
        assert ws is not None
        try:
            if consented:
                ws.send(bytes((Code.LEAVE_ROOM,)))
            else:
                ws.send_close(None)  # the reader greenlet receives the server's reply
        except ConnectionClosed:
            pass
        if gevent.getcurrent() is self._reader:
            return None
        if not self._closed.wait(timeout):
            ws.abort()
            raise ClientTimeout(f"server did not close room {self.room_id} within {timeout} s after "
                                f"{'LEAVE_ROOM' if consented else 'our close frame'}")
        return self.close_code

    def drop(self) -> None:
        """Cut the TCP connection without a close frame: a network failure, for reconnection tests."""
        if self._ws is not None:
            self._ws.abort()

    def wait_closed(self, timeout: float | None = 10.0) -> tuple[int | None, str | None]:
        """Wait until the room socket is closed; return ``(code, reason)``."""
        self._check_not_reader("the room to close")
        if not self._closed.wait(timeout):
            raise ClientTimeout(f"room {self.room_id} still open after {timeout} s")
        return self.close_code, self.close_reason

    def resume(self, timeout: float = 10.0) -> None:
        """Reopen the socket of a dropped room as the SDKs' automatic reconnection does (§8).

        Same URL plus ``reconnectionToken`` and ``skipHandshake=true``; callbacks, buffered
        messages and the state decoder are kept.
        """
        if not self._closed.is_set():
            raise RuntimeError("room socket is still open; drop() or wait for the disconnection first")
        if not self.reconnection_token:
            raise RuntimeError("room was never joined: no reconnection token")
        token = self.reconnection_token.partition(":")[2]
        url = self.client.room_url(self.reservation, {"reconnectionToken": token, "skipHandshake": "true"})
        self._join_result = gevent.event.AsyncResult()
        self._join_error = None
        self._released = gevent.event.Event()
        self._closed = gevent.event.Event()
        self.close_code = self.close_reason = None
        self._connect(url, timeout)
