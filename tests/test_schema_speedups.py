"""The compiled hot paths (greenroom/schema/_speedups.c, sp_*.c) against their Python references.

Every other schema test runs with whatever implementation is active (the compiled one when it was
built); these tests run both on the same random mutation sequences and require the same bytes, so
the Python reference stays proven for installs without a C compiler, and the compiled code for
everyone else. The states are twins: the same classes rebuilt with the Python ``__setattr__``.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_schema_official import Boss, Item, Player, State
from test_schema_property import OPS, apply

from greenroom.protocol.dialect import Dialect
from greenroom.protocol.primitives import encode_number, encode_string
from greenroom.schema import ChangeTracker, Schema, encode_all, encode_patch, field, speedups
from greenroom.schema import encoder as encoder_module
from greenroom.schema import schema as schema_module
from greenroom.schema.errors import EncodeError

compiled = speedups.compiled
needs_compiled = pytest.mark.skipif(compiled is None, reason="the C extension is not built")


def test_the_extension_is_built_unless_switched_off() -> None:
    """CI builds it: a silently failed compile must fail here, not fall back unnoticed."""
    if speedups.switched_off():
        assert compiled is None
        assert speedups.implementation() == "python"
        return
    assert compiled is not None, "greenroom.schema._speedups was not built (is a C compiler there?)"
    assert speedups.implementation() == "compiled"
    assert isinstance(Player.__setattr__, compiled.FastSetattr)
    assert encoder_module._patch_loop is compiled.patch_loop
    assert encoder_module._encode_patch is compiled.encode_patch
    assert encoder_module._encode_all_v5 is compiled.encode_all_v5


@contextmanager
def python_reference() -> Any:
    """Encode with the Python loop and block writer (classes keep the __setattr__ they were made with)."""
    with mock.patch.object(encoder_module, "_encode_patch", None), \
            mock.patch.object(encoder_module, "_encode_all_v5", None), \
            mock.patch.object(encoder_module, "_patch_loop", encoder_module.patch_loop), \
            mock.patch.object(encoder_module, "_schema_block", encoder_module.schema_block), \
            mock.patch.object(encoder_module, "_schema_pending", encoder_module.schema_pending):
        yield


def python_twin(cls: type, made: dict[type, type]) -> type:
    """``cls`` rebuilt field for field with the Python ``__setattr__`` (same wire layout)."""
    if cls in made:
        return made[cls]

    def twin_type(spec: Any) -> Any:
        if isinstance(spec, type) and issubclass(spec, Schema):
            return python_twin(spec, made)
        if isinstance(spec, dict):
            return {kind: twin_type(child) for kind, child in spec.items()}
        if isinstance(spec, list):
            return [twin_type(spec[0])]
        return spec

    base = python_twin(cls._gr_base, made) if cls._gr_base else Schema
    body = {fd.name: field(twin_type(fd.type), fd.default, view=fd.view) for fd in cls._gr_own_fields}
    with mock.patch.object(schema_module.speedups, "compiled", None):
        made[cls] = twin = type(f"Py{cls.__name__}", (base,), body)
    twin.__module__ = __name__
    return twin


_MADE: dict[type, type] = {}
PY = SimpleNamespace(State=python_twin(State, _MADE), Player=python_twin(Player, _MADE),
                     Boss=python_twin(Boss, _MADE), Item=python_twin(Item, _MADE))


@needs_compiled
def test_twins_really_use_the_python_setattr() -> None:
    assert not isinstance(PY.Player.__setattr__, compiled.FastSetattr)
    assert getattr(PY.Player.__setattr__, "_gr_generated", False)
    assert [fd.name for fd in PY.Boss._gr_fields] == [fd.name for fd in Boss._gr_fields]


def assert_same_full_states(fast: ChangeTracker, ref: ChangeTracker) -> None:
    for order in (Dialect.V5, Dialect.V3):
        expected = None
        with python_reference():
            expected = encode_all(ref, order)
        assert encode_all(fast, order) == expected


@needs_compiled
@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, max_size=40), st.booleans())
def test_compiled_and_python_write_the_same_bytes(ops: list[tuple[Any, ...]], cold: bool) -> None:
    fast_state, ref_state = State(), PY.State()
    fast, ref = ChangeTracker(fast_state), ChangeTracker(ref_state)
    if not cold:  # else the first patch carries the whole state (attached this tick)
        fast.discard_changes()
        ref.discard_changes()
    for op in ops:
        if op[0] == "join":
            assert_same_full_states(fast, ref)
            continue
        if op[0] != "tick":
            apply(fast_state, op)
            apply(ref_state, op, PY)
            continue
        with python_reference():
            expected = encode_patch(ref)
        assert encode_patch(fast) == expected, op
    with python_reference():
        expected = encode_patch(ref)
    assert encode_patch(fast) == expected
    assert_same_full_states(fast, ref)


class Num(Schema):
    value = field("number")


class _Int(int):
    pass


NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.integers(-(2**31) - 2, 2**31 + 2),
    st.integers(-300, 70000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(width=32),
    st.floats(-1e5, 1e5),                 # where float32's error is near the 1e-4 tolerance
    st.sampled_from([0.0, -0.0, 0.5, -0.5, 1e-5, 3.4028234663852886e38, 3.4028235e38, 3.5e38,
                     2147483647.0, 2147483648.0, 1234.5678, 2048.0001220703125, -2147483648.0, -2147483649.0, 16777217.5,
                     1.0000001, float("nan"), float("inf"), -float("inf")]),
)


@needs_compiled
@settings(max_examples=2000, deadline=None, database=None)
@given(NUMBERS)
def test_number_bytes_equal_the_reference_encoder(value: float | int) -> None:
    """PROTOCOL §5.1 in C: in a full-state block and in a patch, every int and float."""
    state = Num()
    tracker = ChangeTracker(state)
    tracker.discard_changes()
    state.value = value
    assert encode_patch(tracker) == b"\x80" + encode_number(value)
    block, children = compiled.schema_block(state._gr, tracker.type_ids)
    assert block == b"\x80" + encode_number(value)
    assert children == []


class Text(Schema):
    value = field("string")


STRINGS = st.one_of(
    st.text(max_size=40),                                   # non-ASCII, and past 31 bytes
    st.text(alphabet=st.characters(max_codepoint=127), max_size=40),
    st.sampled_from(["", "a" * 31, "a" * 32, "é", "a" * 30 + "é", "\x00", "\x7f" * 31]),
)


@needs_compiled
@settings(max_examples=1000, deadline=None, database=None)
@given(STRINGS)
def test_string_bytes_equal_the_reference_encoder(value: str) -> None:
    """Strings in C (short ASCII ones; the rest through the Python encoder), patch and full state."""
    state = Text()
    tracker = ChangeTracker(state)
    tracker.discard_changes()
    state.value = value
    expected = b"\x80" + encode_string(value)
    assert encode_patch(tracker) == expected
    block, _ = compiled.schema_block(state._gr, tracker.type_ids)
    assert block == expected
    assert encode_all(tracker) == expected


def test_a_string_that_is_not_utf8_fails_the_same_way() -> None:
    """A lone surrogate cannot be sent: both encoders raise, naming the structure."""
    state = Text()
    tracker = ChangeTracker(state)
    tracker.discard_changes()
    state.value = "\ud800"
    with pytest.raises(EncodeError, match=r"at Text refId 0.*UnicodeEncodeError"):
        encode_all(tracker)
    with pytest.raises(EncodeError, match=r"UnicodeEncodeError"):
        encode_patch(tracker)
    state.value = "ok"                  # the next tick encodes again
    assert encode_patch(tracker) == b"\x80\xa2ok"


class Ints(Schema):
    i8 = field("int8")
    u8 = field("uint8")
    i16 = field("int16")
    u16 = field("uint16")
    i32 = field("int32")
    u32 = field("uint32")
    i64 = field("int64")
    u64 = field("uint64")


PY_INTS = python_twin(Ints, {})
_EDGES = [v for bits in (8, 16, 32, 64) for v in (-(2**(bits - 1)), 2**(bits - 1) - 1, 2**bits - 1)]
INT_VALUES = st.one_of(
    st.sampled_from(_EDGES + [e + 1 for e in _EDGES] + [e - 1 for e in _EDGES]),
    st.integers(-(2**65), 2**65), st.integers(-300, 300), st.booleans(), st.none(),
    st.floats(-1e3, 1e3), st.sampled_from([3.0, -0.0, float("nan"), _Int(5)]),
)


def _assign(state: Schema, name: str, value: Any) -> Any:
    try:
        setattr(state, name, value)
    except (TypeError, ValueError) as exc:
        return (type(exc), str(exc).replace("PyInts", "Ints"))
    return None


@needs_compiled
@settings(max_examples=1500, deadline=None, database=None)
@given(st.sampled_from([fd.name for fd in Ints._gr_fields]), INT_VALUES)
def test_integer_fields_take_the_same_values_as_the_python_setattr(name: str, value: Any) -> None:
    """The compiled path skips the check for in-range exact ints: the same values, errors, bytes."""
    fast_state, ref_state = Ints(), PY_INTS()
    fast, ref = ChangeTracker(fast_state), ChangeTracker(ref_state)
    fast.discard_changes()
    ref.discard_changes()
    assert _assign(fast_state, name, value) == _assign(ref_state, name, value)
    got, expected = getattr(fast_state, name), getattr(ref_state, name)
    assert (got.__class__, got) == (expected.__class__, expected)
    with python_reference():
        expected_patch = encode_patch(ref)
    assert encode_patch(fast) == expected_patch


# fields.MAX_FIELDS fields: every index a compiled pending record can hold
Wide = type("Wide", (Schema,), {f"f{i}": field("number", default=0) for i in range(63)})

PENDING_OPS = st.lists(st.one_of(
    st.tuples(st.just("set"), st.integers(0, 62), st.sampled_from([-1, -2, 0, 7, 2**40])),
    st.tuples(st.just("assign"), st.integers(0, 62)),        # through the compiled __setattr__
    st.tuples(st.just("get"), st.integers(-2, 70)),
), max_size=60)


@needs_compiled
@settings(max_examples=300, deadline=None, database=None)
@given(PENDING_OPS)
def test_the_compiled_pending_record_behaves_as_the_dict_it_replaces(ops: list[Any]) -> None:
    """Python code (schema._record, filtered.py, the reference writers) uses dict operations on
    ``node.pending``: the compiled record answers them as a dict would, in insertion order."""
    state = Wide()
    tracker = ChangeTracker(state)
    tracker.discard_changes()
    state.f0 = 1                          # the first change of the tick creates the record
    pending = state._gr.pending
    assert isinstance(pending, compiled.Pending)
    mirror: dict[int, int] = {0: -2}
    value = 10
    for op in ops:
        if op[0] == "set":
            pending[op[1]] = op[2]
            mirror[op[1]] = op[2]
        elif op[0] == "assign":
            value += 1
            setattr(state, f"f{op[1]}", value)
            mirror.setdefault(op[1], -2)
        else:
            assert (op[1] in pending) == (op[1] in mirror)
            assert pending.get(op[1], "none") == mirror.get(op[1], "none")
        assert len(pending) == len(mirror)
        assert list(pending) == list(mirror)
        assert pending.items() == list(mirror.items())
        assert pending.keys() == list(mirror) and pending.values() == list(mirror.values())
    for bad in (-1, 63, 64, 2**70):
        assert bad not in pending
    with pytest.raises(KeyError):
        pending[64] = -1
    with pytest.raises(TypeError):
        pending["f0"] = -1
    with pytest.raises(TypeError):
        del pending[0]
    assert repr(pending) == f"Pending({mirror!r})"


@needs_compiled
def test_setattr_keeps_the_python_rules() -> None:
    """Unchanged values record nothing, NaN always counts as a change, checks still apply."""
    state = Num(value=1)
    tracker = ChangeTracker(state)
    tracker.discard_changes()
    state.value = 1
    assert encode_patch(tracker) == b""
    state.value = 1.0                     # equal but another class: the client sees a change
    assert encode_patch(tracker) == b"\x80\x01"
    nan = float("nan")
    state.value = nan
    assert encode_patch(tracker) == b"\x80\x00"
    state.value = nan                     # same object, still not equal to itself
    assert encode_patch(tracker) == b"\x80\x00"
    state.value = None
    assert encode_patch(tracker) == b"\x40"
    with pytest.raises(TypeError, match=r"Num\.value: expected int or float, got bool"):
        state.value = True
    with pytest.raises(TypeError, match=r"Num\.value: expected int or float, got str"):
        state.value = "3"
    state.value = _Int(7)                 # an int subclass goes through the check (-> int)
    assert state.value.__class__ is int
    assert encode_patch(tracker) == b"\x80\x07"
    state.note = "not a field"            # plain attributes still work
    assert state.note == "not a field"
    assert math.isnan(nan)


class Holder(Schema):
    item = field(Item)
    count = field("number", default=0)


@needs_compiled
def test_an_encode_error_in_the_compiled_loop_names_the_structure() -> None:
    state = Holder(item=Item(name="a"))
    tracker = ChangeTracker(state)
    tracker.discard_changes()
    state.item.name = "b"
    refid = state.item._gr.refid
    state.item.__dict__["name"] = 12      # bypasses the check: a value its encoder cannot take
    with pytest.raises(EncodeError, match=rf"at Item refId {refid}"):
        encode_patch(tracker)
    state.item.name = "c"                 # the next tick encodes again
    assert encode_patch(tracker).endswith(b"\x80\xa1c")


@needs_compiled
def test_an_encode_error_in_the_compiled_full_state_names_the_structure() -> None:
    state = Holder(item=Item(name="a"))
    tracker = ChangeTracker(state)
    tracker.discard_changes()
    refid = state.item._gr.refid
    state.item.__dict__["name"] = 12      # bypasses the check
    state.item._gr.full = None
    with pytest.raises(EncodeError, match=rf"full state at Item refId {refid}"):
        encode_all(tracker)
    state.item.name = "d"
    assert encode_all(tracker).endswith(b"\x80\xa1d\x81\x01")


def test_without_the_extension_the_python_encoder_runs_and_says_so() -> None:
    """What an install without a C compiler gets (the import of _speedups fails)."""
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['greenroom.schema._speedups'] = None\n"
        "from greenroom.schema import Schema, field, ChangeTracker, encode_patch, speedups\n"
        "from greenroom.schema import encoder\n"
        "class P(Schema):\n"
        "    x = field('number', default=0)\n"
        "p = P(); t = ChangeTracker(p); t.discard_changes(); p.x = 0.5\n"
        "assert encoder._patch_loop is encoder.patch_loop\n"
        "print(speedups.implementation(), encode_patch(t).hex())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "GREENROOM_PURE_PYTHON": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["python", (b"\x80" + encode_number(0.5)).hex()]
