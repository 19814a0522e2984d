"""A room's seats: who may take one, who holds one, and how many are taken (docs/architecture.md,
"Seats and reservations").

A seat is taken by a joined client, by a reservation waiting for its socket, or by a dropped
client whose seat ``allow_reconnection`` holds. The owner of the room alone counts them, and
every method here that claims a seat does so without yielding, so two greenlets can never both
take the last one.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock, Timer
from .session import Client

log = logging.getLogger("greenroom.room")


@dataclass(slots=True)
class Reservation:
    """A seat promised to ``session_id`` until its socket arrives or the reservation expires."""

    session_id: str
    options: dict[str, Any]
    expires: Timer | None = None
    reconnect: Client | None = None  # the client whose held seat this reclaims: takes no seat
    #: What ``on_auth_request`` returned in the matchmaking request (greenroom/auth.py): the
    #: client's ``auth`` when its socket arrives; None: ``on_auth`` decides then.
    auth: Any = None


@dataclass(slots=True)
class HeldSeat:
    """A dropped client's seat, kept for it by ``allow_reconnection``."""

    client: Client
    token: str
    expires: Timer | None = None
    callbacks: list[Callable[[bool], None]] = field(default_factory=list)
    #: Held for a client that moved here with its room (a migration): its return is no
    #: reconnection for the room's code (no on_reconnect).
    migrated: bool = False


class Seats:
    """Reservations and held seats of one room; ``clients`` is the room's own list of joined
    clients (each takes a seat too)."""

    def __init__(self, room_id: str, clients: list[Client], clock: Clock,
                 on_expired: Callable[[], None]) -> None:
        self.room_id = room_id
        self.clients = clients
        self.clock = clock
        self.reserved: dict[str, Reservation] = {}
        self.held: dict[str, HeldSeat] = {}
        self._on_expired = on_expired

    @property
    def taken(self) -> int:
        # A reservation that reclaims a held seat takes none of its own: that seat is counted
        # in ``held`` (or by the live client it replaces) until the socket arrives.
        reserved = sum(1 for reservation in self.reserved.values() if reservation.reconnect is None)
        return len(self.clients) + reserved + len(self.held)

    def has_free(self, max_clients: int | None) -> bool:
        return max_clients is None or self.taken < max_clients

    def reserve(self, session_id: str, options: dict[str, Any], seconds: float, *,
                reconnect: Client | None = None, auth: Any = None) -> bool:
        """Record a reservation (the caller checked that a seat is free); False if the session
        already has one."""
        if session_id in self.reserved:
            return False
        reservation = Reservation(session_id, options, reconnect=reconnect, auth=auth)
        self.reserved[session_id] = reservation
        reservation.expires = self.clock.set_timeout(self._expire, seconds * 1000, session_id, seconds)
        return True

    def reserve_reconnection(self, token: str, seconds: float) -> str | None:
        """Reserve again the seat ``token`` reclaims; its session id, or None if no seat is held
        (or kept by a still-open socket) for that token.

        Idempotent until the socket arrives: a client whose socket failed after a first
        ``POST /matchmake/reconnect`` retries and gets the same session, with a fresh expiry.
        """
        client = self.client_for_token(token)
        if client is None:
            return None
        session_id = client.session_id
        existing = self.reserved.get(session_id)
        if existing is not None:
            if existing.reconnect is not client:
                return None
            if existing.expires is not None:
                existing.expires.clear()
            existing.expires = self.clock.set_timeout(self._expire, seconds * 1000, session_id, seconds)
            return session_id
        return session_id if self.reserve(session_id, {}, seconds, reconnect=client) else None

    def client_for_token(self, token: str) -> Client | None:
        """Tokens are compared in constant time: how long a wrong guess takes says nothing of
        how close it came."""
        if not token:
            return None
        given = token.encode("utf-8", "surrogatepass")
        for held in self.held.values():
            if _same(held.token, given):
                return held.client
        for client in self.clients:
            if _same(client.reconnection_token, given):
                return client  # a stale socket still open: the new one will replace it
        return None

    def claim(self, session_id: str) -> Reservation | None:
        """Take a reservation out (its socket arrived, or it is cancelled)."""
        reservation = self.reserved.pop(session_id, None)
        if reservation is not None and reservation.expires is not None:
            reservation.expires.clear()
        return reservation

    def _expire(self, session_id: str, seconds: float) -> None:
        if self.reserved.pop(session_id, None) is None:
            return
        log.info("room %s: seat of %s expired after %g s without a connection",
                 self.room_id, session_id, seconds)
        self._on_expired()

    def hold(self, client: Client, token: str, seconds: float,
             expired: Callable[[HeldSeat], None], *, migrated: bool = False) -> HeldSeat | None:
        """Keep ``client``'s seat for ``seconds``; ``expired(held)`` runs if it is not reclaimed."""
        if client.session_id in self.held:
            return None
        held = HeldSeat(client, token, migrated=migrated)
        held.expires = self.clock.set_timeout(expired, seconds * 1000, held)
        self.held[client.session_id] = held
        return held

    def release(self, held: HeldSeat) -> bool:
        """End a hold (reclaimed, or given up); False if it already ended."""
        session_id = held.client.session_id
        if self.held.get(session_id) is not held:
            return False
        del self.held[session_id]
        if held.expires is not None:
            held.expires.clear()
        return True

    def cancel_all(self) -> list[HeldSeat]:
        """Drop every reservation; return the holds, for the room to end them."""
        for session_id in list(self.reserved):
            self.claim(session_id)
        return list(self.held.values())


def _same(token: str | None, given: bytes) -> bool:
    return bool(token) and hmac.compare_digest(token.encode("utf-8", "surrogatepass"), given)
