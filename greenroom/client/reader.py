"""The reader side of a joined room: opening its socket, then every server frame in order.

A room's public face (room.py) is what a test or bot calls from its own greenlet. This is the
other side: ``_connect`` opens the socket and spawns the room's one reader greenlet, which
decodes each frame in arrival order (JOIN_ROOM first), updates the room, runs the callbacks and,
once the socket closes, wakes whatever still waits. The two change for different reasons: the
SDKs' Room API there, the protocol's frames here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event

from ..protocol.codes import Code
from ..protocol.dialect import Dialect
from ..wsclient import (
    ConnectionClosed,
    HandshakeError,
    WebSocket,
    WebSocketError,
)
from ..wsclient import connect as ws_connect
from .errors import (
    ClientConnectionError,
    ClientTimeout,
    MatchMakeError,
    ProtocolError,
    RoomClosed,
)
from .wire import (
    _looks_like_v5,
    parse_error,
    parse_join_room,
    parse_message,
    parse_response,
)

log = logging.getLogger("greenroom.client")


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


class RoomReader:
    """Mixed into :class:`~greenroom.client.room.Room`, whose ``__init__`` (and ``resume``) set
    every attribute these methods read and write; only the reader greenlet runs the handlers."""

    def _connect(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.url = url
        try:
            self._ws = ws_connect(url, timeout=timeout, max_size=self.client.max_message_size,
                                  ssl_context=self.client.ssl_context)
        except HandshakeError as exc:
            raise MatchMakeError(exc.status or None, f"room socket refused: {exc}") from exc
        except TimeoutError:
            raise ClientTimeout(f"room socket {url} not open within {timeout} s") from None
        except (OSError, WebSocketError) as exc:
            raise ClientConnectionError(f"room socket {url} failed: {exc!r}") from exc
        self._reader = gevent.spawn(self._run, self._ws)
        try:
            self._join_result.get(timeout=_remaining(deadline))
        except gevent.Timeout:
            self._ws.abort()
            if self._join_error is not None:
                raise MatchMakeError(*self._join_error) from None
            raise ClientTimeout(f"no JOIN_ROOM from room {self.room_id} within {timeout} s") from None
        except BaseException:
            self._ws.abort()
            raise
        finally:
            # The reader holds every frame after JOIN_ROOM until the caller has the room, so
            # callbacks registered right after join_or_create() see the first state, as in JS.
            self._released.set()

    def _run(self, ws: WebSocket) -> None:
        code, reason = 1006, "reader stopped"
        try:
            while True:
                frame = ws.recv()
                if frame.__class__ is str:
                    self._protocol_error(f"text message on the room socket: {frame[:64]!r}")
                    continue
                self._dispatch(frame)  # type: ignore[arg-type]
        except ConnectionClosed as exc:
            code, reason = exc.code, exc.reason
        except gevent.GreenletExit:
            ws.abort()
            code, reason = 1006, "reader killed"
        except Exception as exc:  # a bug here must not leave a half-dead room behind
            log.exception("room %s: reader failed", self.room_id)
            ws.abort()
            code, reason = 1006, f"reader failed: {exc!r}"
        finally:
            self._finish(code, reason)

    def _dispatch(self, frame: bytes) -> None:
        if not frame:
            self._protocol_error("empty frame")
            return
        handler = _HANDLERS.get(frame[0])
        if handler is None:
            self._protocol_error(f"unknown frame code 0x{frame[0]:02x}: {frame[:32].hex()}")
            return
        try:
            handler(self, frame)
        except (ProtocolError, ValueError, IndexError, UnicodeDecodeError) as exc:
            self._protocol_error(f"malformed {Code(frame[0]).name} frame ({exc}): {frame[:64].hex()}")

    def _protocol_error(self, text: str) -> None:
        log.warning("room %s: %s", self.room_id, text)
        if len(self.protocol_errors) < 1000:
            self.protocol_errors.append(text)

    @staticmethod
    def _call(callback: Callable, *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("greenroom client callback %r failed", callback)

    # -- frame handlers (reader greenlet)

    def _on_join_room(self, frame: bytes) -> None:
        if self._join_result.ready():
            self._protocol_error(f"JOIN_ROOM after the join: {frame[:32].hex()}")
            return
        try:
            join = parse_join_room(frame, self.dialect)
        except ProtocolError as exc:
            self._join_result.set_exception(ProtocolError(f"{exc} (dialect {self.dialect.value}): {frame[:64].hex()}"))
            self._ws.abort()  # type: ignore[union-attr]  # the join failed; the reader ends on its next read
            return
        self.last_join = join
        self.reconnection_token = f"{self.room_id}:{join.token}"
        self.serializer_id = join.serializer_id
        self.join_sections = join.sections
        if self.dialect is Dialect.V3 and join.serializer_id == "schema" and _looks_like_v5(join.handshake):
            self._protocol_error("v3 JOIN_ROOM whose handshake starts with a length prefix: "
                                 "the server speaks the v5 dialect")
        if join.handshake:
            self.handshake = join.handshake
            try:
                self.state_decoder.handshake(join.handshake)
            except Exception as exc:
                self._protocol_error(f"state decoder rejected the handshake: {exc!r}")
        self._ws.send(bytes((Code.JOIN_ROOM,)))  # type: ignore[union-attr]
        self.joined = True
        self._join_result.set(self)
        self._released.wait()

    def _on_error(self, frame: bytes) -> None:
        code, message = parse_error(frame)
        if not self._join_result.ready():
            self._join_error = (code, message)
            return
        self.errors.append((code, message))
        for cb in list(self._error_handlers):
            self._call(cb, code, message)

    def _on_leave_room(self, frame: bytes) -> None:
        try:
            self._ws.send(bytes((Code.LEAVE_ROOM,)))  # type: ignore[union-attr]
        except ConnectionClosed:
            pass

    def _on_state(self, frame: bytes) -> None:
        body = bytes(frame[1:])
        try:
            if frame[0] == Code.ROOM_STATE:
                self.state_decoder.full(body)
            else:
                self.state_decoder.patch(body)
        except Exception as exc:
            self._protocol_error(f"state decoder failed on {frame[:48].hex()}: {exc!r}")
            return
        self.state_version += 1
        event, self._state_event = self._state_event, gevent.event.Event()
        event.set()
        if self._state_handlers:
            state = self.state_decoder.state
            for cb in list(self._state_handlers):
                self._call(cb, state)

    def _on_message(self, frame: bytes) -> None:
        msg_type, payload = parse_message(frame)
        handlers = self._message_handlers.get(msg_type)
        if handlers:
            for cb in list(handlers):
                self._call(cb, payload)
        else:
            for cb in list(self._message_handlers.get("*", ())):
                self._call(cb, msg_type, payload)
        for waiter in self._waiters:
            if waiter.msg_type == "*" or waiter.msg_type == msg_type:
                self._waiters.remove(waiter)
                waiter.result.set((msg_type, payload) if waiter.msg_type == "*" else payload)
                return
        self._buffer.append((msg_type, payload))

    def _on_ping(self, frame: bytes) -> None:
        now = time.perf_counter()
        if not self._pings:
            self._protocol_error("PING reply without a PING sent")
            return
        started, result = self._pings.popleft()
        result.set(now - started)

    def _on_response(self, frame: bytes) -> None:
        request_id, status, payload = parse_response(frame)
        entry = self._requests.pop(request_id, None)
        if entry is not None:
            entry[1].set((status, payload))
        elif request_id >= self._next_request_id:  # a late answer to a timed-out request is fine
            self._protocol_error(f"ROOM_RESPONSE for request #{request_id}, never sent")

    def _finish(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason
        self._closed.set()
        if not self._join_result.ready():
            if self._join_error is not None:
                error = MatchMakeError(self._join_error[0], self._join_error[1], close_code=code)
            else:
                error = MatchMakeError(code, f"room socket closed before JOIN_ROOM"
                                             f"{': ' + reason if reason else ''}", close_code=code)
            self._join_result.set_exception(error)
            return
        closed = RoomClosed(code, reason)
        for waiter in self._waiters:
            waiter.result.set_exception(closed)
        self._waiters.clear()
        while self._pings:
            self._pings.popleft()[1].set_exception(closed)
        for _, result in list(self._requests.values()):
            result.set_exception(closed)
        self._requests.clear()
        event, self._state_event = self._state_event, gevent.event.Event()
        event.set()
        for cb in list(self._leave_handlers):
            self._call(cb, code, reason)


_HANDLERS: dict[int, Callable[[RoomReader, bytes], None]] = {
    Code.JOIN_ROOM: RoomReader._on_join_room,
    Code.ERROR: RoomReader._on_error,
    Code.LEAVE_ROOM: RoomReader._on_leave_room,
    Code.ROOM_DATA: RoomReader._on_message,
    Code.ROOM_DATA_BYTES: RoomReader._on_message,
    Code.ROOM_STATE: RoomReader._on_state,
    Code.ROOM_STATE_PATCH: RoomReader._on_state,
    Code.PING: RoomReader._on_ping,
    Code.ROOM_RESPONSE: RoomReader._on_response,
}
