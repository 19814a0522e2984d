"""A room's line of execution: one greenlet draining a queue (docs/architecture.md, "The line
of execution").

Every event a room handles (joins, leaves, messages, timers, patch ticks) goes through its inbox
and runs in the inbox's single greenlet, in arrival order. A handler may block; the room waits,
other rooms run on. Room code therefore needs no locks.

This is the one seam between greenroom and the mechanism: everything else posts events with
``post`` or runs a function with ``call``, and never touches the greenlet or the queue. Once the
inbox is closed nothing more runs in it, not even what was already queued: nothing of a room may
run after its ``on_dispose``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import AsyncResult
from gevent.queue import SimpleQueue

log = logging.getLogger("greenroom.room")

_STOP = object()


class InboxClosed(RuntimeError):
    """The room was disposed before the event could run."""


class Inbox:
    __slots__ = ("_queue", "_greenlet", "_on_error", "closed", "name")

    def __init__(self, name: str, on_error: Callable[[BaseException, Callable[..., Any]], None]) -> None:
        self.name = name
        self._queue: SimpleQueue = SimpleQueue()
        self._on_error = on_error
        self.closed = False
        self._greenlet = gevent.spawn(self._run)
        self._greenlet.name = f"room:{name}"

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)``; returns at once. Errors go to the room's error handler."""
        if not self.closed:
            self._queue.put((fn, args, None))

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in the room's line of execution and return its result (or raise)."""
        if gevent.getcurrent() is self._greenlet:
            return fn(*args)
        if self.closed:
            raise InboxClosed(f"room {self.name} is disposed")
        result = AsyncResult()
        self._queue.put((fn, args, result))
        return result.get()

    @property
    def in_room(self) -> bool:
        return gevent.getcurrent() is self._greenlet

    def close(self) -> None:
        """Stop after the event now running; what is still queued never runs (its callers get
        InboxClosed). Safe to call from inside the room."""
        if not self.closed:
            self.closed = True
            self._queue.put((_STOP, (), None))

    @property
    def ended(self) -> bool:
        return self._greenlet.dead

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the line of execution has ended; True if it has."""
        if not self.in_room:
            self._greenlet.join(timeout)
        return self._greenlet.dead

    def _run(self) -> None:
        get = self._queue.get
        while not self.closed:
            fn, args, result = get()
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
        self._fail_pending()

    def _fail_pending(self) -> None:
        while not self._queue.empty():
            _fn, _args, result = self._queue.get()
            if result is not None:
                result.set_exception(InboxClosed(f"room {self.name} is disposed"))
