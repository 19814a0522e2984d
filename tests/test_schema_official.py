"""The official decoders (@colyseus/schema 3.0.76, 4.0.31, 5.0.34) read greenroom's bytes.

Every mutation kind is applied to a state; after each patch, each simulated client (one per
official decoder, plus greenroom's own decoder in both dialects) must hold exactly what the
server holds, and no decoder may print anything.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_schema_support import ALL_LIBS, dialect_of, expected, official_decoders

from greenroom.protocol.dialect import Dialect
from greenroom.schema import (
    ChangeTracker,
    Schema,
    StateDecoder,
    encode_all,
    encode_patch,
    encode_reflection,
    field,
)


class Item(Schema):
    name = field("string", default="")
    qty = field("uint8", default=1)


class Player(Schema):
    name = field("string", default="")
    x = field("number", default=0)
    y = field("float32", default=0.0)
    alive = field("boolean", default=True)
    items = field({"map": Item})
    tags = field(["string"])
    pet = field(Item)


class Boss(Player):
    rage = field("uint8", default=0)


class Numbers(Schema):
    i8 = field("int8")
    u8 = field("uint8")
    i16 = field("int16")
    u16 = field("uint16")
    i32 = field("int32")
    u32 = field("uint32")
    i64 = field("int64")
    u64 = field("uint64")
    f32 = field("float32")
    f64 = field("float64")
    num = field("number")
    text = field("string")
    flag = field("boolean")


class State(Schema):
    tick = field("uint16", default=0)
    title = field("string", default="lobby")
    players = field({"map": Player})
    log = field(["string"])
    scores = field({"map": "number"})
    leader = field(Player)
    squad = field([Player])
    grid = field(["int32"])
    numbers = field(Numbers)


class Client:
    """A simulated client: an official decoder or greenroom's, with the handshake of its dialect."""

    def __init__(self, lib: str, tracker: ChangeTracker) -> None:
        self.lib = lib
        self.dialect = Dialect(
            dialect_of(lib.replace("py-", "schema") if lib.startswith("py") else lib)
        )
        handshake = encode_reflection(type(tracker.state), self.dialect)
        if lib.startswith("py"):
            self.session = None
            self.decoder = StateDecoder.from_handshake(handshake)
        else:
            self.session = official_decoders().open(lib, handshake)
        self.decode(encode_all(tracker, self.dialect))

    def decode(self, body: bytes) -> Any:
        if self.session is not None:
            self.state = self.session.decode(body)
        else:
            self.state = self.decoder.decode(body)
        return self.state


class Harness:
    """A room with one client per decoder; ``tick()`` sends the patch and compares every client."""

    LIBS = (*ALL_LIBS, "py-3", "py-5")

    def __init__(self, state: Schema) -> None:
        self.state = state
        self.tracker = ChangeTracker(state)
        self.tracker.discard_changes()
        self.clients = [Client(lib, self.tracker) for lib in self.LIBS]
        self.patches: list[bytes] = []
        self.compare("initial full state")

    def join(self) -> None:
        """A late joiner: flush the tick to the others first, then its full state (§4.1)."""
        self.tick()
        self.clients += [Client(lib, self.tracker) for lib in self.LIBS]
        self.compare("full state of late joiners")

    def tick(self, label: str = "") -> bytes:
        body = encode_patch(self.tracker)
        self.patches.append(body)
        if body:
            for client in self.clients:
                client.decode(body)
        self.compare(label or body.hex())
        return body

    def compare(self, label: str) -> None:
        want = expected(self.state)
        for client in self.clients:
            assert client.state == want, f"{client.lib} after {label}:\n{client.state}\n!=\n{want}"


@pytest.fixture
def room() -> Harness:
    return Harness(State())


def test_primitive_types_and_boundaries(room: Harness) -> None:
    n = room.state.numbers = Numbers()
    room.tick()
    n.i8, n.u8, n.i16, n.u16 = -128, 255, -32768, 65535
    n.i32, n.u32, n.i64, n.u64 = -(2**31), 2**32 - 1, -(2**53) + 1, 2**53 - 1
    n.f32, n.f64, n.num, n.flag = 1.5, 0.1, 0.1, True
    n.text = "héllo wörld ✓ 😀" * 30  # str16 length prefix
    room.tick()
    n.i8, n.u8, n.i16, n.u16, n.i32, n.u32 = 127, 0, 32767, 0, 2**31 - 1, 0
    n.num = 2147483648
    n.text = "x" * 40  # str8
    n.flag = False
    room.tick()
    for value in (
        -1,
        -32,
        -33,
        -128,
        -129,
        -32768,
        -32769,
        -(2**31),
        -(2**31) - 1,
        255,
        256,
        65535,
        65536,
        4294967295,
        4294967296,
        123456.789,
        -2.25,
        1e-7,
        3.4e38,
        1e39,
    ):
        n.num = value
        room.tick(f"number {value}")
    n.f64 = -1e300
    n.f32 = -3.0e38
    room.tick()


def test_field_delete_and_readd(room: Harness) -> None:
    room.state.title = None
    assert room.tick() == b"\x41"
    room.state.title = "back"
    room.tick()
    room.state.title = None
    room.state.title = "again"  # DELETE then ADD in one tick
    room.tick()
    room.state.title = "gone"
    room.state.title = None  # change then DELETE in one tick
    room.tick()
    room.state.tick = 65535
    room.state.tick = 3
    room.tick()


def test_map_operations(room: Harness) -> None:
    players, scores = room.state.players, room.state.scores
    players["a"] = Player(name="alice")
    players["b"] = Player(name="bob", x=1.5)
    scores["a"] = 1
    room.tick()
    scores["a"] = 2.5  # REPLACE a primitive entry
    scores["b"] = -7
    players["a"].x = 10
    room.tick()
    del players["b"]
    del scores["a"]
    room.tick()
    players["c"] = Player(name="carol")
    del players["c"]  # ADD then DELETE: nothing
    scores["z"] = 1
    del scores["z"]
    assert room.tick() == b""
    players["a"] = Player(name="alice 2")  # replace the value of a key: DELETE_AND_ADD
    room.tick()
    del players["a"]
    players["a"] = Player(name="alice 3")  # delete and re-add a key in one tick
    scores.pop("b")
    scores["b"] = 5
    room.tick()
    moved = players.pop("a")
    players["moved"] = moved  # move an entry to another key
    moved.x = 99
    room.tick()
    players.update({"d": Player(name="dan"), "e": Player(name="eve")})
    players.clear()
    players["f"] = Player(name="fay")
    room.tick()


def test_array_of_primitives(room: Harness) -> None:
    log = room.state.log
    log.append("a")
    log.extend(["b", "c", "d"])
    room.tick()
    log[1] = "B"  # REPLACE
    log.pop()  # DELETE last
    room.tick()
    log.pop()
    log.pop()
    log.append("x")  # pops then an append in one tick
    room.tick()
    log.extend(["1", "2", "3", "4"])
    room.tick()
    log.insert(1, "ins")  # CLEAR + re-ADD
    room.tick()
    log.remove("2")
    room.tick()
    log.sort()
    room.tick()
    log.reverse()
    log.append("tail")
    room.tick()
    del log[0]
    log[-1] = "last"
    room.tick()
    log.clear()
    room.tick()
    log.append("again")
    log.pop()
    log.append("and again")
    room.tick()
    grid = room.state.grid
    grid.extend([-(2**31), 0, 2**31 - 1])
    room.tick()
    grid[1] = 7
    grid[:] = [3, 2, 1]  # slice assignment
    room.tick()


def test_array_of_schemas(room: Harness) -> None:
    squad = room.state.squad
    squad.append(Player(name="p1"))
    squad.append(Player(name="p2"))
    room.tick()
    squad[0].x = 5
    squad[1] = Player(name="p2b")  # DELETE_AND_ADD of a child
    room.tick()
    squad.pop()
    squad.append(Player(name="p3"))
    room.tick()
    squad.insert(0, Player(name="p0"))
    squad[1].name = "p1 renamed"
    room.tick()
    squad.reverse()
    room.tick()
    squad.sort(key=lambda p: p.name)
    room.tick()
    squad.pop(0)
    room.tick()
    squad.clear()
    room.tick()


def test_child_schemas_and_inheritance(room: Harness) -> None:
    state = room.state
    state.leader = Player(name="lead")
    room.tick()
    state.leader.pet = Item(name="cat")
    state.leader.items["sword"] = Item(name="sword", qty=2)
    state.leader.tags.append("brave")
    room.tick()
    state.leader = Boss(name="boss", rage=9)  # DELETE_AND_ADD with TYPE_ID (subclass)
    room.tick()
    state.players["boss"] = Boss(name="map boss")  # TYPE_ID inside a map entry
    state.squad.append(Boss(name="squad boss"))  # and inside an array
    room.tick()
    state.players["boss"].rage = 200
    state.squad[0].rage = 3
    room.tick()
    state.leader = None
    room.tick()
    room.join()


def test_shared_and_moved_structures(room: Harness) -> None:
    state = room.state
    hero = Player(name="hero")
    state.players["h"] = hero
    state.leader = hero  # the same instance twice
    room.tick()
    hero.x = 3
    room.tick()
    del state.players["h"]  # still the leader
    hero.x = 4
    room.tick()
    state.players["again"] = hero
    state.leader = None
    room.tick()
    old_items = hero.items
    old_items["i"] = Item(name="i")
    room.tick()
    hero.items = {"j": Item(name="j")}  # replace a whole collection field
    room.tick()
    state.leader = Player(name="tmp")
    state.leader = None  # attached and detached in one tick
    room.tick()


def test_late_joiners_see_the_same_state(room: Harness) -> None:
    state = room.state
    state.players["a"] = Player(name="a")
    state.log.extend(["1", "2"])
    room.tick()
    state.log.append("pending when joining")
    state.players["a"].tags.append("t")
    room.join()
    state.log.pop(0)
    state.log.append("after")
    room.tick()


def test_reconnection_full_state_replaces_python_state(room: Harness) -> None:
    state = room.state
    state.players["gone"] = Player(name="gone")
    room.tick()
    decoder = StateDecoder.from_handshake(encode_reflection(State, Dialect.V5))
    decoder.decode(encode_all(room.tracker))
    del state.players["gone"]
    room.tick()
    assert "gone" in decoder.state["players"]  # it missed the patch
    decoder.decode_full(encode_all(room.tracker))
    assert decoder.state == expected(state)


class Wide(Schema):
    """Field 21 is a child: its DELETE_AND_ADD byte would be 0xd5, the TYPE_ID marker."""

    locals().update({f"f{i}": field("uint8") for i in range(20)})
    before = field(Item)
    child = field(Item)
    last = field("string")


def test_field_21_delete_and_add_is_not_read_as_type_id() -> None:
    room = Harness(Wide())
    room.state.before = Item(name="b1")
    room.state.child = Item(name="c1")
    room.tick()
    room.state.before = Item(name="b2")  # ADD ref (field 20) then ...
    room.state.child = Item(name="c2")  # ... DELETE_AND_ADD of field 21 right after it
    body = room.tick()
    assert b"\xd5" not in body
    room.state.last = "ok"
    room.tick()


class Widest(Schema):
    locals().update({f"f{i}": field("uint8", default=i) for i in range(62)})
    tail = field("string", default="sixty-third")


def test_a_class_with_63_fields_round_trips() -> None:
    room = Harness(Widest())
    room.state.tail = "changed"
    room.state.f61 = 200
    room.tick()
