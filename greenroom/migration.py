"""Rooms that move to new code on a reload (``greenroom serve --workers N --migrate``, SIGHUP).

A retiring worker moves each room, a batch at a time, to a serving worker of the new
generation, then closes the room's clients with 4010, the close code on which @colyseus/sdk 0.17
and 0.18 reconnect by themselves to the same URL. The reconnection reaches the cluster, which
hands the socket to the room's new owner (greenroom.web.handoff looks a moved room up in the
listings), and the client is back in the same roomId with the same sessionId, gets the full
state, then patches. No ``on_leave``, ``on_join`` or ``on_reconnect`` runs for a moved client;
``on_restore`` runs once per room.

One room's move happens inside its line of execution, so nothing of the room runs meanwhile:

1. **snapshot** (old code): the state's own encoding (handshake + full state, and the refIds in
   use), metadata, lock and private flags, each client (sessionId, current reconnection token,
   ``auth``, ``user_data``), the seats held for dropped clients and the reservations not yet
   used, the options ``on_create`` had, and ``on_snapshot()``. All of it JSON, so that a later
   step can carry it between hosts through Redis; today it goes over presence RPC to a sibling.
2. **restore** (new code, ``restore_room``): the same roomId, ``on_create(options)``, then the
   state decoded and rebuilt in the new classes with the *same refIds* (the clients' decoders
   keep their references across the reconnection), seats held for every client, ``on_restore``,
   and only then the listing, which now names the new owner.
3. **release** (old code): the room is forgotten here without ``on_dispose`` (it lives on), and
   its clients get 4010.

Rules (README, "Deploying new code without dropping players"): a room whose snapshot or restore
fails stays and finishes on the old code, with one log line; a room of a class with
``migratable = False`` stays; so does a room whose state classes changed shape (clients decode
with the reflection they got at join: a new shape needs new clients) or that has private (view)
fields. A room is moved once every client has been in it for the SDKs' ``minUptime`` (5 s):
before that, the SDKs would not reconnect by themselves.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from typing import Any

import gevent

from .phase import Phase
from .protocol.codes import CloseCode
from .protocol.dialect import Dialect
from .session import Client, ClientState

__all__ = ["MIN_UPTIME", "Migration", "MigrationRefused", "restore", "snapshot"]

log = logging.getLogger("greenroom.migration")

SNAPSHOT_VERSION = 1
#: The SDKs' reconnection.minUptime: a client younger than this in its room would not reconnect.
MIN_UPTIME = 5.0
#: Seconds a moved client's seat waits for its reconnection in the new room.
HOLD_SECONDS = 30.0
#: Rooms moved at once: their clients reconnect together, so a batch bounds the herd.
BATCH = 10


class MigrationRefused(Exception):
    """This room cannot move (its class, its state, its snapshot): it stays where it is."""


# -- 1. snapshot (old worker, in the room's line of execution) ---------------------------------
def snapshot(room: Any) -> dict[str, Any]:
    engine = room._gr
    if not getattr(type(room), "migratable", True):
        raise MigrationRefused(f"{type(room).__name__}.migratable is False")
    seats = engine.seats
    now = time.monotonic()
    data = {
        "v": SNAPSHOT_VERSION, "name": engine.name, "roomId": engine.room_id,
        "options": engine.options, "metadata": dict(room.metadata),
        "locked": engine.locked_manually, "private": engine.private,
        "state": _state_snapshot(engine),
        "clients": [_client(c, now) for c in engine.clients if c.state is not ClientState.LEFT],
        "held": [{**_client(h.client, now), "token": h.token,
                  "remaining": max(1.0, h.expires.remaining()) if h.expires else HOLD_SECONDS}
                 for h in seats.held.values()],
        "reserved": [{"sessionId": sid, "options": r.options, "auth": r.auth}
                     for sid, r in seats.reserved.items() if r.reconnect is None],
        "extra": room.on_snapshot(),
    }
    _check_json(data)
    return data


def _state_snapshot(engine: Any) -> dict[str, Any] | None:
    tracker = getattr(engine.serializer, "tracker", None)
    if tracker is None:
        return None
    if tracker.filtered:
        raise MigrationRefused("its state has private (view) fields")
    full = engine.serializer.full_state(_V3)
    return {"handshake": _b64(engine.serializer.handshake(Dialect.V3)), "full": _b64(full or b""),
            "nextRefId": tracker.next_refid}


class _Dialect:
    dialect = Dialect.V3


_V3 = _Dialect()


def _client(client: Client, now: float) -> dict[str, Any]:
    return {"sessionId": client.session_id, "token": client.reconnection_token,
            "auth": client.auth, "userData": client.user_data, "dialect": client.dialect.value,
            "age": now - client.joined_at}


def _check_json(data: dict[str, Any]) -> None:
    import json

    try:
        json.dumps(data)
    except (TypeError, ValueError) as exc:
        raise MigrationRefused(f"its snapshot is not JSON (auth, user_data, on_snapshot): {exc}") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- 2. restore (new worker) --------------------------------------------------------------------
def restore(matchmaker: Any, data: dict[str, Any]) -> dict[str, Any]:
    """The ``restore_room`` call: recreate the room here; ``{"processId"}`` or ``{"error"}``."""
    from .errors import GreenroomError

    try:
        if data.get("v") != SNAPSHOT_VERSION:
            raise MigrationRefused(f"snapshot version {data.get('v')!r}, expected {SNAPSHOT_VERSION}")
        definition = matchmaker.definition(data["name"])
        if not getattr(definition.room_cls, "migratable", True):
            raise MigrationRefused(f"{definition.room_cls.__name__}.migratable is False in the new code")
        matchmaker.restore_room(definition, dict(data["options"] or {}), data["roomId"],
                                lambda room: room._gr.call(_put_back, room, data))
    except (MigrationRefused, GreenroomError) as exc:
        return {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - the new code failed: the room stays on the old one
        log.warning("room %s could not be restored here: %s: %s", data.get("roomId"),
                    type(exc).__name__, exc)
        return {"error": f"{type(exc).__name__}: {exc}"}
    log.info("room %s (%s) restored here with %d client(s)", data["roomId"], data["name"],
             len(data["clients"]))
    return {"processId": matchmaker.process_id}


def _put_back(room: Any, data: dict[str, Any]) -> None:
    engine = room._gr
    if data["state"] is not None:
        _restore_state(room, data["state"])
    room.metadata = dict(data["metadata"])
    engine.sync_listing(metadata=room.metadata)
    if data["locked"]:
        room.lock()
    if data["private"]:
        room.set_private(True)
    now = time.monotonic()
    for entry in data["clients"]:
        _hold(engine, entry, HOLD_SECONDS, now, migrated=True)
    for entry in data["held"]:
        _hold(engine, entry, entry["remaining"], now, migrated=False)
    for entry in data["reserved"]:
        engine.seats.reserve(entry["sessionId"], entry["options"], room.seat_reservation_timeout,
                             auth=entry.get("auth"))
    engine._seats_changed()
    room.on_restore(data["extra"])


def _hold(engine: Any, entry: dict[str, Any], seconds: float, now: float, *, migrated: bool) -> None:
    client = Client(None, entry["sessionId"], dialect=Dialect.parse(entry["dialect"]))
    client.auth, client.user_data = entry["auth"], entry["userData"]
    client.reconnection_token = entry["token"]
    client.joined_at = now - entry["age"]
    client.state = ClientState.RECONNECTING
    engine.seats.hold(client, entry["token"], seconds, engine._end_hold, migrated=migrated)


def _restore_state(room: Any, saved: dict[str, Any]) -> None:
    from .schema.decoder import StateDecoder
    from .schema.rebuild import rebuild, renumber

    engine = room._gr
    handshake = base64.b64decode(saved["handshake"])
    if room.state is None or engine.serializer.handshake(Dialect.V3) != handshake:
        raise MigrationRefused("its state classes changed shape (or on_create set no state); "
                               "clients decode with the reflection they got at join")
    decoder = StateDecoder.from_handshake(handshake)
    plain = decoder.decode_full(base64.b64decode(saved["full"]))
    state, refids = rebuild(type(room.state), plain, decoder.refid_of)
    room.state = state
    renumber(engine.serializer.tracker, refids, saved["nextRefId"])


# -- 3. the old worker's side -------------------------------------------------------------------
class Migration:
    """Moves the rooms of one retiring worker; ``targets()`` lists the processIds that may take
    rooms (the new generation's serving workers), least loaded first."""

    def __init__(self, matchmaker: Any, targets: Callable[[], list[str]], *,
                 batch: int = BATCH, rpc_timeout: float = 10.0) -> None:
        self.matchmaker = matchmaker
        self.targets = targets
        self.batch = batch
        self.rpc_timeout = rpc_timeout
        self.moved = 0
        self.stayed = 0

    def run(self, deadline: float) -> None:
        """Move every room that can move before ``deadline`` (monotonic); the rest stay."""
        rooms = sorted(self.matchmaker.rooms.values(), key=_youngest_age, reverse=True)
        for start in range(0, len(rooms), self.batch):
            batch = rooms[start:start + self.batch]
            choices = self.targets()
            if not choices:
                log.warning("no worker of the new generation takes rooms: %d room(s) stay on the "
                            "old code", len(rooms) - start)
                self.stayed += len(rooms) - start
                return
            jobs = [gevent.spawn(self.move, room, choices[i % len(choices)], deadline)
                    for i, room in enumerate(batch)]
            gevent.joinall(jobs)
        log.info("migration: %d room(s) moved to the new code, %d stay on the old one",
                 self.moved, self.stayed)

    def move(self, room: Any, target: str, deadline: float) -> bool:
        wait = MIN_UPTIME - _youngest_age(room)
        if wait > 0:
            if time.monotonic() + wait > deadline:
                self._stays(room, "its clients joined too recently to reconnect by themselves "
                                  "before the graceful timeout")
                return False
            gevent.sleep(wait)  # the SDKs reconnect by themselves only after minUptime
        try:
            moved = room._gr.call(self._transfer, room, target)
        except Exception as exc:  # noqa: BLE001 - InboxClosed: it was disposed meanwhile
            log.debug("room %s: not moved: %s", room.room_id, exc)
            moved = False
        if moved:
            room._gr._release_resources()
            self.moved += 1
        return moved

    def _transfer(self, room: Any, target: str) -> bool:
        """In the room's line of execution: nothing of the room runs until it has moved or not."""
        engine = room._gr
        if engine.phase is not Phase.RUNNING:
            return False
        try:
            data = snapshot(room)
        except Exception as exc:  # noqa: BLE001 - MigrationRefused, or on_snapshot raised
            self._stays(room, f"snapshot: {type(exc).__name__}: {exc}" if not isinstance(
                exc, MigrationRefused) else str(exc))
            return False
        try:
            self.matchmaker.release(engine.room_id)  # no listing write from here while it moves
        except Exception as exc:  # noqa: BLE001 - the backend is down: nothing can move now
            self.matchmaker.adopt(engine.room_id, room)
            self._stays(room, f"its listing could not be handed over: {exc}")
            return False
        try:
            answer = self.matchmaker.rpc.call(target, "restore_room", data, timeout=self.rpc_timeout)
        except Exception as exc:  # noqa: BLE001 - RemoteCallFailed: the target may be gone
            answer = {"error": f"{target} did not answer: {exc}"}
        if "error" in answer:
            self.matchmaker.adopt(engine.room_id, room)
            self._stays(room, answer["error"])
            return False
        self._hand_over(engine)
        log.info("room %s (%s) moved to %s with %d client(s)", engine.room_id, engine.name,
                 answer["processId"], len(data["clients"]))
        return True

    @staticmethod
    def _hand_over(engine: Any) -> None:
        """The room lives on elsewhere: its clients reconnect there (4010), nothing runs here."""
        engine.phase = Phase.DISPOSED
        for client in list(engine.clients):
            transport, client.transport = client.transport, None
            client.state = ClientState.LEFT
            if transport is not None:
                try:
                    transport.close(CloseCode.MAY_TRY_RECONNECT, "")
                except Exception as exc:  # noqa: BLE001 - the socket is gone already
                    log.debug("closing %s failed: %s", client.session_id, exc)
        engine.clients.clear()
        seats = engine.seats
        for held in list(seats.held.values()):
            seats.release(held)
        for session_id in list(seats.reserved):
            seats.claim(session_id)

    def _stays(self, room: Any, why: str) -> None:
        self.stayed += 1
        log.warning("room %s (%s) stays on the old code: %s", room.room_id, room.room_name, why)


def _youngest_age(room: Any) -> float:
    now = time.monotonic()
    ages = [now - c.joined_at for c in room._gr.clients if c.state is not ClientState.LEFT]
    return min(ages) if ages else MIN_UPTIME
