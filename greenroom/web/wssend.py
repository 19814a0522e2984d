"""The sending half of greenroom's WebSocket: one frame per ``send()`` when the socket takes it,
a per-connection backlog written by a greenlet of its own when it does not, and the send lock
that keeps frames from several greenlets whole (the contract is in websocket.py's docstring)."""

from __future__ import annotations

import logging
import socket
import struct
from collections import deque
from typing import Any

import gevent
from geventwebsocket.exceptions import WebSocketError

from .wsframes import (
    _CONTROL_OPCODES,
    _EMPTY_PING,
    OP_BINARY,
    OP_PING,
    OP_TEXT,
    ConnectionClosed,
    _as_payload,
    _frame_header,
    _SendTimeout,
)

log = logging.getLogger("greenroom.web.wsfixes")


class Sender:
    """Mixed into WebSocket, which sets what these methods use: ``_sock``, ``_direct_send``
    (``_sock`` is a plain gevent socket, whose OS socket ``send_binary`` may write to),
    ``_send_lock``, ``_backlog``, ``_backlog_bytes``, ``send_timeout``, ``send_backlog``,
    ``closed``."""


    def send_frame(self, message: Any, opcode: int) -> None:
        """Send one unfragmented frame. Bytes stay bytes for every opcode (the base class sent
        ``"b'...'"`` for a bytes ping), and frames from concurrent greenlets never interleave."""
        if self.closed:
            raise ConnectionClosed("Connection is already closed")
        payload = _as_payload(message)
        if opcode in _CONTROL_OPCODES and len(payload) > 125:
            raise ValueError("control frame payload longer than 125 bytes")
        self._write(_frame_header(opcode, len(payload)) + payload)

    def send(self, message: Any, binary: bool | None = None) -> None:
        """Send a message: str as text, bytes-like as binary unless ``binary`` says otherwise.

        Raises ConnectionClosed after close, WebSocketError if the peer is gone.
        """
        if binary is None:
            binary = not isinstance(message, str)
        self.send_frame(message, OP_BINARY if binary else OP_TEXT)

    def send_binary(self, data: bytes) -> None:
        """``send(data, binary=True)`` for bytes, with none of its dispatching: every message a
        room sends comes through here.

        The usual frame goes straight to the OS socket, without the send lock and gevent's
        ``send`` wrapper (four Python calls per reply on the echo path): when no frame is in
        flight (lock free, no backlog), nothing can switch greenlets before a non-blocking
        ``send`` returns, so there is nothing for the lock to keep apart. Whatever that send
        does not finish (EAGAIN, part of the frame, an error) takes the locked path, which
        tries again and queues, waits or reports exactly as before."""
        if self.closed:
            raise ConnectionClosed("Connection is already closed")
        n = len(data)
        frame: bytes | memoryview = (
            bytes((0x82, n)) if n < 126 else _frame_header(OP_BINARY, n)) + data
        if self._direct_send and self._backlog is None and not self._send_lock.locked():
            try:
                sent = self._sock._sock.send(frame)
            except OSError:  # EAGAIN or a dead peer: the locked path retries and tells which
                sent = 0
            if sent == len(frame):
                return
            if sent:
                frame = memoryview(frame)[sent:]
        self._write(frame)

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping; the pong updates ``last_pong`` while some greenlet is in receive()."""
        self.send_frame(payload, OP_PING)

    def ping_from_hub(self) -> bool:
        """Send an empty ping from a timer callback in the hub, with no greenlet to spawn and
        switch to (2,000 idle sockets ping 667 times a second). False when it cannot leave at
        once without waiting (a send in progress, a backlog, a full socket buffer): the caller
        then sends it from a greenlet, as any frame."""
        sock = self._sock
        if (self.closed or self._backlog is not None or sock is None
                or not self._send_lock.acquire(blocking=False)):
            return False
        try:
            sent = sock.send(_EMPTY_PING, 0, 0.0)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._send_lock.release()
            return True  # the peer is gone: the reader reports it, as for any send
        if sent == 0:
            self._send_lock.release()
            return False
        if sent == len(_EMPTY_PING):
            self._send_lock.release()
        else:  # one byte of two went out: the other must go before any other frame
            gevent.spawn(self._finish_locked, memoryview(_EMPTY_PING)[sent:])
        return True

    def _finish_locked(self, rest: memoryview) -> None:
        """Write the rest of a frame begun in the hub, then give back the send lock it holds."""
        try:
            self._write_unlocked(rest)
        finally:
            self._send_lock.release()

    def _write(self, data: bytes) -> None:
        with self._send_lock:
            self._write_unlocked(data)

    def _write_unlocked(self, data: bytes | memoryview) -> None:
        """``_write`` for a caller that holds the send lock."""
        timeout = self.send_timeout
        try:
            if self._backlog is not None:  # frames are waiting: this one goes after them
                self._queue(data)
                return
            rest = self._send_now(data)
            if rest is None:
                return
            if timeout is not None and self.send_backlog is not None:
                self._backlog = deque()
                self._backlog_bytes = 0
                self._queue(rest)
                gevent.spawn(self._write_backlog)
            elif timeout is None:
                self.raw_write(rest)
            else:
                with gevent.Timeout(timeout, _SendTimeout):
                    self.raw_write(rest)
        except _SendTimeout:
            self._dead()
            self._discard_unsent()
            self._abort()
            raise WebSocketError("Send timed out: the peer is not reading") from None
        except OSError as exc:
            self._dead()
            raise WebSocketError("Socket is dead") from exc

    def _queue(self, data: bytes | memoryview) -> None:
        """Add to the backlog; a peer that let it grow past ``send_backlog`` is dropped."""
        self._backlog.append(data)
        self._backlog_bytes += len(data)
        if self._backlog_bytes > self.send_backlog:
            self._drop_slow_peer(f"{self._backlog_bytes} bytes queued")
            raise WebSocketError("Send backlog full: the peer is not reading")

    def _write_backlog(self) -> None:
        """The connection's writer while a backlog exists: one frame at a time, each within
        ``send_timeout``; senders meanwhile only append (under the send lock), so order holds."""
        try:
            while True:
                with self._send_lock:
                    backlog = self._backlog
                    if not backlog:
                        self._backlog = None
                        return
                    data = backlog.popleft()
                with gevent.Timeout(self.send_timeout, _SendTimeout):
                    self.raw_write(data)
                self._backlog_bytes -= len(data)
        except _SendTimeout:
            self._drop_slow_peer(f"nothing read for {self.send_timeout:g} s")
        except (OSError, WebSocketError):
            self._dead()
        self._backlog = None

    def _drop_slow_peer(self, why: str) -> None:
        log.info("dropping WebSocket peer %s: it is not reading (%s)",
                 self.environ.get("REMOTE_ADDR") or "-", why)
        self._backlog = None
        dropped, self.on_slow_peer = self.on_slow_peer, None  # once per connection
        if dropped is not None:
            dropped()
        self._dead()
        self._discard_unsent()
        self._abort()

    def _discard_unsent(self) -> None:
        """Make the socket's close a reset that drops what the kernel still holds for this peer.

        Otherwise the closed socket lingers in FIN-WAIT-1 with a full send buffer (measured:
        3.8 MB for one peer on loopback), retransmitting into a window its peer never opens,
        for minutes, and every peer dropped for not reading adds that much kernel memory
        (found by tests/test_hostile_peers.py)."""
        sock = self._sock
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass

    def _send_now(self, data: bytes | memoryview) -> memoryview | None:
        """Send what the socket buffer takes without waiting; return the rest (None: all sent).

        A frame nearly always fits whole, so the common send is one ``send`` syscall: no
        gevent.Timeout armed and cancelled for ``send_timeout``, and none of gevent's
        ``sendall`` bookkeeping, which asks the kernel for SO_SNDBUF on every call (one
        getsockopt syscall per frame). Only a frame that does not fit waits, in ``_write``.
        """
        sock = self._sock
        if sock is None:
            return memoryview(data)
        try:
            sent = sock.send(data, 0, 0.0)  # gevent: timeout 0.0 raises instead of waiting
        except BlockingIOError:
            sent = 0
        return None if sent == len(data) else memoryview(data)[sent:]
