"""Room sockets: ``ws://host/{processId}/{roomId}?sessionId=...`` (PROTOCOL.md §3, §4).

One greenlet per socket reads frames, decodes them (so a bad payload never reaches the room)
and posts events to the room's inbox; the room answers on the client's transport.
"""

from __future__ import annotations

import logging
from typing import Any

import gevent
from geventwebsocket.exceptions import WebSocketError

from ..errors import GreenroomError
from ..inbox import InboxClosed
from ..matchmaker import MatchMaker
from ..protocol import frames
from ..protocol.codes import CloseCode, Code, ErrorCode
from ..protocol.dialect import Dialect
from ..protocol.msgpackr import PayloadError
from ..session import Client
from .request import RequestInfo
from .wsfixes import MessageTooBig

log = logging.getLogger("greenroom.socket")

# A bare-path socket (``client.getLatency()`` in sdk 0.18) is closed after this long without a ping.
PING_SOCKET_IDLE = 1.0


class WebSocketTransport:
    """Adapts a gevent-websocket connection to the Client's transport."""

    __slots__ = ("ws",)

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    def send(self, data: bytes) -> None:
        self.ws.send(data, binary=True)

    def close(self, code: int, reason: str = "") -> None:
        self.ws.close(code, reason)

    def terminate(self) -> None:
        self.ws._abort()


def serve_ping_socket(ws: Any) -> None:
    """Answer PING frames on a socket that belongs to no room."""
    while True:
        with gevent.Timeout(PING_SOCKET_IDLE, False):
            data = ws.receive()
            if data and data[0] == Code.PING:
                ws.send(frames.PING, binary=True)
                continue
        break
    ws.close(CloseCode.NORMAL, "")


def serve_room_socket(matchmaker: MatchMaker, environ: dict[str, Any], ws: Any, room_id: str,
                      dialect: Dialect) -> None:
    request = RequestInfo.from_environ(environ)
    session_id = request.query.get("sessionId", "")
    token = request.query.get("reconnectionToken") or None
    skip_handshake = request.query.get("skipHandshake") not in (None, "", "0", "false")
    transport = WebSocketTransport(ws)
    client = Client(transport, session_id, dialect=dialect, request=request)
    room = matchmaker.get_room(room_id)
    if room is None or not session_id:
        _refuse(client, room_id, ErrorCode.MATCHMAKE_EXPIRED,
                "reconnection token invalid or expired." if token else "seat reservation expired.",
                CloseCode.FAILED_TO_RECONNECT if token else CloseCode.WITH_ERROR)
        return
    ws.max_message_size = room.max_message_size
    ws.send_timeout = room.send_timeout
    ws.send_backlog = room.send_backlog
    try:
        client = room._inbox.call(room._join, client, token, skip_handshake)
    except GreenroomError as exc:
        close = CloseCode.FAILED_TO_RECONNECT if token and exc.code == ErrorCode.MATCHMAKE_EXPIRED \
            else CloseCode.WITH_ERROR
        _refuse(client, room_id, exc.code, exc.message, close)
        return
    except InboxClosed:
        _refuse(client, room_id, ErrorCode.MATCHMAKE_EXPIRED, "seat reservation expired.",
                CloseCode.WITH_ERROR)
        return
    code = _read_loop(room, client, ws)
    room._inbox.post(room._closed, client, code)


def _refuse(client: Client, room_id: str, code: int, message: str, close_code: int) -> None:
    log.info("socket for room %s session %s refused: %d %s", room_id, client.session_id or "-",
             code, message)
    client.error(code, message)
    client.close(close_code)  # the reason travelled in the ERROR frame, as with Colyseus


def _read_loop(room: Any, client: Client, ws: Any) -> int:
    """Read until the socket closes; returns the close code the room should see."""
    post = room._inbox.post
    while True:
        try:
            data = ws.receive()
        except MessageTooBig as exc:
            log.warning("room %s client %s: %s; closed with 1009", room.room_id, client.session_id, exc)
            return CloseCode.MESSAGE_TOO_BIG
        except (WebSocketError, OSError) as exc:
            code = getattr(exc, "code", None) or getattr(ws, "close_code", None) or 1006
            log.info("room %s client %s: connection ended by %s (%d)", room.room_id,
                     client.session_id, exc.__class__.__name__, code)
            return code
        if data is None:
            return getattr(ws, "close_code", None) or 1005
        if not data:
            continue
        if isinstance(data, str):
            data = data.encode()
        code = data[0] & 0x1F
        if code == Code.JOIN_ROOM:
            post(room._ack, client)
        elif code == Code.PING:
            client.raw(frames.PING)
        elif code == Code.LEAVE_ROOM:
            client.close(CloseCode.CONSENTED)
            return CloseCode.CONSENTED
        else:
            try:
                frame = frames.parse_client_frame(data)
            except (frames.FrameError, PayloadError) as exc:
                log.warning("room %s client %s: invalid frame (%s); closed with 4002",
                            room.room_id, client.session_id, exc)
                client.error(ErrorCode.INVALID_PAYLOAD, f"invalid payload: {exc}")
                client.close(CloseCode.WITH_ERROR, "invalid payload")
                return CloseCode.WITH_ERROR
            post(room._message, client, frame)
