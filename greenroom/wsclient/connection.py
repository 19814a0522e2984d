"""An open client WebSocket: frames out and in, control frames, the closing handshake.

Thousands of these share one process and tests drive them byte by byte, so the connection is
small and gevent-native (one socket, one receive buffer, a write lock, no greenlet of its own)
and knows nothing of the HTTP upgrade that opened it (handshake.py).

Reading is pull-based: :meth:`WebSocket.recv` returns the next data message and answers control
frames on the way (ping → pong, close → close). Frames are parsed from an internal buffer, so a
timeout that interrupts a read never loses bytes; the next ``recv`` resumes where it stopped.
Only one greenlet may read at a time; any number may send.
"""

from __future__ import annotations

import os
import struct
from typing import Any, NoReturn

import gevent
import gevent.event
import gevent.lock

from .errors import ConnectionClosed, PayloadTooBig, WebSocketTimeout
from .frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    _close_payload,
    _frame_header,
    apply_mask,
)

#: Large enough for any state frame we expect, small enough that a bogus 2^62 header is refused.
DEFAULT_MAX_SIZE = 16 * 1024 * 1024
_RECV_CHUNK = 65536


class _ProtocolViolation(Exception):
    """Internal: the peer broke RFC 6455; carries the close code we answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _NoTimer:
    """Stands in for a gevent.Timeout when the wait is unbounded."""

    __slots__ = ()

    def close(self) -> None:
        pass


_NO_TIMER = _NoTimer()


def _timer(timeout: float | None) -> Any:
    return _NO_TIMER if timeout is None else gevent.Timeout.start_new(timeout)


class WebSocket:
    """One client connection. Create it with :func:`connect`."""

    __slots__ = (
        "_sock", "_buf", "_write_lock", "_reading", "_done", "_close_sent", "_closed",
        "_frag_op", "_frag_parts", "_frag_size", "max_size", "url", "headers",
        "last_pong", "on_pong",
    )

    def __init__(self, sock: Any, initial: bytes = b"", *, max_size: int | None = DEFAULT_MAX_SIZE,
                 url: str = "", headers: dict[str, str] | None = None) -> None:
        self._sock = sock
        self._buf = bytearray(initial)
        self._write_lock = gevent.lock.Semaphore()
        self._reading = False
        self._done = gevent.event.Event()
        self._close_sent = False
        #: Set once the connection is over: the ConnectionClosed every later recv() raises.
        self._closed: ConnectionClosed | None = None
        self._frag_op: int | None = None
        self._frag_parts: list[bytes] = []
        self._frag_size = 0
        self.max_size = max_size
        self.url = url
        #: Response headers of the upgrade (lower-case names).
        self.headers = headers or {}
        #: Payload of the last pong received (pongs are consumed by recv()).
        self.last_pong: bytes | None = None
        #: Optional callable(payload) invoked by the reading greenlet for each pong.
        self.on_pong: Any = None

    # ------------------------------------------------------------------ state

    @property
    def closed(self) -> bool:
        """True once the connection is finished (close handshake done, aborted or lost)."""
        return self._closed is not None

    @property
    def close_code(self) -> int | None:
        return self._closed.code if self._closed else None

    @property
    def close_reason(self) -> str | None:
        return self._closed.reason if self._closed else None

    # ------------------------------------------------------------------ sending

    def send(self, data: bytes | bytearray | memoryview | str, fragment_size: int | None = None) -> None:
        """Send one message: ``str`` as a text message, bytes-like as binary.

        ``fragment_size`` splits it into a first frame and continuation frames of at most that
        many bytes, to exercise a server's reassembly.
        """
        if isinstance(data, str):
            opcode, payload = OP_TEXT, data.encode("utf-8")
        else:
            opcode, payload = OP_BINARY, bytes(data)
        if not fragment_size or len(payload) <= fragment_size:
            self.send_frame(opcode, payload)
            return
        chunks = [payload[i:i + fragment_size] for i in range(0, len(payload), fragment_size)]
        frames = [self._build(opcode if i == 0 else OP_CONTINUATION, chunk, i == len(chunks) - 1, 0, True)
                  for i, chunk in enumerate(chunks)]
        self._write(b"".join(frames))

    def send_frame(self, opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
                   masked: bool = True) -> None:
        """Send one frame as given; the knobs exist so tests can send what clients must not."""
        self._write(self._build(opcode, payload, fin, rsv, masked))

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping frame. The pong is consumed by whichever greenlet is in :meth:`recv`."""
        self.send_frame(OP_PING, payload)

    def write_raw(self, data: bytes) -> None:
        """Write bytes to the TCP stream with no framing at all (for malformed-frame tests)."""
        self._write(data)

    @staticmethod
    def _build(opcode: int, payload: bytes, fin: bool, rsv: int, masked: bool) -> bytes:
        header = _frame_header(opcode, len(payload), fin, rsv, masked)
        if not masked:
            return header + payload
        key = os.urandom(4)
        return header + key + (apply_mask(payload, key) if payload else b"")

    def _write(self, data: bytes) -> None:
        if self._closed is not None:
            raise self._closed
        if self._close_sent:
            raise ConnectionClosed(1006, "close frame already sent")
        with self._write_lock:
            try:
                self._sock.sendall(data)
            except OSError as exc:
                self._finish(ConnectionClosed(1006, f"send failed: {exc}"))
                raise self._closed from exc  # type: ignore[misc]
            except BaseException:
                # Interrupted (Timeout, GreenletExit) in the middle of a frame: the stream is
                # corrupt from here on, so the only honest thing left is to drop it.
                self._finish(ConnectionClosed(1006, "send interrupted"))
                raise

    # ------------------------------------------------------------------ receiving

    def recv(self, timeout: float | None = None) -> bytes | str:
        """Return the next message: ``bytes`` for binary, ``str`` for text.

        Raises :class:`ConnectionClosed` when the connection ends (after answering the peer's
        close frame), :class:`WebSocketTimeout` when ``timeout`` passes first.
        """
        if self._closed is not None:
            raise self._closed
        if self._reading:
            raise RuntimeError("another greenlet is already reading this WebSocket")
        self._reading = True
        timer = _timer(timeout)
        try:
            return self._recv_message()
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            raise WebSocketTimeout(f"no WebSocket message within {timeout} s from {self.url}") from None
        finally:
            timer.close()
            self._reading = False

    def _recv_message(self) -> bytes | str:
        while True:
            try:
                fin, opcode, payload = self._read_frame()
            except _ProtocolViolation as exc:
                self._fail(exc.code, exc.reason, PayloadTooBig if exc.code == 1009 else ConnectionClosed)
            if opcode >= 8:
                self._handle_control(opcode, payload)
                continue
            if opcode == OP_CONTINUATION:
                if self._frag_op is None:
                    self._fail(1002, "continuation frame without a message to continue")
            elif self._frag_op is not None:
                self._fail(1002, "new data frame inside a fragmented message")
            else:
                self._frag_op = opcode
            self._frag_size += len(payload)
            if self.max_size is not None and self._frag_size > self.max_size:
                self._fail(1009, f"message over {self.max_size} bytes", PayloadTooBig)
            self._frag_parts.append(payload)
            if not fin:
                continue
            op, parts = self._frag_op, self._frag_parts
            self._frag_op, self._frag_parts, self._frag_size = None, [], 0
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            if op == OP_TEXT:
                try:
                    return data.decode("utf-8")
                except UnicodeDecodeError:
                    self._fail(1007, "invalid UTF-8 in a text message")
            return data

    def _read_frame(self) -> tuple[bool, int, bytes]:
        buf = self._buf
        while len(buf) < 2:
            self._fill()
        b0, b1 = buf[0], buf[1]
        if b0 & 0x70:
            raise _ProtocolViolation(1002, "reserved bits set without a negotiated extension")
        opcode = b0 & 0x0F
        if opcode in (3, 4, 5, 6, 7) or opcode > OP_PONG:
            raise _ProtocolViolation(1002, f"unknown opcode {opcode}")
        if b1 & 0x80:
            raise _ProtocolViolation(1002, "server frames must not be masked")
        length = b1 & 0x7F
        offset = 2
        if length == 126:
            while len(buf) < 4:
                self._fill()
            length = struct.unpack_from("!H", buf, 2)[0]
            offset = 4
        elif length == 127:
            while len(buf) < 10:
                self._fill()
            length = struct.unpack_from("!Q", buf, 2)[0]
            offset = 10
        fin = bool(b0 & 0x80)
        if opcode >= 8 and (length > 125 or not fin):
            raise _ProtocolViolation(1002, "control frame fragmented or over 125 bytes")
        # Refuse before buffering: a bogus 2^62 length must not make us wait for (or store) it.
        if opcode < 8 and self.max_size is not None and self._frag_size + length > self.max_size:
            raise _ProtocolViolation(1009, f"message over {self.max_size} bytes")
        end = offset + length
        while len(buf) < end:
            self._fill()
        payload = bytes(buf[offset:end])
        del buf[:end]
        return fin, opcode, payload

    def _fill(self) -> None:
        try:
            chunk = self._sock.recv(_RECV_CHUNK)
        except OSError as exc:
            self._finish(ConnectionClosed(1006, f"connection lost: {exc}"))
            raise self._closed from exc  # type: ignore[misc]
        if not chunk:
            self._finish(ConnectionClosed(1006, "connection closed without a close frame"))
            raise self._closed  # type: ignore[misc]
        self._buf += chunk

    def _handle_control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            if not self._close_sent:
                try:
                    self.send_frame(OP_PONG, payload)
                except ConnectionClosed:
                    pass  # the read loop will report the closure
        elif opcode == OP_PONG:
            self.last_pong = payload
            if self.on_pong is not None:
                self.on_pong(payload)
        else:
            self._handle_close(payload)

    def _handle_close(self, payload: bytes) -> NoReturn:
        if len(payload) >= 2:
            code = struct.unpack_from("!H", payload)[0]
            reason = payload[2:].decode("utf-8", "replace")
        elif payload:
            code, reason = 1002, "close frame with a 1-byte payload"
        else:
            code, reason = 1005, ""
        if not self._close_sent:
            # Echo the code, as RFC 6455 §5.5.1 asks; a peer-chosen reason is not repeated.
            try:
                self.send_frame(OP_CLOSE, _close_payload(code if len(payload) >= 2 else None, ""))
            except (ConnectionClosed, ValueError):
                pass
            self._close_sent = True
        exc = ConnectionClosed(code, reason, received=True)
        self._finish(exc)
        raise exc

    def _fail(self, code: int, reason: str, cls: type[ConnectionClosed] = ConnectionClosed) -> NoReturn:
        """Close because the peer broke the protocol (or our size limit), then raise."""
        if not self._close_sent:
            try:
                self.send_frame(OP_CLOSE, _close_payload(code, reason[:120]))
            except ConnectionClosed:
                pass
            self._close_sent = True
        exc = cls(code, reason)
        self._finish(exc)
        raise exc

    # ------------------------------------------------------------------ closing

    def send_close(self, code: int | None = 1000, reason: str = "") -> None:
        """Start the closing handshake without waiting: for when another greenlet reads the
        socket and will receive the peer's answer (``recv`` then raises ConnectionClosed)."""
        if self._close_sent or self._closed is not None:
            return
        payload = _close_payload(code, reason)
        try:
            self.send_frame(OP_CLOSE, payload)
        finally:
            self._close_sent = True

    def close(self, code: int | None = 1000, reason: str = "", timeout: float | None = 5.0) -> tuple[int, str]:
        """Run the closing handshake and return the peer's ``(code, reason)``.

        ``code=None`` sends a close frame without a status (the server sees 1005), like a
        browser's ``ws.close()``. If another greenlet is blocked in :meth:`recv`, it receives
        the peer's close frame and this call waits for it; otherwise this call reads
        (discarding data messages). A greenlet that reads in a loop should be told to stop
        with :meth:`send_close` instead, so that two readers never race. Gives up after
        ``timeout`` and drops the connection, returning 1006.
        """
        if self._closed is not None:
            return self._closed.code, self._closed.reason
        try:
            self.send_close(code, reason)
        except ConnectionClosed:
            pass
        if self._reading:
            self._done.wait(timeout)
        else:
            timer = _timer(timeout)
            try:
                self._reading = True
                while True:
                    self._recv_message()
            except ConnectionClosed:
                pass
            except gevent.Timeout as exc:
                if exc is not timer:
                    raise
            finally:
                self._reading = False
                timer.close()
        if self._closed is None:
            self._finish(ConnectionClosed(1006, f"no close frame from the server within {timeout} s"))
        return self._closed.code, self._closed.reason  # type: ignore[union-attr]

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (what a network failure looks like)."""
        self._finish(ConnectionClosed(1006, "connection aborted by the client"))

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the connection is finished; True if it is."""
        return self._done.wait(timeout)

    def _finish(self, exc: ConnectionClosed) -> None:
        if self._closed is not None:
            return
        self._closed = exc
        try:
            self._sock.close()
        except OSError:
            pass
        self._done.set()

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self.close()
        else:
            self.abort()

    def __repr__(self) -> str:
        state = f"closed {self._closed.code}" if self._closed else "open"
        return f"<WebSocket {self.url} {state}>"
