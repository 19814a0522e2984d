"""Room sockets: ``ws://host/{processId}/{roomId}?sessionId=...`` (docs/protocol.md, "Frames"
and "Joining").

One greenlet per socket reads frames, decodes them (so a bad payload never reaches the room)
and hands events to the room's engine; the room answers on the client's transport. Whatever
ends the read loop, the room hears that the socket closed, so a seat is never left behind.

A connection is also watched for liveness: a peer that vanished without closing (a phone out of
coverage) never makes ``receive()`` return, so it is pinged, and dropped when it stops
answering (``Room.ping_interval``, ``Room.pong_timeout``); TCP keepalive backs this up.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any

import gevent
from geventwebsocket.exceptions import WebSocketError

from .. import keepalive
from ..engine import ConnectionSettings, RoomEngine
from ..errors import GreenroomError
from ..matchmaker import MatchMaker
from ..metrics import record
from ..protocol import frames
from ..protocol.codes import CloseCode, Code, ErrorCode
from ..protocol.dialect import Dialect
from ..protocol.msgpackr import PayloadError
from ..session import Client
from . import misrouted
from .request import RequestInfo
from .wsfixes import MessageTooBig

log = logging.getLogger("greenroom.socket")

# A bare-path socket (``client.getLatency()`` in sdk 0.18) is closed after this long without a ping.
PING_SOCKET_IDLE = 1.0
# Close code the room sees when the read loop itself failed (a greenroom bug, logged).
INTERNAL_ERROR = 1011
# Close reason of a client cut for sending more than Room.max_messages_per_second.
RATE_EXCEEDED = "too many messages per second"


class WebSocketTransport:
    """Adapts a gevent-websocket connection to the Client's transport."""

    __slots__ = ("ws",)

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    def send(self, data: bytes) -> None:
        self.ws.send_binary(data)

    def close(self, code: int, reason: str = "") -> None:
        self.ws.close(code, reason)

    def terminate(self) -> None:
        self.ws._abort()


class MeteredTransport(WebSocketTransport):
    """A transport that counts what it sends, for a room whose metrics are on (rooms without
    metrics use the plain one, which costs nothing more per frame)."""

    __slots__ = ("meter",)

    def __init__(self, ws: Any, meter: record.RoomMeter) -> None:
        super().__init__(ws)
        self.meter = meter

    def send(self, data: bytes) -> None:
        self.ws.send_binary(data)
        self.meter.sent(len(data))


class Liveness:
    """Pings one connection every ``interval`` seconds; a connection that shows no sign of life
    (a pong, or any frame) within ``timeout`` seconds of a ping is cut, which its read loop
    reports as an abnormal close (1006): a drop, for the room.

    A libev timer, not a greenlet, waits between pings (an idle connection costs no greenlet);
    each ping is sent from a short-lived greenlet, since a send may wait for the socket's lock.
    """

    __slots__ = ("ws", "label", "interval", "timeout", "last_seen", "_pinged_at", "_timer")

    # Timers fire a little early or late: a ping is due when this much of the interval passed.
    _DUE = 0.95

    def __init__(self, ws: Any, label: str, interval: float, timeout: float) -> None:
        self.ws = ws
        self.label = label
        self.interval = interval
        self.timeout = timeout
        self.last_seen = time.monotonic()
        self._pinged_at: float | None = None
        period = min(interval, timeout)
        self._timer: Any = gevent.get_hub().loop.timer(period, period)
        self._timer.start(self._tick)

    def seen(self) -> None:
        self.last_seen = time.monotonic()

    def stop(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.stop()
            timer.close()

    def _alive_since(self, moment: float) -> bool:
        pong = self.ws.last_pong
        return self.last_seen >= moment or (pong is not None and pong >= moment)

    def _tick(self) -> None:
        now = time.monotonic()
        pinged = self._pinged_at
        if pinged is not None and not self._alive_since(pinged):
            if now - pinged >= self.timeout * self._DUE:
                log.info("%s: no answer to a ping for %.1f s; connection dropped", self.label,
                         now - pinged)
                self.stop()
                self.ws._abort()
            return  # the ping is still unanswered: wait for it, send no other
        if pinged is None or now - pinged >= self.interval * self._DUE:
            self._pinged_at = now
            if not self.ws.ping_from_hub():
                gevent.spawn(self._ping)

    def _ping(self) -> None:
        try:
            self.ws.ping()
        except (WebSocketError, OSError):
            pass  # the connection is ending: its reader reports that


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
                      dialect: Dialect, process_id: str = "") -> None:
    request = RequestInfo.from_environ(environ)
    session_id = request.query.get("sessionId", "")
    token = request.query.get("reconnectionToken") or None
    skip_handshake = request.query.get("skipHandshake") not in (None, "", "0", "false")
    engine = matchmaker.engine(room_id)
    meter = engine.meter if engine is not None else record.OFF
    transport = MeteredTransport(ws, meter) if meter.enabled else WebSocketTransport(ws)
    client = Client(transport, session_id, dialect=dialect, request=request)
    if engine is None or not session_id:
        message = "reconnection token invalid or expired." if token else "seat reservation expired."
        if engine is None:
            message = misrouted.explain(matchmaker, process_id) or message
        _refuse(client, room_id, ErrorCode.MATCHMAKE_EXPIRED, message,
                CloseCode.FAILED_TO_RECONNECT if token else CloseCode.WITH_ERROR)
        return
    settings = engine.connection_settings()
    _configure(ws, settings)
    if meter.enabled:
        ws.on_slow_peer = meter.backlog_dropped
    try:
        client = engine.join(client, token, skip_handshake)
    except GreenroomError as exc:
        close = CloseCode.FAILED_TO_RECONNECT if token and exc.code == ErrorCode.MATCHMAKE_EXPIRED \
            else CloseCode.WITH_ERROR
        _refuse(client, room_id, exc.code, exc.message, close)
        return
    label = f"room {room_id} client {client.session_id}"
    liveness = None
    if settings.ping_interval:
        liveness = Liveness(ws, label, settings.ping_interval, settings.pong_timeout)
    code = INTERNAL_ERROR
    try:
        code = _read_loop(engine, client, transport, ws, label, liveness, meter,
                          settings.max_messages_per_second)
    finally:  # whatever ended the loop, the room must hear of it, or the seat stays taken
        if liveness is not None:
            liveness.stop()
        engine.closed(client, transport, code)


def _configure(ws: Any, settings: ConnectionSettings) -> None:
    ws.max_message_size = settings.max_message_size
    ws.send_timeout = settings.send_timeout
    ws.send_backlog = settings.send_backlog
    sock = getattr(ws, "_sock", None) or getattr(getattr(ws, "handler", None), "socket", None)
    if sock is not None:
        keepalive.enable(sock)


def _refuse(client: Client, room_id: str, code: int, message: str, close_code: int) -> None:
    log.info("socket for room %s session %s refused: %d %s", room_id, client.session_id or "-",
             code, message)
    record.active.join_failed("socket", code)
    client.error(code, message)
    client.close(close_code)  # the reason travelled in the ERROR frame, as with Colyseus


def _frames_per_window(max_rate: float | None) -> int:
    """Frames allowed in one second: None, 0 (or less) and infinity allow any number."""
    if not max_rate or max_rate <= 0 or math.isinf(max_rate):
        return sys.maxsize
    return max(1, math.floor(max_rate))


def _read_loop(engine: RoomEngine, client: Client, transport: WebSocketTransport, ws: Any,
               label: str, liveness: Liveness | None, meter: record.RoomMeter,
               max_rate: float | None = None) -> int:
    """Read until the socket closes; returns the close code the room should see.

    The message rate is checked here, before a frame is decoded or reaches the room, so a flood
    costs the room at most ``max_rate`` frames a second. It is a fixed one-second window that
    starts when the previous one overflowed: per frame one addition and one comparison, and
    the clock is read once per ``max_rate`` frames, not per frame. A client is cut only when
    more than ``max_rate`` frames arrived within less than a second (never a false positive);
    like Colyseus' window, a burst straddling two windows may pass up to twice the rate in a
    short span, never more than the rate on average.
    """
    received = meter.received if meter.enabled else None
    budget = _frames_per_window(max_rate)
    count = 0
    window_start = time.monotonic()
    while True:
        try:
            data = ws.receive()
        except MessageTooBig as exc:
            log.warning("%s: %s; closed with 1009", label, exc)
            return CloseCode.MESSAGE_TOO_BIG
        except (WebSocketError, OSError) as exc:
            code = getattr(exc, "code", None) or getattr(ws, "close_code", None) or CloseCode.ABNORMAL
            log.info("%s: connection ended by %s (%d)", label, exc.__class__.__name__, code)
            return code
        if data is None:
            return getattr(ws, "close_code", None) or CloseCode.NO_STATUS
        if client.transport is not transport:
            return CloseCode.ABNORMAL  # a reconnection took this client over: this socket is stale
        count += 1
        if count > budget:
            now = time.monotonic()
            if now - window_start < 1.0:
                log.warning("%s: more than %d messages within one second (max_messages_per_second);"
                            " closed with 4002", label, budget)
                client.close(CloseCode.WITH_ERROR, RATE_EXCEEDED)
                discard = getattr(ws, "discard_input", None)
                if discard is not None:
                    discard()
                return CloseCode.WITH_ERROR
            window_start, count = now, 1
        if liveness is not None:
            liveness.seen()
        if not data:
            continue
        if isinstance(data, str):
            data = data.encode()
        if received is not None:
            received(len(data))
        code = data[0] & 0x1F
        if code == Code.JOIN_ROOM:
            engine.ack(client)
        elif code == Code.PING:
            client.raw(frames.PING)
        elif code == Code.LEAVE_ROOM:
            client.close(CloseCode.CONSENTED)
            return CloseCode.CONSENTED
        else:
            frame = _decode(client, data, label)
            if frame is None:
                return CloseCode.WITH_ERROR
            engine.message(client, frame)


def _decode(client: Client, data: bytes, label: str) -> frames.ClientFrame | None:
    """The frame, or None after telling the client why not (ERROR 4217) and closing with 4002."""
    try:
        return frames.parse_client_frame(data)
    except (frames.FrameError, PayloadError) as exc:
        log.warning("%s: invalid frame (%s); closed with 4002", label, exc)
        reason = str(exc)
    except Exception as exc:  # a decoder bug: the client still gets the protocol's answer
        log.exception("%s: decoding a frame raised %s; closed with 4002 (a greenroom bug: the "
                      "decoder should have refused it as invalid): %s", label,
                      type(exc).__name__, data[:64].hex())
        reason = f"{type(exc).__name__}: {exc}"
    client.error(ErrorCode.INVALID_PAYLOAD, f"invalid payload: {reason}")
    client.close(CloseCode.WITH_ERROR, "invalid payload")
    return None
