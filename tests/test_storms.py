"""Storms under faults (issue 13): 1,000 concurrent joinOrCreate over ``greenroom serve
--workers 2``, 700 by the Python client and 300 by @colyseus/sdk 0.17 (tests/js/storm.mjs),
while a worker is killed with SIGKILL in the middle of the storm.

Afterwards, over both kinds of clients:

* no room holds more than ``max_clients`` (4);
* every join that succeeded on a surviving worker has a working socket (an echo comes back);
  a join whose room was on the killed worker gets its socket closed (the SDK: onLeave 1006);
* every join that failed raised MatchMakeError with a protocol code (no hang: the storm is
  bounded by a gevent timeout; no generic exception), except the HTTP requests whose TCP
  connection the killed worker itself held: nothing is left to answer them, and they must end
  in a disconnect (Python: RemoteDisconnected / reset; the SDK: fetch failed, UND_ERR_SOCKET),
  never a hang, and the room sockets the killed worker was upgrading (closed during the
  handshake, their URL naming it);
* rooms: at most ``1 + failed + cut + killed`` surviving rooms are not full. With the cluster-wide
  create lock one room at a time is being filled; each failed request or each client whose
  room died can leave one more seat empty somewhere, nothing else can;
* after the lease, every listing in the cluster's Redis is a room some surviving client is in,
  and every such room has its listing.
"""

import collections
import os
import signal

import pytest
from cluster_process import Cluster
from storms import (
    STORM,
    OfficialStorm,
    check_echoes,
    check_failures_have_codes,
    check_listings_match,
    check_rooms,
    leave_all,
    seated_fraction,
    storm,
)
from test_cluster import embedded_redis

from greenroom.client import Client, ClientConnectionError, MatchMakeError, Room
from greenroom.drivers.redis import RedisDriver

from servers import wait_until

pytestmark = pytest.mark.timeout(240)

JS = 300
#: What the SDK reports for a matchmaking request whose TCP connection the killed worker held.
JS_CUT = {"UND_ERR_SOCKET", "ECONNRESET"}


def test_a_1000_join_storm_survives_kill_9_of_a_worker(node_modules):
    cluster = Cluster(2)
    official = None
    try:
        cluster.wait_serving(2)
        store = embedded_redis(cluster)
        driver = RedisDriver(store)
        victim = sorted(w["processId"] for w in cluster.workers())[0]
        official = OfficialStorm(cluster.endpoint, JS)

        def kill_a_worker(results):
            # the fault: once a fifth of the storm is answered, kill -9 one worker mid-storm
            wait_until(seated_fraction(results, 0.2, STORM - JS), 60)
            os.kill(cluster.worker_pid(victim), signal.SIGKILL)

        results = storm([Client(cluster.endpoint)], STORM - JS, kill_a_worker, timeout=120)
        cluster.wait_for_log(rf"worker {victim} .* exited \(signal SIGKILL\)")

        joined = [r for r in results.values() if isinstance(r, Room)]
        def cut_by_the_kill(error):
            """A seat on the killed worker whose socket it was upgrading when it died."""
            return (isinstance(error, MatchMakeError) and error.code is None
                    and f"/{victim}/" in str(error) and "closed during the handshake" in str(error))

        failed = [r for r in results.values()
                  if isinstance(r, MatchMakeError) and not cut_by_the_kill(r)]
        cut = [r for r in results.values()
               if isinstance(r, ClientConnectionError) or cut_by_the_kill(r)]
        assert len(joined) + len(failed) + len(cut) == STORM - JS
        check_failures_have_codes(failed)
        # a request whose TCP connection the killed worker held cannot get a code: the process
        # is gone. It must be a disconnect, never a hang or a timeout.
        assert all("RemoteDisconnected" in str(e) or "reset" in str(e).lower()
                   or cut_by_the_kill(e) for e in cut), \
            [str(e) for e in cut][:5]

        report = official.report()
        js_cut = [e for e in report["errors"] if e["code"] in JS_CUT]
        js_failed = [e for e in report["errors"] if e["code"] not in JS_CUT]
        assert all(isinstance(e["code"], int) for e in js_failed), js_failed[:5]

        killed = [r for r in joined if r.reservation.process_id == victim]
        alive = [r for r in joined if r.reservation.process_id != victim]
        for room in killed:
            assert room.wait_closed(10)[0] is not None  # its socket was closed, not left hanging
        check_echoes(alive)
        js_check = official.check()
        assert js_check["notEchoed"] == [], js_check["notEchoed"][:5]
        assert js_check["echoed"] + len(js_check["closed"]) == report["ok"]
        assert {c["code"] for c in js_check["closed"]} <= {1006}, js_check["closed"][:5]
        js_killed = {c["roomId"] for c in js_check["closed"]}
        # a room an official client saw closed is gone: no surviving Python client is in it
        assert not js_killed & {room.room_id for room in alive}

        sizes = collections.Counter(room.room_id for room in alive)
        sizes.update({room_id: seats for room_id, seats in report["rooms"].items()
                      if room_id not in js_killed})
        not_full = check_rooms(sizes, len(failed) + len(js_failed),
                               extra=len(cut) + len(killed) + len(js_cut) + len(js_check["closed"]))

        # after the lease (2 s in tests/apps/cluster.py): listings == live rooms
        check_listings_match(lambda: driver.query("table"), sizes)
        print(f"storm: python joined {len(joined)} (killed {len(killed)}), failed {len(failed)}, "
              f"cut {len(cut)}; sdk17 joined {report['ok']} (killed {len(js_check['closed'])}), "
              f"failed {len(js_failed)}, cut {len(js_cut)}; rooms {len(sizes)}, not full {not_full}")
        leave_all(alive)
        official.leave()
    finally:
        if official is not None:
            official.kill()
        if cluster.proc.poll() is None:
            cluster.stop()
