"""The reading half of greenroom's WebSocket: bytes from the peer into frames and messages.

It exists because most of the D7 fixes are fixes to reading: gevent-websocket read every frame
through pywsgi's rfile in several Python-level reads, unmasked it byte by byte, validated UTF-8
in pure Python and took unmasked or oversized frames. Here frames are parsed and checked from a
buffer of our own, filled by as few reads as the socket allows, and text is decoded once. What
a frame means for the connection (close, ping, pong, the contract room code relies on) is
websocket.py's; what goes out is wssend.py's.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Callable
from typing import Any

import gevent.socket
from gevent import getcurrent
from geventwebsocket.exceptions import ProtocolError, WebSocketError
from geventwebsocket.websocket import Header

from . import unmask
from .wsframes import (
    _CONTROL_OPCODES,
    _DATA_OPCODES,
    _U16,
    _U64,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    InvalidUTF8,
    MessageTooBig,
    UnmaskedFrame,
)

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


class Reader:
    """Mixed into WebSocket, which sets what these methods use: ``_rbuf``, ``_rpos``,
    ``_drained``, ``_recv``, ``_sock``, ``handler``, ``stream``, ``max_message_size``, and the
    ``handle_close``/``handle_ping``/``handle_pong`` that read_message() hands control frames to.
    """

    @property
    def raw_read(self) -> Callable[[int], bytes]:
        """``raw_read(n)`` as the base class had it (``rfile.read``: n bytes, fewer only at EOF),
        but in order with read_frame(): what it already buffered comes first. A property, so
        that no bound method is stored on the socket (a reference cycle)."""
        return self._raw_read

    @raw_read.setter
    def raw_read(self, value: Any) -> None:
        """The base class's __init__ assigns ``stream.read``, which would bypass the buffer."""

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
            self._recv = Reader._recv_stream
            return self._recv_stream(size, missing)
        data = rfile.read1(size)
        if len(data) < size:
            sock = self._sock
            if type(sock) is _PLAIN_GEVENT_SOCKET and _DIRECT_READS:
                self._recv = Reader._recv_direct
            elif sock is not None:
                self._recv = Reader._recv_socket
            else:
                self._recv = Reader._recv_stream
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
                    # What hub.wait(event) does, minus its Waiter (and _wait's dummy Timeout per
                    # read): 1.4 us less per wake-up, measured. The watcher's callback is this
                    # greenlet's switch, so a close from another greenlet (gevent's cancel_wait
                    # throws into the callback's __self__), a kill or a timeout still raise here;
                    # a stray switch only costs a read that finds nothing and waits again.
                    event.start(getcurrent().switch)
                    try:
                        sock.hub.switch()
                    finally:
                        event.stop()
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
            if not buf and self._recv is Reader._recv_direct:
                # Nothing buffered, the usual wait for the next message: one read without
                # _fill's gathering (a call, a list, a join), which is for frames split
                # across reads. Nothing is lost if the read raises: nothing was read.
                buf = Reader._recv_direct(self, RECV_SIZE, 2)
                if not buf:
                    raise WebSocketError(_EOF_HEADER)
                self._rbuf = buf
                if len(buf) < 2:
                    buf, pos = self._fill(2, _EOF_HEADER)
            else:
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
