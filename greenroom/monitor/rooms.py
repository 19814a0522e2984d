"""What the monitor reads from and does to one room of this process.

Everything here runs in the room's line of execution (``call_in_room``), so a snapshot is never
taken half-way through a handler, and actions interleave with the room's own events exactly as
a client's message would. Only the room's public API is used. Results are plain JSON values:
they may travel to another process over presence before they reach the page.
"""

from __future__ import annotations

import math
from typing import Any

from ..in_room import call_in_room
from ..protocol.codes import CloseCode

# Bound on how much of an arbitrary value (auth, user data, a custom state) a snapshot carries.
_MAX_DEPTH = 32
_MAX_REPR = 200


class RoomNotFound(LookupError):
    """No such room (in this process, or anywhere in the deployment)."""


class BadRequest(ValueError):
    """The action's arguments are invalid; the message says which and why."""


def jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON types: Schema state through its ``to_json``, anything else as a repr."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)  # JSON has no NaN or Infinity
    if depth >= _MAX_DEPTH:
        return "…"
    to_json = getattr(value, "to_json", None)
    if callable(to_json) and not isinstance(value, type):
        return jsonable(to_json(), depth + 1)
    if isinstance(value, dict):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    text = repr(value)
    return text if len(text) <= _MAX_REPR else text[:_MAX_REPR] + "…"


def describe(room: Any) -> dict[str, Any]:
    return call_in_room(room, _describe, room)


def dispose(room: Any) -> None:
    """Close every client (4000, as ``Room.disconnect``), then dispose of the room; returns
    once it is disposed and unlisted (at most the 5 s ``disconnect`` gives its clients)."""
    call_in_room(room, room.disconnect)
    room._gr.wait_disposed(6.0)


def kick(room: Any, session_id: str, code: int = CloseCode.CONSENTED) -> None:
    call_in_room(room, _kick, room, session_id, check_close_code(code))


def send(room: Any, message_type: Any, message: Any, session_id: str | None = None) -> int:
    """Broadcast ``message``, or send it to one client; returns how many clients it went to."""
    if not isinstance(message_type, (str, int)) or isinstance(message_type, bool) \
            or message_type == "":
        raise BadRequest("message type must be a non-empty string or an integer")
    return call_in_room(room, _send, room, message_type, message, session_id)


def check_close_code(code: Any) -> int:
    if isinstance(code, bool) or not isinstance(code, int) or not (code == 1000 or 3000 <= code <= 4999):
        raise BadRequest(f"close code must be 1000 or 3000-4999, not {code!r}")
    return code


# -- in the room ------------------------------------------------------------------------------
def _describe(room: Any) -> dict[str, Any]:
    listing = room.listing
    return {
        "roomId": room.room_id,
        "name": room.room_name,
        "processId": room.process_id,
        "clients": [_client(client) for client in room.clients],
        "seats": listing.clients if listing is not None else len(room.clients),
        "maxClients": room.max_clients,
        "locked": room.locked,
        "private": room.private,
        "metadata": jsonable(room.metadata),
        "createdAt": listing.created_at if listing is not None else None,
        "stateType": type(room.state).__name__ if room.state is not None else None,
        "state": jsonable(room.state),
    }


def _client(client: Any) -> dict[str, Any]:
    request = client.request
    return {
        "sessionId": client.session_id,
        "state": getattr(client.state, "value", str(client.state)),
        "ip": getattr(request, "ip", None),
        "dialect": getattr(client.dialect, "value", str(client.dialect)),
        "auth": jsonable(client.auth),
        "userData": jsonable(client.user_data),
    }


def _kick(room: Any, session_id: str, code: int) -> None:
    for client in room.clients:
        if client.session_id == session_id:
            client.leave(code)
            return
    raise RoomNotFound(f"room {room.room_id} has no client {session_id!r}")


def _send(room: Any, message_type: Any, message: Any, session_id: str | None) -> int:
    if session_id is None:
        room.broadcast(message_type, message)
        return len(room.clients)
    for client in room.clients:
        if client.session_id == session_id:
            client.send(message_type, message)
            return 1
    raise RoomNotFound(f"room {room.room_id} has no client {session_id!r}")
