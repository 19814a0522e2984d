"""Timers in a room's line of execution: nothing runs after on_dispose, and an interval that
falls behind never queues more than one run (issue 16, defects 5 and 6)."""

import gevent
from gevent.event import Event

from greenroom import Room, Server


def test_a_timer_that_fired_before_dispose_never_runs_after_on_dispose():
    """The round timer fires while the room is busy; the seat expiry queued before it disposes
    the room. The round's callback, already fired, must not run after on_dispose."""
    events = []
    disposed = Event()

    class Round(Room):
        seat_reservation_timeout = 0.05

        def on_create(self, options):
            self.clock.set_timeout(self.busy, 0)  # runs first and holds the room 0.2 s
            self.clock.set_timeout(self.round_over, 100)  # fires while the room is busy

        def busy(self):
            gevent.sleep(0.2)  # a blocking call: the expiry (50 ms) and round (100 ms) queue up

        def round_over(self):
            events.append("round over")

        def on_dispose(self):
            events.append("dispose")
            disposed.set()

    server = Server()
    server.define("round", Round)
    seat = server.matchmaker.join_or_create("round", {})  # a seat nobody claims: it expires
    room = server.matchmaker.get_room(seat.room_id)
    assert disposed.wait(5), "the room was not disposed after its seat expired"
    assert server.matchmaker.get_room(seat.room_id) is None
    assert room._gr.wait_ended(5)  # whatever was still queued in the room has had its turn
    assert events == ["dispose"]


def test_an_interval_slower_than_its_period_keeps_one_run_pending():
    """A 10 ms interval while a handler blocks the room for 0.5 s: when the room is free again,
    at most one tick is waiting (skipped, not queued), not the ~50 that fell due."""
    measured = {}
    done = Event()

    class Sim(Room):
        def on_create(self, options):
            self.ticks = 0
            self.clock.set_interval(self.tick, 10)
            self.clock.set_timeout(self.block, 30)

        def tick(self):
            self.ticks += 1

        def block(self):
            before = self.ticks
            gevent.sleep(0.5)  # a slow handler: ~50 ticks fall due meanwhile
            measured["before"] = before
            # A timeout set now runs after every tick already waiting in the room.
            self.clock.set_timeout(self.report, 0)

        def report(self):
            measured["waiting"] = self.ticks - measured["before"]
            done.set()

    server = Server()
    server.define("sim", Sim)
    listing = server.matchmaker.create_room("sim", {})
    try:
        assert done.wait(10)
        assert measured["waiting"] <= 2, f"{measured['waiting']} ticks were queued behind the block"
    finally:
        server.matchmaker.get_room(listing.room_id).disconnect()
