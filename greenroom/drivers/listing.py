"""A room listing: what the matchmaker knows of a room without asking its owner."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RoomListing:
    name: str
    room_id: str
    process_id: str
    clients: int = 0
    max_clients: int | None = None
    locked: bool = False
    private: bool = False
    unlisted: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    # The filter_by option values the room was created with; joinOrCreate matches on these.
    filters: dict[str, Any] = field(default_factory=dict)
    public_address: str | None = None
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoomListing:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_json(self) -> dict[str, Any]:
        """The camelCase shape Colyseus clients and tools know."""
        out = {
            "name": self.name,
            "roomId": self.room_id,
            "processId": self.process_id,
            "clients": self.clients,
            "maxClients": self.max_clients,
            "locked": self.locked,
            "private": self.private,
            "unlisted": self.unlisted,
            "metadata": self.metadata,
            "createdAt": self.created_at,
        }
        if self.public_address:
            out["publicAddress"] = self.public_address
        return out
