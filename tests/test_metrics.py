"""/metrics (greenroom.metrics): parsed with prometheus_client's own parser. The deployment
gauges follow rooms and clients; the counters are defined, not yet counted (see the module)."""

import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from greenroom import Metrics, Room, Server


class Table(Room):
    max_clients = 2


def scrape(test, path="/metrics"):
    answer = test.get(path)
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        samples.setdefault((family.name, "family"), family.type)
    return samples


def rooms_and_clients(samples, name):
    return (samples.get(("greenroom_rooms", (("name", name),)), 0),
            samples.get(("greenroom_clients", (("name", name),)), 0))


@pytest.fixture
def tables(greenroom_boot):
    server = Server(metrics=Metrics())
    server.define("table", Table)
    return greenroom_boot(server)


def test_rooms_and_clients_follow_joins_and_leaves(tables):
    before = scrape(tables)
    assert rooms_and_clients(before, "table") == (0, 0)
    assert before[("greenroom_listings_up", ())] == 1
    for family in ("greenroom_joins", "greenroom_matchmaking_seconds", "greenroom_rpc_calls",
                   "greenroom_patch_bytes", "greenroom_worker_restarts"):
        assert (family, "family") in before, family
    players = [tables.connect("table", state_decoder=None) for _ in range(3)]
    assert rooms_and_clients(scrape(tables), "table") == (2, 3)  # two seats a room
    rooms = {tables.room_of(player) for player in players}
    for player in players:
        player.leave()
    for room in rooms:
        tables.wait_for_dispose(room)
    assert rooms_and_clients(scrape(tables), "table") == (0, 0)


def test_off_by_default_and_on_a_path_of_its_own(greenroom_boot, monkeypatch):
    assert greenroom_boot(Server()).get("/metrics").status == 404
    monkeypatch.setenv("GREENROOM_METRICS_PATH", "/ops/metrics")
    test = greenroom_boot(Server())
    assert ("greenroom_rooms", "family") in scrape(test, "/ops/metrics")
    assert test.get("/ops/metrics/more").status == 404
    for bad in ("/", "ready", "/matchmake"):
        with pytest.raises(ValueError):
            Metrics(bad)
    monkeypatch.setenv("GREENROOM_METRICS_PATH", "/health")
    with pytest.raises(ValueError, match="GREENROOM_METRICS_PATH: metrics path '/health'"):
        Server()


def test_without_prometheus_client_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails, as if not installed
    with pytest.raises(RuntimeError, match=r"pip install 'greenroom\[metrics\]'"):
        Server(metrics=Metrics())
