"""Run a function in a room's line of execution from outside it, and wait for its result.

Tools that read or act on a live room (the monitor, the test kit) must not touch its state
while one of its handlers is half-way through a change (a handler may block, and another
greenlet would then see the state mid-update). So they queue the work behind the room's own
events, through its public clock: a zero-delay timeout runs in the room, after everything the
room had received before, and is dropped with the room when it is disposed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from gevent.event import AsyncResult

T = TypeVar("T")


class RoomUnavailable(RuntimeError):
    """The room did not run the call in time: it is disposed, or busy in a long handler."""


def call_in_room(room: Any, fn: Callable[..., T], *args: Any, timeout: float = 5.0) -> T:
    """``fn(*args)`` run in ``room``'s line of execution; its exception is re-raised here."""
    result: AsyncResult = AsyncResult()

    def run() -> None:
        try:
            result.set(fn(*args))
        except Exception as exc:  # noqa: BLE001 - travels back to the caller
            result.set_exception(exc)

    timer = room.clock.set_timeout(run, 0)
    result.wait(timeout)
    if not result.ready():
        timer.clear()
        raise RoomUnavailable(f"room {room.room_id} did not run the call within {timeout:g}s "
                              "(disposed, or busy in a handler)")
    return result.get()
