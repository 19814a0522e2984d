"""What the hostile-input tests share: an echo room, a well-behaved client that must notice
nothing, and a watch on everything greenroom logs or gevent prints.

The property every hostile test checks is the same (issue 13): the server answers bad input with
the protocol's error or close code, keeps running, other clients are untouched, and nothing a
client sent produces a traceback. ``LogWatch`` sees both places a traceback can go: a logging
record with exception info, and the gevent hub's exception stream (where an exception that
escapes a greenlet, such as pywsgi's "failed with RecursionError", is printed).
"""

from __future__ import annotations

import io
import itertools
import logging
import os
from typing import Any

import gevent
from hypothesis import HealthCheck, settings

from greenroom import Room
from greenroom.client import Room as ClientRoom

#: GREENROOM_FUZZ_SCALE=N runs N times the examples (a longer, still reproducible run).
FUZZ_SCALE = int(os.environ.get("GREENROOM_FUZZ_SCALE", "1"))


def fuzzing(examples: int) -> settings:
    """Hypothesis settings of the fuzz tests: ``examples`` (times FUZZ_SCALE), no deadline (a
    server round trip varies), derandomized so CI runs the same inputs every time, no example
    database; a module-scoped server is shared by the examples on purpose."""
    return settings(max_examples=examples * FUZZ_SCALE, deadline=None, derandomize=True,
                    database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                          HealthCheck.too_slow])


class Echo(Room):
    """Sends every message back; bytes too. No pings: a test decides when a peer is silent."""

    ping_interval = None

    def on_create(self, options: dict[str, Any]) -> None:
        self.on_message("echo", lambda client, message: client.send("echo", message))
        self.on_bytes("echo", lambda client, data: client.send_bytes("echo", data))


class LogWatch(logging.Handler):
    """Records what the ``greenroom`` loggers write and what the hub prints, from ``start``."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self.hub_stream = io.StringIO()
        self._logger = logging.getLogger("greenroom")
        self._level = self._logger.level
        self._hub_stream: Any = None

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def start(self) -> LogWatch:
        self._logger.addHandler(self)
        self._logger.setLevel(logging.INFO)
        hub = gevent.get_hub()
        self._hub_stream = hub.exception_stream
        hub.exception_stream = self.hub_stream
        return self

    def stop(self) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)
        gevent.get_hub().exception_stream = self._hub_stream

    def mark(self) -> int:
        return len(self.records)

    def since(self, mark: int) -> list[str]:
        return [record.getMessage() for record in self.records[mark:]]

    def tracebacks(self) -> list[str]:
        """Every traceback so far: records with exception info, and the hub's printout."""
        found = [self.format(r) for r in self.records if r.exc_info or r.stack_info]
        printed = self.hub_stream.getvalue()
        if "Traceback" in printed:
            found.append(printed)
        return found

    def assert_no_traceback(self) -> None:
        """Fail on any traceback so far; then start afresh, so that one bad example does not
        fail every later one (Hypothesis shrinks each failure on its own)."""
        found = self.tracebacks()
        self.records.clear()
        self.hub_stream.seek(0)
        self.hub_stream.truncate()
        assert not found, "a client's bad input produced a traceback:\n" + "\n".join(found)[:4000]


class Bystander:
    """A well-behaved client in the room under attack: it must keep echoing and hear nothing else."""

    def __init__(self, room: ClientRoom) -> None:
        self.room = room
        self.errors: list[tuple[int, str]] = []
        self.leaves: list[tuple[int, str]] = []
        room.on_error(lambda code, message: self.errors.append((code, message)))
        room.on_leave(lambda code, reason: self.leaves.append((code, reason)))
        self._n = itertools.count()

    def check(self, timeout: float = 5.0) -> None:
        """One echo round trip; fails if the client saw an error, a leave, or anything else."""
        token = f"still here {next(self._n)}"
        self.room.send("echo", token)
        assert self.room.wait_for_message("echo", timeout) == token
        assert not self.errors and not self.leaves and not self.room.closed, (self.errors, self.leaves)


class Arena:
    """One server with an echo room, a bystander in it and a log watch: what a fuzz module
    shares across its examples (booting a server per example would cost the time budget)."""

    def __init__(self, server: Any) -> None:
        from greenroom.testing import boot

        server.define("echo", Echo)
        self.running = boot(server)
        self.watch = LogWatch().start()
        self.bystander = Bystander(self.running.connect("echo"))
        self.room = self.running.room_of(self.bystander.room)

    def after_example(self) -> None:
        """The property every example ends on: no traceback, the bystander unaffected."""
        self.watch.assert_no_traceback()
        self.bystander.check()

    def assert_only_the_bystander_left(self) -> None:
        """Every hostile peer's seat was given back (a leak would keep the room's count up). The
        socket's close reaches the room asynchronously, so this polls the room's real count."""
        from servers import wait_until

        wait_until(lambda: [c.session_id for c in self.room.clients]
                   == [self.bystander.room.session_id] and self.room._gr.seats_taken == 1)

    def close(self) -> None:
        self.watch.stop()
        self.running.shutdown()
