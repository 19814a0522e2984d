"""The WebSocket connection: gevent-websocket 0.10.1's class with greenroom's fixes.

Connection contract (what room code can rely on):

* ``receive()`` returns ``str`` (text), ``bytes`` (binary) or ``None`` exactly once when the
  connection has ended (peer's close frame, close handshake done, or peer gone); ``close_code`` /
  ``close_reason`` then tell why (1006: no close frame was received). Any later ``receive()``
  raises :class:`ConnectionClosed`.
* A peer that breaks the protocol gets the right close code (1002, 1007, 1009) and ``receive()``
  raises a :class:`WebSocketError` subclass whose ``code`` attribute is that close code.
* ``close(code, reason)`` puts code and reason on the wire, never blocks on the peer, and bounds the
  wait for the peer's answer by ``close_timeout``.
* ``send()`` is safe from several greenlets at once (a room broadcasting while the connection
  greenlet answers a ping). ``send_timeout`` (default None) bounds a send to a peer that stopped
  reading; with ``send_backlog`` set as well, a send never waits: what the socket does not take
  is queued (up to that many bytes) and written by a greenlet of its own, so a slow peer cannot
  stall the sender (a room and its other clients). ``ping()`` + ``last_pong`` support heartbeats.

This module keeps that contract: receive(), the close handshake and how a connection ends. How
bytes become frames and messages is wsread.py's (Reader); how frames go out is wssend.py's.
"""

from __future__ import annotations

import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
import geventwebsocket.websocket as _gws_websocket
from gevent.lock import Semaphore
from geventwebsocket.exceptions import ProtocolError, WebSocketError
from geventwebsocket.websocket import Header, Stream

from .wsframes import (
    ABNORMAL_CLOSURE,
    NO_STATUS_RECEIVED,
    OP_CLOSE,
    OP_PONG,
    ConnectionClosed,
    InvalidUTF8,
    MessageTooBig,
    UnmaskedFrame,
    _close_code_for,
    _close_payload,
    _frame_header,
    _valid_wire_close_code,
)
from .wsread import _PLAIN_GEVENT_SOCKET, Reader
from .wssend import Sender

__all__ = [
    "ConnectionClosed",
    "InvalidUTF8",
    "MessageTooBig",
    "ProtocolError",
    "UnmaskedFrame",
    "WebSocket",
    "WebSocketError",
]

# The logger keeps the name it had before the module was split: logging configs refer to it.

DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024


class WebSocket(Reader, Sender, _gws_websocket.WebSocket):
    """gevent-websocket's WebSocket with the D7 fixes.

    No ``__slots__`` on purpose: the base class has slots only, and the per-connection settings
    below (``max_message_size`` set by the server per connection, the peer's ``close_code``) need
    somewhere to live.
    """

    #: Largest message (sum of its fragments) accepted, in bytes; None disables the limit.
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
    #: Seconds to wait for the peer's close frame after ours before dropping the TCP connection.
    close_timeout: float | None = 5.0
    #: If set, a send that cannot complete in this many seconds (a client that stopped reading)
    #: drops the connection instead of stalling the sending greenlet -- usually a room.
    send_timeout: float | None = None
    #: With send_timeout: bytes a send may leave queued for a peer that is slow to read, written
    #: in order by a greenlet of the connection's own; past it the connection is dropped. None:
    #: a send waits for the socket instead (bounded by send_timeout).
    send_backlog: int | None = None
    #: Called when the connection is dropped for not reading (its room's metrics count it).
    on_slow_peer: Callable[[], None] | None = None

    def __init__(self, environ: dict[str, Any], stream: Stream, handler: Any) -> None:
        super().__init__(environ, stream, handler)
        self.utf8validator = None  # text is validated once, by the UTF-8 codec
        #: Code from the peer's close frame; 1005 if it had none; 1006 if none was received.
        self.close_code: int | None = None
        self.close_reason: str | None = None
        #: Code we sent in our close frame (None before we closed).
        self.close_code_sent: int | None = None
        #: time.monotonic() of the last pong received (answer to ping()).
        self.last_pong: float | None = None
        self._sock = getattr(handler, "socket", None)
        self._direct_send = type(self._sock) is _PLAIN_GEVENT_SOCKET  # not TLS: see send_binary
        self._send_lock = Semaphore()
        self._peer_closed = False  # peer's close frame seen, or the peer is gone
        self._failed = False  # we failed the connection (protocol error): no close handshake
        self._ended = False  # receive() has reported the end
        self._reader: Any = None  # greenlet inside receive()
        self._close_timer: Any = None
        self._backlog: deque[bytes | memoryview] | None = None  # frames the socket did not take
        self._backlog_bytes = 0
        self._rbuf = b""  # bytes received from the peer; frames are parsed from _rpos on
        self._rpos = 0
        self._drained = True  # the last read emptied the kernel's buffer: wait before reading
        # How _fill() reads: one of the _recv_* functions, unbound (a bound method kept on self
        # would make a reference cycle, and dead connections would wait for the cyclic GC).
        self._recv: Callable[[WebSocket, int, int], bytes] = WebSocket._recv_first

    def __del__(self) -> None:
        """The base class sends a close frame from the finaliser: socket I/O during garbage
        collection can switch greenlets at arbitrary points. Handler closes sockets explicitly."""


    def receive(self) -> str | bytes | None:
        """Next message, or None once when the connection ends; see the module docstring.

        Unlike the base class, protocol violations raise (after the right close code was sent)
        instead of looking like a normal end, and a concurrent close() from another greenlet
        cannot make this method trip over a stream set to None.
        """
        if self._ended:
            raise ConnectionClosed("Connection is already closed")
        self._reader = gevent.getcurrent()
        try:
            while True:
                message = self.read_message()
                # After our close frame the session is over for the app: data still in flight
                # from the peer is dropped while we wait for its close frame.
                if message is None or not self.closed:
                    break
        except ProtocolError as exc:  # includes UnmaskedFrame, InvalidUTF8, MessageTooBig
            self._fail(_close_code_for(exc), str(exc))
            raise
        except OSError:  # WebSocketError (EOF), ECONNRESET, socket aborted by the close timer...
            self._lost()
            return None
        finally:
            self._reader = None
        if message is None:
            self._ended = True
        return message

    def handle_close(self, header: Header, payload: bytes) -> None:
        """Record the peer's code and answer with the same code (RFC 6455 5.5.1); the base class
        answered with the repr of the reason bytes where the code should be."""
        self._peer_closed = True
        self._cancel_close_timer()
        if not payload:
            code, reason = NO_STATUS_RECEIVED, ""
        elif len(payload) == 1:
            raise ProtocolError("close frame with a 1-byte payload")
        else:
            (code,) = struct.unpack_from("!H", payload)
            if not _valid_wire_close_code(code):
                raise ProtocolError(f"invalid close code {code}")
            try:
                reason = bytes(payload[2:]).decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidUTF8("invalid UTF-8 in close reason") from None
        self.close_code, self.close_reason = code, reason
        if not self.closed:
            self.close(None if code == NO_STATUS_RECEIVED else code)

    def handle_ping(self, header: Header, payload: bytes) -> None:
        """Answer with a pong, unless we already sent our close frame; a failed pong means the
        peer is gone, which the next read reports, so it must not abort the read loop here."""
        if self.closed:
            return
        try:
            self.send_frame(payload, OP_PONG)
        except WebSocketError:
            pass

    def handle_pong(self, header: Header, payload: bytes) -> None:
        self.last_pong = time.monotonic()

    # -- writing ------------------------------------------------------------------------------
    def close(self, code: int | None = 1000, message: str | bytes | None = b"") -> None:
        """Send a close frame carrying ``code`` and ``message`` (the base class dropped the code).

        Does not wait for the peer's answer: a room kicking a client must not block on it (it
        only waits, like send(), for a send already in progress). If the peer does not answer
        within ``close_timeout``, the TCP connection is shut down, which also wakes a greenlet
        blocked in receive(). Idempotent. ``code=None`` sends a close frame without a code.
        """
        if self.closed:
            return
        payload = _close_payload(code, message)
        self.closed = True
        self.close_code_sent = NO_STATUS_RECEIVED if code is None else code
        try:
            self._write(_frame_header(OP_CLOSE, len(payload)) + payload)
        except WebSocketError:  # peer gone; _write() recorded it
            return
        if not self._peer_closed:
            self._arm_close_timer()

    def discard_input(self) -> None:
        """After close(): what the peer still sends is dropped unparsed until it closes (within
        ``close_timeout``), not read frame by frame. For a peer cut for flooding, whose client
        library may still flush thousands of queued frames: parsing them would hold the worker,
        and so every room in it, for that long."""
        self._failed = True
        self._ended = True

    # -- ending -------------------------------------------------------------------------------

    def _dead(self) -> None:
        self.closed = True
        self._peer_closed = True
        if self.close_code is None:
            self.close_code = ABNORMAL_CLOSURE

    def _lost(self) -> None:
        self._dead()
        self._ended = True
        self._cancel_close_timer()

    def _fail(self, code: int, reason: str) -> None:
        """RFC 6455 7.1.7: send the close code, then no close handshake; the stream is no longer
        in sync (a MessageTooBig payload was never read), so nothing more is read from it."""
        self._failed = True
        self._ended = True
        if self.close_code is None:
            self.close_code = ABNORMAL_CLOSURE
        if not self.closed:
            self.close(code, reason[:100])

    def _arm_close_timer(self) -> None:
        if self.close_timeout is None or self._close_timer is not None:
            return
        timer = gevent.get_hub().loop.timer(self.close_timeout)
        self._close_timer = timer
        timer.start(self._close_timed_out)

    def _cancel_close_timer(self) -> None:
        timer, self._close_timer = self._close_timer, None
        if timer is not None:
            timer.stop()
            timer.close()

    def _close_timed_out(self) -> None:
        self._close_timer = None
        if not self._peer_closed:
            if self.close_code is None:
                self.close_code = ABNORMAL_CLOSURE
            self._abort()

    def _abort(self) -> None:
        """Shut the socket down: gevent then wakes any greenlet blocked on it with an error."""
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _finish(self, code: int = 1000, linger: bool = True) -> None:
        """Called by Handler when the application returned: close with ``code`` if the app did not,
        then wait (bounded) for the peer so that TCP is closed after the close handshake."""
        try:
            if not self.closed:
                self.close(code)
            if self._failed:
                self._drain()
            elif linger and not self._peer_closed and self._reader is None and not self._ended:
                self._await_peer_close()
        finally:
            self._cancel_close_timer()
            self._ended = True
            if self.close_code is None:
                self.close_code = ABNORMAL_CLOSURE

    def _await_peer_close(self) -> None:
        with gevent.Timeout(self.close_timeout, False):
            try:
                while not self._peer_closed:
                    self.read_message()
            except (OSError, ValueError):
                pass

    def _drain(self) -> None:
        """Discard what the peer still sends until it closes: closing a socket with unread data
        makes the kernel send RST, and the peer would lose our close frame (and its 1009)."""
        sock = self._sock
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_WR)
            with gevent.Timeout(self.close_timeout, False):
                while sock.recv(65536):
                    pass
        except OSError:
            pass

