"""A room's line of execution: one greenlet draining a queue (docs/architecture.md, "The line
of execution").

Every event a room handles (joins, leaves, messages, timers, patch ticks) goes through its inbox
and runs in the inbox's single greenlet, in arrival order (a patch tick, ``post_first``, goes
ahead of what is queued). A handler may block; the room waits, other rooms run on. Room code
therefore needs no locks. A backlog is run in slices of ``SLICE`` seconds with the hub's turn
between them, so that no room's queue holds up the process's timers and sockets.

This is the one seam between greenroom and the mechanism: everything else posts events with
``post`` or runs a function with ``call``, and never touches the greenlet or the queue. Once the
inbox is closed nothing more runs in it, not even what was already queued: nothing of a room may
run after its ``on_dispose``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import AsyncResult

log = logging.getLogger("greenroom.room")

_STOP = object()

#: Seconds the line of execution runs queued events before it lets the hub run. A backlog (100
#: messages a flooding client got in, at ~0.3 ms each) would otherwise hold off every timer of
#: the process, the patch clock among them, until the last of it ran (a 2-3 interval patch gap).
SLICE = 0.005


class InboxClosed(RuntimeError):
    """The room was disposed before the event could run."""


class Inbox:
    """A deque and a greenlet that sleeps in the hub when it is empty.

    Not a gevent queue: a blocking ``Queue.get`` arms (a dummy) Timeout and a waiter object
    every time the room runs out of events, which is once per message for a room answering
    one client at a time (4 % of the echo benchmark's CPU). Here the greenlet parks itself with
    ``hub.switch()`` and the first event posted to an idle inbox schedules its wake-up; only
    that callback ever resumes it there, so a handler blocked on I/O is never woken by a post.
    """

    __slots__ = ("_items", "_greenlet", "_on_error", "closed", "name", "_idle", "_hub", "_pause")

    def __init__(self, name: str, on_error: Callable[[BaseException, Callable[..., Any]], None]) -> None:
        self.name = name
        self._items: deque[tuple[Any, tuple[Any, ...], AsyncResult | None]] = deque()
        self._on_error = on_error
        self.closed = False
        self._idle = False  # parked in _run, waiting for _wake
        self._hub = gevent.get_hub()
        self._pause: Any = None  # the zero timer that resumes a sliced run (see _let_hub_run)
        self._greenlet = gevent.spawn(self._run)
        self._greenlet.name = f"room:{name}"

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)``; returns at once. Errors go to the room's error handler.
        (``_put`` and ``_wake_if_idle`` written out: this runs once per client message.)"""
        if not self.closed:
            self._items.append((fn, args, None))
            if self._idle:
                self._idle = False
                self._hub.loop.run_callback(self._wake)

    def post_first(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` ahead of everything queued: a patch tick must not wait behind a
        backlog of messages (their effect is in the next patch, as if they came a tick later)."""
        if not self.closed:
            self._items.appendleft((fn, args, None))
            self._wake_if_idle()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in the room's line of execution and return its result (or raise)."""
        if gevent.getcurrent() is self._greenlet:
            return fn(*args)
        if self.closed:
            raise InboxClosed(f"room {self.name} is disposed")
        result = AsyncResult()
        self._put((fn, args, result))
        return result.get()

    def _put(self, item: tuple[Any, tuple[Any, ...], AsyncResult | None]) -> None:
        self._items.append(item)
        self._wake_if_idle()

    def _wake_if_idle(self) -> None:
        if self._idle:
            self._idle = False  # one wake-up, however many events come before it runs
            self._hub.loop.run_callback(self._wake)

    def _wake(self) -> None:
        if not self._greenlet.dead:
            self._greenlet.switch()

    @property
    def in_room(self) -> bool:
        return gevent.getcurrent() is self._greenlet

    def close(self) -> None:
        """Stop after the event now running; what is still queued never runs (its callers get
        InboxClosed). Safe to call from inside the room."""
        if not self.closed:
            self.closed = True
            self._put((_STOP, (), None))

    @property
    def ended(self) -> bool:
        return self._greenlet.dead

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the line of execution has ended; True if it has."""
        if not self.in_room:
            self._greenlet.join(timeout)
        return self._greenlet.dead

    def _run(self) -> None:
        items = self._items
        park = self._hub.switch
        clock = time.perf_counter
        deadline = 0.0  # when the hub's turn comes; 0.0: no backlog (the clock is not read)
        while not self.closed:
            if not items:
                self._idle = True
                park()  # until _wake: see the class docstring
                deadline = 0.0
                continue
            fn, args, result = items.popleft()
            if fn is _STOP:
                break
            try:
                value = fn(*args)
            except gevent.GreenletExit:
                raise
            except BaseException as exc:  # noqa: BLE001 - one bad handler must not end the room
                if result is not None:
                    result.set_exception(exc)
                else:
                    self._on_error(exc, fn)
            else:
                if result is not None:
                    result.set(value)
            if items:  # a backlog: a room answering one event at a time never reads the clock
                now = clock()
                if not deadline:
                    deadline = now + SLICE
                elif now > deadline:
                    self._let_hub_run()
                    deadline = 0.0
        if self._pause is not None:
            self._pause.close()
            self._pause = None
        self._fail_pending()

    def _let_hub_run(self) -> None:
        """Park until the hub has run once: a zero timer, not ``sleep(0)``, whose callback
        libev runs before it polls sockets or fires timers (it checks only every 50 callbacks).
        Posts meanwhile need no wake-up (``_idle`` stays False); only the timer resumes it."""
        if self._pause is None:
            self._pause = self._hub.loop.timer(0.0)
        self._pause.start(self._wake)
        try:
            self._hub.switch()
        finally:
            self._pause.stop()

    def _fail_pending(self) -> None:
        while self._items:
            _fn, _args, result = self._items.popleft()
            if result is not None:
                result.set_exception(InboxClosed(f"room {self.name} is disposed"))
