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
    # Epoch seconds after which matchmakers stop seeing this listing unless its owner renews it
    # (Driver.renew from the heartbeat); None = never expires (one process, nothing to outlive).
    lease_expires_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoomListing:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def is_expired(self, now: float | None = None) -> bool:
        """A listing past its lease belongs to an owner that stopped renewing: treat it as gone."""
        if self.lease_expires_at is None:
            return False
        return self.lease_expires_at <= (time.time() if now is None else now)

    def validate(self) -> RoomListing:
        """Raise ValueError when a stored listing is damaged, so drivers can skip it.

        Listings read back from Redis or MongoDB may have been written by another version or by
        hand; a query must skip a bad one rather than fail every joinOrCreate of that name.
        """
        checks = (
            ("name", str, False),
            ("room_id", str, False),
            ("process_id", str, False),
            ("clients", int, False),
            ("max_clients", int, True),
            ("locked", bool, False),
            ("private", bool, False),
            ("unlisted", bool, False),
            ("metadata", dict, False),
            ("filters", dict, False),
            ("public_address", str, True),
            ("created_at", (int, float), False),
            ("lease_expires_at", (int, float), True),
        )
        for attr, kind, nullable in checks:
            value = getattr(self, attr)
            if value is None and nullable:
                continue
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValueError(f"{attr}={value!r} has the wrong type")
        return self

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
