"""/metrics (greenroom.metrics), parsed with prometheus_client's own parser: the figures move
as rooms, joins, messages, patches and refusals happen, counted in one process against a
scripted scenario (deltas: other tests of this process count too). Under ``--workers 2``:
tests/test_metrics_cluster.py."""

import sys
from queue import Queue

import gevent
import gevent.event
import pytest
from prometheus_client.parser import text_string_to_metric_families

from greenroom import Metrics, Room, Server
from greenroom.client import MatchMakeError, SeatReservation, encode_message
from greenroom.schema import Schema, field

from servers import wait_until


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


def value(samples, metric, **labels):
    return samples.get((metric, tuple(sorted(labels.items()))), 0)


def delta(before, after, metric, **labels):
    return value(after, metric, **labels) - value(before, metric, **labels)


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
    during = scrape(tables)
    assert rooms_and_clients(during, "table") == (2, 3)  # two seats a room
    assert value(during, "greenroom_deployment_rooms", name="table") == 2
    assert value(during, "greenroom_deployment_seats", name="table") == 3
    rooms = {tables.room_of(player) for player in players}
    for player in players:
        player.leave()
    for room in rooms:
        tables.wait_for_dispose(room)
    after = scrape(tables)
    assert rooms_and_clients(after, "table") == (0, 0)
    assert value(after, "greenroom_deployment_rooms", name="table") == 0
    assert delta(before, after, "greenroom_joins_total", name="table") == 3


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


class Counter(Schema):
    n = field("number")


class Game(Room):
    """Echoes, bumps its state (a patch), floods a client that asks, and reports who left."""

    max_clients = 8
    seat_reservation_timeout = 0.3
    send_timeout = 0.5
    send_backlog = 64 * 1024
    left: Queue

    def on_create(self, options):
        self.state = Counter(n=0)
        self.on_message("echo", lambda client, message: client.send("echo", message))
        self.on_message("bump", self.bump)
        self.on_message("flood", self.flood)

    def bump(self, client, message):
        self.state.n += 1

    def flood(self, client, count):
        for _ in range(count):
            client.send_bytes("blob", bytes(65536))

    def on_leave(self, client, consented):
        type(self).left.put(client.session_id)


@pytest.fixture
def games(greenroom_boot):
    server = Server(metrics=Metrics())
    server.define("game", type("GameRoom", (Game,), {"left": Queue()}))
    return greenroom_boot(server)


def test_joins_messages_patches_and_refusals_move_their_figures(games):
    before = scrape(games)
    player = games.connect("game")
    joined = scrape(games)
    assert delta(before, joined, "greenroom_joins_total", name="game") == 1
    assert delta(before, joined, "greenroom_matchmaking_seconds_count", method="joinOrCreate") == 1
    assert rooms_and_clients(joined, "game") == (1, 1)

    for n in range(10):
        player.send("echo", n)
    assert [player.wait_for_message("echo") for _ in range(10)] == list(range(10))
    echoed = scrape(games)
    assert delta(joined, echoed, "greenroom_messages_received_total", name="game") == 10
    assert delta(joined, echoed, "greenroom_messages_sent_total", name="game") == 10
    frame = len(encode_message("echo", 5))  # what the client sent, each of the ten alike
    assert delta(joined, echoed, "greenroom_received_bytes_total", name="game") == 10 * frame
    assert delta(joined, echoed, "greenroom_sent_bytes_total", name="game") >= 10 * frame

    player.send("bump")
    games.wait_for_next_patch(player)
    patched = scrape(games)
    assert delta(echoed, patched, "greenroom_patch_encode_seconds_count", name="game") >= 1
    assert delta(echoed, patched, "greenroom_patch_bytes_count", name="game") >= 1
    assert delta(echoed, patched, "greenroom_patch_bytes_sum", name="game") > 0

    client = games.client()
    for method, target in (("joinById", "nosuchroom"), ("join", "nosuchname")):
        with pytest.raises(MatchMakeError):
            client.matchmake(method, target, {})
    assert games.post("/matchmake/teleport/game", {}).status == 520
    with pytest.raises(MatchMakeError):  # a socket for a seat never reserved
        client.consume_seat_reservation(
            SeatReservation("game", player.room_id, games.server.matchmaker.process_id, "nobody"))
    refused = scrape(games)
    for method, code in (("joinById", 522), ("join", 520), ("invalid", 520), ("socket", 524)):
        assert delta(patched, refused, "greenroom_join_failures_total", method=method,
                     code=str(code)) == 1, (method, code)

    client.matchmake("joinById", player.room_id, {})  # a seat nobody claims
    wait_until(lambda: delta(refused, scrape(games), "greenroom_seat_reservations_expired_total",
                             name="game") == 1)

    stalled = stalled_socket(games, player.room_id)
    stalled.send(encode_message("flood", 64))  # 4 MiB to a socket that reads nothing
    assert type(games.server.matchmaker.rooms[player.room_id]).left.get(timeout=20)
    assert delta(refused, scrape(games), "greenroom_send_backlog_drops_total", name="game") == 1

    room = games.room_of(player)
    player.leave()
    games.wait_for_dispose(room)
    assert rooms_and_clients(scrape(games), "game") == (0, 0)


def stalled_socket(test, room_id):
    """A socket joined to ``room_id`` that acknowledges JOIN_ROOM and then reads nothing."""
    from greenroom.wsclient import connect

    client = test.client()
    seat = client.matchmake("joinById", room_id, {})
    stalled = connect(client.room_url(seat))
    stalled.send(b"\x0a")  # the join ack; JOIN_ROOM itself stays unread
    return stalled


def test_rpc_calls_and_timeouts_are_counted_by_method():
    from prometheus_client import REGISTRY

    from greenroom.metrics import record
    from greenroom.presence import LocalPresence
    from greenroom.presence.rpc import RPC, RemoteCallTimeout

    record.enable()
    presence = LocalPresence()
    callee, caller = RPC(presence, "callee"), RPC(presence, "caller")
    callee.register("add", lambda a, b: a + b)
    callee.register("stall", lambda: gevent.sleep(5))
    callee.start()

    def count(metric, method):
        return REGISTRY.get_sample_value(metric, {"method": method}) or 0

    before = {(m, k): count(m, k) for m in ("greenroom_rpc_calls_total",
                                             "greenroom_rpc_timeouts_total") for k in ("add", "stall")}
    try:
        assert caller.call("callee", "add", 2, 3, timeout=5) == 5
        with pytest.raises(RemoteCallTimeout):
            caller.call("callee", "stall", timeout=0.1)
    finally:
        caller.close()
        callee.close()
    moved = {key: count(*key) - was for key, was in before.items()}
    assert moved == {("greenroom_rpc_calls_total", "add"): 1, ("greenroom_rpc_calls_total", "stall"): 1,
                     ("greenroom_rpc_timeouts_total", "add"): 0,
                     ("greenroom_rpc_timeouts_total", "stall"): 1}


def test_a_stopped_redis_counts_backend_errors(greenroom_boot, redis_server):
    redis_server.start()
    server = Server(redis_url=redis_server.url, metrics=Metrics())
    server.define("game", type("GameRoom", (Game,), {"left": Queue()}))
    test = greenroom_boot(server)
    before = scrape(test)
    redis_server.stop()
    try:
        assert test.post("/matchmake/joinOrCreate/game", {}).status == 503
        after = scrape(test)
    finally:
        redis_server.start()
    errors = sum(delta(before, after, "greenroom_backend_errors_total", backend=backend)
                 for backend in ("presence", "driver"))
    assert errors >= 1
    assert value(after, "greenroom_listings_up") == 0  # the scrape itself could not read them
    assert delta(before, after, "greenroom_join_failures_total", method="joinOrCreate",
                 code="503") == 1


def test_a_joined_client_is_counted_while_its_rooms_listing_write_still_waits(greenroom_boot):
    """The clients gauge moves in the same step as the JOIN_ROOM, not after the listing write
    that follows it, which may wait on Redis (a scrape then undercounted: seen under gunicorn)."""
    from greenroom.drivers.local import LocalDriver

    release = gevent.event.Event()

    class SlowListings(LocalDriver):
        slow = False

        def update(self, room_id, **changes):
            if self.slow:
                release.wait(10)  # as a write to a slow Redis would
            return super().update(room_id, **changes)

    driver = SlowListings()
    server = Server(metrics=Metrics(), driver=driver)
    server.define("table", Table)
    test = greenroom_boot(server)
    try:
        client = test.client(state_decoder=None)
        seat = client.matchmake("joinOrCreate", "table")
        driver.slow = True  # from the socket's join on
        client.consume_seat_reservation(seat)  # back once JOIN_ROOM arrived
        assert rooms_and_clients(scrape(test), "table")[1] == 1
    finally:
        release.set()
