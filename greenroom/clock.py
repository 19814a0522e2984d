"""Timers that run inside the room's line of execution and die with the room.

Timers are libev watchers, not greenlets: a room with a 60 Hz simulation costs a watcher,
not a greenlet switch per tick, and every callback is posted to the room's inbox.
Times are in milliseconds, as in Colyseus.

Two rules (docs/architecture.md, "Timers"):

* A timer belongs to its clock until its callback has run or it was cleared, so ``clear()``
  (the room's dispose) also stops a timer that fired but whose turn in the inbox has not come.
* An interval never has more than one run waiting. A tick that falls due while the previous
  one still waits for the room (a handler is blocking) is skipped, not queued: a room that is
  slower than its interval runs the interval as often as it can, and other events are never
  buried under a pile of stale ticks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import gevent

from . import patch_clock

log = logging.getLogger("greenroom.room")


class Timer:
    """A scheduled callback; ``clear()`` cancels it."""

    __slots__ = ("_watcher", "_clock", "_pending", "callback", "args", "repeat", "_due")

    def __init__(self, clock: Clock, delay_ms: float, repeat: bool, callback: Callable[..., Any],
                 args: tuple[Any, ...]) -> None:
        self._clock = clock
        self._pending = False  # posted to the inbox, not run yet
        self.callback = callback
        self.args = args
        self.repeat = repeat
        self._watcher: Any = None
        seconds = max(delay_ms, 0) / 1000.0
        self._due = time.monotonic() + seconds
        if clock.closed:
            return  # the room is disposed: an inert timer, never fires
        self._watcher = gevent.get_hub().loop.timer(seconds, seconds if repeat else 0.0)
        self._watcher.start(self._fire)

    def _fire(self) -> None:
        if self._pending:
            return  # the previous run still waits for the room: skip this tick
        self._pending = True
        self._clock._post(self._run)

    def _run(self) -> None:
        self._pending = False
        if self._watcher is None:
            return  # cleared after it fired but before its turn in the inbox
        if not self.repeat:
            self._watcher.close()
            self._watcher = None
            self._clock._timers.discard(self)
        self.callback(*self.args)

    @property
    def active(self) -> bool:
        return self._watcher is not None

    def remaining(self) -> float:
        """Seconds until a one-shot timer fires (a held seat that moves keeps what it had left)."""
        return max(0.0, self._due - time.monotonic())

    def clear(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher.close()
            self._watcher = None
        self._clock._timers.discard(self)


class Clock:
    def __init__(self, post: Callable[..., None],
                 post_first: Callable[..., None] | None = None) -> None:
        self._post = post
        self._post_first = post_first or post  # patch ticks: ahead of queued messages
        self._timers: set[Timer] = set()
        self._patch_ticks: set[patch_clock.PatchTick] = set()
        self.closed = False
        self.start_time = time.monotonic()

    @property
    def elapsed_time(self) -> float:
        """Milliseconds since the room was created."""
        return (time.monotonic() - self.start_time) * 1000.0

    @property
    def current_time(self) -> float:
        return time.monotonic() * 1000.0

    def set_timeout(self, callback: Callable[..., Any], delay_ms: float, *args: Any) -> Timer:
        return self._add(Timer(self, delay_ms, False, callback, args))

    def set_interval(self, callback: Callable[..., Any], interval_ms: float, *args: Any) -> Timer:
        if interval_ms <= 0:
            raise ValueError(f"an interval must be positive, got {interval_ms} ms")
        return self._add(Timer(self, interval_ms, True, callback, args))

    def set_patch_interval(self, callback: Callable[[], Any], interval_ms: float,
                           wanted: Callable[[], bool]) -> patch_clock.PatchTick | None:
        """Like ``set_interval``, on the process's shared clock for that interval, and run only
        when ``wanted()`` (asked in the hub, so it must not block or switch) says so."""
        if self.closed:
            return None
        tick = patch_clock.subscribe(interval_ms, callback, wanted, self._post_first)
        self._patch_ticks.add(tick)
        return tick

    def clear_patch_interval(self, tick: patch_clock.PatchTick) -> None:
        tick.clear()
        self._patch_ticks.discard(tick)

    def _add(self, timer: Timer) -> Timer:
        if timer.active:
            self._timers.add(timer)
        else:
            log.debug("timer %r set on a disposed room: it never fires", timer.callback)
        return timer

    def clear(self) -> None:
        """Cancel every timer, including those fired but not yet run."""
        for timer in list(self._timers):
            timer.clear()
        for tick in self._patch_ticks:
            tick.clear()
        self._patch_ticks.clear()

    def close(self) -> None:
        """Cancel every timer; timers set from now on never fire (the room is disposed)."""
        self.closed = True
        self.clear()

    def __len__(self) -> int:
        return len(self._timers) + len(self._patch_ticks)
