"""greenroom: a multiplayer room server for Python on gevent, wire-compatible with Colyseus.

Names are imported on first use, so that ``greenroom serve`` can monkey-patch gevent before
anything imports socket, ssl, redis or pymongo (docs/architecture.md, "Boot order").
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

_EXPORTS = {
    "Room": ".room",
    "Server": ".server",
    "Client": ".session",
    "ClientState": ".session",
    "RoomDefinition": ".matchmaker",
    "SeatReservation": ".matchmaker",
    "MatchMaker": ".matchmaker",
    "GreenroomError": ".errors",
    "MatchMakeError": ".errors",
    "AuthError": ".errors",
    "ServiceUnavailable": ".errors",
    "ProcessFull": ".capacity",
    "CloseCode": ".protocol.codes",
    "ErrorCode": ".protocol.codes",
    "Dialect": ".protocol.dialect",
    "RoomListing": ".drivers.listing",
    "Monitor": ".monitor",
    "Metrics": ".metrics",
    "RequestInfo": ".web.request",
    "LobbyRoom": ".rooms",
    "RelayRoom": ".rooms",
    "QueueRoom": ".rooms",
}

__all__ = [
    "Room", "Server", "Client", "ClientState", "RoomDefinition", "SeatReservation", "MatchMaker",
    "GreenroomError", "MatchMakeError", "AuthError", "ServiceUnavailable", "ProcessFull",
    "CloseCode", "ErrorCode", "Dialect", "RoomListing", "Monitor", "Metrics", "RequestInfo",
    "LobbyRoom", "RelayRoom", "QueueRoom", "__version__",
]

if TYPE_CHECKING:
    from .capacity import ProcessFull
    from .drivers.listing import RoomListing
    from .errors import AuthError, GreenroomError, MatchMakeError, ServiceUnavailable
    from .matchmaker import MatchMaker, RoomDefinition, SeatReservation
    from .metrics import Metrics
    from .monitor import Monitor
    from .protocol.codes import CloseCode, ErrorCode
    from .protocol.dialect import Dialect
    from .room import Room
    from .rooms import LobbyRoom, QueueRoom, RelayRoom
    from .server import Server
    from .session import Client, ClientState
    from .web.request import RequestInfo


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'greenroom' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
