"""The test application of tests/test_queue_room.py: a QueueRoom ``queue`` whose groups go to
``match`` rooms; 0.18 clients use the ``/v18`` prefix.

``queue`` groups players by the ``band`` of their join options (a ``compare`` hook), four at a
time, every 50 ms; no priority after long waits, so bands never mix. ``match`` greets each member with where it is (``welcome``: roomId,
processId, pid, sessionId, band), so a test sees which group reached which room in which
process. ``flaky_queue`` sends its groups to ``flaky`` rooms, whose creation fails while the
file named by GREENROOM_TEST_FLAKY holds a number above zero (decremented at each failure).

With GREENROOM_TEST_ROUND_ROBIN=1 new rooms go to the serving processes in turn (a shared
counter in presence), so that under ``--workers 2`` match rooms are made in both workers
whatever their load.
"""

import os

from placements import RoundRobin

from greenroom import QueueRoom, Room, Server


class Match(Room):
    max_clients = 4

    def on_join(self, client, options, auth):
        client.send("welcome", {"roomId": self.room_id, "processId": self.process_id,
                                "pid": os.getpid(), "sessionId": client.session_id,
                                "band": options.get("band")})


class Flaky(Match):
    def on_create(self, options):
        path = os.environ.get("GREENROOM_TEST_FLAKY")
        if path and os.path.exists(path):
            with open(path) as f:
                left = int(f.read() or 0)
            if left > 0:
                with open(path, "w") as f:
                    f.write(str(left - 1))
                raise RuntimeError(f"flaky match room: {left} failure(s) to go")


class BandQueue(QueueRoom):
    cycle_tick_interval = 50
    max_waiting_cycles_for_priority = None  # bands stay apart however long one waits

    def compare(self, entry, group):
        return entry.options.get("band") == group.members[0].options.get("band")


server = Server(dialects={"/v18": "v5"}, heartbeat=0.5, lease=2.0, rpc_timeout=2.0)
if os.environ.get("GREENROOM_TEST_ROUND_ROBIN") == "1" and server.registry is not None:
    server.matchmaker.placement = RoundRobin(server)
server.define("match", Match)
server.define("flaky", Flaky)
server.define("queue", BandQueue, match_room_name="match", maxPlayers=4)
server.define("flaky_queue", BandQueue, match_room_name="flaky", max_players=4)
