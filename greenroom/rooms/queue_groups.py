"""How a QueueRoom groups its waiting players, once per cycle (README, "QueueRoom").

Pure logic, no room and no socket, so that each rule can be tested on its own. The rules follow
Colyseus' QueueRoom where it defines one; where it leaves a case open (teams), they are ours:

* Every cycle regroups everyone still waiting, from scratch, lowest rank first: each player
  (with ``max_team_size``: each squad, up to that many players of one team) joins the first
  group still open that has room for all of it, holds no one of its team, and accepts each of
  its players (``compare``); otherwise it opens a new group. Members of a ready group are no
  longer regrouped.
* A group with ``max_players`` members is ready.
* A player's ``current_cycle`` counts the cycles it has been grouped in. From
  ``max_waiting_cycles_for_priority`` on it has priority: every open group with room accepts it,
  whatever ``compare`` says. With ``allow_incomplete_groups``, a group holding a player that
  waited ``max_waiting_cycles`` is ready as it is, once each of its members has had a second
  cycle (newcomers get one chance to be grouped with others first).
* The default ``compare`` accepts a player whose rank differs from the group's average by less
  than 10 plus ``rank_widening`` per cycle it waited, or by at most twice that average.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Grouping", "MatchGroup", "QueueEntry", "rank_compare"]

#: Rank difference always accepted by the default compare (Colyseus uses the same).
RANK_TOLERANCE = 10.0
#: ... or a difference of at most this many times the group's average rank.
RANK_RATIO = 2.0


@dataclass(eq=False, slots=True)
class QueueEntry:
    """One waiting player: its queue client, rank, team and join options."""

    client: Any
    rank: float = 0.0
    team_id: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: Cycles this player has been grouped in (0 before its first).
    current_cycle: int = 0
    high_priority: bool = False
    #: Its group of the last cycle (or the ready group that seated it).
    group: MatchGroup | None = None
    confirmed: bool = False
    #: Failed attempts to seat a group it was in.
    failures: int = 0
    #: The group size it was last told (``clients`` message), so it is told only of changes.
    last_count: int | None = None

    @property
    def session_id(self) -> str | None:
        return getattr(self.client, "session_id", None)


@dataclass(eq=False, slots=True)
class MatchGroup:
    members: list[QueueEntry] = field(default_factory=list)
    average_rank: float = 0.0
    ready: bool = False
    #: Members that confirmed they reached the match room.
    confirmed: int = 0
    teams: set[Any] = field(default_factory=set)
    _rank_total: float = 0.0

    @property
    def clients(self) -> list[Any]:
        return [member.client for member in self.members]

    def __len__(self) -> int:
        return len(self.members)

    def add(self, squad: list[QueueEntry], team: Any) -> None:
        self.members.extend(squad)
        self.teams.add(team)
        self._rank_total += sum(entry.rank for entry in squad)
        self.average_rank = self._rank_total / len(self.members)


def rank_compare(entry: QueueEntry, group: MatchGroup, widening: float = 0.0) -> bool:
    """The default compare: close in rank, the tolerance widening with the cycles waited."""
    difference = abs(entry.rank - group.average_rank)
    if difference < RANK_TOLERANCE + widening * entry.current_cycle:
        return True
    average = abs(group.average_rank)
    return average > 0 and difference / average <= RANK_RATIO


Compare = Callable[[QueueEntry, MatchGroup], bool]


@dataclass
class Grouping:
    max_players: int = 4
    max_team_size: int | None = None
    allow_incomplete_groups: bool = False
    max_waiting_cycles: int = 15
    max_waiting_cycles_for_priority: int | None = 10
    compare: Compare = rank_compare

    def regroup(self, entries: Iterable[QueueEntry]) -> list[MatchGroup]:
        """One cycle: the groups of everyone still waiting (ready ones first to be seated)."""
        waiting = [e for e in entries if e.group is None or not e.group.ready]
        groups: list[MatchGroup] = []
        waited_long: list[MatchGroup] = []
        for team, squad in self._squads(waiting):
            group = self._place(squad, team, groups)
            for entry in squad:
                waited = entry.current_cycle
                entry.current_cycle += 1
                entry.group = group
                if group.ready:
                    continue
                if self.allow_incomplete_groups and waited >= self.max_waiting_cycles:
                    if group not in waited_long:
                        waited_long.append(group)
                elif (self.max_waiting_cycles_for_priority is not None
                      and waited >= self.max_waiting_cycles_for_priority):
                    entry.high_priority = True
        for group in waited_long:
            group.ready = group.ready or all(entry.current_cycle > 1 for entry in group.members)
        return groups

    def _squads(self, waiting: list[QueueEntry]) -> list[tuple[Any, list[QueueEntry]]]:
        """Units placed together, lowest (average) rank first: each player alone, or with
        ``max_team_size`` the players of a team cut into squads of at most that size. A player
        without a team is a team of its own."""
        ordered = sorted(waiting, key=lambda entry: _finite(entry.rank))
        if self.max_team_size is None:
            return [(id(entry), [entry]) for entry in ordered]
        teams: dict[Any, list[QueueEntry]] = {}
        for entry in ordered:
            key = entry.team_id if entry.team_id is not None else id(entry)
            teams.setdefault(key, []).append(entry)
        size = max(1, min(self.max_team_size, self.max_players))
        squads = [(team, members[i:i + size]) for team, members in teams.items()
                  for i in range(0, len(members), size)]
        squads.sort(key=lambda unit: sum(_finite(e.rank) for e in unit[1]) / len(unit[1]))
        return squads

    def _place(self, squad: list[QueueEntry], team: Any, groups: list[MatchGroup]) -> MatchGroup:
        for group in groups:
            if group.ready or len(group) + len(squad) > self.max_players or team in group.teams:
                continue
            if all(entry.high_priority or self.compare(entry, group) for entry in squad):
                break
        else:
            group = MatchGroup()
            groups.append(group)
        group.add(squad, team)
        if len(group) >= self.max_players:
            group.ready = True
        return group


def _finite(rank: float) -> float:
    return rank if math.isfinite(rank) else 0.0
