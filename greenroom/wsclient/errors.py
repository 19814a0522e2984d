"""What the client WebSocket raises, for the opening handshake and the open connection alike.

One hierarchy for both halves, so that a caller catches ``WebSocketError`` (or ``TimeoutError``
for a bounded wait) without knowing whether the upgrade or a later read failed, and a close
code reaches it the same way whoever ended the connection.
"""

from __future__ import annotations


class WebSocketError(Exception):
    """Anything that went wrong on a WebSocket connection."""


class HandshakeError(WebSocketError):
    """The server did not upgrade the connection; ``status`` is its HTTP status (0 if none)."""

    def __init__(self, message: str, status: int = 0, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class WebSocketTimeout(WebSocketError, TimeoutError):
    """A bounded wait on the connection ran out; the message names what was awaited."""


class ConnectionClosed(WebSocketError):
    """The connection is closed; ``code``/``reason`` come from the peer's close frame.

    1006 means the TCP connection ended without a close frame; 1005 means the close frame
    carried no code. ``received`` tells whether a close frame arrived at all.
    """

    def __init__(self, code: int, reason: str = "", received: bool = False) -> None:
        super().__init__(f"WebSocket closed with code {code}" + (f": {reason}" if reason else ""))
        self.code = code
        self.reason = reason
        self.received = received


class PayloadTooBig(ConnectionClosed):
    """A message exceeded ``max_size``; we closed the connection with 1009."""
