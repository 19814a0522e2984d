"""How a room's state reaches clients. A room owns one serializer; "none" unless it has a state.

The room loop calls these at fixed points (docs/protocol.md, "Joining"): ``handshake`` for JOIN_ROOM,
``full_state`` after a client's ack, ``encode_patches`` at every patch tick. Serializers never
send anything themselves; they return frame bodies (the bytes after the code byte).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from .protocol.dialect import Dialect


class Recipient(Protocol):
    """What a serializer reads of a client (greenroom.session.Client is one): its wire dialect,
    and the StateView that selects its private data (None: public data only). Typed here so
    that this module, below session.py, needs nothing of it."""

    dialect: Dialect
    view: Any


class Serializer:
    id: str = "none"

    def reset(self, state: Any) -> None:
        """Adopt a new state object (``room.state = ...``)."""

    def handshake(self, dialect: Dialect) -> bytes:
        """Bytes describing the state's types, sent inside JOIN_ROOM."""
        return b""

    def full_state(self, client: Recipient) -> bytes | None:
        """Body of the ROOM_STATE frame for a newly acknowledged client, or None to send nothing."""
        return None

    def has_changes(self) -> bool:
        return False

    def encode_patches(self, clients: Sequence[Recipient]) -> list[tuple[Sequence[Recipient], bytes]]:
        """Bodies of ROOM_STATE_PATCH frames, each with the clients it goes to; clears pending changes.

        Without private views this is one body for everyone; with views, one per client.
        Called even when ``clients`` is empty, so that changes never pile up.
        """
        return []


class NoneSerializer(Serializer):
    """Serializer "none": the client's room.state stays null; state travels as messages, if at all."""

    id = "none"
