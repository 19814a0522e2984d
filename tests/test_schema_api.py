"""The Python API: declaring classes, assigning values, errors, refIds, the serializer contract."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenroom.protocol.dialect import Dialect
from greenroom.protocol.primitives import encode_number
from greenroom.schema import (
    ArraySchema,
    ChangeTracker,
    DecodeError,
    EncodeError,
    MapSchema,
    Schema,
    SchemaDefinitionError,
    SchemaSerializer,
    StateDecoder,
    StateView,
    encode_all,
    encode_patch,
    encode_reflection,
    field,
)
from greenroom.schema.types import fast_number


class Player(Schema):
    name = field("string", default="")
    x = field("number", default=0)
    level = field("uint8", default=1)


class State(Schema):
    tick = field("uint16", default=0)
    players = field({"map": Player})
    log = field(["string"])
    scores = field({"map": "number"})
    leader = field(Player)


def test_defaults_and_keyword_construction() -> None:
    a, b = State(), State(tick=3, log=["x"])
    assert a.players is not b.players and a.log is not b.log
    assert isinstance(a.players, MapSchema) and isinstance(b.log, ArraySchema)
    assert (a.tick, b.tick, list(b.log), a.leader) == (0, 3, ["x"], None)
    p = Player(name="n")
    assert p.to_json() == {"name": "n", "x": 0, "level": 1}
    with pytest.raises(TypeError, match="no field 'nope'"):
        Player(nope=1)


def test_wrong_types_name_the_class_and_field() -> None:
    p = Player()
    with pytest.raises(TypeError, match=r"Player\.x: expected int or float, got str"):
        p.x = "10"
    with pytest.raises(TypeError, match=r"Player\.name"):
        p.name = 3
    with pytest.raises(TypeError, match=r"Player\.x"):
        p.x = True
    with pytest.raises(ValueError, match=r"Player\.level: 256 is out of range for uint8"):
        p.level = 256
    with pytest.raises(TypeError, match=r"State\.leader: expected Player, got State"):
        State().leader = State()
    with pytest.raises(TypeError, match=r"State\.players: expected Player, got str"):
        State().players["a"] = "not a player"
    with pytest.raises(TypeError, match=r"State\.log"):
        State().log.append(1)
    with pytest.raises(TypeError, match="map keys must be str"):
        State().players[1] = Player()
    with pytest.raises(TypeError, match=r"State\.scores: expected map<number>, got map<string>"):
        State().scores = MapSchema(child="string")
    assert p.x == 0 and p.level == 1


def test_class_definition_errors() -> None:
    with pytest.raises(SchemaDefinitionError, match=r"Wide has 64 fields .* at most 63"):
        type("Wide", (Schema,), {f"f{i}": field("uint8") for i in range(64)})
    base = type("Base", (Schema,), {f"f{i}": field("uint8") for i in range(40)})
    with pytest.raises(SchemaDefinitionError, match="including inherited"):
        type("Child", (base,), {f"g{i}": field("uint8") for i in range(24)})
    with pytest.raises(SchemaDefinitionError, match="unknown type 'text'"):
        type("Bad", (Schema,), {"a": field("text")})
    with pytest.raises(SchemaDefinitionError, match="collection of collections"):
        type("Bad", (Schema,), {"a": field({"map": ["string"]})})
    with pytest.raises(SchemaDefinitionError, match="already declared by a parent"):
        type("Again", (Player,), {"x": field("number")})
    with pytest.raises(SchemaDefinitionError, match="bad default"):
        type("Bad", (Schema,), {"a": field("uint8", default=-1)})


def test_inheritance_appends_fields_and_sends_type_ids() -> None:
    class Hero(Player):
        power = field("int32", default=0)

    assert [f.name for f in Hero._gr_fields] == ["name", "x", "level", "power"]
    assert Hero._gr_fields[3].index == 3
    state = State()
    tracker = ChangeTracker(state)
    tracker.discard_changes()
    state.leader = Hero(power=7)
    body = encode_patch(tracker)
    hero_id = tracker.type_ids[Hero]
    assert body.startswith(bytes([0x84, state.leader._gr.refid, 0xD5, hero_id]))
    decoder = StateDecoder.from_handshake(encode_reflection(State, Dialect.V5))
    decoder.decode(encode_all(tracker))
    assert decoder.state["leader"] == {"name": "", "x": 0, "level": 1, "power": 7}


def test_refids_are_never_reused_and_map_indexes_grow() -> None:
    state = State()
    tracker = ChangeTracker(state)
    p = Player()
    state.players["a"] = p
    first = p._gr.refid
    del state.players["a"]
    assert p._gr.refid == -1
    state.players["a"] = p
    second = p._gr.refid
    assert second > first
    assert state.players._gr_index["a"] == 1  # a new index for a re-added key
    encode_patch(tracker)
    state.players["b"] = Player()
    assert state.players["b"]._gr.refid > second


def test_patches_only_carry_changes() -> None:
    state = State()
    tracker = ChangeTracker(state)
    tracker.discard_changes()
    assert encode_patch(tracker) == b""
    state.tick = 0  # same value: no change
    assert encode_patch(tracker) == b""
    state.tick = 5
    assert encode_patch(tracker) == b"\x80\x05\x00"
    assert encode_patch(tracker) == b""


def test_structures_cannot_join_two_states() -> None:
    one, two = State(), State()
    ChangeTracker(one)
    ChangeTracker(two)
    p = Player()
    one.players["p"] = p
    with pytest.raises(ValueError, match="another room's state"):
        two.players["p"] = p
    assert "p" not in two.players


def test_classes_defined_after_the_state_are_refused() -> None:
    state = State()
    ChangeTracker(state)

    class Late(Player):
        pass

    with pytest.raises(TypeError, match="not part of the handshake"):
        state.leader = Late()
    assert state.leader is None


def test_encoding_errors_name_the_structure() -> None:
    state = State()
    tracker = ChangeTracker(state)
    tracker.discard_changes()
    state.players["a"] = Player()
    encode_patch(tracker)
    player = state.players["a"]
    player.x = 1
    player.__dict__["x"] = object()  # bypasses the checks on purpose
    with pytest.raises(EncodeError, match=r"at Player refId 4: TypeError"):
        encode_patch(tracker)
    assert encode_patch(tracker) == b""  # the failed tick is dropped


def test_serializer_contract() -> None:
    state = State()
    state.players["a"] = Player(name="a")
    serializer = SchemaSerializer()
    serializer.reset(state)
    assert not serializer.has_changes()  # reset: clients get full states
    assert serializer.handshake(Dialect.V3) == encode_reflection(State, Dialect.V3)
    assert serializer.handshake(Dialect.V5) != serializer.handshake(Dialect.V3)

    class FakeClient:
        dialect = Dialect.V5
        view = None

    client = FakeClient()
    full = serializer.full_state(client)
    decoder = StateDecoder.from_handshake(serializer.handshake(Dialect.V5))
    assert decoder.decode(full)["players"] == {"a": {"name": "a", "x": 0, "level": 1}}
    state.tick = 9
    assert serializer.has_changes()
    assert serializer.encode_patches([]) == []  # consumed even with nobody to send to
    assert not serializer.has_changes()
    state.tick = 10
    [(group, body)] = serializer.encode_patches([client])
    assert group == [client] and decoder.decode(body)["tick"] == 10


def test_state_view_api() -> None:
    view = StateView()
    p = Player()
    with pytest.raises(TypeError, match="Schema instance"):
        view.add({"not": "schema"})
    view.add(p).add(p, 3)
    assert p in view and view.has(p, 3) and not view.has(p, 4)
    view.remove(p, 3)
    assert p in view and not view.has(p, 3)
    view.remove(p)
    assert p not in view and len(view) == 0


def test_private_field_declaration() -> None:
    class Secretive(Schema):
        open = field("string")
        hidden = field("string", view=True)
        tagged = field("string", view=5)

    with pytest.raises(SchemaDefinitionError, match="view must be True or a tag"):
        type("Bad", (Schema,), {"a": field("string", view="yes")})
    assert [f.name for f in Secretive._gr_gated_fields] == ["hidden", "tagged"]


def test_python_decoder_strictness(caplog: pytest.LogCaptureFixture) -> None:
    handshake = encode_reflection(State, Dialect.V5)
    with pytest.raises(DecodeError, match='"refId" not found: 9'):
        StateDecoder.from_handshake(handshake).decode(b"\xff\x09\x80\x01")
    with pytest.raises(DecodeError, match="field not defined at index 9"):
        StateDecoder.from_handshake(handshake).decode(b"\x89\x01")
    lenient = StateDecoder.from_handshake(handshake, strict=False)
    with caplog.at_level(logging.WARNING, logger="greenroom.schema"):
        lenient.decode(b"\xff\x09\x80\x01\xff\x00\x80\x07\x00")
    assert lenient.state == {"tick": 7}
    assert "refId" in caplog.text
    with pytest.raises(DecodeError, match="malformed"):
        StateDecoder.from_handshake(handshake).decode(b"\x81\xcd")


@settings(max_examples=300, deadline=None, database=None)
@given(st.one_of(st.integers(-(2**70), 2**70), st.floats(), st.floats(width=32)))
def test_fast_number_encoder_matches_the_reference(value: float) -> None:
    assert fast_number(value) == encode_number(value)


LIST_OPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "append",
                "pop",
                "pop0",
                "set",
                "insert",
                "remove",
                "del",
                "sort",
                "reverse",
                "clear",
                "extend",
                "slice",
                "iadd",
            ]
        ),
        st.integers(0, 20),
        st.text(max_size=3),
    ),
    max_size=30,
)


def _list_op(target: Any, what: str, i: int, text: str) -> Any:
    """Apply one list operation; the same call runs on an ArraySchema and on a list."""
    n = len(target)
    if what == "append":
        target.append(text)
    elif what == "pop" and n:
        return target.pop()
    elif what == "pop0" and n:
        return target.pop(0)
    elif what == "set" and n:
        target[i % n] = text
    elif what == "insert":
        target.insert(i, text)
    elif what == "remove" and n:
        target.remove(target[i % n])
    elif what == "del" and n:
        del target[i % n]
    elif what == "sort":
        target.sort()
    elif what == "reverse":
        target.reverse()
    elif what == "clear":
        target.clear()
    elif what == "extend":
        target.extend([text, text + "!"])
    elif what == "slice":
        target[1:3] = [text]
    elif what == "iadd":
        target += [text]
    return None


@settings(max_examples=200, deadline=None, database=None)
@given(LIST_OPS)
def test_array_schema_behaves_like_a_list(ops: list[tuple[str, int, str]]) -> None:
    state = State()
    tracker = ChangeTracker(state)
    shadow: list[str] = []
    for what, i, text in ops:
        assert _list_op(state.log, what, i, text) == _list_op(shadow, what, i, text)
        assert list(state.log) == shadow and len(state.log) == len(shadow)
        if i % 4 == 0:
            encode_patch(tracker)
    assert state.log == shadow
    if shadow:
        assert state.log.index(shadow[-1]) == shadow.index(shadow[-1])
        assert state.log.count(shadow[0]) == shadow.count(shadow[0])


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["set", "del", "pop", "clear", "update", "setdefault"]),
            st.sampled_from("abcd"),
            st.integers(-5, 5),
        ),
        max_size=30,
    )
)
def test_map_schema_behaves_like_a_dict(ops: list[tuple[str, str, int]]) -> None:
    state = State()
    ChangeTracker(state)
    table, shadow = state.scores, {}
    for what, key, value in ops:
        if what == "set":
            table[key] = value
            shadow[key] = value
        elif what == "del" and key in shadow:
            del table[key]
            del shadow[key]
        elif what == "pop":
            assert table.pop(key, None) == shadow.pop(key, None)
        elif what == "clear":
            table.clear()
            shadow.clear()
        elif what == "update":
            table.update({key: value, "z": 1})
            shadow.update({key: value, "z": 1})
        elif what == "setdefault":
            assert table.setdefault(key, value) == shadow.setdefault(key, value)
        assert dict(table.items()) == shadow and list(table) == list(shadow)
        assert table == shadow and len(table) == len(shadow) and (key in table) == (key in shadow)


def test_decoder_as_the_python_client_drives_it() -> None:
    state = State(tick=1)
    state.players["p"] = Player(name="p")
    tracker = ChangeTracker(state)
    tracker.discard_changes()
    for dialect in (Dialect.V3, Dialect.V5):
        decoder = StateDecoder()
        assert decoder.state is None
        with pytest.raises(DecodeError, match="no handshake"):
            decoder.patch(b"\x80\x01\x00")
        decoder.handshake(encode_reflection(State, dialect))
        decoder.full(encode_all(state, dialect))
        assert decoder.state == {"tick": 1, "players": {"p": {"name": "p", "x": 0, "level": 1}},
                                 "log": [], "scores": {}}
    state.log.append("x")
    decoder.patch(encode_patch(state))
    assert decoder.state["log"] == ["x"]
    del state.players["p"]
    encode_patch(state)                              # missed by the decoder: a reconnection
    decoder.full(encode_all(state))
    assert decoder.state["players"] == {}
    with pytest.raises(TypeError, match="not a tracked state"):
        encode_all(State())
