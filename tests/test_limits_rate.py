"""Messages per second per client (``Room.max_messages_per_second``, as Colyseus 0.17): a flooding
client is cut with 4002 and one log line, and its room keeps patching the others on time.

The server is a real ``greenroom serve`` (one process, and ``--workers 2``); the flooder is an
official client (colyseus.js 0.16, @colyseus/sdk 0.17 or 0.18; tests/js/flood.mjs) in its own
process, so its send loop cannot delay the observers; the observers are Python clients in this process, which does
nothing else while they record when each patch arrives.
"""

import os
import time

import gevent
import pytest
from cluster_process import Cluster

from greenroom.client import Client

APP = os.path.join("tests", "apps", "limits.py") + ":server"
PATCH_INTERVAL = 0.050  # Ticker.patch_rate (the default 50 ms)
# "No patch gap beyond one patch interval": no patch comes more than one interval after its
# time, so every gap between two patches an observer receives is under two intervals (a gap of
# two is a skipped patch). Each of the flood's 10,000 messages costs the room ~0.3 ms, so a
# flood that reached the room holds its patches back for seconds (measured without the limit:
# gaps of 2.6 to 3.2 s). The 100 messages the limit lets in come as one burst: run back to
# back, with the patch tick queued behind them, they made gaps of 57-94 ms; since the room's
# line of execution lets the hub run every 5 ms and a patch tick goes ahead of queued messages
# (greenroom/inbox.py, tested in tests/test_inbox.py) the largest gap is 53-70 ms, 75 ms with
# both cores taken by two busy loops besides. No timing assertion is made on throughput.
MAX_GAP = 2 * PATCH_INTERVAL
FLOOD = 10_000


@pytest.fixture(params=[1, 2], ids=["1-process", "workers-2"])
def server(request):
    cluster = Cluster(request.param, target=APP)
    try:
        if request.param == 1:
            cluster.wait_for_log(r"listening on")
        else:
            cluster.wait_serving(2)
        yield cluster
    finally:
        cluster.stop()


class Observer:
    """A well-behaved client of the room: when each state patch arrived (monotonic seconds)."""

    def __init__(self, endpoint):
        self.room = Client(endpoint).join_or_create("ticker", {}, 15)
        self.room.wait_for_state(timeout=10)
        self.arrivals = []
        self.room.on_state_change(lambda state: self.arrivals.append(time.monotonic()))

    def wait_for_patches(self, count, timeout=10):
        """Until ``count`` more patches arrived (each is an event of the client, no sleeping)."""
        room = self.room
        target = room.state_version + count
        room.wait_for_state(lambda state: room.state_version >= target, timeout=timeout)

    def gaps_between(self, start, end):
        times = [t for t in self.arrivals if start <= t <= end]
        return [b - a for a, b in zip(times, times[1:], strict=False)]


@pytest.mark.parametrize("client,prefix", [("colyseusjs", ""), ("sdk17", ""), ("sdk18", "/v18")])
def test_a_flooding_client_is_cut_with_4002_and_the_room_patches_the_others_on_time(
        server, run_js, client, prefix):
    observers = [Observer(server.endpoint) for _ in range(3)]
    assert len({o.room.room_id for o in observers}) == 1
    for observer in observers:
        observer.wait_for_patches(3)
    started = time.monotonic()
    flooder = gevent.spawn(run_js, "flood.mjs", "--client", client, "--endpoint", server.endpoint + prefix,
                           "--room", "ticker", "--count", FLOOD, "--timeout", 5000)
    result = flooder.get(timeout=60)
    for observer in observers:
        observer.wait_for_patches(10)  # half a second after the flood, still on time
    ended = time.monotonic()

    for observer in observers:
        gaps = observer.gaps_between(started, ended)
        assert len(gaps) >= 10
        assert max(gaps) < MAX_GAP, f"a patch gap of {max(gaps) * 1000:.0f} ms (bound " \
                                    f"{MAX_GAP * 1000:.0f} ms): the flood stalled the room"
        assert not observer.room.closed
    assert result["joined"] and result["sent"] == FLOOD, result
    assert result.get("error") is None, result
    assert result["leaveCode"] == 4002, result
    assert result["leaveReason"] == "too many messages per second"
    # One line for the cut client, and the room itself goes on: an observer still gets answers.
    server.wait_for_log(r"more than 100 messages within one second .*closed with 4002")
    assert len([line for line in server.lines if "max_messages_per_second" in line]) == 1
    observers[0].room.send("echo", "still here")
    assert observers[0].room.wait_for_message("echo", timeout=5) == "still here"
    assert "Traceback" not in server.log
    for observer in observers:
        observer.room.leave()


def test_a_client_at_the_limit_is_not_cut_and_one_frame_more_is(server):
    """100 frames a second for two seconds is exactly the limit: the client stays. Every frame
    counts, the join acknowledgement and pings too (so 98 messages in the first second). Then
    101 frames at once are one too many: closed with 4002."""
    room = Client(server.endpoint).join_or_create("ticker", {}, 15)
    room.wait_for_state(timeout=10)
    for messages in (98, 99):  # + the ping below (+ the join ack in the first second) = 100
        started = time.monotonic()
        for i in range(messages):
            room.send("echo", i)
        room.ping()
        for _ in range(messages):
            room.wait_for_message("echo", timeout=5)
        gevent.sleep(max(0.0, 1.05 - (time.monotonic() - started)))  # pacing, not synchronisation
    room.send("echo", "still in")
    assert room.wait_for_message("echo", timeout=5) == "still in"
    for i in range(100):  # with "still in": 101 frames in this window
        room.send("echo", i)
    assert room.wait_closed(10) == (4002, "too many messages per second")
