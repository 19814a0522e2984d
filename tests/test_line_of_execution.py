"""DESIGN D2, a room's line of execution: its events never interleave, each client's messages
run in the order they were sent, and a handler may block (the room waits, nothing overtakes it).

They must hold whatever runs the handler (issue 15 tried running a message in the socket
reader that received it when the room is idle; see benchmarks/results/issue15.md), so they are
written against real sockets and many clients, with handlers that yield in the middle (a ``gevent.sleep(0)`` lets any other greenlet run: one
that entered the room then would be caught inside it).
"""

import gevent
from gevent.event import Event

from greenroom import Room, Server
from greenroom.testing.kit import boot

CLIENTS = 100
MESSAGES = 10


class Guarded(Room):
    """Counts who is inside the room's code; any overlap is recorded, never hidden."""

    def on_create(self, options):
        self.inside = 0
        self.overlaps = 0
        self.seen: dict[str, list[int]] = {}
        self.done = Event()
        self.expected = options.get("expected", 0)
        self.count = 0
        self.on_message("step", self.step)

    def enter(self):
        self.inside += 1
        if self.inside != 1:
            self.overlaps += 1

    def leave(self):
        self.inside -= 1

    def step(self, client, message):
        self.enter()
        gevent.sleep(0)  # yield: another greenlet running room code now would overlap
        self.seen.setdefault(client.session_id, []).append(message)
        self.count += 1
        self.leave()
        if self.count == self.expected:
            self.done.set()


def test_messages_of_100_clients_never_interleave_and_keep_each_clients_order():
    server = Server()
    server.define("guarded", Guarded)
    total = CLIENTS * MESSAGES
    with boot(server) as kit:
        room = kit.create_room("guarded", {"expected": total})
        rooms = [kit.connect(room) for _ in range(CLIENTS)]

        def send_all(client_room):
            for seq in range(MESSAGES):
                client_room.send("step", seq)

        gevent.joinall([gevent.spawn(send_all, r) for r in rooms], raise_error=True)
        assert room.done.wait(30), f"{room.count} of {total} messages handled"
        assert room.overlaps == 0
        assert sorted(room.seen) == sorted(r.session_id for r in rooms)
        for session_id, seqs in room.seen.items():
            assert seqs == list(range(MESSAGES)), session_id


def test_a_blocking_handler_holds_the_room_and_nothing_overtakes_it():
    """A's handler blocks (a gevent sleep, as a database call would); B's message, sent while A
    waits, runs only after A's handler has finished, and A's own next message, sent after B's
    was received, after B's."""
    events = []
    blocking = Event()
    finished = Event()

    class Blocking(Room):
        def on_create(self, options):
            self.on_message("block", self.block)
            self.on_message("note", self.note)

        def block(self, client, message):
            events.append("block start")
            blocking.set()
            gevent.sleep(0.3)
            events.append("block end")

        def note(self, client, message):
            events.append(message)
            if message == "a after":
                finished.set()

    server = Server()
    server.define("blocking", Blocking)
    with boot(server) as kit:
        a = kit.connect("blocking")
        b = kit.connect(a)
        a.send("block")
        assert blocking.wait(5)
        b.send("note", "b")
        b.ping()  # answered by b's reader once it has read (and queued) b's message
        a.send("note", "a after")
        assert finished.wait(5)
    assert events == ["block start", "block end", "b", "a after"]


def test_timers_and_messages_never_overlap_and_a_timer_set_in_a_handler_runs_after_it():
    """A 1 ms interval and two clients sending: timer runs and handlers yield in the middle, and
    never overlap; a 0 ms timeout set in a handler runs after that handler returned."""

    class Racing(Guarded):
        def on_create(self, options):
            super().on_create(options)
            self.ticks = 0
            self.order_errors = 0
            self.clock.set_interval(self.tick, 1)

        def tick(self):
            self.enter()
            gevent.sleep(0)
            self.ticks += 1
            self.leave()

        def step(self, client, message):
            returned = []
            self.clock.set_timeout(lambda: returned or self._late(), 0)
            super().step(client, message)
            returned.append(True)

        def _late(self):
            self.order_errors += 1

    server = Server()
    server.define("racing", Racing)
    clients, messages = 2, 200
    with boot(server) as kit:
        room = kit.create_room("racing", {"expected": clients * messages})
        rooms = [kit.connect(room) for _ in range(clients)]

        def send_all(client_room):
            for seq in range(messages):
                client_room.send("step", seq)
                if seq % 20 == 0:
                    gevent.sleep(0.002)  # let the interval fire between messages

        gevent.joinall([gevent.spawn(send_all, r) for r in rooms], raise_error=True)
        assert room.done.wait(30), f"{room.count} messages handled"
        assert room.ticks > 0
        assert room.overlaps == 0
        assert room.order_errors == 0
        for seqs in room.seen.values():
            assert seqs == list(range(messages))

