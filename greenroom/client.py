"""A blocking-style Colyseus client on gevent, for tests, bots and benchmarks.

It speaks what the official clients speak (docs/protocol.md): HTTP matchmaking, then a room WebSocket
in the v3 (colyseus.js 0.16, @colyseus/sdk 0.17) or v5 (@colyseus/sdk 0.18) dialect. Everything
blocks the calling greenlet only, so hundreds of clients run side by side in one process.

Each room has exactly one reader greenlet; it decodes frames in arrival order, runs the
callbacks, fills the message buffer that :meth:`Room.wait_for_message` consumes and resolves
pings and requests. Callbacks therefore run in that greenlet and must not wait on their own
room (that would wait for the very greenlet that is running them; the client detects it and
raises ``RuntimeError``).

Outgoing payloads are plain MessagePack (the official SDKs send msgpackr records; a greenroom
server must accept both, and this client is how the plain side gets tested).
"""

from __future__ import annotations

import http.client
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

import gevent
import gevent.event
import msgpack

from .protocol import frames
from .protocol.codes import Code, ResponseStatus
from .protocol.dialect import Dialect
from .protocol.primitives import (
    decode_number,
    decode_string,
)
from .wsclient import (
    DEFAULT_MAX_SIZE,
    ConnectionClosed,
    HandshakeError,
    WebSocket,
    WebSocketError,
    open_socket,
)
from .wsclient import connect as ws_connect

__all__ = [
    "Client",
    "Room",
    "SeatReservation",
    "JoinRoom",
    "StateDecoder",
    "RawStateDecoder",
    "ClientError",
    "MatchMakeError",
    "ClientTimeout",
    "ClientConnectionError",
    "RoomClosed",
    "RequestError",
    "ProtocolError",
    "parse_join_room",
    "parse_message",
    "parse_error",
    "parse_response",
    "encode_message",
    "encode_bytes_message",
    "encode_request",
]

log = logging.getLogger("greenroom.client")

MessageType = str | int | float
_NOTHING: Any = frames.UNDEFINED  # "no payload", distinct from None (which packs as msgpack nil)


# ---------------------------------------------------------------------------------------- errors


class ClientError(Exception):
    """Base class of every error this module raises."""


class MatchMakeError(ClientError):
    """Matchmaking or joining was refused.

    ``code`` is the server's error code (the JSON ``code``, the ERROR frame's code, or the
    HTTP status / WebSocket close code when nothing more specific was sent). ``close_code``
    is the WebSocket close code when the refusal came over the room socket.
    """

    def __init__(self, code: int | None, message: str, close_code: int | None = None) -> None:
        super().__init__(f"[{code}] {message}" if code is not None else message)
        self.code = code
        self.message = message
        self.close_code = close_code


class ClientTimeout(ClientError, TimeoutError):
    """A bounded wait ran out; the message says what was being waited for."""


class ClientConnectionError(ClientError, ConnectionError):
    """The server could not be reached or the connection failed below the protocol."""


class RoomClosed(ClientError, ConnectionError):
    """The room's socket is closed: nothing can be sent, awaited replies will not come."""

    def __init__(self, code: int | None, reason: str = "", what: str = "") -> None:
        text = f"room socket closed with code {code}" + (f" ({reason})" if reason else "")
        super().__init__(f"{what}: {text}" if what else text)
        self.code = code
        self.reason = reason


class RequestError(ClientError):
    """A v5 ROOM_REQUEST was answered with status REJECTED (1) or ERROR (2); ``payload`` says why."""

    def __init__(self, status: int, payload: Any, request_type: MessageType) -> None:
        try:
            name = ResponseStatus(status).name
        except ValueError:
            name = f"status {status}"
        super().__init__(f"request {request_type!r} answered {name}: {payload!r}")
        self.status = status
        self.payload = payload


class ProtocolError(ClientError):
    """The server sent something the protocol does not allow."""


# ------------------------------------------------------------------------------- frame codecs


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


# ------------------------------------------------------------------------------------- state


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


# ------------------------------------------------------------------------------------- client


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


class _HTTPConnection(http.client.HTTPConnection):
    """http.client over a gevent socket, so matchmaking never blocks the hub unpatched."""

    ssl_context: Any = None
    secure = False

    def connect(self) -> None:
        self.sock = open_socket(self.host, self.port, self.timeout, self.secure, self.ssl_context)


class Client:
    """Entry point: matchmaking plus room connections for one server endpoint.

    ``endpoint`` is ``ws://``, ``wss://``, ``http://`` or ``https://`` host[:port] with an
    optional path prefix and query, both put in front of every request as the SDKs do.
    ``state_decoder`` is a zero-argument factory called once per room (default
    :class:`RawStateDecoder`; ``functools.partial(RawStateDecoder, keep=0)`` for load tests).
    ``message_buffer`` caps, per room, the messages kept for :meth:`Room.wait_for_message`
    (oldest dropped first; 0 keeps none). ``headers`` go on matchmaking requests only, as a
    browser cannot put headers on a WebSocket. The client object holds no connection and can
    be shared by many greenlets; a room holds its socket and reader greenlet until it is
    closed, so leave() or drop() rooms you are done with.
    """

    def __init__(self, endpoint: str = "ws://127.0.0.1:2567", *, dialect: Dialect | str = Dialect.V3,
                 auth_token: str | None = None, headers: dict[str, str] | None = None,
                 state_decoder: Callable[[], StateDecoder] | None = None,
                 max_message_size: int | None = DEFAULT_MAX_SIZE, message_buffer: int = 1000,
                 ssl_context: Any = None) -> None:
        parts = urlsplit(endpoint)
        scheme = parts.scheme.lower()
        if scheme not in ("ws", "wss", "http", "https"):
            raise ValueError(f"endpoint must be ws://, wss://, http:// or https://, not {endpoint!r}")
        if not parts.hostname:
            raise ValueError(f"endpoint has no host: {endpoint!r}")
        self.secure = scheme in ("wss", "https")
        self.host = parts.hostname
        self.port = parts.port or (443 if self.secure else 80)
        self.path = parts.path.rstrip("/")
        self.query = parts.query
        self.dialect = Dialect.parse(dialect)
        self.auth_token = auth_token
        self.headers = dict(headers or {})
        self.state_decoder = state_decoder or RawStateDecoder
        self.max_message_size = max_message_size
        self.message_buffer = message_buffer
        self.ssl_context = ssl_context
        netloc = f"[{self.host}]" if ":" in self.host else self.host
        self.netloc = f"{netloc}:{self.port}"
        self.http_base = f"{'https' if self.secure else 'http'}://{self.netloc}{self.path}"
        self.ws_base = f"{'wss' if self.secure else 'ws'}://{self.netloc}{self.path}"

    def __repr__(self) -> str:
        return f"<Client {self.ws_base} {self.dialect.value}>"

    # -------------------------------------------------------------- matchmaking

    def join_or_create(self, name: str, options: dict | None = None, timeout: float = 10.0) -> Room:
        """Matchmake, open the room socket and return once JOIN_ROOM was acknowledged.

        ``timeout`` bounds the whole join (HTTP, upgrade, JOIN_ROOM). Refusals raise
        :class:`MatchMakeError`, whether they come as HTTP errors, as an ERROR frame or as a
        close before JOIN_ROOM; ``create``, ``join`` and ``join_by_id`` behave alike.
        """
        return self._join("joinOrCreate", name, options, timeout)

    def create(self, name: str, options: dict | None = None, timeout: float = 10.0) -> Room:
        return self._join("create", name, options, timeout)

    def join(self, name: str, options: dict | None = None, timeout: float = 10.0) -> Room:
        return self._join("join", name, options, timeout)

    def join_by_id(self, room_id: str, options: dict | None = None, timeout: float = 10.0) -> Room:
        return self._join("joinById", room_id, options, timeout)

    def reconnect(self, reconnection_token: str, timeout: float = 10.0) -> Room:
        """Reclaim a seat with ``room.reconnection_token`` ("roomId:token"), as after a page reload."""
        room_id, _, token = reconnection_token.partition(":")
        if not room_id or not token:
            raise ValueError("reconnection token must look like 'roomId:token' (room.reconnection_token)")
        deadline = time.monotonic() + timeout
        reservation = self.matchmake("reconnect", room_id, {"reconnectionToken": token}, timeout)
        reservation.reconnection_token = token  # the SDKs put the token they posted in the URL (§8)
        return self.consume_seat_reservation(reservation, _remaining(deadline))

    def _join(self, method: str, name: str, options: dict | None, timeout: float) -> Room:
        deadline = time.monotonic() + timeout
        reservation = self.matchmake(method, name, options, timeout)
        return self.consume_seat_reservation(reservation, _remaining(deadline))

    def matchmake(self, method: str, name: str, options: dict | None = None,
                  timeout: float = 10.0) -> SeatReservation:
        """``POST {base}/matchmake/{method}/{name}`` and return the seat reservation.

        Non-2xx answers raise :class:`MatchMakeError` with the body's ``code`` (else the HTTP
        status) and its ``error``/``message`` text.
        """
        path = f"{self.path}/matchmake/{method}/{quote(name, safe='')}"
        if self.query:
            path += f"?{self.query}"
        status, reason, content_type, body = self._post_json(path, {} if options is None else options, timeout)
        url = f"{self.http_base}/matchmake/{method}/{name}"
        data: Any = None
        if "json" in content_type:
            try:
                data = json.loads(body or b"null")
            except ValueError:
                if 200 <= status < 300:
                    raise ProtocolError(f"POST {url}: HTTP {status} with a body that is not JSON: {body[:200]!r}") from None
        if not 200 <= status < 300:
            code: Any = data.get("code") if isinstance(data, dict) else None
            message = None
            if isinstance(data, dict):
                message = data.get("error") or data.get("message")
            raise MatchMakeError(code if isinstance(code, int) else status,
                                 str(message or reason or f"HTTP {status}"))
        if "json" not in content_type:
            raise ProtocolError(f"POST {url}: HTTP {status} with Content-Type {content_type!r}; "
                                "the official clients only read JSON bodies")
        if isinstance(data, dict) and "error" in data and "roomId" not in data:
            # The 0.17/0.18 SDKs would mistake this for a reservation (docs/protocol.md, "Matchmaking"): report it.
            raise MatchMakeError(data.get("code") if isinstance(data.get("code"), int) else status,
                                 f"{data['error']} (sent with HTTP {status}; errors need a non-2xx status)")
        return SeatReservation.from_json(data)

    def _post_json(self, path: str, payload: Any, timeout: float) -> tuple[int, str, str, bytes]:
        body = json.dumps(payload).encode("utf-8")
        headers = {"Accept": "application/json", "Content-Type": "application/json",
                   "Content-Length": str(len(body))}
        if self.auth_token:
            headers["Authorization"] = f"Bearer {self.auth_token}"
        headers.update(self.headers)
        conn = _HTTPConnection(self.host, self.port, timeout=timeout)
        conn.secure = self.secure
        conn.ssl_context = self.ssl_context
        url = f"{self.http_base}{path[len(self.path):]}"
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, response.reason, response.getheader("Content-Type") or "", data
        except TimeoutError:
            raise ClientTimeout(f"no matchmaking response from POST {url} within {timeout} s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise ClientConnectionError(f"POST {url} failed: {exc!r}") from exc
        finally:
            conn.close()

    # -------------------------------------------------------------- rooms

    def room_url(self, reservation: SeatReservation, extra: dict[str, str] | None = None) -> str:
        """The room socket URL the SDKs would open for ``reservation`` (docs/protocol.md, "Endpoints")."""
        scheme = "wss" if self.secure else "ws"
        base = f"{scheme}://{reservation.public_address}" if reservation.public_address else self.ws_base
        params = {"sessionId": reservation.session_id}
        if reservation.reconnection_token:
            params["reconnectionToken"] = reservation.reconnection_token
        if self.auth_token:
            params["_authToken"] = self.auth_token
        params.update(extra or {})
        query = "&".join(filter(None, (self.query, urlencode(params))))
        return f"{base}/{reservation.process_id}/{reservation.room_id}?{query}"

    def consume_seat_reservation(self, reservation: SeatReservation | dict, timeout: float = 10.0) -> Room:
        """Open the room socket for a reservation and return once JOIN_ROOM was acknowledged."""
        if isinstance(reservation, dict):
            reservation = SeatReservation.from_json(reservation)
        room = Room(self, reservation)
        room._connect(self.room_url(reservation), timeout)
        return room


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


# --------------------------------------------------------------------------------------- room


class _Waiter:
    __slots__ = ("msg_type", "result")

    def __init__(self, msg_type: MessageType | None) -> None:
        self.msg_type = msg_type
        self.result = gevent.event.AsyncResult()


def _remover(lst: list, item: Any) -> Callable[[], None]:
    def remove() -> None:
        try:
            lst.remove(item)
        except ValueError:
            pass
    return remove


class Room:
    """A joined room. Obtain one from :class:`Client`; all methods are greenlet-safe."""

    def __init__(self, client: Client, reservation: SeatReservation) -> None:
        self.client = client
        self.reservation = reservation
        self.dialect = client.dialect
        self.name = reservation.name
        self.room_id = reservation.room_id
        self.process_id = reservation.process_id
        self.session_id = reservation.session_id
        self.reconnection_token: str | None = None  # "roomId:token", after JOIN_ROOM
        self.serializer_id: str | None = None
        self.handshake = b""
        self.join_sections: dict[int, bytes] = {}
        #: The latest JOIN_ROOM as decoded (a resume() gets a new one, usually without handshake).
        self.last_join: JoinRoom | None = None
        self.state_decoder: StateDecoder = client.state_decoder()
        #: How many ROOM_STATE / ROOM_STATE_PATCH frames were applied.
        self.state_version = 0
        #: ERROR frames received after the join, as (code, message).
        self.errors: list[tuple[int, str]] = []
        #: Frames this client could not make sense of; a test can assert it stays empty.
        self.protocol_errors: list[str] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.joined = False
        self.url = ""

        self._ws: WebSocket | None = None
        self._reader: gevent.Greenlet | None = None
        self._join_result = gevent.event.AsyncResult()
        self._join_error: tuple[int, str] | None = None
        self._released = gevent.event.Event()
        self._closed = gevent.event.Event()
        self._message_handlers: dict[MessageType, list[Callable]] = {}
        self._leave_handlers: list[Callable] = []
        self._error_handlers: list[Callable] = []
        self._state_handlers: list[Callable] = []
        self._buffer: deque[tuple[MessageType, Any]] = deque(maxlen=client.message_buffer)
        self._waiters: list[_Waiter] = []
        self._state_event = gevent.event.Event()
        self._pings: deque[tuple[float, gevent.event.AsyncResult]] = deque()
        self._requests: dict[int, tuple[MessageType, gevent.event.AsyncResult]] = {}
        self._next_request_id = 0

    def __repr__(self) -> str:
        state = "open" if self.joined and not self._closed.is_set() else f"closed {self.close_code}"
        return f"<Room {self.name} {self.room_id} session={self.session_id} {state}>"

    def __enter__(self) -> Room:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Leave (consented) so a failing test does not leave a seat and a reader behind."""
        if self._closed.is_set():
            return
        try:
            self.leave()
        except (ClientError, RuntimeError):
            self.drop()

    # -------------------------------------------------------------- properties

    @property
    def state(self) -> Any:
        """The decoder's state (the raw body of the last state frame with the default decoder)."""
        return self.state_decoder.state

    @property
    def state_frames(self) -> deque[bytes]:
        """Whole ROOM_STATE / ROOM_STATE_PATCH frames kept by :class:`RawStateDecoder`."""
        frames = getattr(self.state_decoder, "frames", None)
        if frames is None:
            raise AttributeError(f"{type(self.state_decoder).__name__} keeps no raw frames")
        return frames

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def ws(self) -> WebSocket | None:
        """The underlying WebSocket, for tests that need frame-level control."""
        return self._ws

    # -------------------------------------------------------------- callbacks

    def on_message(self, msg_type: MessageType, callback: Callable) -> Callable[[], None]:
        """``callback(payload)`` for ``msg_type``; ``"*"`` gets ``(type, payload)`` for types without
        a handler of their own (as in the SDKs). Returns a function that unregisters it."""
        handlers = self._message_handlers.setdefault(msg_type, [])
        handlers.append(callback)
        return _remover(handlers, callback)

    def on_leave(self, callback: Callable[[int, str], Any]) -> Callable[[], None]:
        """``callback(code, reason)`` when the socket closes after the join, whoever closed it."""
        self._leave_handlers.append(callback)
        return _remover(self._leave_handlers, callback)

    def on_error(self, callback: Callable[[int, str], Any]) -> Callable[[], None]:
        """``callback(code, message)`` for each ERROR frame after the join."""
        self._error_handlers.append(callback)
        return _remover(self._error_handlers, callback)

    def on_state_change(self, callback: Callable[[Any], Any]) -> Callable[[], None]:
        """``callback(state)`` after every full state and patch; ``state`` is the decoder's ``.state``."""
        self._state_handlers.append(callback)
        return _remover(self._state_handlers, callback)

    # -------------------------------------------------------------- sending

    def send(self, msg_type: MessageType, payload: Any = _NOTHING) -> None:
        """ROOM_DATA. Without ``payload`` no payload bytes are sent; ``None`` sends msgpack nil."""
        self._send(encode_message(msg_type, payload))

    def send_bytes(self, msg_type: MessageType, data: bytes | bytearray | memoryview) -> None:
        """ROOM_DATA_BYTES."""
        self._send(encode_bytes_message(msg_type, data))

    def send_raw(self, frame: bytes | bytearray | memoryview) -> None:
        """Send ``frame`` as one binary WebSocket message, unchanged (for malformed-frame tests)."""
        self._send(bytes(frame))

    def _send(self, frame: bytes) -> None:
        ws = self._ws
        if ws is None or self._closed.is_set():
            raise RoomClosed(self.close_code, self.close_reason or "", "cannot send")
        try:
            ws.send(frame)
        except (ConnectionClosed, OSError) as exc:
            code = getattr(exc, "code", 1006)
            raise RoomClosed(code, getattr(exc, "reason", str(exc)), "cannot send") from exc

    # -------------------------------------------------------------- waiting

    def _check_not_reader(self, what: str) -> None:
        if gevent.getcurrent() is self._reader:
            raise RuntimeError(f"cannot wait for {what} inside a callback of the same room: the callback "
                               "runs in the greenlet that would have to deliver it (spawn a greenlet)")

    def wait_for_message(self, msg_type: MessageType = "*", timeout: float | None = 10.0) -> Any:
        """Return the payload of the next message of ``msg_type``, buffered or yet to come.

        Messages nobody waited for are buffered (the newest ``Client.message_buffer``), so a
        message that arrived before this call is returned, oldest first. ``"*"`` takes the next
        message of any type and returns ``(type, payload)``.
        """
        for i, (t, payload) in enumerate(self._buffer):
            if msg_type == "*" or t == msg_type:
                del self._buffer[i]
                return (t, payload) if msg_type == "*" else payload
        if self._closed.is_set():
            raise RoomClosed(self.close_code, self.close_reason or "", f"no message {msg_type!r} buffered")
        self._check_not_reader(f"message {msg_type!r}")
        waiter = _Waiter(msg_type)
        self._waiters.append(waiter)
        try:
            return waiter.result.get(timeout=timeout)
        except gevent.Timeout:
            if waiter.result.successful():  # handed over in the very iteration the timer fired
                return waiter.result.value
            raise ClientTimeout(f"no message {msg_type!r} in room {self.room_id} within {timeout} s") from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def wait_for_state(self, predicate: Callable[[Any], bool] | None = None,
                       timeout: float | None = 10.0) -> Any:
        """Wait until ``predicate(room.state)`` holds (checked now, then after each state frame)
        and return the state. Without a predicate: until a first state frame arrived."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            event = self._state_event  # taken before the check: a frame after it wakes us
            if self.state_version > 0 and (predicate is None or predicate(self.state)):
                return self.state
            if self._closed.is_set():
                raise RoomClosed(self.close_code, self.close_reason or "", "state condition not reached")
            self._check_not_reader("a state change")
            remaining = None if deadline is None else _remaining(deadline)
            if remaining is not None and remaining <= 0:
                raise ClientTimeout(f"state of room {self.room_id} did not reach the condition within {timeout} s")
            event.wait(remaining)

    def ping(self, timeout: float = 5.0) -> float:
        """PING (0x12) round trip in seconds (0.17/0.18 servers)."""
        self._check_not_reader("a PING reply")
        result = gevent.event.AsyncResult()
        entry = (time.perf_counter(), result)
        self._pings.append(entry)
        try:
            self._send(b"\x12")
        except RoomClosed:
            self._pings.remove(entry)
            raise
        try:
            return result.get(timeout=timeout)
        except gevent.Timeout:
            if result.successful():
                return result.value
            # The entry stays queued: a late reply must be matched to it, not to a newer ping.
            raise ClientTimeout(f"no PING reply from room {self.room_id} within {timeout} s") from None

    def request(self, msg_type: MessageType, payload: Any = _NOTHING, timeout: float = 10.0) -> Any:
        """v5 ROOM_REQUEST; returns the OK payload, raises :class:`RequestError` otherwise."""
        self._check_not_reader(f"a response to {msg_type!r}")
        request_id = self._next_request_id
        self._next_request_id += 1
        frame = encode_request(request_id, msg_type, payload)
        result = gevent.event.AsyncResult()
        self._requests[request_id] = (msg_type, result)
        try:
            self._send(frame)
            status, answer = result.get(timeout=timeout)
        except gevent.Timeout:
            if result.successful():
                status, answer = result.value
            else:
                hint = " (ROOM_REQUEST exists only in the v5 dialect)" if self.dialect is Dialect.V3 else ""
                raise ClientTimeout(f"no ROOM_RESPONSE to request #{request_id} {msg_type!r} "
                                    f"within {timeout} s{hint}") from None
        finally:
            self._requests.pop(request_id, None)
        if status == ResponseStatus.OK:
            return answer
        raise RequestError(status, answer, msg_type)

    # -------------------------------------------------------------- leaving

    def leave(self, consented: bool = True, timeout: float = 5.0) -> int | None:
        """Leave and return the server's close code (4000 for a consented leave).

        ``consented=False`` closes the socket without LEAVE_ROOM (no close code, as a browser
        does). From inside a callback of this room it only starts leaving and returns None.
        """
        if self._closed.is_set():
            return self.close_code
        ws = self._ws
        assert ws is not None
        try:
            if consented:
                ws.send(bytes((Code.LEAVE_ROOM,)))
            else:
                ws.send_close(None)  # the reader greenlet receives the server's reply
        except ConnectionClosed:
            pass
        if gevent.getcurrent() is self._reader:
            return None
        if not self._closed.wait(timeout):
            ws.abort()
            raise ClientTimeout(f"server did not close room {self.room_id} within {timeout} s after "
                                f"{'LEAVE_ROOM' if consented else 'our close frame'}")
        return self.close_code

    def drop(self) -> None:
        """Cut the TCP connection without a close frame: a network failure, for reconnection tests."""
        if self._ws is not None:
            self._ws.abort()

    def wait_closed(self, timeout: float | None = 10.0) -> tuple[int | None, str | None]:
        """Wait until the room socket is closed; return ``(code, reason)``."""
        self._check_not_reader("the room to close")
        if not self._closed.wait(timeout):
            raise ClientTimeout(f"room {self.room_id} still open after {timeout} s")
        return self.close_code, self.close_reason

    def resume(self, timeout: float = 10.0) -> None:
        """Reopen the socket of a dropped room as the SDKs' automatic reconnection does (§8).

        Same URL plus ``reconnectionToken`` and ``skipHandshake=true``; callbacks, buffered
        messages and the state decoder are kept.
        """
        if not self._closed.is_set():
            raise RuntimeError("room socket is still open; drop() or wait for the disconnection first")
        if not self.reconnection_token:
            raise RuntimeError("room was never joined: no reconnection token")
        token = self.reconnection_token.partition(":")[2]
        url = self.client.room_url(self.reservation, {"reconnectionToken": token, "skipHandshake": "true"})
        self._join_result = gevent.event.AsyncResult()
        self._join_error = None
        self._released = gevent.event.Event()
        self._closed = gevent.event.Event()
        self.close_code = self.close_reason = None
        self._connect(url, timeout)

    # -------------------------------------------------------------- connection

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


_HANDLERS: dict[int, Callable[[Room, bytes], None]] = {
    Code.JOIN_ROOM: Room._on_join_room,
    Code.ERROR: Room._on_error,
    Code.LEAVE_ROOM: Room._on_leave_room,
    Code.ROOM_DATA: Room._on_message,
    Code.ROOM_DATA_BYTES: Room._on_message,
    Code.ROOM_STATE: Room._on_state,
    Code.ROOM_STATE_PATCH: Room._on_state,
    Code.PING: Room._on_ping,
    Code.ROOM_RESPONSE: Room._on_response,
}
