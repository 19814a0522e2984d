"""A load test run: N bots joined at a given rate, playing until the deadline, then leaving.

The run is bounded whatever the server does: joins have a timeout, the run ends at its
deadline (or on Ctrl-C), leaving has a timeout, and bots still stuck after that are killed
(they are only greenlets of our own client).
"""

from __future__ import annotations

import errno
import functools
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import gevent
import gevent.event
import gevent.pool

from ..client import Client, RawStateDecoder
from .bot import Bot, BotPlan, Hooks
from .stats import Stats

PROGRESS_INTERVAL = 0.5
LEAVE_GRACE = 6.0  # seconds bots get to leave once the run is over


class Unreachable(Exception):
    """The target cannot be reached at all; the message names it and says how it failed."""


@dataclass(frozen=True)
class Config:
    target: str
    room: str
    clients: int
    duration: float
    rate: float              # joins per second; 0: all at once
    options: dict[str, Any]
    dialect: str
    method: str = "join_or_create"
    script: str | None = None
    tick: float = 0.1
    ping_interval: float = 1.0
    join_timeout: float = 10.0
    decode_state: bool = False

    def public(self) -> dict[str, Any]:
        """The settings as the summary reports them."""
        return {"target": self.target, "room": self.room, "method": self.method,
                "dialect": self.dialect, "clients": self.clients, "rate": self.rate,
                "options": self.options, "script": self.script}


def make_client(config: Config) -> Client:
    """The shared client (raises ValueError for a URL it cannot use)."""
    if config.decode_state:
        from ..schema import StateDecoder

        decoder: Callable[[], Any] = StateDecoder
    else:
        decoder = functools.partial(RawStateDecoder, keep=0)  # count frames, decode nothing
    return Client(config.target, dialect=config.dialect, state_decoder=decoder, message_buffer=0)


def preflight(client: Client, timeout: float = 3.0) -> None:
    """Fail fast, with one clear line, when nothing answers at the target's address."""
    where = f"{client.host}:{client.port}"
    try:
        socket.create_connection((client.host, client.port), timeout=timeout).close()
    except socket.gaierror as exc:
        raise Unreachable(f"cannot resolve host {client.host!r} ({exc.strerror})") from None
    except TimeoutError:
        raise Unreachable(f"no answer from {where} within {timeout:g} s") from None
    except OSError as exc:
        reason = "connection refused: is the server running?" if exc.errno == errno.ECONNREFUSED \
            else (exc.strerror or str(exc))
        raise Unreachable(f"cannot connect to {where}: {reason}") from None


class LoadTest:
    def __init__(self, config: Config, hooks: Hooks, client: Client, *,
                 progress: TextIO | None = None) -> None:
        self.config = config
        self.hooks = hooks
        self.client = client
        self.progress = progress  # a terminal for the live line, or None
        self.stats = Stats(config.clients)
        self.stop = gevent.event.Event()
        self.interrupted = False
        self._bots = gevent.pool.Group()

    def run(self) -> dict[str, Any]:
        plan = BotPlan(self.config.room, self.config.method, self.config.options,
                       self.config.join_timeout, self.config.tick, self.config.ping_interval)
        handlers = [gevent.signal_handler(signum, self._interrupt)
                    for signum in (signal.SIGINT, signal.SIGTERM)]
        reporter = gevent.spawn(self._report_forever) if self.progress is not None else None
        started = time.monotonic()
        launcher = gevent.spawn(self._launch, plan, started)
        try:
            self.stop.wait(self.config.duration)
            self.stop.set()
            launcher.kill()
            self._bots.join(timeout=self.config.join_timeout + LEAVE_GRACE)
            self._bots.kill(block=True, timeout=2)
        finally:
            for handler in handlers:
                handler.cancel()
            if reporter is not None:
                reporter.kill()
                self.progress.write("\r\x1b[K")  # type: ignore[union-attr]
                self.progress.flush()  # type: ignore[union-attr]
        duration = time.monotonic() - started
        return self.stats.summary(self.config.public(), duration, self.interrupted)

    def _launch(self, plan: BotPlan, started: float) -> None:
        interval = 1.0 / self.config.rate if self.config.rate > 0 else 0.0
        for index in range(self.config.clients):
            if interval:
                delay = started + index * interval - time.monotonic()
                if delay > 0 and self.stop.wait(delay):
                    return
            if self.stop.is_set():
                return
            bot = Bot(index, self.client, plan, self.hooks, self.stats)
            self._bots.spawn(bot.run, self.stop)

    def _interrupt(self) -> None:
        self.interrupted = True
        self.stop.set()

    def _report_forever(self) -> None:
        out = self.progress
        assert out is not None
        while True:
            out.write("\r\x1b[K" + self.stats.progress_line())
            out.flush()
            gevent.sleep(PROGRESS_INTERVAL)


def human_summary(summary: dict[str, Any]) -> str:
    """The summary for a person at a terminal (the JSON line follows it)."""
    rtt, join = summary["rtt_ms"], summary["join_ms"]
    lines = [
        f"{summary['connected']}/{summary['clients']} joined, {summary['failed']} failed, "
        f"{summary['dropped']} dropped by the server, in {summary['duration_s']:.1f} s",
        f"join p50 {_f(join['p50'])} ms, p99 {_f(join['p99'])} ms; "
        f"rtt p50 {_f(rtt['p50'])} ms, p99 {_f(rtt['p99'])} ms ({rtt['samples']} pings)",
        f"messages in {summary['messages_in']} ({summary['messages_in_per_s']}/s), "
        f"out {summary['messages_out']}, state frames {summary['state_frames']}",
    ]
    lines += [f"  {count} x {error}" for error, count in summary["errors"].items()]
    lines += [f"  script: {count} x {error}" for error, count in summary["script_errors"].items()]
    return "\n".join(lines)


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def is_terminal(stream: TextIO = sys.stdout) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
