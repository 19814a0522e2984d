"""gevent-websocket 0.10.1, kept and fixed (DESIGN D7).

gevent-websocket carries the handshake and the gunicorn worker our users already run, but its last
release (2017) has defects that matter to a game server: per-byte Python unmasking (a 64 KiB frame
blocks the worker for milliseconds), close codes that never reach the wire (Colyseus clients read
4000/4001/4002 from them), no frame size limit, unmasked client frames accepted, 500s on malformed
handshakes and a ``KeyError`` on Unix-socket binds.

Entry points:

* :func:`apply` -- idempotent class-level patches and the version pin check (see its docstring
  for why gevent-websocket's own handler is left alone unless asked).
* :class:`Handler` -- the pywsgi handler to serve with; it builds the fixed :class:`WebSocket`
  and carries the handshake, Unix-socket and error-path fixes.
* :class:`WebSocket` -- the fixed socket ``environ["wsgi.websocket"]`` holds.
* :func:`fixes_applied` -- what a test or a health endpoint checks.
* ``greenroom.web.gunicorn_worker.GeventWebSocketWorker`` -- the gunicorn worker.

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
* When the app returns, Handler closes with 1000 if the app did not (1011 if it raised, 1001 on
  server shutdown) and waits up to ``close_timeout`` for the peer's close frame.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import io
import logging
import socket
import struct
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any

import gevent
import gevent.socket
import geventwebsocket
import geventwebsocket.handler as _gws_handler
import geventwebsocket.websocket as _gws_websocket
from gevent.lock import Semaphore
from gevent.pywsgi import WSGIHandler
from geventwebsocket.exceptions import FrameTooLargeException, ProtocolError, WebSocketError
from geventwebsocket.handler import Client, WebSocketHandler
from geventwebsocket.websocket import Header, Stream

__all__ = [
    "PINNED_VERSION",
    "UNMASK_IMPL",
    "ConnectionClosed",
    "GeventWebSocketVersionWarning",
    "Handler",
    "InvalidUTF8",
    "MessageTooBig",
    "ProtocolError",
    "UnmaskedFrame",
    "WebSocket",
    "WebSocketError",
    "apply",
    "apply_mask",
    "check_pinned_version",
    "fixes_applied",
    "installed_version",
    "mask_implementations",
    "revert",
]

log = logging.getLogger(__name__)

PINNED_VERSION = "0.10.1"
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024
#: Bytes asked of the kernel per read: every complete frame they hold is parsed before the next.
RECV_SIZE = 64 * 1024
#: Largest single read for a frame bigger than RECV_SIZE: a length header announcing more (with
#: no max_message_size) cannot make one read allocate it up front.
RECV_MAX = 1024 * 1024

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
_DATA_OPCODES = (OP_CONTINUATION, OP_TEXT, OP_BINARY)
_CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)

# RFC 6455 7.4 + the IANA registry: codes that may appear in a close frame. 1005, 1006 and 1015
# are reserved for reporting and must never be sent; 1004 and 1016-2999 are unassigned.
_WIRE_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)
NO_STATUS_RECEIVED = 1005
ABNORMAL_CLOSURE = 1006


def _valid_wire_close_code(code: int) -> bool:
    return code in _WIRE_CLOSE_CODES or 3000 <= code <= 4999


# --------------------------------------------------------------------------------------------
# Unmasking
# --------------------------------------------------------------------------------------------


def _apply_mask_int(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR the whole payload as one big integer: a few C-level passes instead of a Python loop per
    byte (~70x faster than gevent-websocket's loop at 64 KiB); used only without a C helper."""
    n = len(data)
    if not n:
        return b""
    key = (bytes(mask) * ((n >> 2) + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def mask_implementations() -> list[tuple[str, Callable[[Any, bytes], bytes]]]:
    """The available unmasking functions, preferred first; the last is always the int fallback.
    Never the per-byte loop."""
    found: list[tuple[str, Callable[[Any, bytes], bytes]]] = []
    try:
        from websockets.speedups import apply_mask as c_apply_mask
    except ImportError:
        pass
    else:
        found.append(("websockets.speedups", c_apply_mask))
    try:
        from wsaccel.xormask import XorMaskerSimple
    except ImportError:
        pass
    else:

        def wsaccel_apply_mask(data: Any, mask: bytes) -> bytes:
            return bytes(XorMaskerSimple(bytes(mask)).process(bytes(data)))

        found.append(("wsaccel", wsaccel_apply_mask))
    found.append(("int.from_bytes", _apply_mask_int))
    return found


UNMASK_IMPL, apply_mask = mask_implementations()[0]
"""``apply_mask(data, mask4) -> bytes`` and the name of the implementation picked at import."""


def _header_mask_payload(self: Header, payload: Any) -> bytes:
    """Replaces ``Header.mask_payload``/``unmask_payload`` so that any code path still going through
    gevent-websocket's own frame reader unmasks in C too."""
    if not self.mask:
        return bytes(payload)
    return apply_mask(payload, bytes(self.mask))


# --------------------------------------------------------------------------------------------
# Exceptions
# --------------------------------------------------------------------------------------------


class ConnectionClosed(WebSocketError):
    """Raised by send()/receive() once the connection is over, so that a loop that ignores a None
    from receive() cannot spin forever on a dead socket (a hot loop would starve the worker)."""

    code = ABNORMAL_CLOSURE


class UnmaskedFrame(ProtocolError):
    """A client frame without the mask bit (RFC 6455 5.1: the server MUST close the connection)."""

    code = 1002


class InvalidUTF8(ProtocolError):
    """A text message or close reason that is not UTF-8; the connection was closed with 1007."""

    code = 1007


class MessageTooBig(FrameTooLargeException):
    """A frame or fragmented message over ``max_message_size``; closed with 1009 before the payload
    was read, so a hostile length header costs nothing."""

    code = 1009


def _close_code_for(exc: BaseException) -> int:
    return getattr(exc, "code", None) or 1002


class _SendTimeout(Exception):
    pass


# --------------------------------------------------------------------------------------------
# The socket
# --------------------------------------------------------------------------------------------


def _frame_header(opcode: int, length: int) -> bytes:
    if length < 126:
        return bytes((0x80 | opcode, length))
    if length < 0x10000:
        return struct.pack("!BBH", 0x80 | opcode, 126, length)
    return struct.pack("!BBQ", 0x80 | opcode, 127, length)


def _as_payload(message: Any) -> bytes:
    if message is None:
        return b""
    if isinstance(message, str):
        return message.encode("utf-8")
    return bytes(message)


def _close_payload(code: int | None, reason: str | bytes | None) -> bytes:
    if code is None:
        return b""
    if not _valid_wire_close_code(code):
        raise ValueError(f"close code {code} may not be sent on the wire")
    raw = _as_payload(reason)
    if len(raw) > 123:
        # Control frames carry at most 125 bytes; cut at a character boundary rather than fail a
        # kick because its reason was long.
        raw = raw[:123].decode("utf-8", "ignore").encode("utf-8")
    return struct.pack("!H", code) + raw


_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")
_EOF_HEADER = "Unexpected EOF while decoding header"
_EOF_PAYLOAD = "Unexpected EOF reading frame payload"
# The exact class whose private parts _recv_direct uses; subclasses (gevent.ssl.SSLSocket) are
# read through their own recv(), which decrypts.
_PLAIN_GEVENT_SOCKET: type = gevent.socket.socket
# gevent is not pinned: should a release rename those private parts, reads fall back to recv().
_DIRECT_READS = all(hasattr(_PLAIN_GEVENT_SOCKET, name) for name in ("_wait", "_read_event"))


class WebSocket(_gws_websocket.WebSocket):
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

    @property
    def raw_read(self) -> Callable[[int], bytes]:
        """``raw_read(n)`` as the base class had it (``rfile.read``: n bytes, fewer only at EOF),
        but in order with read_frame(): what it already buffered comes first. A property, so
        that no bound method is stored on the socket (a reference cycle)."""
        return self._raw_read

    @raw_read.setter
    def raw_read(self, value: Any) -> None:
        """The base class's __init__ assigns ``stream.read``, which would bypass the buffer."""

    # -- reading ------------------------------------------------------------------------------

    def read_frame(self, received: int = 0) -> tuple[Header, bytes]:
        """Read one client frame; ``received`` is the size of the message so far, so that the
        size limit is checked on the header before any payload byte is read.

        Frames are parsed from our own buffer, filled by reads of up to RECV_SIZE bytes: a frame
        costs no read at all when an earlier one brought it, and otherwise one, where the pywsgi
        rfile cost several (header, length, mask, payload) through Python-level socket wrappers.
        Each step waits only for the bytes it needs, as before: a bad header is answered
        without waiting for the rest of the frame. The parse position moves only once a
        frame is complete, so a read interrupted by a timeout loses nothing.
        """
        buf, pos = self._rbuf, self._rpos
        if len(buf) - pos < 2:
            buf, pos = self._fill(2, _EOF_HEADER)
        b0 = buf[pos]
        b1 = buf[pos + 1]
        fin = bool(b0 & 0x80)
        flags = b0 & 0x70
        opcode = b0 & 0x0F
        length = b1 & 0x7F
        if flags:
            raise ProtocolError("RSV bits set but no extension was negotiated")
        if opcode in _CONTROL_OPCODES:
            if not fin:
                raise ProtocolError("fragmented control frame")
            if length > 125:
                raise ProtocolError("control frame longer than 125 bytes")
        elif opcode not in _DATA_OPCODES:
            raise ProtocolError(f"reserved opcode {opcode:#x}")
        if not b1 & 0x80:
            raise UnmaskedFrame("client frame is not masked")
        head = 6
        if length == 126:
            head = 8
            if len(buf) - pos < 4:
                buf, pos = self._fill(4, _EOF_HEADER)
            (length,) = _U16.unpack_from(buf, pos + 2)
        elif length == 127:
            head = 14
            if len(buf) - pos < 10:
                buf, pos = self._fill(10, _EOF_HEADER)
            (length,) = _U64.unpack_from(buf, pos + 2)
            if length >> 63:
                raise ProtocolError("64-bit frame length with the most significant bit set")
        limit = self.max_message_size
        if limit is not None and opcode in _DATA_OPCODES and received + length > limit:
            raise MessageTooBig(
                f"message of {received + length} bytes exceeds the {limit}-byte limit"
            )
        if len(buf) - pos < head:
            buf, pos = self._fill(head, _EOF_HEADER)
        end = pos + head + length
        if len(buf) < end:
            buf, pos = self._fill(head + length, _EOF_PAYLOAD)
            end = head + length
        if end == len(buf):  # all parsed: drop the reference (an idle client keeps no 64 KiB)
            self._rbuf, self._rpos = b"", 0
        else:
            self._rpos = end
        start = pos + head
        mask = buf[start - 4 : start]
        header = Header(fin=fin, opcode=opcode, flags=flags, length=length)
        header.mask = mask
        if not length:
            return header, b""
        return header, apply_mask(buf[start:end], mask)

    def _fill(self, need: int, eof_message: str) -> tuple[bytes, int]:
        """Make ``need`` bytes available from the parse position, which becomes 0; returns the
        buffer and 0. A frame larger than one read is gathered in as many reads as it takes and
        joined once. What was read stays buffered if a read raises (a timeout, a kill)."""
        rest = self._rbuf[self._rpos :]
        chunks = [rest] if rest else []
        have = len(rest)
        recv = self._recv
        try:
            while have < need:
                missing = need - have
                data = recv(self, max(RECV_SIZE, min(missing, RECV_MAX)), missing)
                if not data:
                    raise WebSocketError(eof_message)
                chunks.append(data)
                have += len(data)
        finally:
            buf = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self._rbuf, self._rpos = buf, 0
        return buf, 0

    def _raw_read(self, size: int) -> bytes:
        """See ``raw_read``."""
        try:
            buf, pos = self._fill(size, "")
        except WebSocketError:  # EOF: what there is
            buf, pos = self._rbuf, 0
        data = buf[pos : pos + size]
        self._rpos = pos + len(data)
        return data

    # The read strategies, called as self._recv(self, size, missing): at most ``size`` bytes, at
    # least one unless the peer is gone (b""); ``missing`` is how many the caller still needs.

    def _recv_first(self, size: int, missing: int) -> bytes:
        """The first read after the handshake goes through pywsgi's rfile, which may hold the
        start of the first frame. ``read1`` returns what it holds or does one read of the
        socket; once it returns less than asked, the rfile is empty and later reads can go to
        the socket itself."""
        rfile = getattr(self.handler, "rfile", None)
        if not isinstance(rfile, io.BufferedReader):
            self._recv = WebSocket._recv_stream
            return self._recv_stream(size, missing)
        data = rfile.read1(size)
        if len(data) < size:
            sock = self._sock
            if type(sock) is _PLAIN_GEVENT_SOCKET and _DIRECT_READS:
                self._recv = WebSocket._recv_direct
            elif sock is not None:
                self._recv = WebSocket._recv_socket
            else:
                self._recv = WebSocket._recv_stream
        return data

    def _recv_direct(self, size: int, missing: int) -> bytes:
        """Read a plain gevent socket's OS socket, waiting on its read watcher first when the
        last read emptied the kernel's buffer. gevent's recv() tries the read first: on a
        connection waiting for its next message that fails with EAGAIN (a syscall plus an
        exception raised and caught) before every wait. Timeouts, shutdown() and close() from
        another greenlet act on the same watcher as in gevent's recv()."""
        sock = self._sock
        while True:
            if self._drained:
                event = sock._read_event
                if event is not None:  # None: closed; the read below raises EBADF
                    sock._wait(event)
            try:
                data = sock._sock.recv(size)
            except BlockingIOError:
                self._drained = True
                continue
            self._drained = len(data) < size
            return data

    def _recv_socket(self, size: int, missing: int) -> bytes:
        """Any other socket (TLS, a wrapped socket): its own recv()."""
        return self._sock.recv(size)

    def _recv_stream(self, size: int, missing: int) -> bytes:
        """No known rfile: read exactly what is missing through the stream, as the base class did."""
        return self.stream.read(missing)

    def read_message(self) -> str | bytes | None:
        """Assemble one message. Text is decoded once by the C UTF-8 codec (incrementally across
        fragments, so bad UTF-8 fails fast); the base class ran a pure-Python validator over every
        fragment, then over the whole message, then decoded it."""
        opcode: int | None = None
        chunks: list[Any] = []
        size = 0
        decoder: Any = None
        while True:
            header, payload = self.read_frame(size)
            op = header.opcode
            if op == OP_CLOSE:
                self.handle_close(header, payload)
                return None
            if op == OP_PING:
                self.handle_ping(header, payload)
                continue
            if op == OP_PONG:
                self.handle_pong(header, payload)
                continue
            if op == OP_CONTINUATION:
                if opcode is None:
                    raise ProtocolError("continuation frame outside a fragmented message")
            elif opcode is not None:
                raise ProtocolError("new data frame inside a fragmented message")
            else:
                opcode = op
            size += len(payload)
            if opcode == OP_TEXT:
                if header.fin and decoder is None:
                    try:
                        return payload.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        raise InvalidUTF8(f"invalid UTF-8 in text message: {exc.reason}") from None
                if decoder is None:
                    decoder = codecs.getincrementaldecoder("utf-8")()
                try:
                    chunks.append(decoder.decode(payload, header.fin))
                except UnicodeDecodeError as exc:
                    raise InvalidUTF8(f"invalid UTF-8 in text message: {exc.reason}") from None
                if header.fin:
                    return "".join(chunks)
            else:
                if header.fin and not chunks:
                    return payload
                chunks.append(payload)
                if header.fin:
                    return b"".join(chunks)

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

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping; the pong updates ``last_pong`` while some greenlet is in receive()."""
        self.send_frame(payload, OP_PING)

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

    def _write(self, data: bytes) -> None:
        timeout = self.send_timeout
        try:
            with self._send_lock:
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
        self._dead()
        self._abort()

    def _send_now(self, data: bytes) -> memoryview | None:
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


# --------------------------------------------------------------------------------------------
# The handler
# --------------------------------------------------------------------------------------------


def _http_at_least_1_1(version: str | None) -> bool:
    if not version or not version.startswith("HTTP/"):
        return False
    try:
        major, minor = (int(part) for part in version[5:].split(".", 1))
    except ValueError:
        return False
    return (major, minor) >= (1, 1)


def _valid_key(key: str) -> bool:
    # RFC 6455 4.2.1: base64 of 16 bytes, hence exactly 24 characters. binascii.Error is what made
    # the base class answer 500 (it caught TypeError).
    if len(key) != 24:
        return False
    try:
        return len(base64.b64decode(key.encode("ascii"), validate=True)) == 16
    except (ValueError, binascii.Error):
        return False


def _accept_token(key: str) -> str:
    digest = hashlib.sha1((key + WebSocketHandler.GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def _header_tokens(value: str) -> list[str]:
    return [token.strip() for token in value.split(",") if token.strip()]


def _ignore_start_response(
    status: str, headers: list[Any], exc_info: Any = None
) -> Callable[..., None]:
    return lambda data: None


class Handler(WebSocketHandler):
    """WebSocketHandler with the handshake, Unix-socket and error-path fixes.

    Use it as ``WSGIServer(listener, app, handler_class=Handler)``; the gunicorn worker in
    ``greenroom.web.gunicorn_worker`` uses a subclass.
    """

    #: Only RFC 6455; hybi drafts 7/8 are not spoken by any client we support.
    SUPPORTED_VERSIONS = ("13",)
    #: The socket class built for each upgrade.
    websocket_class: type[WebSocket] = WebSocket
    #: If set, copied onto each connection's ``max_message_size``.
    max_message_size: int | None = None

    def handle(self) -> None:
        """Serve the connection with Nagle's algorithm off (TCP_NODELAY), as Node does.

        pywsgi writes a response's headers and its body with two sends. With Nagle on, the body
        of every keep-alive request after the first waits for the client's delayed ACK (~40 ms
        on Linux): measured, a matchmake took 43 ms instead of 1 ms (benchmarks/, joins).
        """
        sock = self.socket
        if getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # the peer is already gone; handle() finds out by itself
                pass
        super().handle()

    def log_request(self) -> None:
        """An access-log line goes to the server's access log (``WSGIServer(log=...)``, which
        ``Server.listen(log_requests=True)`` sets), so there is none unless one was asked for.
        The base class wrote every request at INFO to its own logger whatever the server was
        given: at ``greenroom serve``'s default level that was 10% of a join's CPU. Upgrades
        (101) are left out, as the base class did."""
        if "101" not in str(self.status):
            WSGIHandler.log_request(self)

    @property
    def logger(self) -> logging.Logger:
        """The base class replaced the handlers and the class of the "geventwebsocket.handler"
        logger for each server; a plain module logger leaves logging configuration to the app."""
        return log

    def run_application(self) -> Any:
        """As the base class, but decides on ``self.websocket`` of *this* request (the base class
        used ``hasattr``, which a previous request on the connection could satisfy)."""
        hook = getattr(self.server, "pre_start_hook", None)
        if hook and hook(self):
            return super(WebSocketHandler, self).run_application()
        self.websocket = None
        self.result = self.upgrade_websocket()
        if self.websocket is not None:
            if self.status and not self.headers_sent:
                self.write(b"")
            self.run_websocket()
            return None
        if self.status:
            if not self.result:
                self.result = []
            self.process_result()
            return None
        self.result = None
        return super(WebSocketHandler, self).run_application()

    def _reject(
        self, status: str, reason: str, headers: Iterable[tuple[str, str]] = ()
    ) -> list[bytes]:
        """A complete, short plain-text answer; the base class passed str bodies that pywsgi
        cannot send (the client got headers and a Content-Length, then nothing)."""
        self.logger.info("WebSocket handshake refused (%s): %s", status, reason)
        body = reason.encode("ascii", "replace")
        self.start_response(
            status,
            [("Content-Type", "text/plain"), ("Connection", "close"), *headers],
        )
        return [body]

    def upgrade_websocket(self) -> list[bytes] | None:
        """Returns None for requests that are not WebSocket upgrades (the app handles them), a
        body after start_response for a refused handshake, and sets ``self.websocket`` on success."""
        environ = self.environ
        if environ.get("REQUEST_METHOD", "") != "GET":
            return None
        if environ.get("HTTP_UPGRADE", "").strip().lower() != "websocket":
            return None
        if "upgrade" not in _header_tokens(environ.get("HTTP_CONNECTION", "").lower()):
            return None
        if not _http_at_least_1_1(self.request_version):
            # The base class answered "402 Bad Request" with a body it could not send.
            return self._reject("400 Bad Request", "WebSocket upgrade requires HTTP/1.1")
        return self.upgrade_connection()

    def upgrade_connection(self) -> list[bytes] | None:
        """Validate version and key, then answer 101 and build the (fixed) socket."""
        environ = self.environ
        version = environ.get("HTTP_SEC_WEBSOCKET_VERSION", "").strip()
        if version not in self.SUPPORTED_VERSIONS:
            return self._reject(
                "426 Upgrade Required",
                "Unsupported or missing Sec-WebSocket-Version",
                [("Sec-WebSocket-Version", ", ".join(self.SUPPORTED_VERSIONS))],
            )
        key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
        if not key:
            return self._reject("400 Bad Request", "Missing Sec-WebSocket-Key")
        if not _valid_key(key):
            return self._reject("400 Bad Request", "Invalid Sec-WebSocket-Key")

        protocol = None
        app_protocol = getattr(self.application, "app_protocol", None)
        if app_protocol is not None:
            allowed = app_protocol(environ["PATH_INFO"])
            # Token match: the base class matched substrings of the header.
            if allowed and allowed in _header_tokens(
                environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL", "")
            ):
                protocol = allowed

        ws = self.websocket_class(environ, Stream(self), self)
        if self.max_message_size is not None:
            ws.max_message_size = self.max_message_size
        self.websocket = ws
        environ.update({"wsgi.websocket_version": version, "wsgi.websocket": ws})
        headers = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", _accept_token(key)),
        ]
        if protocol:
            headers.append(("Sec-WebSocket-Protocol", protocol))
        self.start_response("101 Switching Protocols", headers)
        return None

    def _client_key(self) -> Any:
        # Every AF_UNIX peer has the address '': keyed by address alone, the second connection to
        # end raised KeyError: '' and was reported as a server error.
        address = self.client_address
        if isinstance(address, tuple) and address:
            return address
        return (address or "unix", id(self))

    @property
    def active_client(self) -> Client:
        return self.server.clients[self._client_key()]

    def run_websocket(self) -> None:
        """Run the app on the upgraded connection and always end it cleanly.

        The peer going away while the app sends or receives is not a server error: it is logged
        at debug level instead of as a traceback. An app crash closes with 1011, a server
        shutdown (GreenletExit) with 1001; the exception then goes to pywsgi's handle_error,
        which logs it and, the 101 being sent, writes nothing more on the socket.
        """
        if getattr(self, "prevent_wsgi_call", False):
            return
        ws = self.websocket
        clients = getattr(self.server, "clients", None)
        if clients is None:
            clients = self.server.clients = {}
        key = self._client_key()
        clients[key] = Client(self.client_address, ws)
        code, linger = 1000, True
        try:
            result = self.application(self.environ, _ignore_start_response)
            try:
                for _ in result or ():
                    pass
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except WebSocketError as exc:
            self.logger.debug("WebSocket %s ended: %s", self.environ.get("PATH_INFO"), exc)
        except Exception:
            code, linger = 1011, False
            raise
        except BaseException:  # GreenletExit when the server stops, KeyboardInterrupt...
            code, linger = 1001, False
            raise
        finally:
            clients.pop(key, None)
            try:
                ws._finish(code, linger)
            finally:
                self.environ.update({"wsgi.websocket": None})
                self.websocket = None


# --------------------------------------------------------------------------------------------
# apply / revert / fixes_applied
# --------------------------------------------------------------------------------------------


class GeventWebSocketVersionWarning(RuntimeWarning):
    """The fixes were written against gevent-websocket 0.10.1 internals."""


def installed_version() -> str:
    """The installed gevent-websocket version, as pip sees it."""
    try:
        return metadata.version("gevent-websocket")
    except metadata.PackageNotFoundError:
        return ".".join(str(part) for part in geventwebsocket.VERSION[:3])


def check_pinned_version() -> bool:
    """Warn (GeventWebSocketVersionWarning + log) unless gevent-websocket is 0.10.1: the fixes
    override its internals and are only known to be right for that release."""
    version = installed_version()
    if version == PINNED_VERSION:
        return True
    message = (
        f"gevent-websocket {version} is installed; greenroom's fixes (greenroom.web.wsfixes) "
        f"target {PINNED_VERSION} exactly. Install gevent-websocket=={PINNED_VERSION}."
    )
    log.warning(message)
    warnings.warn(message, GeventWebSocketVersionWarning, stacklevel=3)
    return False


_UPSTREAM: dict[str, Any] = {}


def _remember_upstream() -> None:
    if _UPSTREAM:
        return
    for name in ("mask_payload", "unmask_payload"):
        current = Header.__dict__[name]
        if current is not _header_mask_payload:
            _UPSTREAM[f"Header.{name}"] = current
    current_ws = _gws_handler.WebSocket
    if not (isinstance(current_ws, type) and issubclass(current_ws, WebSocket)):
        _UPSTREAM["handler.WebSocket"] = current_ws


def apply(*, patch_stock_handler: bool = False) -> dict[str, bool]:
    """Patch gevent-websocket in place (idempotent) and check the version pin; returns
    fixes_applied().

    Always: ``Header.mask_payload``/``unmask_payload`` use the C unmasker, which changes nothing
    but speed for any code still reading frames through gevent-websocket.

    ``patch_stock_handler=True`` also makes gevent-websocket's own WebSocketHandler (hence its
    WebSocketServer and its gunicorn worker) build our WebSocket. Off by default because it
    changes behaviour process-wide for servers that chose the stock handler: a 64 KiB message
    limit, exceptions on protocol errors, bytes instead of bytearray. Handler needs neither.
    """
    check_pinned_version()
    _remember_upstream()
    Header.mask_payload = _header_mask_payload
    Header.unmask_payload = _header_mask_payload
    current_ws = _gws_handler.WebSocket
    if patch_stock_handler and not (
        isinstance(current_ws, type) and issubclass(current_ws, WebSocket)
    ):
        _gws_handler.WebSocket = WebSocket
    return fixes_applied()


def revert() -> None:
    """Undo apply(). Exists so tests can show each fix matters; servers never need it."""
    _remember_upstream()
    for name in ("mask_payload", "unmask_payload"):
        original = _UPSTREAM.get(f"Header.{name}")
        if original is not None:
            setattr(Header, name, original)
    original_ws = _UPSTREAM.get("handler.WebSocket")
    if original_ws is not None:
        _gws_handler.WebSocket = original_ws


def _live_websocket_classes() -> list[type]:
    classes = [Handler.websocket_class]
    stock = _gws_handler.WebSocket
    if isinstance(stock, type) and issubclass(stock, WebSocket):  # apply(patch_stock_handler=True)
        classes.append(stock)
    for handler in _live_handlers():
        classes.append(getattr(handler, "websocket_class", WebSocket))
    return classes


def _live_handlers() -> list[type]:
    handlers: list[type] = [Handler]
    worker_module = sys.modules.get("greenroom.web.gunicorn_worker")
    worker = getattr(worker_module, "GeventWebSocketWorker", None)
    if worker is not None:
        handlers.append(worker.wsgi_handler)
    return handlers


# Our implementations as defined, so that fixes_applied() also notices if someone replaces them
# on WebSocket or Handler themselves.
_IMPLEMENTATIONS: dict[type, dict[str, Any]] = {
    WebSocket: dict(vars(WebSocket)),
    Handler: dict(vars(Handler)),
}


def _uses(classes: list[type], reference: type, *names: str) -> bool:
    ours = _IMPLEMENTATIONS[reference]
    return all(
        isinstance(cls, type) and getattr(cls, name, None) is ours[name]
        for cls in classes
        for name in names
    )


def fixes_applied() -> dict[str, bool]:
    """One entry per D7 fix: True when the classes that serve connections (Handler, the gunicorn
    worker's handler once imported, the stock handler if patched) carry it. ``fast_unmask`` also
    needs apply() to have patched gevent-websocket's Header."""
    sockets = _live_websocket_classes()
    handlers = _live_handlers()
    header_fast = all(
        Header.__dict__[name] is _header_mask_payload for name in ("mask_payload", "unmask_payload")
    )
    limit_ok = all(
        isinstance(getattr(cls, "max_message_size", None), int) and cls.max_message_size > 0
        for cls in sockets
    )
    return {
        "fast_unmask": header_fast
        and apply_mask is not None
        and _uses(sockets, WebSocket, "read_frame"),
        "single_utf8_validation": _uses(sockets, WebSocket, "read_message", "__init__"),
        "close_codes": _uses(sockets, WebSocket, "close", "handle_close"),
        "message_size_limit": limit_ok and _uses(sockets, WebSocket, "read_frame", "read_message"),
        "reject_unmasked": _uses(sockets, WebSocket, "read_frame", "receive"),
        "handshake_validation": _uses(
            handlers, Handler, "upgrade_websocket", "upgrade_connection", "run_application"
        ),
        "unix_socket_clients": _uses(handlers, Handler, "run_websocket", "_client_key"),
        "robust_connection": _uses(
            sockets, WebSocket, "receive", "send_frame", "handle_ping", "__del__", "_finish"
        )
        and _uses(handlers, Handler, "run_websocket", "logger"),
    }
