"""Random mutation sequences: after every patch each client's decoded state equals the server's.

Clients: the three official decoders (v3 handshake for schema 3/4, v5 for schema 5) and
greenroom's decoder in both dialects. Keys come from a small pool so that replacements,
deletions and re-insertions of the same key happen often.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_schema_official import Boss, Client, Harness, Item, Player, State
from test_schema_support import ALL_LIBS, expected

from greenroom.schema import ChangeTracker, encode_patch

KEYS = st.sampled_from("abcde")
TEXT = st.text(max_size=12)
NUMBER = st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=True, allow_infinity=True))
FLOAT32 = st.floats(-1e30, 1e30, allow_nan=False)

OPS = st.one_of(
    st.tuples(st.just("tick")),
    st.tuples(st.just("tick")),
    st.tuples(st.just("set_tick"), st.integers(0, 65535)),
    st.tuples(st.just("title"), st.none() | TEXT),
    st.tuples(st.just("add_player"), KEYS, TEXT, st.booleans()),
    st.tuples(st.just("del_player"), KEYS),
    st.tuples(st.just("move"), KEYS, NUMBER, FLOAT32),
    st.tuples(st.just("move_key"), KEYS, KEYS),
    st.tuples(st.just("tags"), KEYS, st.sampled_from(["append", "pop", "insert", "clear"]), TEXT),
    st.tuples(st.just("item"), KEYS, KEYS, st.none() | st.integers(0, 255)),
    st.tuples(st.just("pet"), KEYS, st.none() | TEXT),
    st.tuples(st.just("score"), KEYS, st.none() | NUMBER),
    st.tuples(
        st.just("log"),
        st.sampled_from(
            [
                "append",
                "append",
                "pop",
                "set",
                "insert",
                "remove",
                "sort",
                "reverse",
                "clear",
                "del",
            ]
        ),
        st.integers(0, 10),
        TEXT,
    ),
    st.tuples(
        st.just("squad"),
        st.sampled_from(["append", "append", "pop", "set", "insert", "reverse", "clear", "adopt"]),
        st.integers(0, 10),
        KEYS,
    ),
    st.tuples(st.just("leader"), st.sampled_from(["player", "boss", "none"]), KEYS),
    st.tuples(st.just("join")),
)


def apply(state: State, op: tuple[Any, ...], kit: Any = None) -> None:
    """Apply one op; ``kit`` supplies the classes to build (Player, Boss, Item), default ours."""
    Player, Boss, Item = (kit.Player, kit.Boss, kit.Item) if kit else _KIT
    kind = op[0]
    players = state.players
    if kind == "set_tick":
        state.tick = op[1]
    elif kind == "title":
        state.title = op[1]
    elif kind == "add_player":
        players[op[1]] = (Boss if op[3] else Player)(name=op[2])
    elif kind == "del_player":
        players.pop(op[1], None)
    elif kind == "move" and op[1] in players:
        players[op[1]].x = op[2]
        players[op[1]].y = op[3]
    elif kind == "move_key" and op[1] in players:
        players[op[2]] = players.pop(op[1])
    elif kind == "tags" and op[1] in players:
        tags = players[op[1]].tags
        if op[2] == "append":
            tags.append(op[3])
        elif op[2] == "pop" and tags:
            tags.pop()
        elif op[2] == "insert":
            tags.insert(0, op[3])
        elif op[2] == "clear":
            tags.clear()
    elif kind == "item" and op[1] in players:
        items = players[op[1]].items
        if op[3] is None:
            items.pop(op[2], None)
        elif op[2] in items:
            items[op[2]].qty = op[3]
        else:
            items[op[2]] = Item(name=op[2], qty=op[3])
    elif kind == "pet" and op[1] in players:
        players[op[1]].pet = None if op[2] is None else Item(name=op[2])
    elif kind == "score":
        if op[2] is None:
            state.scores.pop(op[1], None)
        else:
            state.scores[op[1]] = op[2]
    elif kind == "log":
        _array_op(state.log, op[1], op[2], lambda: op[3])
    elif kind == "squad":
        if op[1] == "adopt":
            if op[3] in players and players[op[3]] not in state.squad:
                state.squad.append(players[op[3]])  # shared with the map
        else:
            _array_op(state.squad, op[1], op[2], lambda: Player(name=op[3]))
    elif kind == "leader":
        if op[1] == "none":
            state.leader = None
        elif op[1] == "boss":
            state.leader = Boss(name="boss " + op[2])
        elif op[2] in players:
            state.leader = players[op[2]]


_KIT = (Player, Boss, Item)


def _array_op(array: Any, what: str, index: int, make: Any) -> None:
    n = len(array)
    if what == "append":
        array.append(make())
    elif what == "pop" and n:
        array.pop()
    elif what == "set" and n:
        array[index % n] = make()
    elif what == "insert":
        array.insert(index % (n + 1), make())
    elif what == "remove" and n:
        array.remove(array[index % n])
    elif what == "del" and n:
        del array[index % n]
    elif what == "sort":
        array.sort()
    elif what == "reverse":
        array.reverse()
    elif what == "clear":
        array.clear()


class PropertyHarness(Harness):
    LIBS = (*ALL_LIBS, "py-3", "py-5")

    def close(self) -> None:
        for client in self.clients:
            if client.session is not None:
                client.session.close()


@settings(
    max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.lists(OPS, max_size=40))
def test_random_mutations_decode_identically(ops: list[tuple[Any, ...]]) -> None:
    room = PropertyHarness(State())
    try:
        for op in ops:
            if op[0] == "tick":
                room.tick()
            elif op[0] == "join":
                room.join()
            else:
                apply(room.state, op)
        room.tick()
    finally:
        room.close()


@settings(max_examples=500, deadline=None, database=None)
@given(st.lists(OPS, max_size=30))
def test_python_decoder_alone_tracks_every_patch(ops: list[tuple[Any, ...]]) -> None:
    """Cheaper and therefore longer: greenroom's decoder only, full state checked at every op."""
    state = State()
    tracker = ChangeTracker(state)
    tracker.discard_changes()  # the clients start from a full state
    clients = [Client("py-3", tracker), Client("py-5", tracker)]
    for op in ops:
        if op[0] not in ("tick", "join"):
            apply(state, op)
        body = encode_patch(tracker)
        for client in clients:
            client.decode(body)
            assert client.state == expected(state), op
