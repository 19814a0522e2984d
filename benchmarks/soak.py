"""Soak: create and dispose many rooms, then count what is left behind.

Each round joins a room (join_or_create), sends a message, lets a timer and an interval run,
subscribes the room to a presence channel, drops the client and reconnects it, then leaves
so the room is disposed. Afterwards the greenlets (gc objects of greenlet type), the
clocks' timers, the presence subscriptions and the listings are counted and compared with
their count before the first round; RSS is compared with a margin. Counting, not guessing,
is the point: a leak of one greenlet or one subscription per room shows up as N.

Run: ``python benchmarks/soak.py --rooms 10000`` (the CI test runs a bounded version).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import time
from typing import Any

import greenlet
from gevent.event import Event

from greenroom import Room, Server, patch_clock
from greenroom.clock import Clock, Timer
from greenroom.patch_clock import PatchTick
from greenroom.testing.kit import boot


class SoakRoom(Room):
    """A room that uses every resource the soak counts: a timer, an interval, a presence
    subscription and a held seat for reconnection."""

    def on_create(self, options: dict[str, Any]) -> None:
        self.ticks = 0
        self.timer_ran = Event()
        self.clock.set_timeout(self.timer_ran.set, 1)
        self.clock.set_interval(self._tick, 5)
        self.presence.subscribe(f"soak:{self.room_id}", self._heard)
        self.on_message("echo", lambda client, body: client.send("echo", body))

    def _tick(self) -> None:
        self.ticks += 1

    def _heard(self, message: Any) -> None:
        pass

    def on_drop(self, client: Any, code: int | None = None) -> None:
        self.allow_reconnection(client, 5)

    def on_dispose(self) -> None:
        self.presence.unsubscribe(f"soak:{self.room_id}", self._heard)


def count_greenlets() -> int:
    return sum(1 for obj in gc.get_objects() if isinstance(obj, greenlet.greenlet) and not obj.dead)


def counts(server: Server) -> dict[str, int]:
    """What the soak compares before and after: counted from the live objects."""
    gc.collect()
    rooms = list(server.matchmaker.rooms.values())
    callbacks = getattr(server.matchmaker.presence, "_callbacks", {})
    return {
        "greenlets": count_greenlets(),
        "rooms": len(rooms),
        "timers": sum(1 for obj in gc.get_objects() if isinstance(obj, Timer | PatchTick)),
        "on_patch_clocks": patch_clock.rooms_on_clocks(),
        "clocks": sum(1 for obj in gc.get_objects() if isinstance(obj, Clock)),
        "room_objects": sum(1 for obj in gc.get_objects() if isinstance(obj, Room)),
        "subscriptions": sum(len(listeners) for listeners in callbacks.values()),
        "listings": len(server.matchmaker.driver.query(None)),
    }


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def one_round(test_server: Any, n: int) -> None:
    player = test_server.connect("soak", state_decoder=None)
    replies: list[Any] = []
    got = Event()
    player.on_message("echo", lambda body: (replies.append(body), got.set()))
    player.send("echo", n)
    if not got.wait(5) or replies != [n]:
        raise AssertionError(f"round {n}: echo not received ({replies})")
    room = test_server.room_of(player)
    if not room.timer_ran.wait(5):
        raise AssertionError(f"round {n}: timer did not run")
    token = player.reconnection_token
    player.drop()
    again = test_server.client(state_decoder=None).reconnect(token)
    again.leave()
    test_server.wait_for_dispose(room)


def soak(rooms: int, warmup: int = 20) -> dict[str, Any]:
    """Run ``rooms`` rounds after ``warmup`` ones; return counts and RSS before and after."""
    server = Server()
    server.define("soak", SoakRoom)
    with boot(server) as test_server:
        for n in range(warmup):
            one_round(test_server, n)
        before, rss_before = counts(server), rss_kib()
        started = time.monotonic()
        for n in range(rooms):
            one_round(test_server, n)
        elapsed = time.monotonic() - started
        after, rss_after = counts(server), rss_kib()
    return {"rooms": rooms, "seconds": round(elapsed, 1), "before": before, "after": after,
            "rss_kib_before": rss_before, "rss_kib_after": rss_after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=10000)
    args = parser.parse_args()
    print(json.dumps(soak(args.rooms), indent=2))


if __name__ == "__main__":
    main()
