"""Errors with a wire code: raised by the matchmaker and rooms, turned into HTTP or ERROR frames."""

from __future__ import annotations

from .protocol.codes import ErrorCode


class GreenroomError(Exception):
    """Base of the errors that carry a protocol code and a message for the client."""

    code: int = ErrorCode.MATCHMAKE_UNHANDLED

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = int(code)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class MatchMakeError(GreenroomError):
    """A matchmaking request that cannot be served (HTTP status = code)."""


class SeatReservationError(GreenroomError):
    code = ErrorCode.MATCHMAKE_EXPIRED


class AuthError(GreenroomError):
    """Raise from ``on_auth`` to refuse a client with your own message (code 525 by default)."""

    code = ErrorCode.AUTH_FAILED


class ServiceUnavailable(GreenroomError):
    """A backend (Redis, MongoDB) is unreachable, or the server is shutting down."""

    code = 503
