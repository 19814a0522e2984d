"""Timers that run inside the room's line of execution and die with the room.

Timers are libev watchers, not greenlets: a room with a 60 Hz simulation costs a watcher,
not a greenlet switch per tick, and every callback is posted to the room's inbox.
Times are in milliseconds, as in Colyseus.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gevent


class Timer:
    """A scheduled callback; ``clear()`` cancels it."""

    __slots__ = ("_watcher", "_clock", "callback", "args", "repeat")

    def __init__(self, clock: Clock, delay_ms: float, repeat: bool, callback: Callable[..., Any],
                 args: tuple[Any, ...]) -> None:
        self._clock = clock
        self.callback = callback
        self.args = args
        self.repeat = repeat
        seconds = max(delay_ms, 0) / 1000.0
        self._watcher = gevent.get_hub().loop.timer(seconds, seconds if repeat else 0.0)
        self._watcher.start(self._fire)

    def _fire(self) -> None:
        if not self.repeat:
            self._clock._timers.discard(self)
        self._clock._post(self._run)

    def _run(self) -> None:
        if self._watcher is None:
            return  # cleared after it fired but before its turn in the inbox
        if not self.repeat:
            self._watcher.close()
            self._watcher = None
        self.callback(*self.args)

    @property
    def active(self) -> bool:
        return self._watcher is not None

    def clear(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher.close()
            self._watcher = None
            self._clock._timers.discard(self)


class Clock:
    def __init__(self, post: Callable[..., None]) -> None:
        self._post = post
        self._timers: set[Timer] = set()
        self.start_time = time.monotonic()

    @property
    def elapsed_time(self) -> float:
        """Milliseconds since the room was created."""
        return (time.monotonic() - self.start_time) * 1000.0

    @property
    def current_time(self) -> float:
        return time.monotonic() * 1000.0

    def set_timeout(self, callback: Callable[..., Any], delay_ms: float, *args: Any) -> Timer:
        timer = Timer(self, delay_ms, False, callback, args)
        self._timers.add(timer)
        return timer

    def set_interval(self, callback: Callable[..., Any], interval_ms: float, *args: Any) -> Timer:
        if interval_ms <= 0:
            raise ValueError(f"an interval must be positive, got {interval_ms} ms")
        timer = Timer(self, interval_ms, True, callback, args)
        self._timers.add(timer)
        return timer

    def clear(self) -> None:
        for timer in list(self._timers):
            timer.clear()

    def __len__(self) -> int:
        return len(self._timers)
