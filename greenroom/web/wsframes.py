"""What the WebSocket puts on the wire and what it raises: opcodes, close codes, frame headers,
and the exceptions room code and the socket layer catch (split out of websocket.py)."""

from __future__ import annotations

import struct
from typing import Any

from geventwebsocket.exceptions import FrameTooLargeException, ProtocolError, WebSocketError

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
_DATA_OPCODES = (OP_CONTINUATION, OP_TEXT, OP_BINARY)
_CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)
_EMPTY_PING = bytes((0x80 | OP_PING, 0))  # FIN, ping, no mask, no payload: what a server sends

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
