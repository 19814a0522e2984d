"""/metrics under ``greenroom serve --workers 2``: whichever worker a scrape reaches answers
with the sum of all workers (prometheus_client's multiprocess mode, set up by the master), and
a worker killed with SIGKILL leaves the live gauges at once and counts one restart when it is
replaced. Real master, workers and embedded Redis (tests/cluster_process.py)."""

import os
import signal
import urllib.request

import pytest
from cluster_process import Cluster
from prometheus_client.parser import text_string_to_metric_families
from test_cluster import echo_ok, join_many, leave_all, rooms_by_worker

from greenroom.client import Client

from servers import wait_until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def cluster():
    running = Cluster(2, env={"GREENROOM_METRICS_PATH": "/metrics"})
    try:
        running.wait_serving(2)
        yield running
    finally:
        running.stop()


def scrape(cluster):
    with urllib.request.urlopen(cluster.http + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples, metric, **labels):
    return samples.get((metric, tuple(sorted(labels.items()))), 0)


def test_every_worker_answers_the_sum_of_all_and_a_dead_one_leaves_the_gauges(cluster):
    client = Client(cluster.endpoint)
    rooms = join_many(client, 16)  # rooms of four, placed on the least loaded worker
    by_worker = rooms_by_worker(rooms)
    assert len(by_worker) == 2, "every room landed on one worker"
    room_ids = {room.room_id for room in rooms}
    for _ in range(6):  # several scrapes: the kernel gives them to either worker
        samples = scrape(cluster)
        assert value(samples, "greenroom_rooms", name="table") == len(room_ids)
        assert value(samples, "greenroom_clients", name="table") == 16
        assert value(samples, "greenroom_joins_total", name="table") == 16
        assert value(samples, "greenroom_worker_restarts_total") == 0

    for room in rooms:
        assert echo_ok(room, "counted")
    # each client's join ack and echo, in whichever worker; flushed to the files within a second
    wait_until(lambda: value(scrape(cluster), "greenroom_messages_received_total",
                             name="table") == 2 * 16, 5)

    # the hand-offs each worker reports in /health, added up, are what /metrics says
    def handoffs_agree():
        workers = cluster.workers()
        samples = scrape(cluster)
        return all(sum(w["handoffs"][outcome] for w in workers)
                   == value(samples, "greenroom_handoffs_total", outcome=outcome)
                   for outcome in ("sent", "received", "failed"))
    wait_until(handoffs_agree, 5)

    victim, doomed = sorted(by_worker.items())[0]
    survivors = [room for room in rooms if room.reservation.process_id != victim]
    os.kill(cluster.worker_pid(victim), signal.SIGKILL)
    cluster.wait_for_log(rf"worker {victim} .* exited \(signal SIGKILL\)")
    gone = scrape(cluster)  # only the survivor answers; the victim's live files are removed
    assert value(gone, "greenroom_rooms", name="table") == len({r.room_id for r in survivors})
    assert value(gone, "greenroom_clients", name="table") == len(survivors)
    assert value(gone, "greenroom_joins_total", name="table") == 16  # its joins did happen

    cluster.wait_serving(2)
    # the replacement counts itself as it starts serving, which /health may report a moment before
    wait_until(lambda: value(scrape(cluster), "greenroom_worker_restarts_total") == 1, 10)
    replaced = scrape(cluster)
    assert value(replaced, "greenroom_rooms", name="table") == len({r.room_id for r in survivors})
    for room in doomed:
        room.wait_closed(5)
    leave_all(survivors)


def test_under_gunicorn_too_every_worker_answers_the_sum_and_a_killed_one_leaves(tmp_path):
    from cluster_process import Gunicorn

    server = Gunicorn(2, env={"GREENROOM_METRICS_PATH": "/metrics"})
    try:
        server.wait_serving(2)
        client = Client(server.endpoint)
        rooms = join_many(client, 16)
        by_worker = rooms_by_worker(rooms)
        assert len(by_worker) == 2, "every room landed on one worker"
        for _ in range(6):
            samples = scrape(server)
            assert value(samples, "greenroom_rooms", name="table") == len({r.room_id for r in rooms})
            assert value(samples, "greenroom_clients", name="table") == 16
            assert value(samples, "greenroom_worker_restarts_total") == 0
        victim, _ = sorted(by_worker.items())[0]
        survivors = [room for room in rooms if room.reservation.process_id != victim]
        pid = next(w["pid"] for w in server.workers() if w["processId"] == victim)
        os.kill(pid, signal.SIGKILL)
        server.wait_for_log(rf"worker {victim} exited: its listings were removed")  # child_exit ran
        gone = scrape(server)
        assert value(gone, "greenroom_rooms", name="table") == len({r.room_id for r in survivors})
        assert value(gone, "greenroom_clients", name="table") == len(survivors)
        server.wait_serving(2, count=3)  # replaced (a stop during its boot would wait 30 s)
        replaced = scrape(server)
        assert value(replaced, "greenroom_rooms", name="table") == len({r.room_id for r in survivors})
        assert value(replaced, "greenroom_worker_restarts_total") == 1
        server.signal(signal.SIGTTIN)  # a worker added on purpose is no restart
        server.wait_serving(3, count=4)
        assert value(scrape(server), "greenroom_worker_restarts_total") == 1
        leave_all(survivors)
    finally:
        server.stop()
