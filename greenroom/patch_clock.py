"""One patch clock for every room of the process that shares a patch interval.

A room's patch tick usually finds nothing to send. Giving each room its own 20 Hz timer made
500 quiet rooms cost 10,000 timer callbacks, inbox posts and greenlet switches a second (the
quiet benchmark: 4x Colyseus' CPU). Here one libev timer per interval asks each room, in the
hub and without a switch, whether its tick has anything to do (a change, a message queued for
after the patch, an ``on_before_patch`` of its own); only those rooms get the tick posted to
their line of execution, so a patch still leaves within one interval of the change.

What a room's own timer promised is kept: a tick whose previous run still waits for the room is
skipped, not queued, and a cleared tick never runs, even if it was posted already.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import gevent

__all__ = ["PatchTick", "rooms_on_clocks", "subscribe"]

#: (pid, hub, interval in ms) -> its clock. The pid keeps a forked child off its parent's clocks.
_clocks: dict[tuple[int, Any, float], _SharedClock] = {}


class PatchTick:
    """One room's place on a shared clock; ``clear()`` takes it off (the room is disposed)."""

    __slots__ = ("_clock", "_callback", "_wanted", "_post", "_pending")

    def __init__(self, clock: _SharedClock, callback: Callable[[], Any], wanted: Callable[[], bool],
                 post: Callable[..., None]) -> None:
        self._clock: _SharedClock | None = clock
        self._callback = callback
        self._wanted = wanted
        self._post = post
        self._pending = False  # posted to the room, not run yet

    @property
    def active(self) -> bool:
        return self._clock is not None

    def clear(self) -> None:
        if self._clock is not None:
            self._clock.remove(self)
            self._clock = None

    def _due(self) -> None:
        """In the hub, on the clock's tick: post the room's tick if it has anything to do."""
        if self._pending or not self._wanted():
            return
        self._pending = True
        self._post(self._run)

    def _run(self) -> None:
        self._pending = False
        if self._clock is not None:
            self._callback()


class _SharedClock:
    """A repeating libev timer that runs while at least one room is on it."""

    def __init__(self, key: tuple[int, Any, float], seconds: float) -> None:
        self._key = key
        self._seconds = seconds
        self._ticks: dict[PatchTick, None] = {}  # ordered: rooms are asked in the order they came
        self._watcher: Any = None

    def add(self, tick: PatchTick) -> None:
        self._ticks[tick] = None
        if self._watcher is None:
            self._watcher = gevent.get_hub().loop.timer(self._seconds, self._seconds)
            self._watcher.start(self._fire)

    def remove(self, tick: PatchTick) -> None:
        self._ticks.pop(tick, None)
        if not self._ticks and self._watcher is not None:
            self._watcher.stop()
            self._watcher.close()
            self._watcher = None
            _clocks.pop(self._key, None)

    def _fire(self) -> None:
        for tick in list(self._ticks):
            tick._due()

    def __len__(self) -> int:
        return len(self._ticks)


def subscribe(interval_ms: float, callback: Callable[[], Any], wanted: Callable[[], bool],
              post: Callable[..., None]) -> PatchTick:
    """Every ``interval_ms``, post ``callback`` with ``post`` if ``wanted()`` says so."""
    if interval_ms <= 0:
        raise ValueError(f"a patch interval must be positive, got {interval_ms} ms")
    key = (os.getpid(), gevent.get_hub(), float(interval_ms))
    clock = _clocks.get(key)
    if clock is None:
        clock = _clocks[key] = _SharedClock(key, interval_ms / 1000.0)
    tick = PatchTick(clock, callback, wanted, post)
    clock.add(tick)
    return tick


def rooms_on_clocks() -> int:
    """How many rooms are on a shared clock of this process (the soak counts them)."""
    pid = os.getpid()
    return sum(len(clock) for key, clock in _clocks.items() if key[0] == pid)
