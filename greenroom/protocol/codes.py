"""Numbers that travel on the wire (docs/protocol.md, "Codes")."""

from enum import IntEnum


class Code(IntEnum):
    """First byte of every WebSocket frame."""

    JOIN_ROOM = 10
    ERROR = 11
    LEAVE_ROOM = 12
    ROOM_DATA = 13
    ROOM_STATE = 14
    ROOM_STATE_PATCH = 15
    ROOM_DATA_SCHEMA = 16
    ROOM_DATA_BYTES = 17
    PING = 18
    ROOM_INPUT_RELIABLE = 19
    ROOM_INPUT_UNRELIABLE = 20
    ROOM_REQUEST = 21
    ROOM_RESPONSE = 22


class ErrorCode(IntEnum):
    """Matchmaking and room error codes; also the HTTP status of a matchmaking error."""

    MATCHMAKE_NO_HANDLER = 520
    MATCHMAKE_INVALID_CRITERIA = 521
    MATCHMAKE_INVALID_ROOM_ID = 522
    MATCHMAKE_UNHANDLED = 523
    MATCHMAKE_EXPIRED = 524
    AUTH_FAILED = 525
    APPLICATION_ERROR = 526
    INVALID_PAYLOAD = 4217


class CloseCode(IntEnum):
    """WebSocket close codes the clients interpret (docs/protocol.md, "Close codes")."""

    NORMAL = 1000
    GOING_AWAY = 1001
    NO_STATUS = 1005  # a close frame without a code (never sent: what the receiver reports)
    ABNORMAL = 1006  # no close frame at all: the connection was lost (never sent either)
    MESSAGE_TOO_BIG = 1009
    CONSENTED = 4000
    SERVER_SHUTDOWN = 4001
    WITH_ERROR = 4002
    FAILED_TO_RECONNECT = 4003
    MAY_TRY_RECONNECT = 4010


class ResponseStatus(IntEnum):
    """Status byte of a ROOM_RESPONSE (v5 dialect)."""

    OK = 0
    REJECTED = 1
    ERROR = 2
