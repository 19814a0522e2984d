"""A room's line of execution (greenroom/inbox.py): a backlog of events does not hold off the
rest of the process, and a patch tick does not wait behind it.

The assertions are on order (how many events had run when a timer fired), not on time: the
handlers below burn CPU for a millisecond each, as a room validating moves would.
"""

import time

import gevent
import pytest
from gevent.event import Event

from greenroom.inbox import Inbox, InboxClosed

BACKLOG = 100


def busy(seconds=0.001):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.fixture
def inbox():
    errors = []
    box = Inbox("test", lambda exc, fn: errors.append(exc))
    yield box
    box.close()
    box.join(5)
    assert errors == []


def post_backlog(inbox):
    """Queue BACKLOG handlers of ~1 ms each: (the indexes run so far, set when the last ran)."""
    ran = []
    drained = Event()

    def handler(i):
        busy()
        ran.append(i)
        if i == BACKLOG - 1:
            drained.set()

    for i in range(BACKLOG):
        inbox.post(handler, i)
    return ran, drained


def test_a_backlog_lets_the_hub_fire_timers_long_before_it_is_drained(inbox):
    seen_by_timer = []
    ran, drained = post_backlog(inbox)
    gevent.spawn_later(0, lambda: seen_by_timer.append(len(ran)))  # due at once: waits for the hub
    assert drained.wait(10)
    assert ran == list(range(BACKLOG))  # sliced, still in order, nothing lost
    # 100 ms of backlog: the timer came after the first slice (5 ms, ~5 events), not after all.
    assert seen_by_timer and seen_by_timer[0] < BACKLOG // 2, seen_by_timer


def test_post_first_runs_ahead_of_what_is_queued(inbox):
    order = []
    done = Event()
    for i in range(5):
        inbox.post(order.append, i)
    inbox.post(done.set)
    inbox.post_first(order.append, "tick")
    assert done.wait(5)
    assert order == ["tick", 0, 1, 2, 3, 4]


def test_a_tick_posted_first_during_a_backlog_runs_before_the_backlog_ends(inbox):
    """The patch clock's case: its timer fires in the hub between two slices and posts the tick
    first, so it runs after the slice, not after the last queued message."""
    tick_at = []
    ran, drained = post_backlog(inbox)
    gevent.spawn_later(0, inbox.post_first, lambda: tick_at.append(len(ran)))
    assert drained.wait(10)
    assert tick_at and tick_at[0] < BACKLOG // 2, tick_at
    assert ran == list(range(BACKLOG))


def test_closing_during_a_sliced_backlog_runs_nothing_more_and_fails_waiting_callers(inbox):
    ran = []

    def handler(i):
        busy()
        ran.append(i)
        if i == 20:
            inbox.close()

    for i in range(BACKLOG):
        inbox.post(handler, i)
    waiter = gevent.spawn(inbox.call, lambda: "never")
    assert inbox.join(10)
    assert ran == list(range(21))
    with pytest.raises(InboxClosed):
        waiter.get(timeout=5)
