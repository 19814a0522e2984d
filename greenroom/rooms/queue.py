"""QueueRoom: players wait in it, grouped by rank each cycle; a ready group gets a match room,
created in whichever process placement picks, with a seat reserved for every member at once
(README, "QueueRoom"). The grouping rules are in queue_groups.py.

The wire is that of Colyseus' QueueRoom, so its front ends work unchanged: a client joins with
``{rank, teamId}``, gets ``clients`` (how many are in its group, when that changes), then
``seat`` (a seat reservation, for ``client.consumeSeatReservation``); once in the match room it
sends ``confirm`` and the queue closes its connection with 1000.

A group's seats are all reserved, or none (greenroom/group_seats.py). When that fails (the
match room cannot be created, or has no room for the whole group), nobody of the group holds a
seat; its members go back to waiting and are regrouped at the next cycle. A member in
``max_seat_attempts`` failed groups is told instead: its queue connection closes with 1011 and
the reason (Colyseus closes every member with 1011 at the first failure).

With ``greenroom serve --migrate``, a reload moves the queue to the new code with everyone in
it: ranks, cycles waited, and who is seated, waiting to confirm (``on_snapshot``/``on_restore``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from ..definitions import SeatReservation
from ..errors import GreenroomError
from ..protocol.codes import CloseCode, ErrorCode
from ..room import Room
from ..session import Client
from .queue_groups import Grouping, MatchGroup, QueueEntry, rank_compare

__all__ = ["QueueRoom"]

log = logging.getLogger("greenroom.queue")

#: Close code for a member whose group could not be seated (what Colyseus sends).
SEATING_FAILED = 1011


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


#: attribute -> (option names, snake_case first; check; what it must be)
OPTIONS: dict[str, tuple[tuple[str, ...], Any, str]] = {
    "match_room_name": (("match_room_name", "matchRoomName"),
                        lambda v: isinstance(v, str) and v != "", "a room name"),
    "max_players": (("max_players", "maxPlayers"), _positive_int, "an integer >= 1"),
    "max_team_size": (("max_team_size", "maxTeamSize"), lambda v: v is None or _positive_int(v),
                      "an integer >= 1, or null"),
    "allow_incomplete_groups": (("allow_incomplete_groups", "allowIncompleteGroups"),
                                lambda v: isinstance(v, bool), "true or false"),
    "max_waiting_cycles": (("max_waiting_cycles", "maxWaitingCycles"), _count, "an integer >= 0"),
    "max_waiting_cycles_for_priority": (
        ("max_waiting_cycles_for_priority", "maxWaitingCyclesForPriority"),
        lambda v: v is None or _count(v), "an integer >= 0, or null (never)"),
    "rank_widening": (("rank_widening", "rankWidening"), lambda v: _number(v) and v >= 0, "a number >= 0"),
    "cycle_tick_interval": (("cycle_tick_interval", "cycleTickInterval"),
                            lambda v: _number(v) and v > 0, "milliseconds > 0"),
}


class QueueRoom(Room):
    """Define it with the name of the match room: ``server.define("queue", QueueRoom,
    match_room_name="battle")``. Options (snake_case, or the camelCase of Colyseus) come from
    ``define``, else from the join options of the client that made the queue; ``define``'s win,
    so a client cannot change a setting the server gave. Subclasses may override ``compare``,
    ``match_room_options`` and ``on_group_ready``, and call ``add_to_queue`` from their own
    ``on_join`` (e.g. with a rank found by ``on_auth``)."""

    patch_rate = None  # no state to patch

    match_room_name: str | None = None
    max_players: int = 4
    max_team_size: int | None = None
    allow_incomplete_groups: bool = False
    max_waiting_cycles: int = 15
    max_waiting_cycles_for_priority: int | None = 10
    #: Rank difference the default compare accepts more per cycle a player waited.
    rank_widening: float = 0.0
    #: Milliseconds between two regroupings (a cycle).
    cycle_tick_interval: float = 1000.0
    #: Failed groups a member may be in before its queue connection closes with 1011.
    max_seat_attempts: int = 3

    # -- hooks a subclass may override --------------------------------------------------------
    def compare(self, entry: QueueEntry, group: MatchGroup) -> bool:
        """Whether ``entry`` fits ``group`` (before it joins it): by rank, by default."""
        return rank_compare(entry, group, self.rank_widening)

    def match_room_options(self, group: MatchGroup) -> dict[str, Any]:
        """The options the match room's ``on_create`` gets (e.g. how many bots to add)."""
        return {}

    def on_group_ready(self, group: MatchGroup) -> list[SeatReservation]:
        """Make the match room and reserve its members' seats: one reservation per member, in
        order. The default creates ``match_room_name`` with every seat taken before the room is
        listed; an override may seat the group elsewhere with ``self.matchmaker.reserve_seats``
        (all or none too). Raising puts the group back in the queue."""
        return self.matchmaker.create_with_seats(
            self.match_room_name, [entry.options for entry in group.members],
            self.match_room_options(group))

    # -- the room -----------------------------------------------------------------------------
    @property
    def matchmaker(self) -> Any:
        host = self._gr.host
        if host is None:
            raise RuntimeError("this QueueRoom was not created by a matchmaker")
        return host

    def on_create(self, options: dict[str, Any]) -> None:
        self._configure(options)
        if not self.match_room_name:
            raise ValueError("QueueRoom needs match_room_name: the room to create for a group "
                             '(server.define("queue", QueueRoom, match_room_name="battle"))')
        self.matchmaker.definition(self.match_room_name)  # 520 now, not at the first group
        #: The waiting (and seated, until they confirm or leave) players by sessionId.
        self.queue: dict[str, QueueEntry] = {}
        #: The groups of the last cycle.
        self.groups: list[MatchGroup] = []
        self.grouping = Grouping(self.max_players, self.max_team_size,
                                 self.allow_incomplete_groups, self.max_waiting_cycles,
                                 self.max_waiting_cycles_for_priority, self.compare)
        self.on_message("confirm", self._on_confirm)
        self.clock.set_interval(self.reassign_match_groups, self.cycle_tick_interval)

    def on_join(self, client: Client, options: dict[str, Any], auth: Any) -> None:
        options = options if isinstance(options, dict) else {}
        rank = options.get("rank", 0)
        if not _number(rank):
            raise GreenroomError("rank must be a number", ErrorCode.INVALID_PAYLOAD)
        team = options.get("teamId", options.get("team_id"))
        self.add_to_queue(client, rank, None if team is None else str(team), options)

    def add_to_queue(self, client: Client, rank: float, team_id: str | None = None,
                     options: dict[str, Any] | None = None) -> QueueEntry:
        """Queue ``client``; ``options`` are the join options its match room seat gets."""
        entry = QueueEntry(client, float(rank), team_id, dict(options or {}))
        self.queue[client.session_id] = entry
        entry.last_count = 1
        client.send("clients", 1)
        return entry

    def on_leave(self, client: Client, consented: bool) -> None:
        self.queue.pop(client.session_id, None)

    def _on_confirm(self, client: Client, message: Any) -> None:
        entry = self.queue.get(client.session_id)
        if entry is None or entry.group is None or not entry.group.ready or entry.confirmed:
            return  # not seated yet (or twice): nothing to confirm, as in Colyseus
        entry.confirmed = True
        entry.group.confirmed += 1
        client.leave(CloseCode.NORMAL)

    # -- cycles -------------------------------------------------------------------------------
    def reassign_match_groups(self) -> None:
        """One cycle: regroup, seat the ready groups, tell the others their size."""
        self.groups = self.grouping.regroup(self.queue.values())
        for group in self.groups:
            if group.ready:
                self._seat(group)
            else:
                for entry in group.members:
                    if entry.last_count != len(group):
                        entry.last_count = len(group)
                        entry.client.send("clients", len(group))

    def _seat(self, group: MatchGroup) -> None:
        try:
            seats = self.on_group_ready(group)
            if len(seats) != len(group):
                raise RuntimeError(f"on_group_ready gave {len(seats)} seat(s) for {len(group)} "
                                   "member(s)")
        except GreenroomError as exc:
            self._not_seated(group, exc.message)
            return
        except Exception as exc:
            log.exception("queue %s: on_group_ready raised", self.room_id)
            self._not_seated(group, f"{type(exc).__name__}: {exc}")
            return
        for entry, seat in zip(group.members, seats, strict=True):
            entry.client.send("seat", seat.to_json())

    def _not_seated(self, group: MatchGroup, reason: str) -> None:
        """Nobody of ``group`` holds a seat: back to waiting, or told after too many tries."""
        log.warning("queue %s: a group of %d could not be seated in %s: %s", self.room_id,
                    len(group), self.match_room_name, reason)
        group.ready = False
        for entry in group.members:
            entry.group = None
            entry.failures += 1
            if entry.failures >= self.max_seat_attempts:
                entry.client.leave(SEATING_FAILED, _close_reason(reason))

    # -- moving to new code (greenroom serve --migrate) ----------------------------------------
    def on_snapshot(self) -> dict[str, Any]:
        """The queue as it stands: who waits with which rank, for how many cycles, who is
        seated (and waits to confirm)."""
        return {"queue": [
            {"sessionId": session_id, "rank": e.rank, "teamId": e.team_id, "options": e.options,
             "cycle": e.current_cycle, "priority": e.high_priority, "failures": e.failures,
             "seated": e.group is not None and e.group.ready}
            for session_id, e in self.queue.items()]}

    def on_restore(self, data: dict[str, Any]) -> None:
        """Queue the moved players again, as they were. Each is a held seat until its client
        reconnects (no on_join runs); one that does not come back leaves as any other does."""
        held = self._gr.seats.held if self._gr.seats is not None else {}
        seated = MatchGroup(ready=True)  # seated members only wait to confirm
        for item in data.get("queue", []):
            hold = held.get(item.get("sessionId"))
            if hold is None:
                continue
            entry = QueueEntry(hold.client, float(item["rank"]), item.get("teamId"),
                               dict(item.get("options") or {}), int(item.get("cycle", 0)),
                               bool(item.get("priority")), failures=int(item.get("failures", 0)))
            if item.get("seated"):
                entry.group = seated
                seated.members.append(entry)
            self.queue[hold.client.session_id] = entry

    # -- options ------------------------------------------------------------------------------
    def _configure(self, options: Mapping[str, Any]) -> None:
        defined = self._defined_options()
        for attribute, (names, valid, expected) in OPTIONS.items():
            for source in (defined, options):
                name = next((n for n in names if n in source), None)
                if name is None:
                    continue
                value = source[name]
                if valid(value):
                    setattr(self, attribute, value)
                    break
                log.info("queue %s: option %s=%.60r ignored: must be %s", self.room_id, name,
                         value, expected)

    def _defined_options(self) -> Mapping[str, Any]:
        host = self._gr.host
        definitions = getattr(host, "definitions", {})
        definition = definitions.get(self.room_name)
        return definition.default_options if definition is not None else {}


def _close_reason(reason: str) -> str:
    """A WebSocket close reason holds 123 bytes at most."""
    return reason.encode("utf-8")[:120].decode("utf-8", "ignore")
