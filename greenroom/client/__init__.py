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

from .errors import (
    ClientConnectionError,
    ClientError,
    ClientTimeout,
    MatchMakeError,
    ProtocolError,
    RequestError,
    RoomClosed,
)
from .matchmaking import Client
from .room import Room
from .wire import (
    JoinRoom,
    RawStateDecoder,
    SeatReservation,
    StateDecoder,
    encode_bytes_message,
    encode_message,
    encode_request,
    parse_error,
    parse_join_room,
    parse_message,
    parse_response,
)

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
