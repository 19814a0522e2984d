"""What every join storm under faults checks afterwards (issue 13), shared by tests/test_storms*.py.

A storm is ``STORM`` concurrent joinOrCreate, each ending in a joined room or an error (never a
hang: the greenlets are joined with a timeout). The checks:

* no room holds more than ``max_clients``;
* every failure is a MatchMakeError with an integer protocol code (what a fault may explain);
* every joined client has a working socket: its echo comes back;
* rooms not full are bounded: with the cross-process creation lock one room at a time is being
  filled, and each failed request, each lost seat or each seat request whose answer was lost
  (``unanswered_seats``) can leave one more seat empty somewhere;
  a storm states what else it allows and why (``check_rooms(extra=...)``);
* after the lease, the listings are exactly the live rooms (no listing without a room, no room
  without its listing), and none is stale (its seat count behind its room's).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import gevent

from greenroom.client import Client, ClientConnectionError, MatchMakeError, Room

from servers import wait_until

STORM = 1000
MAX_CLIENTS = 4


def storm(clients: Sequence[Client], n: int, fault: Callable[[dict[int, Any]], None] | None = None,
          *, room: str = "table", timeout: float = 90.0) -> dict[int, Any]:
    """``n`` concurrent joinOrCreate of ``room`` spread over ``clients``; ``fault(results)`` runs
    meanwhile (it may wait on ``results`` filling up). Each result is a Room or the exception
    it raised; a join that hangs, or raises anything but a client error, fails the test."""
    results: dict[int, Any] = {}

    def join(i: int) -> None:
        try:
            results[i] = clients[i % len(clients)].join_or_create(room, {}, 60)
        except (MatchMakeError, ClientConnectionError) as error:
            results[i] = error

    jobs = [gevent.spawn(join, i) for i in range(n)]
    if fault is not None:
        fault(results)
    gevent.joinall(jobs, timeout=timeout)
    hung = [i for i, job in enumerate(jobs) if not job.dead]
    gevent.killall(jobs, timeout=5)
    assert not hung, f"{len(hung)} joins hung"
    assert all(job.successful() for job in jobs), [repr(j.exception) for j in jobs if j.exception][:5]
    assert len(results) == n
    return results


def seated_fraction(results: dict[int, Any], share: float, n: int = STORM) -> Callable[[], bool]:
    """A predicate: ``share`` of the storm has an answer (the moment to inject a fault)."""
    return lambda: len(results) >= n * share


def joined_rooms(results: dict[int, Any]) -> list[Room]:
    return [r for r in results.values() if isinstance(r, Room)]


def failures(results: dict[int, Any]) -> list[Exception]:
    return [r for r in results.values() if not isinstance(r, Room)]


def check_failures_have_codes(failed: Iterable[Exception],
                              codes: Iterable[int] | None = None) -> collections.Counter:
    """Each failure is a MatchMakeError with a protocol code (in ``codes`` if given); their
    tally by code, for the report."""
    failed = list(failed)
    bad = [repr(e) for e in failed if not isinstance(e, MatchMakeError) or not isinstance(e.code, int)]
    assert not bad, bad[:5]
    tally = collections.Counter(e.code for e in failed)
    if codes is not None:
        assert set(tally) <= set(codes), tally
    return tally


def check_echoes(rooms: Sequence[Room], timeout: float = 10) -> None:
    """Every seat's socket works: what each client sends comes back to it."""
    for room in rooms:
        room.send("echo", room.session_id)
    echoes = {}
    for room in rooms:
        echoes[room.session_id] = room.wait_for_message("echo", timeout=timeout)
    assert echoes == {room.session_id: room.session_id for room in rooms}


def check_rooms(sizes: collections.Counter, failed: int, extra: int = 0) -> int:
    """No room over ``MAX_CLIENTS``; at most ``1 + failed + extra`` rooms not full (see the
    module docstring). The number not full, for the report."""
    assert sizes, "nobody joined"
    assert max(sizes.values()) <= MAX_CLIENTS, sizes.most_common(3)
    not_full = sum(1 for n in sizes.values() if n < MAX_CLIENTS)
    assert not_full <= 1 + failed + extra, (not_full, failed, extra)
    return not_full


def unanswered_seats(*logs: str) -> int:
    """Seat reservations asked of another process whose answer never came (the caller logs it
    and looks elsewhere): the owner may have reserved a seat nobody takes until it expires."""
    return sum(log.count("did not answer reserve_seat") for log in logs)


def check_listings_match(query: Callable[[], Iterable[Any]], sizes: collections.Counter,
                         timeout: float = 10) -> None:
    """After the lease the listings are exactly the live rooms (``sizes``: room id -> clients
    in it), and none is stale: each counts at least the clients in its room (more only for
    seats reserved and not yet taken, or never: they expire), exactly them when it is full."""
    last: list[dict[str, int]] = [{}]

    def wrong() -> list[str]:
        listed = last[0]
        return [f"{room_id}: listed {listed[room_id]}, in it {n}" for room_id, n in sizes.items()
                if room_id in listed and (listed[room_id] < n
                                          or (n == MAX_CLIENTS and listed[room_id] != n))]

    def match() -> bool:
        try:
            last[0] = {listing.room_id: listing.clients for listing in query()}
        except Exception:  # noqa: BLE001 - a backend just restarted may refuse a moment
            return False
        return set(last[0]) == set(sizes) and not wrong()

    try:
        wait_until(match, timeout, interval=0.1)
    except AssertionError:
        listed = set(last[0])
        raise AssertionError(f"listings without a room: {sorted(listed - set(sizes))[:5]}, rooms "
                             f"without a listing: {sorted(set(sizes) - listed)[:5]}, stale "
                             f"listings: {wrong()[:5]}") from None


def leave_all(rooms: Iterable[Room]) -> None:
    gevent.joinall([gevent.spawn(room.leave) for room in rooms], timeout=30)


class OfficialStorm:
    """``n`` joins by an official client (tests/js/storm.mjs in node), run beside a Python storm.

    ``report()``: what the joins did (ok, errors with the SDK's code, rooms); ``check()``: every
    room not closed by the server echoes once more, and which were closed (code) meanwhile;
    ``leave()``: the rooms left, node exits. Each is one JSON line the script prints."""

    def __init__(self, endpoint: str, n: int, client: str = "sdk17", room: str = "table") -> None:
        import os
        import subprocess

        from conftest import JS_DIR

        self.n = n
        self.proc = subprocess.Popen(
            ["node", os.path.join(JS_DIR, "storm.mjs"), "--client", client, "--endpoint", endpoint,
             "--room", room, "--n", str(n), "--timeout", "60000", "--deadline", "150000"],
            cwd=JS_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._report: dict[str, Any] | None = None

    def _line(self) -> dict[str, Any]:
        import json

        with gevent.Timeout(160, AssertionError("storm.mjs printed nothing")):
            line = self.proc.stdout.readline()
        assert line.startswith("{"), f"storm.mjs exited with {self.proc.poll()}: {line!r}"
        answer = json.loads(line)
        assert "error" not in answer, answer
        return answer

    def _ask(self, command: str) -> dict[str, Any]:
        self.report()
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._line()

    def report(self) -> dict[str, Any]:
        if self._report is None:
            self._report = self._line()
            assert self._report["ok"] + len(self._report["errors"]) == self.n, self._report
        return self._report

    def check(self) -> dict[str, Any]:
        return self._ask("check")

    def failure_codes(self, codes: Iterable[int]) -> collections.Counter:
        """The SDK's failed joins by code: each an int (the server's code reached the client)
        and one of ``codes``."""
        report = self.report()
        tally = collections.Counter(error["code"] for error in report["errors"])
        assert all(isinstance(code, int) for code in tally), report["errors"][:5]
        assert set(tally) <= set(codes), report["errors"][:5]
        return tally

    def check_all_echo(self) -> None:
        """Every room the SDK joined echoes once more, and the server closed none meanwhile."""
        checked = self.check()
        assert checked["closed"] == [] and checked["notEchoed"] == [], checked
        assert checked["echoed"] == self.report()["ok"]

    def leave(self) -> dict[str, Any]:
        left = self._ask("leave")
        assert self.proc.wait(30) == 0 and left["leaveErrors"] == [], left
        return left

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
