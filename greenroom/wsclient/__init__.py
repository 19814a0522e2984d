"""A small RFC 6455 WebSocket client on gevent sockets.

greenroom's Python client (``greenroom.client``) needs thousands of cheap connections in one
process and byte-level control for negative tests (raw frames, fragments, unmasked frames, odd
close codes). The ``websockets`` package is asyncio-based and its sync client uses a thread per
connection, so this package keeps the protocol itself small and gevent-native: :func:`connect`
runs the opening handshake (handshake.py) and returns a :class:`WebSocket`, the open connection
(connection.py), which writes and parses frames (frames.py); all raise the exceptions of
errors.py.
"""

from .connection import (
    DEFAULT_MAX_SIZE,  # noqa: F401  (not in __all__, as before the split; greenroom.client uses it)
    WebSocket,
)
from .errors import (
    ConnectionClosed,
    HandshakeError,
    PayloadTooBig,
    WebSocketError,
    WebSocketTimeout,
)
from .frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
)
from .handshake import connect, open_socket

__all__ = [
    "WebSocket",
    "connect",
    "open_socket",
    "WebSocketError",
    "HandshakeError",
    "ConnectionClosed",
    "PayloadTooBig",
    "WebSocketTimeout",
    "OP_CONTINUATION",
    "OP_TEXT",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
]
