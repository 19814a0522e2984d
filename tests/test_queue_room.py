"""QueueRoom (issue 14): its grouping rules, then 100 players queueing at once with greenroom's
Python client, the official clients and ``greenroom serve --workers 2``: groups of four, each
member seated in its own group's match room, no seat lost, none reserved twice.

The application is tests/apps/queueing.py: the queue groups players by the ``band`` of their
join options, so a match room whose members do not share one band is a group split or mixed.
"""

import importlib.util
import logging
import os
import sys
from collections import Counter

import gevent
import pytest
import redis
from cluster_process import Cluster

from greenroom import MatchMakeError, Room, Server
from greenroom.client import Client, ClientTimeout, RoomClosed
from greenroom.client import MatchMakeError as ClientMatchMakeError
from greenroom.rooms import QueueEntry
from greenroom.rooms.queue_groups import Grouping, rank_compare

APP_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps", "queueing.py")
APP = os.path.join("tests", "apps", "queueing.py") + ":server"
PLAYERS = 100


# == the grouping rules ===========================================================================
def entries(*ranks, **fields):
    return [QueueEntry(client=f"c{i}", rank=rank, **fields) for i, rank in enumerate(ranks)]


def ranks_of(group):
    return sorted(entry.rank for entry in group.members)


def cycles(grouping, queued, count):
    """Regroup ``count`` times; the groups of each cycle."""
    return [grouping.regroup(queued) for _ in range(count)]


def test_lowest_ranks_fill_a_group_first_and_a_full_group_is_ready():
    groups = Grouping(max_players=4).regroup(entries(50, 10, 20, 40, 30, 20))
    assert [ranks_of(g) for g in groups] == [[10, 20, 20, 30], [40, 50]]
    assert [g.ready for g in groups] == [True, False]
    assert groups[0].average_rank == 20


def test_a_far_rank_opens_a_group_of_its_own():
    groups = Grouping(max_players=4).regroup(entries(1, 30, 50, 60, 40))
    assert [ranks_of(g) for g in groups] == [[1], [30, 40, 50, 60]]
    assert groups[1].ready and not groups[0].ready


def test_members_of_a_ready_group_are_not_grouped_again():
    queued = entries(10, 11, 12, 13, 14)
    first = Grouping(max_players=4).regroup(queued)
    second = Grouping(max_players=4).regroup(queued)
    assert first[0].ready and [ranks_of(g) for g in second] == [[14]]


def test_the_rank_tolerance_widens_with_each_cycle_waited():
    """100 and 350: too far apart (difference 250, over twice the average) until 10 + 50 per
    cycle waited covers 250, at the fifth cycle waited; without widening, never."""
    queued = entries(100, 350)
    widening = Grouping(max_players=2, max_waiting_cycles_for_priority=None,
                        compare=lambda entry, group: rank_compare(entry, group, 50))
    history = cycles(widening, queued, 6)
    assert [len(groups) for groups in history] == [2, 2, 2, 2, 2, 1]
    assert history[-1][0].ready and queued[1].current_cycle == 6
    fixed = Grouping(max_players=2, max_waiting_cycles_for_priority=None)
    assert all(len(groups) == 2 for groups in cycles(fixed, entries(100, 350), 20))


def test_after_max_waiting_cycles_for_priority_any_group_takes_the_player():
    queued = entries(1, 1000)
    grouping = Grouping(max_players=2, max_waiting_cycles_for_priority=3)
    history = cycles(grouping, queued, 5)
    assert [len(groups) for groups in history] == [2, 2, 2, 2, 1]
    assert queued[1].high_priority and history[-1][0].ready


def test_incomplete_groups_are_ready_after_max_waiting_cycles_only_when_allowed():
    allowed = Grouping(max_players=4, allow_incomplete_groups=True, max_waiting_cycles=2)
    history = cycles(allowed, entries(10, 12, 14), 3)
    assert [[g.ready for g in groups] for groups in history] == [[False], [False], [True]]
    strict = Grouping(max_players=4, allow_incomplete_groups=False, max_waiting_cycles=2)
    assert not any(g.ready for groups in cycles(strict, entries(10, 12, 14), 10) for g in groups)


def test_a_newcomer_gets_a_cycle_before_an_incomplete_group_leaves_with_it():
    grouping = Grouping(max_players=5, allow_incomplete_groups=True, max_waiting_cycles=2)
    queued = entries(10, 12, 14)
    cycles(grouping, queued, 2)
    queued += entries(13)
    third = grouping.regroup(queued)
    assert len(third[0]) == 4 and not third[0].ready  # the newcomer has had one cycle only
    fourth = grouping.regroup(queued)
    assert len(fourth[0]) == 4 and fourth[0].ready


def test_max_team_size_keeps_teams_together_and_apart():
    grouping = Grouping(max_players=4, max_team_size=2)
    a = entries(10, 10, 10, team_id="A")
    b = entries(10, 10, team_id="B")
    groups = grouping.regroup(a + b)
    ready = [g for g in groups if g.ready]
    assert len(ready) == 1
    assert Counter(e.team_id for e in ready[0].members) == {"A": 2, "B": 2}
    assert [e.team_id for g in groups if not g.ready for e in g.members] == ["A"]


def test_two_squads_of_one_team_never_share_a_group():
    groups = Grouping(max_players=4, max_team_size=2).regroup(entries(10, 10, 10, 10, team_id="A"))
    assert [len(g) for g in groups] == [2, 2] and not any(g.ready for g in groups)


def test_three_teams_of_three_make_one_group_of_nine():
    grouping = Grouping(max_players=9, max_team_size=3)
    queued = [e for team in "ABC" for e in entries(10, 10, 10, team_id=team)]
    groups = grouping.regroup(queued)
    assert len(groups) == 1 and groups[0].ready and len(groups[0]) == 9


def test_a_compare_hook_decides_who_plays_together():
    queued = [QueueEntry(client=i, rank=i, options={"mode": "duel" if i % 2 else "ffa"})
              for i in range(8)]

    def same_mode(entry, group):
        return entry.options["mode"] == group.members[0].options["mode"]

    groups = Grouping(max_players=4, compare=same_mode).regroup(queued)
    assert len(groups) == 2 and all(g.ready for g in groups)
    assert [{e.options["mode"] for e in g.members} for g in groups] == [{"ffa"}, {"duel"}]


# == seats for a group, all or none ===============================================================
class Four(Room):
    max_clients = 4


def test_reserve_seats_takes_all_of_them_or_none(greenroom_boot):
    server = Server()
    server.define("four", Four)
    test = greenroom_boot(server)
    mm = test.matchmaker
    listing = mm.create_room("four")
    engine = mm.engine(listing.room_id)
    mm.reserve_seat(listing.room_id)
    with pytest.raises(MatchMakeError, match="cannot seat 4"):
        mm.reserve_seats(listing.room_id, [{}, {}, {}, {}])
    assert engine.seats_taken == 1  # not three of the four
    seats = mm.reserve_seats(listing.room_id, [{"n": 1}, {"n": 2}, {"n": 3}])
    assert len({seat.session_id for seat in seats}) == 3 and engine.seats_taken == 4
    assert {s.session_id: s.options for s in engine.seats.reserved.values()}[seats[2].session_id] \
        == {"n": 3}


def test_concurrent_groups_never_split_over_the_last_seats(greenroom_boot):
    """30 groups of 3 race for a room of 10: three get in whole, the others get nothing."""
    server = Server()
    server.define("ten", type("Ten", (Room,), {"max_clients": 10}))
    test = greenroom_boot(server)
    mm = test.matchmaker
    room_id = mm.create_room("ten").room_id
    jobs = [gevent.spawn(mm.reserve_seats, room_id, [{}, {}, {}]) for _ in range(30)]
    gevent.joinall(jobs, timeout=10)
    assert sum(job.successful() for job in jobs) == 3
    assert all(isinstance(job.exception, MatchMakeError) for job in jobs if not job.successful())
    assert mm.engine(room_id).seats_taken == 9


def test_create_with_seats_lists_the_room_with_every_seat_already_taken(greenroom_boot):
    server = Server()
    server.define("four", Four)
    mm = greenroom_boot(server).matchmaker
    seats = mm.create_with_seats("four", [{}, {}, {}, {}])
    assert len({seat.room_id for seat in seats}) == 1
    [listing] = mm.query("four")
    assert listing.clients == 4 and listing.locked  # full from its first listing on
    with pytest.raises(MatchMakeError):
        mm.create_with_seats("four", [{}] * 5)  # more than the room holds: no room is left
    assert len(mm.query("four")) == 1


@pytest.fixture
def deployment(redis_server):
    redis.Redis.from_url(redis_server.url).flushall()
    started = []

    def start(**options):
        server = Server(redis_url=redis_server.url, heartbeat=0.5, lease=2.0, **options)
        server.define("four", Four)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown(timeout=2)


class Fixed:
    def __init__(self):
        self.process_id = None

    def choose(self, name, options):
        return self.process_id


def test_group_seats_in_a_room_another_process_creates_and_owns(deployment):
    placement = Fixed()
    a, b = deployment(placement=placement), deployment()
    placement.process_id = b.process_id
    seats = a.matchmaker.create_with_seats("four", [{"p": 1}, {"p": 2}])
    room_id = seats[0].room_id
    assert {seat.process_id for seat in seats} == {b.process_id}
    assert room_id in b.matchmaker.rooms and room_id not in a.matchmaker.rooms
    assert b.matchmaker.engine(room_id).seats_taken == 2
    with pytest.raises(MatchMakeError):
        a.matchmaker.reserve_seats(room_id, [{}, {}, {}])  # three do not fit in the two left
    more = a.matchmaker.reserve_seats(room_id, [{}, {}])
    assert {seat.room_id for seat in more} == {room_id}
    assert b.matchmaker.engine(room_id).seats_taken == 4


# == the QueueRoom with real players ==============================================================
def load_app():
    """A fresh copy of the application, as ``greenroom serve`` loads it: its folder on sys.path
    (it imports tests/apps/placements.py)."""
    if os.path.dirname(APP_PATH) not in sys.path:
        sys.path.insert(0, os.path.dirname(APP_PATH))
    spec = importlib.util.spec_from_file_location(f"queueing_{os.urandom(4).hex()}", APP_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def band_of(index):
    return f"b{index // 4}"


def queue_player(endpoint, index, queue="queue"):
    """One player as a Colyseus front end plays it: queue, take the seat, confirm. What it saw."""
    client = Client(endpoint)
    waiting = client.join_or_create(queue, {"band": band_of(index), "rank": index})
    seat = waiting.wait_for_message("seat", timeout=60)
    match = client.consume_seat_reservation(seat)
    welcome = match.wait_for_message("welcome")
    waiting.send("confirm")
    code, _ = waiting.wait_closed(10)
    seats = 1 + len(drain(waiting, "seat"))
    return {"index": index, "band": band_of(index), "seat": seat, "room": match,
            "welcome": welcome, "queue_close": code, "seats": seats}


def drain(room, message_type):
    """The messages of ``message_type`` already received (buffered), without waiting."""
    found = []
    while True:
        try:
            found.append(room.wait_for_message(message_type, timeout=0))
        except (RoomClosed, ClientTimeout):
            return found


def play_all(endpoint, count=PLAYERS, queue="queue"):
    jobs = [gevent.spawn(queue_player, endpoint, i, queue) for i in range(count)]
    gevent.joinall(jobs, timeout=120)
    assert [repr(job.exception) for job in jobs if not job.successful()] == []
    return [job.value for job in jobs]


def check_groups(players):
    """Every member in its own group's room: 25 rooms of 4, one band each, one seat each."""
    by_room = {}
    for p in players:
        assert p["seats"] == 1 and p["queue_close"] == 1000
        assert p["welcome"]["roomId"] == p["seat"]["roomId"] == p["room"].room_id
        assert p["welcome"]["sessionId"] == p["seat"]["sessionId"] and p["welcome"]["band"] == p["band"]
        by_room.setdefault(p["room"].room_id, []).append(p)
    split = {room: sorted(p["band"] for p in m) for room, m in by_room.items()
             if len(m) != 4 or len({p["band"] for p in m}) != 1}
    assert split == {} and len(by_room) == PLAYERS // 4, split
    assert len({p["welcome"]["sessionId"] for p in players}) == PLAYERS
    return by_room


def test_100_python_players_queueing_at_once_fill_25_match_rooms_of_their_group(greenroom_boot):
    test = greenroom_boot(load_app().server)
    players = play_all(test.endpoint)
    by_room = check_groups(players)
    rooms = {room.room_id: room for room in test.rooms if room.room_name == "match"}
    assert set(rooms) == set(by_room)  # no match room made beside the 25
    for room_id, room in rooms.items():
        engine = room._gr
        assert engine.seats_taken == 4 and not engine.seats.reserved  # every seat taken, by its own
        assert {c.session_id for c in room.clients} == {p["room"].session_id for p in by_room[room_id]}
    for queue in [room for room in test.rooms if room.room_name == "queue"]:
        test.wait_for_dispose(queue)  # everyone confirmed and left: the queue is disposed


def test_a_group_whose_match_room_fails_is_queued_again_then_seated(greenroom_boot, tmp_path,
                                                                    monkeypatch):
    flaky = tmp_path / "flaky"
    flaky.write_text("2")  # the first two creations fail
    monkeypatch.setenv("GREENROOM_TEST_FLAKY", str(flaky))
    test = greenroom_boot(load_app().server)
    players = play_all(test.endpoint, 4, queue="flaky_queue")
    assert flaky.read_text() == "0"
    assert len({p["room"].room_id for p in players}) == 1
    made = [room.room_name for room in test.rooms if room.room_name != "flaky_queue"]
    assert made == ["flaky"]  # the failed creations left no room


def test_after_max_seat_attempts_the_members_are_told_with_1011(greenroom_boot, tmp_path,
                                                                monkeypatch):
    flaky = tmp_path / "flaky"
    flaky.write_text("100")
    monkeypatch.setenv("GREENROOM_TEST_FLAKY", str(flaky))
    test = greenroom_boot(load_app().server)
    client = Client(test.endpoint)
    queued = [client.join_or_create("flaky_queue", {"band": "x"}) for _ in range(4)]
    closes = [room.wait_closed(10) for room in queued]
    assert {code for code, _ in closes} == {1011}
    assert all("flaky match room" in reason for _, reason in closes)
    assert flaky.read_text() == "97"  # three attempts (max_seat_attempts), then told
    assert all(drain(room, "seat") == [] for room in queued)
    assert not [room for room in test.rooms if room.room_name == "flaky"]


def test_the_queue_tells_its_size_and_ignores_an_early_confirm(greenroom_boot):
    test = greenroom_boot(load_app().server)
    client = Client(test.endpoint)
    first = client.join_or_create("queue", {"band": "solo"})
    assert first.wait_for_message("clients") == 1  # on joining, as Colyseus does
    first.send("confirm")  # not seated: nothing happens
    second = client.join_or_create("queue", {"band": "solo"})
    assert second.wait_for_message("clients") == 1
    assert first.wait_for_message("clients") == 2 and second.wait_for_message("clients") == 2
    first.leave()
    third = client.join_or_create("queue", {"band": "solo"})
    assert third.wait_for_message("clients") == 1
    assert third.wait_for_message("clients") == 2  # first left: second and third


def test_a_bad_rank_is_refused_with_one_log_line_and_the_queue_goes_on(greenroom_boot, caplog):
    caplog.set_level(logging.INFO)
    test = greenroom_boot(load_app().server)
    client = Client(test.endpoint)
    waiting = client.join_or_create("queue", {"band": "z"})
    with pytest.raises(ClientMatchMakeError) as refused:
        client.join_or_create("queue", {"band": "z", "rank": "high"})
    assert refused.value.code == 4217 and "rank must be a number" in str(refused.value)
    assert len([r for r in caplog.records if "rank must be a number" in r.getMessage()]) == 1
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert waiting.wait_for_message("clients") == 1
    others = [client.join_or_create("queue", {"band": "z"}) for _ in range(3)]
    assert {r.wait_for_message("seat")["roomId"] for r in [waiting, *others]}.__len__() == 1


def test_define_options_win_over_a_clients_and_camel_case_is_read(greenroom_boot):
    test = greenroom_boot(load_app().server)
    client = Client(test.endpoint)
    # The creator asks for groups of two and another match room: define's say four and "match".
    first = client.join_or_create("queue", {"band": "q", "maxPlayers": 2, "matchRoomName": "flaky"})
    room = test.room_of(first)
    assert (room.max_players, room.match_room_name, room.cycle_tick_interval) == (4, "match", 50)
    client.join_or_create("queue", {"band": "q"})
    # With groups of two, the pair would get seats; in a group of four, it is told its size.
    assert first.wait_for_message("clients") == 1 and first.wait_for_message("clients") == 2


# == the official clients =========================================================================
@pytest.fixture
def queue_server(serve_process):
    return serve_process(APP)[1]


def check_js(result):
    assert result["error"] is None, result
    players = result["players"]
    assert len(players) == PLAYERS and [p for p in players if p.get("error")] == []
    by_room = {}
    for p in players:
        assert p["seats"] == 1 and p["queueLeaveCode"] == 1000, p
        assert p["joinedRoomId"] == p["seatRoomId"] == p["welcome"]["roomId"], p
        assert p["welcome"]["band"] == p["band"] and p["welcome"]["sessionId"] == p["sessionId"]
        by_room.setdefault(p["joinedRoomId"], []).append(p)
    assert len(by_room) == PLAYERS // 4
    split = {room: sorted(p["band"] for p in m) for room, m in by_room.items()
             if len(m) != 4 or len({p["band"] for p in m}) != 1}
    assert split == {}, by_room
    assert len({p["sessionId"] for p in players}) == PLAYERS
    return by_room


@pytest.mark.parametrize("client,prefix", [("colyseusjs", ""), ("sdk17", ""), ("sdk18", "/v18")])
def test_100_official_clients_queue_and_consume_their_seat_reservations(queue_server, run_js,
                                                                       client, prefix):
    result = run_js("queue.mjs", "--client", client, "--n", PLAYERS,
                    "--endpoint", f"ws://127.0.0.1:{queue_server}{prefix}", timeout=100)
    check_js(result)


# == greenroom serve --workers 2 ==================================================================
@pytest.fixture
def cluster():
    started = Cluster(2, target=APP, env={"GREENROOM_TEST_ROUND_ROBIN": "1"})
    try:
        started.wait_serving(2)
        yield started
    finally:
        started.stop()


def test_under_two_workers_python_players_are_seated_in_match_rooms_of_both(cluster):
    players = play_all(cluster.endpoint)
    by_room = check_groups(players)
    owners = {members[0]["welcome"]["processId"] for members in by_room.values()}
    workers = {w["processId"] for w in cluster.workers()}
    assert owners == workers and len(workers) == 2  # match rooms made in both workers
    assert all(len({p["welcome"]["pid"] for p in members}) == 1 for members in by_room.values())


@pytest.mark.parametrize("client,prefix", [("colyseusjs", ""), ("sdk17", ""), ("sdk18", "/v18")])
def test_under_two_workers_official_clients_are_seated_in_match_rooms_of_both(cluster, run_js,
                                                                            client, prefix):
    result = run_js("queue.mjs", "--client", client, "--n", PLAYERS, "--endpoint",
                    cluster.endpoint + prefix, timeout=100)
    by_room = check_js(result)
    owners = {members[0]["welcome"]["processId"] for members in by_room.values()}
    assert owners == {w["processId"] for w in cluster.workers()} and len(owners) == 2


def test_the_example_seats_two_groups_of_four_by_rank(greenroom_boot):
    from conftest import load_example

    test = greenroom_boot(load_example("queue_room").server)
    client = Client(test.endpoint)
    ranks = [10, 12, 15, 11, 400, 410, 380, 450]
    queued = [client.join_or_create("queue", {"rank": rank}) for rank in ranks]
    seats = [room.wait_for_message("seat", timeout=10) for room in queued]
    battles = [client.consume_seat_reservation(seat) for seat in seats]
    assert len({b.room_id for b in battles[:4]}) == len({b.room_id for b in battles[4:]}) == 1
    assert battles[0].room_id != battles[4].room_id
    joined = [battles[0].wait_for_message("joined") for _ in range(4)]  # it joined first
    assert sorted(j["rank"] for j in joined) == [10, 11, 12, 15]


def wait_count(room, count):
    """Read ``clients`` messages until the group size ``count`` comes."""
    while room.wait_for_message("clients") != count:
        pass


def test_a_reload_moves_the_queue_with_its_players_ranks_and_cycles(greenroom_boot):
    """What ``--migrate`` does to a queue, step by step in this process: snapshot in the old
    room, restore in another server, the players reconnect there; the group they had begun
    is completed by a newcomer and seated."""
    from greenroom.migration import restore, snapshot
    from greenroom.protocol.codes import CloseCode

    old, new = greenroom_boot(load_app().server), greenroom_boot(load_app().server)
    players = [Client(old.endpoint).join_or_create("queue", {"band": "m", "rank": r})
               for r in (5, 6, 7)]
    for player in players:
        wait_count(player, 3)
    queue = old.room_of(players[0])
    data = old.in_room(queue, snapshot, queue)
    waited = {item["sessionId"]: item["cycle"] for item in data["extra"]["queue"]}
    assert set(waited) == {p.session_id for p in players} and min(waited.values()) >= 1
    old.in_room(queue, queue.disconnect, CloseCode.MAY_TRY_RECONNECT)
    assert restore(new.matchmaker, data) == {"processId": new.matchmaker.process_id}

    moved = [Client(new.endpoint).reconnect(p.reconnection_token) for p in players]
    assert [m.session_id for m in moved] == [p.session_id for p in players]
    restored = new.room_of(moved[0])
    cycles_now = new.in_room(restored, lambda: {s: e.current_cycle for s, e in restored.queue.items()})
    assert all(cycles_now[s] >= waited[s] for s in waited)  # the cycles waited came along
    newcomer = Client(new.endpoint).join_or_create("queue", {"band": "m", "rank": 8})
    assert newcomer.room_id == restored.room_id
    seats = [room.wait_for_message("seat") for room in [*moved, newcomer]]
    assert len({seat["roomId"] for seat in seats}) == 1


def test_a_queue_without_a_defined_match_room_is_refused_at_creation(greenroom_boot):
    from greenroom import QueueRoom

    server = Server()
    server.define("nameless", QueueRoom)
    server.define("elsewhere", QueueRoom, match_room_name="nowhere")
    client = Client(greenroom_boot(server).endpoint)
    with pytest.raises(ClientMatchMakeError) as nameless:
        client.join_or_create("nameless", {})
    assert nameless.value.code == 526 and "match_room_name" in nameless.value.message
    with pytest.raises(ClientMatchMakeError) as elsewhere:
        client.join_or_create("elsewhere", {})
    assert elsewhere.value.code == 526 and '"nowhere" not defined' in elsewhere.value.message


def test_a_clients_bad_option_is_ignored_with_one_log_line(greenroom_boot, caplog):
    caplog.set_level(logging.INFO)
    test = greenroom_boot(load_app().server)
    room = Client(test.endpoint).join_or_create("queue", {"band": "o", "maxWaitingCycles": "many"})
    assert test.room_of(room).max_waiting_cycles == 15
    lines = [r for r in caplog.records if "maxWaitingCycles" in r.getMessage()]
    assert len(lines) == 1 and "ignored" in lines[0].getMessage()
