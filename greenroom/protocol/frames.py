"""Building and reading WebSocket frames (docs/protocol.md, "Frames" and "Joining").

Server frames are built as bytes in one go; client frames are parsed into a ``ClientFrame``.
Nothing here touches sockets or rooms.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import msgpack

from .codes import Code
from .dialect import Dialect
from .msgpackr import PayloadError, unpack
from .native import compiled
from .primitives import decode_number, decode_string, encode_number, encode_string, is_string_prefix

MessageType = str | int


class _Undefined:
    """JavaScript's `undefined`: a message without payload. A handler gets it for
    ``room.send("type")`` and sending it back sends no payload, so the official clients see
    `undefined` again, not `null` (what None means). Falsy, like `undefined`; nested in a
    payload it is packed as msgpackr's `undefined` (fixext 0), which the clients decode so."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Any = _Undefined()

# msgpackr writes `undefined` as fixext1 type 0 with one zero byte (PROTOCOL.md, 3.1).
_UNDEFINED_EXT = msgpack.ExtType(0, b"\x00")


def _pack_default(value: Any) -> Any:
    if value is UNDEFINED:
        return _UNDEFINED_EXT
    raise TypeError(f"can not serialize {type(value).__name__!r} object")


_packer = msgpack.Packer(use_bin_type=True, datetime=True, default=_pack_default)


class FrameError(ValueError):
    """A client frame that cannot be read."""


def pack(payload: Any) -> bytes:
    return _packer.pack(payload)


def encode_type(message_type: MessageType) -> bytes:
    if isinstance(message_type, str):
        if not message_type:
            raise ValueError("a message type cannot be the empty string")
        return encode_string(message_type)
    if isinstance(message_type, int) and not isinstance(message_type, bool):
        return encode_number(message_type)
    raise TypeError(f"a message type is a str or an int, not {type(message_type).__name__}")


def join_room(dialect: Dialect, token: str, serializer_id: str, handshake: bytes) -> bytes:
    token_bytes = token.encode()
    serializer = serializer_id.encode()
    head = bytes([Code.JOIN_ROOM, len(token_bytes)]) + token_bytes + bytes([len(serializer)]) + serializer
    if dialect is Dialect.V5:
        return head + encode_number(len(handshake)) + handshake
    return head + handshake


def error(code: int, message: str) -> bytes:
    return bytes([Code.ERROR]) + encode_number(int(code)) + encode_string(message)


def room_data(message_type: MessageType, payload: Any = UNDEFINED) -> bytes:
    """ROOM_DATA (server to client). The reference for ``_wire.room_data``, which replaces it
    below when compiled."""
    frame = bytes([Code.ROOM_DATA]) + encode_type(message_type)
    if payload is not UNDEFINED:
        frame += pack(payload)
    return frame


def room_data_bytes(message_type: MessageType, data: bytes | bytearray | memoryview | list[int]) -> bytes:
    return bytes([Code.ROOM_DATA_BYTES]) + encode_type(message_type) + bytes(data)


def room_request(request_id: int, message_type: MessageType, payload: Any = UNDEFINED) -> bytes:
    """ROOM_REQUEST (client to server, v5)."""
    frame = bytes([Code.ROOM_REQUEST]) + encode_number(request_id) + encode_type(message_type)
    if payload is not UNDEFINED:
        frame += pack(payload)
    return frame


def room_response(request_id: int, status: int, payload: Any = UNDEFINED) -> bytes:
    frame = bytes([Code.ROOM_RESPONSE]) + encode_number(request_id) + bytes([status])
    if payload is not UNDEFINED:
        frame += pack(payload)
    return frame


STATE = bytes([Code.ROOM_STATE])
PATCH = bytes([Code.ROOM_STATE_PATCH])
LEAVE_ROOM = bytes([Code.LEAVE_ROOM])
PING = bytes([Code.PING])


@dataclass(slots=True)
class ClientFrame:
    code: int
    type: MessageType | None = None
    payload: Any = UNDEFINED  # no payload in the frame
    request_id: int | None = None


def parse_client_frame(frame: bytes) -> ClientFrame:
    """Read one client frame; raises FrameError (bad layout) or PayloadError (bad MessagePack).

    The reference for ``_wire.parse_client_frame``, which replaces it below when compiled."""
    if not frame:
        raise FrameError("empty frame")
    code = frame[0] & 0x1F  # 0.18 may set modifier bits 0x80/0x40 (docs/protocol.md, "Frames")
    if code in (Code.JOIN_ROOM, Code.LEAVE_ROOM, Code.PING):
        return ClientFrame(code)
    if code == Code.ROOM_DATA:
        message_type, pos = _read_type(frame, 1)
        payload = unpack(memoryview(frame)[pos:]) if pos < len(frame) else UNDEFINED
        return ClientFrame(code, message_type, payload)
    if code == Code.ROOM_DATA_BYTES:
        message_type, pos = _read_type(frame, 1)
        return ClientFrame(code, message_type, frame[pos:])
    if code == Code.ROOM_REQUEST:
        request_id, pos = _read_integer(frame, 1, "request id")
        message_type, pos = _read_type(frame, pos)
        payload = unpack(memoryview(frame)[pos:]) if pos < len(frame) else UNDEFINED
        return ClientFrame(code, message_type, payload, request_id=request_id)
    raise FrameError(f"unknown protocol code {frame[0]}")


def _read_number(frame: bytes, pos: int) -> tuple[float | int, int]:
    try:
        return decode_number(frame, pos)
    except (IndexError, ValueError, struct.error) as exc:
        raise FrameError(f"bad number at offset {pos}: {exc}") from None


def _read_integer(frame: bytes, pos: int, what: str) -> tuple[int, int]:
    """A number that must be a whole one: a NaN or an infinity is the client's error, not ours."""
    value, end = _read_number(frame, pos)
    if not _is_whole(value):
        raise FrameError(f"{what} {value!r} is not an integer")
    return int(value), end


def _is_whole(value: float | int) -> bool:
    return isinstance(value, int) or (math.isfinite(value) and value == int(value))


def read_type(frame: bytes, pos: int) -> tuple[MessageType, int]:
    """The message type at ``pos`` (a string or an integer) and the position after it."""
    return _read_type(frame, pos)


def _read_type(frame: bytes, pos: int) -> tuple[MessageType, int]:
    if pos >= len(frame):
        raise FrameError("frame ends before its message type")
    try:
        if is_string_prefix(frame[pos]):
            return decode_string(frame, pos)
        value, end = decode_number(frame, pos)
    except (IndexError, ValueError, struct.error, UnicodeDecodeError) as exc:
        raise FrameError(f"bad message type: {exc}") from None
    if not _is_whole(value):
        raise FrameError(f"message type {value!r} is not an integer")
    return int(value), end


#: The Python references, whatever runs (tests compare the compiled functions with them).
py_parse_client_frame = parse_client_frame
py_room_data = room_data
if compiled is not None:  # every frame and value outside the C subset still reaches these
    compiled.configure(ClientFrame, UNDEFINED, py_parse_client_frame, py_room_data)
    parse_client_frame = compiled.parse_client_frame  # noqa: F811
    room_data = compiled.room_data  # noqa: F811


__all__ = [
    "UNDEFINED", "ClientFrame", "FrameError", "PayloadError", "MessageType",
    "parse_client_frame", "join_room", "error", "room_data", "room_data_bytes", "room_response",
    "room_request", "read_type",
    "encode_type", "pack", "STATE", "PATCH", "LEAVE_ROOM", "PING",
]
