"""Private data: each client's decoders (official and greenroom's) hold exactly what its view shows.

The expected state per client is computed here independently from the rule documented in
greenroom/schema/view.py: a private field is visible when the view holds its owner (with the
field's tag, if any); an entry of a private map of Schema when the view holds the entry or the
map's owner.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_schema_support import ALL_LIBS, dialect_of, official_decoders, wire

from greenroom.protocol.dialect import Dialect
from greenroom.schema import (
    ArraySchema,
    MapSchema,
    Schema,
    SchemaSerializer,
    StateDecoder,
    StateView,
    field,
)
from greenroom.schema.fields import GATE_ENTRIES, GATE_FIELD, PRIM, REF


class Card(Schema):
    suit = field("string", default="")
    rank = field("uint8", default=0)


class Item(Schema):
    name = field("string", default="")
    power = field("number", default=0)


class Player(Schema):
    name = field("string", default="")
    x = field("number", default=0)
    hand = field([Card], view=True)
    secret = field("string", view=True)
    gold = field("uint32", view=2)
    stash = field({"map": Item}, view=True)
    badge = field(Item, view=True)


class State(Schema):
    round = field("uint8", default=0)
    players = field({"map": Player})
    items = field({"map": Item}, view=True)
    notes = field(["string"])


def visible(obj: Schema, view: StateView | None) -> dict[str, Any]:
    """What a client with ``view`` must hold for ``obj`` (independent of the encoder)."""
    result = {}
    for fd in type(obj)._gr_fields:
        value = obj.__dict__[fd.name]
        if fd.gate == GATE_FIELD:
            shown = view is not None and view.has(obj) and (fd.tag == -1 or view.has(obj, fd.tag))
            if not shown:
                continue
        if value is None:
            continue
        if fd.gate == GATE_ENTRIES:
            result[fd.name] = {
                k: visible(v, view)
                for k, v in value.items()
                if view is not None
                and (v in view or view.has(obj) and (fd.tag == -1 or view.has(obj, fd.tag)))
            }
        elif fd.kind == PRIM:
            result[fd.name] = wire(fd.spec, value)
        elif fd.kind == REF:
            result[fd.name] = visible(value, view)
        elif isinstance(value, MapSchema):
            result[fd.name] = {k: _child(fd, v, view) for k, v in value.items()}
        else:
            assert isinstance(value, ArraySchema)
            result[fd.name] = [_child(fd, v, view) for v in value]
    return result


def _child(fd: Any, value: Any, view: StateView | None) -> Any:
    return visible(value, view) if fd.spec.child.kind == REF else wire(fd.spec.child, value)


class ViewClient:
    """A room client as the serializer sees it (``view``, ``dialect``) plus its decoders."""

    def __init__(
        self, name: str, view: StateView | None, lib: str, serializer: SchemaSerializer
    ) -> None:
        self.name = name
        self.view = view
        self.lib = lib
        self.dialect = Dialect(dialect_of(lib))
        handshake = serializer.handshake(self.dialect)
        self.session = official_decoders().open(lib, handshake)
        self.py = StateDecoder.from_handshake(handshake)
        self.receive(serializer.full_state(self))

    def receive(self, body: bytes | None) -> None:
        if body is None:
            return
        self.js_state = self.session.decode(body)
        self.py.decode(body)

    def check(self, state: State, label: str) -> None:
        want = visible(state, self.view)
        assert self.js_state == want, (
            f"{self.name}/{self.lib} after {label}:\n{self.js_state}\n!=\n{want}"
        )
        assert self.py.state == want, f"{self.name}/py after {label}:\n{self.py.state}\n!=\n{want}"


class ViewRoom:
    """Clients with and without views; ``tick()`` sends each group its body and checks everyone."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.serializer = SchemaSerializer(state)
        self.clients: list[ViewClient] = []
        self.ticks = 0

    def join(
        self, name: str, view: StateView | None, libs: tuple[str, ...] = ALL_LIBS
    ) -> list[ViewClient]:
        self.tick()
        new = [
            ViewClient(name, view if i == 0 else _copy_view(view), lib, self.serializer)
            for i, lib in enumerate(libs)
        ]
        self.clients += new
        self.check(f"join of {name}")
        return new

    def tick(self) -> list[tuple[Any, bytes]]:
        self.ticks += 1
        patches = self.serializer.encode_patches(self.clients)
        for group, body in patches:
            for client in group:
                client.receive(body)
        self.check(f"tick {self.ticks}")
        return patches

    def check(self, label: str) -> None:
        for client in self.clients:
            client.check(self.state, label)

    def views(self, name: str) -> list[StateView]:
        return [c.view for c in self.clients if c.name == name and c.view is not None]

    def close(self) -> None:
        for client in self.clients:
            client.session.close()


def _copy_view(view: StateView | None) -> StateView | None:
    """Each client needs its own StateView; the copies mirror the first one's membership."""
    if view is None:
        return None
    copy = StateView()
    for obj, tags in view._items.values():
        for tag in tags:
            copy.add(obj, None if tag == -1 else tag)
    return copy


class Mirror:
    """Applies the same add/remove to all the views of one logical client."""

    def __init__(self, room: ViewRoom, name: str) -> None:
        self.room, self.name = room, name

    def add(self, obj: Any, tag: int | None = None) -> None:
        for view in self.room.views(self.name):
            view.add(obj, tag)

    def remove(self, obj: Any, tag: int | None = None) -> None:
        for view in self.room.views(self.name):
            view.remove(obj, tag)


def _player(name: str) -> Player:
    return Player(
        name=name,
        secret=f"{name}'s secret",
        gold=10,
        hand=[Card(suit="hearts", rank=1)],
        stash={"coin": Item(name="coin")},
        badge=Item(name=f"{name} badge"),
    )


@pytest.fixture
def room() -> Any:
    state = State()
    state.players["a"] = _player("a")
    state.players["b"] = _player("b")
    state.items["sword"] = Item(name="sword", power=5)
    state.items["shield"] = Item(name="shield", power=2)
    room = ViewRoom(state)
    view_a = StateView().add(state.players["a"])
    room.join("A", view_a)
    room.join("B", StateView())
    room.join("C", None)
    yield room
    room.close()


def test_private_fields_reach_only_their_viewers(room: ViewRoom) -> None:
    a, b = Mirror(room, "A"), Mirror(room, "B")
    players, items = room.state.players, room.state.items
    assert "secret" in room.clients[0].js_state["players"]["a"]
    assert "secret" not in room.clients[3].js_state["players"]["a"]
    players["a"].secret = "new secret"
    players["a"].hand.append(Card(suit="spades", rank=12))
    players["a"].x = 3  # shared: everyone
    patches = room.tick()
    assert len(patches) == 2  # A's clients, and everyone else (same bytes)
    a.add(players["a"], 2)  # tag 2: the gold
    room.tick()
    b.add(items["sword"])  # an entry of a private map
    b.add(players["a"].stash["coin"])  # an entry of another player's stash
    room.tick()
    items["sword"].power = 9
    players["a"].stash["coin"].power = 1
    room.tick()
    del items["sword"]  # deleted while visible
    items["axe"] = Item(name="axe")
    b.add(items["axe"])  # created and shown in the same tick
    room.tick()
    a.remove(players["a"])  # A loses the private parts (all tags)
    room.tick()
    players["a"].hand.append(Card(suit="clubs", rank=3))
    players["a"].secret = "changed while hidden"
    room.tick()
    a.add(players["a"])  # revealed again: whole subtrees resent
    room.tick()
    players["a"].badge = Item(name="new badge")
    players["a"].hand.pop(0)
    room.tick()
    del players["a"]  # a player leaves while in A's view
    room.tick()
    players["a"] = _player("a2")
    a.add(players["a"])
    room.tick()
    room.join("D", StateView().add(players["b"]).add(items["shield"]))
    players["b"].secret = "b changed"
    players["b"].stash["gem"] = Item(name="gem")
    room.tick()


def test_clients_without_views_share_one_body(room: ViewRoom) -> None:
    room.join("E", None)
    room.state.round = 4
    room.state.players["b"].secret = "only for b's viewers"
    patches = room.tick()
    bodies = {id(c): body for group, body in patches for c in group}
    c_clients = [c for c in room.clients if c.view is None]
    assert len({bodies[id(c)] for c in c_clients}) == 1


def test_a_view_shared_by_two_clients_is_refused(room: ViewRoom) -> None:
    shared = room.clients[0].view
    room.clients[1].view = shared
    with pytest.raises(ValueError, match="share one StateView"):
        room.serializer.encode_patches(room.clients)
    room.clients[1].view = _copy_view(shared)


def test_sharing_a_structure_is_refused_when_views_are_used(room: ViewRoom) -> None:
    item = room.state.items["shield"]
    with pytest.raises(ValueError, match="one place"):
        room.state.players["b"].badge = item
    assert room.state.players["b"].badge.name == "b badge"
    room.tick()


class Loot(Schema):
    """Only private entries, no private field: still needs per-client patches."""

    chests = field({"map": Item}, view=True)
    count = field("uint8", default=0)


def test_a_state_whose_only_private_data_are_map_entries() -> None:
    state = Loot()
    state.chests["gold"] = Item(name="gold")
    state.chests["iron"] = Item(name="iron")
    serializer = SchemaSerializer(state)
    assert serializer.tracker.filtered

    class Anyone:
        dialect = Dialect.V5

        def __init__(self, view: StateView | None) -> None:
            self.view = view
            self.decoder = StateDecoder.from_handshake(serializer.handshake(Dialect.V5))
            self.decoder.decode(serializer.full_state(self))

    finder, nobody = Anyone(StateView().add(state.chests["gold"])), Anyone(None)
    assert finder.decoder.state["chests"] == {"gold": {"name": "gold", "power": 0}}
    assert nobody.decoder.state == {"chests": {}, "count": 0}
    state.chests["iron"].power = 3
    state.chests["gold"].power = 5
    state.count = 1
    for group, body in serializer.encode_patches([finder, nobody]):
        for client in group:
            client.decoder.decode(body)
    assert finder.decoder.state == {"chests": {"gold": {"name": "gold", "power": 5}}, "count": 1}
    assert nobody.decoder.state == {"chests": {}, "count": 1}


VIEW_OPS = st.one_of(
    st.tuples(st.just("tick")),
    st.tuples(
        st.just("show"),
        st.sampled_from("AB"),
        st.sampled_from(["pa", "pb", "sword", "shield", "coin-a"]),
        st.sampled_from([None, 2]),
    ),
    st.tuples(
        st.just("hide"),
        st.sampled_from("AB"),
        st.sampled_from(["pa", "pb", "sword", "shield", "coin-a"]),
    ),
    st.tuples(st.just("secret"), st.sampled_from("ab"), st.text(max_size=5)),
    st.tuples(st.just("card"), st.sampled_from("ab"), st.sampled_from(["append", "pop", "insert"])),
    st.tuples(
        st.just("item"),
        st.sampled_from(["sword", "shield", "axe"]),
        st.sampled_from(["power", "del", "new"]),
    ),
    st.tuples(
        st.just("stash"), st.sampled_from("ab"), st.sampled_from(["coin", "gem"]), st.booleans()
    ),
    st.tuples(
        st.just("player"), st.sampled_from("ab"), st.sampled_from(["replace", "del", "badge"])
    ),
)


def _target(state: State, name: str) -> Any:
    players, items = state.players, state.items
    if name in ("pa", "pb"):
        return players.get(name[1])
    if name == "coin-a":
        return players["a"].stash.get("coin") if "a" in players else None
    return items.get(name)


def _apply_view_op(room: ViewRoom, op: tuple[Any, ...]) -> None:
    state = room.state
    kind = op[0]
    if kind == "show" or kind == "hide":
        target = _target(state, op[2])
        if target is not None:
            mirror = Mirror(room, op[1])
            mirror.add(target, op[3]) if kind == "show" else mirror.remove(target)
    elif kind == "secret" and op[1] in state.players:
        state.players[op[1]].secret = op[2]
    elif kind == "card" and op[1] in state.players:
        hand = state.players[op[1]].hand
        if op[2] == "append":
            hand.append(Card(suit="s", rank=len(hand)))
        elif op[2] == "pop" and hand:
            hand.pop()
        elif op[2] == "insert":
            hand.insert(0, Card(suit="first"))
    elif kind == "item":
        if op[2] == "del":
            state.items.pop(op[1], None)
        elif op[2] == "new":
            state.items[op[1]] = Item(name=op[1] + " new")
        elif op[1] in state.items:
            state.items[op[1]].power += 1
    elif kind == "stash" and op[1] in state.players:
        stash = state.players[op[1]].stash
        if op[3]:
            stash[op[2]] = Item(name=op[2])
        else:
            stash.pop(op[2], None)
    elif kind == "player":
        if op[2] == "del":
            state.players.pop(op[1], None)
        elif op[2] == "replace":
            state.players[op[1]] = _player(op[1] + "'")
        elif op[1] in state.players:
            state.players[op[1]].badge = Item(name="badge")


@settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.lists(VIEW_OPS, max_size=25))
def test_random_view_changes(ops: list[tuple[Any, ...]]) -> None:
    state = State()
    state.players["a"] = _player("a")
    state.players["b"] = _player("b")
    state.items["sword"] = Item(name="sword")
    state.items["shield"] = Item(name="shield")
    room = ViewRoom(state)
    try:
        room.join("A", StateView().add(state.players["a"]))
        room.join("B", StateView(), libs=("schema3", "schema5"))
        room.join("C", None, libs=("schema4",))
        for op in ops:
            if op[0] == "tick":
                room.tick()
            else:
                _apply_view_op(room, op)
        room.tick()
    finally:
        room.close()
