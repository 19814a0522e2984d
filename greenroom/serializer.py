"""How a room's state reaches clients. A room owns one serializer; "none" unless it has a state.

The room loop calls these at fixed points (PROTOCOL.md §4.1): ``handshake`` for JOIN_ROOM,
``full_state`` after a client's ack, ``encode_patches`` at every patch tick. Serializers never
send anything themselves; they return frame bodies (the bytes after the code byte).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .protocol.dialect import Dialect

if TYPE_CHECKING:
    from .session import Client


class Serializer:
    id: str = "none"

    def reset(self, state: Any) -> None:
        """Adopt a new state object (``room.state = ...``)."""

    def handshake(self, dialect: Dialect) -> bytes:
        """Bytes describing the state's types, sent inside JOIN_ROOM."""
        return b""

    def full_state(self, client: Client) -> bytes | None:
        """Body of the ROOM_STATE frame for a newly acknowledged client, or None to send nothing."""
        return None

    def has_changes(self) -> bool:
        return False

    def encode_patches(self, clients: Sequence[Client]) -> list[tuple[Sequence[Client], bytes]]:
        """Bodies of ROOM_STATE_PATCH frames, each with the clients it goes to; clears pending changes.

        Without private views this is one body for everyone; with views, one per client.
        Called even when ``clients`` is empty, so that changes never pile up.
        """
        return []


class NoneSerializer(Serializer):
    """Serializer "none": the client's room.state stays null; state travels as messages, if at all."""

    id = "none"
