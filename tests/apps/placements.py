"""Placements the test applications choose from, so that a test decides which process holds
which room (tests/apps/builtin_rooms.py, tests/apps/queueing.py)."""


class HereFirst:
    """New rooms in the process that took the request."""

    def __init__(self, server):
        self.server = server

    def choose(self, name, options):
        return self.server.process_id


class RoundRobin:
    """The serving processes in turn (sorted by processId): under ``--workers 2`` both workers
    hold rooms, whichever worker took the request."""

    def __init__(self, server):
        self.server = server

    def choose(self, name, options):
        serving = sorted(p.process_id for p in self.server.registry.alive_processes()
                         if p.state == "serving")
        if not serving:
            return self.server.process_id
        turn = self.server.presence.incr("greenroom:test:round-robin")
        return serving[turn % len(serving)]
