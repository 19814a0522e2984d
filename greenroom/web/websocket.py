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
"""

from __future__ import annotations

import codecs
import io
import logging
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
import gevent.socket
import geventwebsocket.websocket as _gws_websocket
from gevent.lock import Semaphore
from geventwebsocket.exceptions import ProtocolError, WebSocketError
from geventwebsocket.websocket import Header, Stream

from . import unmask
from .wsframes import (
    _CONTROL_OPCODES,
    _DATA_OPCODES,
    _U16,
    _U64,
    ABNORMAL_CLOSURE,
    NO_STATUS_RECEIVED,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    ConnectionClosed,
    InvalidUTF8,
    MessageTooBig,
    UnmaskedFrame,
    _close_code_for,
    _close_payload,
    _frame_header,
    _valid_wire_close_code,
)
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
log = logging.getLogger("greenroom.web.wsfixes")

DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024
#: Bytes asked of the kernel per read: every complete frame they hold is parsed before the next.
RECV_SIZE = 64 * 1024
#: Largest single read for a frame bigger than RECV_SIZE: a length header announcing more (with
#: no max_message_size) cannot make one read allocate it up front.
RECV_MAX = 1024 * 1024

_EOF_HEADER = "Unexpected EOF while decoding header"
_EOF_PAYLOAD = "Unexpected EOF reading frame payload"
# The exact class whose private parts _recv_direct uses; subclasses (gevent.ssl.SSLSocket) are
# read through their own recv(), which decrypts.
_PLAIN_GEVENT_SOCKET: type = gevent.socket.socket
# gevent is not pinned: should a release rename those private parts, reads fall back to recv().
_DIRECT_READS = all(hasattr(_PLAIN_GEVENT_SOCKET, name) for name in ("_wait", "_read_event"))


class WebSocket(Sender, _gws_websocket.WebSocket):
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
        return header, unmask.apply_mask(buf[start:end], mask)

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
                if event is None:  # closed: the read below raises EBADF
                    pass
                elif sock.timeout is None and event.callback is None:
                    sock.hub.wait(event)  # what _wait does, minus its dummy Timeout per read
                else:
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
        buf, pos = self._rbuf, self._rpos
        if len(buf) - pos < 2:
            buf, pos = self._fill(2, _EOF_HEADER)
        b1 = buf[pos + 1]
        length = b1 & 0x7F
        limit = self.max_message_size
        if buf[pos] == 0x82 and b1 & 0x80 and length < 126 and (limit is None or length <= limit):
            # What nearly every room message is: one masked binary frame of a few bytes. Taken
            # here without read_frame's general path (and its Header object); same checks.
            end = pos + 6 + length
            if len(buf) < end:
                buf, pos = self._fill(6 + length, _EOF_PAYLOAD)
                end = 6 + length
            if end == len(buf):
                self._rbuf, self._rpos = b"", 0
            else:
                self._rpos = end
            return unmask.apply_mask(buf[pos + 6 : end], buf[pos + 2 : pos + 6]) if length else b""
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

