"""Singleton rooms (``server.define(...).singleton()``): one room of a name, or of each set of
filter values, in the whole deployment (README, "Limits").

The matchmaker calls :func:`check` with the creation lock held, the lock joinOrCreate already
takes across processes per name and filters (per name alone for a singleton per name), so no two
requests of any processes can both find no room and both create one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .definitions import RoomDefinition
from .errors import MatchMakeError
from .protocol.codes import ErrorCode

__all__ = ["check"]


def check(driver: Any, definition: RoomDefinition, options: Mapping[str, Any], method: str) -> None:
    """Raise 523, naming the room, when ``definition`` is a singleton that exists anywhere in the
    deployment (listed, lease current: a dead owner's room stops counting when its lease ends).
    ``create`` promises a new room, which a singleton cannot give, so it is told to join; a
    joinOrCreate that reaches this found no seat in it (full, locked or private)."""
    if definition.singleton_scope is None:
        return
    filters = definition.creation_filters(options)
    existing = [listing for listing in driver.query(definition.name, filters=filters)
                if not listing.is_expired()]
    if not existing:
        return
    which = f'"{definition.name}"' + (f" with {filters}" if filters else "")
    advice = ("join it (joinOrCreate or joinById)" if method != "joinOrCreate"
              else "it cannot take this client (full, locked, private, or other filter values)")
    raise MatchMakeError(f"room {which} is a singleton and already exists (roomId "
                         f"{existing[0].room_id}): {advice}", ErrorCode.MATCHMAKE_UNHANDLED)
