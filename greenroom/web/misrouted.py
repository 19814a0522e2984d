"""Why a room socket reached a process that does not hold its room, when that is the reason.

A room socket names its process (``/{processId}/{roomId}``). Reaching another process means that
whatever is in front of the port spread the connections over several processes that cannot
pass sockets to each other: ``gunicorn -w 2`` with the stock gevent-websocket worker (each worker
has a private presence: the kernel gives any connection to any worker), or a load balancer that
does not route by processId. The client's seat reservation is then refused with 524 as any
unknown seat is, but with a message that says this, and the first such socket for each foreign
processId logs one line naming the fix. A socket of a process that has really gone (a restart)
still gets the plain message.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["explain"]

log = logging.getLogger("greenroom.socket")

_FIX = ("run gunicorn with -c python:greenroom.gunicorn.conf (worker greenroom.gunicorn.Worker), "
        "or greenroom serve --workers N, or a single worker")

#: Foreign processIds already logged (bounded: a flood of forged URLs must not grow it forever).
_logged: set[str] = set()
_LOGGED_MAX = 1000


def explain(matchmaker: Any, claimed: str) -> str | None:
    """The refusal's message for a socket that names process ``claimed``; None when the plain
    'seat reservation expired.' is the truth (our own processId, or a process that is gone)."""
    ours = matchmaker.process_id
    if not claimed or claimed == ours:
        return None
    registry = getattr(matchmaker, "registry", None)
    if registry is None:
        client = (f"seat reservation expired: this socket for process {claimed} reached process "
                  f"{ours}, which shares no presence with it; several processes serve this port "
                  f"without a shared presence (gunicorn -w N with the stock worker?)")
        operator = (f"socket for a room of process {claimed} reached process {ours}, which has a "
                    f"local presence: several processes serve this port without sharing presence "
                    f"(or process {claimed} restarted); {_FIX}, or set GREENROOM_REDIS_URL")
    else:
        try:
            owner = registry.get(claimed)
        except Exception:  # noqa: BLE001 - the backend is down: say what is known
            return None
        if owner is None:
            return None  # gone: the plain message is the truth
        client = (f"seat reservation expired: this socket for process {claimed} reached process "
                  f"{ours}, which cannot hand sockets to it; route room sockets to their process")
        operator = (f"socket for a room of live process {claimed} (pid {owner.pid} on "
                    f"{owner.host}) reached process {ours}, which cannot hand it over: {_FIX}; "
                    f"behind a proxy, route /{claimed}/ to that process's public address")
    if claimed not in _logged and len(_logged) < _LOGGED_MAX:
        _logged.add(claimed)
        log.warning("%s", operator)
    return client
