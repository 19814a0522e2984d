"""The class-level auth hook, ``Room.on_auth_request``: a client is judged in its matchmaking
request, before any room is created or seat reserved, so that a refused client costs nothing
(README, "Authentication").

The instance hook ``on_auth`` runs later, on the room socket and in the room's line of execution:
by then joinOrCreate may already have created a room for a client it then refuses. Colyseus
added ``static onAuth`` for that reason; this is greenroom's counterpart, with the same rules:
its truthy return becomes ``client.auth`` (and on_join's ``auth``) and ``on_auth`` is then not
called; a falsy return is 525 "onAuth failed"; ``AuthError(message, code)`` answers with its
own message and code; any other exception is 526 with its message.

What the hook returns travels with the seat reservation, possibly to another process (the
matchmaker's RPC over presence) and, with ``--migrate``, to new code: it must be JSON (dicts,
lists, strings, numbers, booleans, None). It is copied through JSON here, in every set-up, so a
room sees the same value with one process as with many, and a value that could not travel is
refused on the first request of a developer's machine, not in production.
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any

from .errors import AuthError, GreenroomError
from .protocol.codes import ErrorCode
from .room import Room

__all__ = ["authenticate_request", "check_auth_hooks", "has_request_hook"]

log = logging.getLogger("greenroom.auth")

HOOK = "on_auth_request"


def has_request_hook(room_cls: type[Room]) -> bool:
    """Whether ``room_cls`` (or a base other than Room) defines ``on_auth_request``."""
    return inspect.getattr_static(room_cls, HOOK) is not inspect.getattr_static(Room, HOOK)


def check_auth_hooks(name: str, room_cls: type[Room]) -> None:
    """At ``define`` time: the hook must be a classmethod or staticmethod (a plain method would
    be called without an instance and fail on every join), and a room with both hooks is told,
    once, that ``on_auth`` will not run."""
    if not has_request_hook(room_cls):
        return
    hook = inspect.getattr_static(room_cls, HOOK)
    if not isinstance(hook, classmethod | staticmethod):
        raise TypeError(f"room {name!r}: {room_cls.__name__}.{HOOK} runs before any room exists "
                        "(in the matchmaking request): declare it with @classmethod, as "
                        f"'def {HOOK}(cls, token, options, request)'")
    if inspect.getattr_static(room_cls, "on_auth") is not inspect.getattr_static(Room, "on_auth"):
        log.info("room %r: %s defines both %s and on_auth; on_auth will not be called for "
                 "clients admitted by %s", name, room_cls.__name__, HOOK, HOOK)


def authenticate_request(name: str, room_cls: type[Room], options: dict[str, Any],
                         request: Any) -> Any:
    """Run ``room_cls.on_auth_request``; its (JSON-copied) value, or None when the class has no
    such hook. Raises AuthError (525, or 526 for an exception) when the client is refused.

    Runs in the request's greenlet, outside any room: it may block (a database, an identity
    provider) without holding up a room."""
    if not has_request_hook(room_cls):
        return None
    token = getattr(request, "token", None) if request is not None else None
    try:
        auth = getattr(room_cls, HOOK)(token, options, request)
    except GreenroomError as exc:
        if 400 <= exc.code <= 599:
            raise
        # Its code is the HTTP status: a 2xx would be taken for a seat by 0.17/0.18 clients.
        raise AuthError(exc.message, ErrorCode.AUTH_FAILED) from exc
    except Exception as exc:
        # A refusal of the client's input (a bad token) as much as a bug: one line, the
        # traceback at debug level for whoever looks for it.
        log.debug("room %r: %s raised", name, HOOK, exc_info=True)
        raise AuthError(str(exc) or type(exc).__name__, ErrorCode.APPLICATION_ERROR) from exc
    if not auth:
        raise AuthError("onAuth failed")
    try:
        return json.loads(json.dumps(auth))
    except (TypeError, ValueError) as exc:
        log.error("room %r: %s returned %s, which cannot travel with a seat reservation (it "
                  "must be JSON: dicts, lists, strings, numbers, booleans, None): %s",
                  name, HOOK, type(auth).__name__, exc)
        raise AuthError(f"{HOOK} returned a value that is not JSON",
                        ErrorCode.APPLICATION_ERROR) from None
