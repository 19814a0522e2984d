"""The Python client's exceptions: what a test or bot catches."""

from __future__ import annotations

from typing import Any

from ..protocol.codes import ResponseStatus

MessageType = str | int | float


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
