"""The soak, bounded for CI: rooms created and disposed leave nothing behind.

The 10,000-room run is ``python benchmarks/soak.py --rooms 10000`` (figures in
benchmarks/results/soak.json and README "Reliability").
"""

import json
import os
import subprocess
import sys

from greenroom import Server
from greenroom.testing.kit import boot

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import soak  # noqa: E402

RSS_MARGIN_KIB = 12 * 1024  # measured: +6.6 MiB for 1,000 rooms and for 2,000 (allocator warm-up)


def test_the_counters_see_a_live_room():
    """The counts the soak compares are real: a live room shows up in every one of them."""
    server = Server()
    server.define("soak", soak.SoakRoom)
    with boot(server) as test_server:
        empty = soak.counts(server)
        test_server.connect("soak", state_decoder=None)
        live = soak.counts(server)
    assert live["rooms"] == empty["rooms"] + 1
    assert live["on_patch_clocks"] == empty["on_patch_clocks"] + 1
    assert live["listings"] == empty["listings"] + 1
    assert live["subscriptions"] == empty["subscriptions"] + 1
    assert live["timers"] >= empty["timers"] + 1  # the interval
    assert live["greenlets"] > empty["greenlets"]  # the room's line of execution, the socket's


def test_a_thousand_rooms_leave_no_greenlet_timer_subscription_or_listing():
    """In a process of its own: greenlets other tests leave winding down would blur the count."""
    run = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "soak.py"), "--rooms",
                          "1000"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    assert result["after"] == result["before"]
    assert result["rss_kib_after"] - result["rss_kib_before"] < RSS_MARGIN_KIB
