"""The shared patch clock (issue 15, quiet rooms): a room with nothing to send costs no tick in
its line of execution, a change still leaves at the next tick, a room with its own
``on_before_patch`` gets every tick, a blocked room never has more than one tick waiting, and a
disposed room leaves nothing on the clock."""

import gevent
from gevent.event import Event

from greenroom import Room, Server, patch_clock
from greenroom.schema import Schema, field


class Counter(Schema):
    n = field("number", default=0)


def _server(room_cls, name="r"):
    server = Server()
    server.define(name, room_cls)
    return server


def test_a_room_without_changes_gets_no_tick_and_a_change_leaves_at_the_next_one():
    """Two rooms on one 10 ms clock. ``quiet`` never changes: its tick never runs in it. ``busy``
    changes its state from a timer: the tick runs, so the change was seen within the clock."""
    ticks = {"quiet": 0, "busy": 0}
    busy_ticked = Event()

    class Quiet(Room):
        patch_rate = 10

        def on_create(self, options):
            self.state = Counter()

    class Busy(Quiet):
        def on_create(self, options):
            super().on_create(options)
            self.clock.set_interval(self.move, 25)

        def move(self):
            self.state.n += 1

    server = Server()
    server.define("quiet", Quiet)
    server.define("busy", Busy)
    rooms = [server.matchmaker.get_room(server.matchmaker.create("quiet", {}).room_id),
             server.matchmaker.get_room(server.matchmaker.create("busy", {}).room_id)]
    for room in rooms:
        original = room._gr._patch_tick

        def counted(original=original, name=room._gr.name):
            ticks[name] += 1
            if ticks["busy"] >= 5:
                busy_ticked.set()
            original()

        room._gr._patch_tick = counted
        room._gr.reset_patch_timer()  # re-subscribe with the counting callback
    assert busy_ticked.wait(5), "the room with changes was not ticked"
    assert ticks["quiet"] == 0
    # The busy room changes every 25 ms on a 10 ms clock: its ticks run only after a change,
    # never once per clock tick (that would be ~2.5 per change).
    assert ticks["busy"] <= rooms[1].state.n + 1
    server.matchmaker.shutdown(timeout=5)


def test_an_own_on_before_patch_runs_every_tick_even_without_state():
    calls = []
    enough = Event()

    class Sim(Room):
        patch_rate = 10

        def on_before_patch(self):
            calls.append(1)
            if len(calls) >= 10:
                enough.set()

    server = _server(Sim)
    server.matchmaker.create("r", {})
    assert enough.wait(5), f"on_before_patch ran {len(calls)} times"
    server.matchmaker.shutdown(timeout=5)


def test_a_message_queued_for_after_the_patch_is_sent_without_a_state_change():
    """``broadcast(..., after_next_patch=True)`` in a room with no state: the tick must still run."""
    from greenroom.testing.kit import boot

    class Announce(Room):
        patch_rate = 20

        def on_join(self, client, options, auth):
            self.broadcast("hello", {"to": client.session_id}, after_next_patch=True)

    server = _server(Announce)
    with boot(server) as kit:
        client = kit.connect("r")
        message = client.wait_for_message("hello", timeout=5)
        assert message == {"to": client.session_id}


def test_a_blocked_room_keeps_one_tick_waiting_not_one_per_clock_tick():
    """A 10 ms clock while a handler blocks the room for 0.5 s: afterwards at most one tick runs
    before the message posted right behind the block, not the ~50 that fell due."""
    measured = {}
    done = Event()

    class Sim(Room):
        patch_rate = 10

        def on_create(self, options):
            self.ticks = 0
            self.clock.set_timeout(self.block, 30)

        def on_before_patch(self):
            self.ticks += 1

        def block(self):
            before = self.ticks
            gevent.sleep(0.5)
            self._gr.post(self.after, before)

        def after(self, before):
            measured["waiting"] = self.ticks - before
            done.set()

    server = _server(Sim)
    server.matchmaker.create("r", {})
    assert done.wait(5)
    assert measured["waiting"] <= 1, measured
    server.matchmaker.shutdown(timeout=5)


def test_disposed_rooms_leave_the_clock_and_its_timer_stops():
    class Plain(Room):
        patch_rate = 10
        auto_dispose = False

    server = _server(Plain)
    start = patch_clock.rooms_on_clocks()
    ids = [server.matchmaker.create("r", {}).room_id for _ in range(20)]
    assert patch_clock.rooms_on_clocks() == start + 20
    for room_id in ids:
        room = server.matchmaker.get_room(room_id)
        room.disconnect()
        assert room._gr.wait_ended(5)
    assert patch_clock.rooms_on_clocks() == start
    if start == 0:
        assert not patch_clock._clocks, "a clock with no room kept its timer"
    server.matchmaker.shutdown(timeout=5)
