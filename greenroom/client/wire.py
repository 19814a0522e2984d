"""The Python client's side of the wire: frame codecs, state decoders, the seat reservation."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgpack

from ..protocol import frames
from ..protocol.codes import Code
from ..protocol.dialect import Dialect
from ..protocol.primitives import (
    decode_number,
    decode_string,
)
from .errors import MessageType, ProtocolError

_NOTHING: Any = frames.UNDEFINED  # "no payload", distinct from None (which packs as msgpack nil)


@dataclass
class JoinRoom:
    """A decoded JOIN_ROOM frame (docs/protocol.md, "Joining")."""

    token: str
    serializer_id: str
    handshake: bytes
    #: v5 trailing sections by tag (1 = input reflection, 2 = input options); empty for v3.
    sections: dict[int, bytes] = field(default_factory=dict)


def _check_code(frame: bytes, code: int) -> None:
    if not frame or frame[0] != code:
        raise ProtocolError(f"expected a {Code(code).name} frame, got {bytes(frame[:16]).hex()}")


def _short_string(frame: bytes, pos: int, what: str) -> tuple[str, int]:
    """A uint8-length-prefixed UTF-8 string: how JOIN_ROOM carries token and serializer id."""
    if pos >= len(frame):
        raise ProtocolError(f"JOIN_ROOM ends before the {what}")
    end = pos + 1 + frame[pos]
    if end > len(frame):
        raise ProtocolError(f"JOIN_ROOM {what} runs past the end of the frame")
    return bytes(frame[pos + 1:end]).decode("utf-8"), end


def parse_join_room(frame: bytes, dialect: Dialect | str = Dialect.V3) -> JoinRoom:
    """Decode JOIN_ROOM in either dialect; the dialect cannot be told from the bytes (§0)."""
    _check_code(frame, Code.JOIN_ROOM)
    token, pos = _short_string(frame, 1, "reconnection token")
    serializer_id, pos = _short_string(frame, pos, "serializer id")
    if Dialect.parse(dialect) is Dialect.V3:
        return JoinRoom(token, serializer_id, bytes(frame[pos:]))
    try:
        length, pos = decode_number(frame, pos)
    except (IndexError, ValueError) as exc:
        raise ProtocolError(f"v5 JOIN_ROOM: bad handshake length: {exc}") from None
    if not isinstance(length, int) or length < 0 or pos + length > len(frame):
        raise ProtocolError(f"v5 JOIN_ROOM: handshake length {length} does not fit the frame")
    handshake = bytes(frame[pos:pos + length])
    pos += length
    sections: dict[int, bytes] = {}
    while pos < len(frame):
        tag = frame[pos]
        try:
            size, pos = decode_number(frame, pos + 1)
        except (IndexError, ValueError) as exc:
            raise ProtocolError(f"v5 JOIN_ROOM: bad length of section {tag}: {exc}") from None
        if not isinstance(size, int) or size < 0 or pos + size > len(frame):
            raise ProtocolError(f"v5 JOIN_ROOM: section {tag} of length {size} does not fit the frame")
        sections[tag] = bytes(frame[pos:pos + size])
        pos += size
    return JoinRoom(token, serializer_id, handshake, sections)


def _looks_like_v5(handshake: bytes) -> bool:
    """A v3 schema handshake starts with ``80`` (ADD field 0), which is no valid number; a v5
    one starts with its own length as a number."""
    try:
        length, pos = decode_number(handshake, 0)
    except (IndexError, ValueError):
        return False
    return isinstance(length, int) and 0 < length <= len(handshake) - pos


def _decode_type(frame: bytes, pos: int) -> tuple[MessageType, int]:
    try:
        return frames.read_type(frame, pos)
    except frames.FrameError as exc:
        raise ProtocolError(str(exc)) from None


def _unpack(data: bytes | memoryview) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated classes
        raise ProtocolError(f"payload is not MessagePack ({exc}): {bytes(data[:32]).hex()}") from None


def parse_message(frame: bytes) -> tuple[MessageType, Any]:
    """Decode ROOM_DATA (payload unpacked; ``None`` when absent) or ROOM_DATA_BYTES (raw bytes)."""
    if not frame or frame[0] not in (Code.ROOM_DATA, Code.ROOM_DATA_BYTES):
        raise ProtocolError(f"not a ROOM_DATA/ROOM_DATA_BYTES frame: {bytes(frame[:16]).hex()}")
    msg_type, pos = _decode_type(frame, 1)
    if frame[0] == Code.ROOM_DATA_BYTES:
        return msg_type, bytes(frame[pos:])
    if pos >= len(frame):
        return msg_type, None
    return msg_type, _unpack(memoryview(frame)[pos:])


def parse_error(frame: bytes) -> tuple[int, str]:
    """Decode ERROR: ``number code``, ``string message``."""
    _check_code(frame, Code.ERROR)
    try:
        code, pos = decode_number(frame, 1)
        message = decode_string(frame, pos)[0] if pos < len(frame) else ""
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed ERROR frame ({exc}): {bytes(frame[:32]).hex()}") from None
    return int(code), message


def parse_response(frame: bytes) -> tuple[int, int, Any]:
    """Decode v5 ROOM_RESPONSE into ``(request_id, status, payload)``."""
    _check_code(frame, Code.ROOM_RESPONSE)
    try:
        request_id, pos = decode_number(frame, 1)
        status = frame[pos]
    except (IndexError, ValueError) as exc:
        raise ProtocolError(f"malformed ROOM_RESPONSE ({exc}): {bytes(frame[:32]).hex()}") from None
    pos += 1
    payload = _unpack(memoryview(frame)[pos:]) if pos < len(frame) else None
    return int(request_id), status, payload


def encode_message(msg_type: MessageType, payload: Any = _NOTHING) -> bytes:
    """ROOM_DATA; omit ``payload`` to send none at all (JS ``room.send(type)``)."""
    return frames.room_data(msg_type, payload)


def encode_bytes_message(msg_type: MessageType, data: bytes | bytearray | memoryview) -> bytes:
    """ROOM_DATA_BYTES: the type, then the bytes unframed to the end."""
    return frames.room_data_bytes(msg_type, data)


def encode_request(request_id: int, msg_type: MessageType, payload: Any = _NOTHING) -> bytes:
    """v5 ROOM_REQUEST: ``number requestId``, type, optional MessagePack payload."""
    return frames.room_request(request_id, msg_type, payload)


class StateDecoder(Protocol):
    """What a room needs from a state decoder; ``greenroom.schema.decoder`` is meant to fit.

    The room calls ``handshake`` with the JOIN_ROOM handshake bytes (when there are any),
    ``full`` with each ROOM_STATE body and ``patch`` with each ROOM_STATE_PATCH body (frame
    code byte stripped), all from the reader greenlet in arrival order, and passes ``state``
    to the ``on_state_change`` callbacks after each.
    """

    state: Any

    def handshake(self, data: bytes) -> None: ...

    def full(self, data: bytes) -> None: ...

    def patch(self, data: bytes) -> None: ...


class RawStateDecoder:
    """The default: decode nothing, keep the frames so tests can compare bytes.

    ``frames`` holds whole frames (code byte included, as in the captures), newest last; a
    bounded deque so a long-running bot does not grow without limit. ``keep=0`` keeps none
    (benchmarks). ``state`` is the body of the latest frame.
    """

    __slots__ = ("handshake_bytes", "frames", "state")

    def __init__(self, keep: int | None = 10_000) -> None:
        self.handshake_bytes = b""
        self.frames: deque[bytes] = deque(maxlen=keep)
        self.state: bytes | None = None

    def handshake(self, data: bytes) -> None:
        self.handshake_bytes = data

    def full(self, data: bytes) -> None:
        self.state = data
        if self.frames.maxlen != 0:
            self.frames.append(b"\x0e" + data)

    def patch(self, data: bytes) -> None:
        self.state = data
        if self.frames.maxlen != 0:
            self.frames.append(b"\x0f" + data)


@dataclass
class SeatReservation:
    """The matchmaking answer, read flat (0.17/0.18) with a fallback to the nested 0.16 shape."""

    name: str
    room_id: str
    process_id: str
    session_id: str
    public_address: str | None = None
    reconnection_token: str | None = None
    raw: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> SeatReservation:
        if not isinstance(data, dict):
            raise ProtocolError(f"seat reservation is not a JSON object: {data!r}")
        nested = data.get("room") if isinstance(data.get("room"), dict) else {}

        def pick(key: str) -> Any:
            value = data.get(key)
            return nested.get(key) if value is None else value

        room_id, process_id, session_id = pick("roomId"), pick("processId"), data.get("sessionId")
        missing = [k for k, v in (("roomId", room_id), ("processId", process_id), ("sessionId", session_id))
                   if not isinstance(v, str) or not v]
        if missing:
            raise ProtocolError(f"seat reservation lacks {', '.join(missing)}: {data!r}")
        return cls(name=pick("name") or "", room_id=room_id, process_id=process_id, session_id=session_id,
                   public_address=pick("publicAddress"), reconnection_token=data.get("reconnectionToken"),
                   raw=data)
