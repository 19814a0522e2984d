"""A Python decoder of the schema wire format: handshake + full state + patches → plain dicts/lists.

It mirrors the official JavaScript decoder's semantics (reference counts with garbage collection
at the end of a frame, array holes compacted on structure switch, ADD at an occupied array index
inserting, TYPE_ID after a child reference) so that the Python client sees what a browser sees,
and so that tests can compare the two. Strict by default: anything the official decoder would
only warn about raises DecodeError.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

from ..protocol.primitives import decode_number, decode_string
from .errors import DecodeError
from .fields import ARRAY, MAP, PRIM, REF, SWITCH, TYPE_ID
from .types import PRIMITIVES, Primitive

log = logging.getLogger("greenroom.schema")

_ADD, _DELETE, _DNA, _CLEAR, _REVERSE = 0x80, 0x40, 0xC0, 0x0A, 0x0F
_DELETE_BY_REFID, _ADD_BY_REFID = 0x21, 0x81


class _Hole:
    """An array slot emptied by DELETE, compacted when the decoder leaves the array."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<hole>"


_HOLE = _Hole()


class FieldType:
    """What one field (or a collection's entries) holds, as learnt from the handshake."""

    __slots__ = ("name", "kind", "primitive", "schema", "child")

    def __init__(self, name: str, kind: int, primitive: Primitive | None = None,
                 schema: TypeDef | None = None, child: FieldType | None = None) -> None:
        self.name = name
        self.kind = kind
        self.primitive = primitive
        self.schema = schema
        self.child = child


class TypeDef:
    """A Schema class as the client knows it: an id and its fields by wire index."""

    __slots__ = ("id", "fields")

    def __init__(self, type_id: int) -> None:
        self.id = type_id
        self.fields: list[FieldType] = []

    def __repr__(self) -> str:
        return f"TypeDef({self.id}, {[f.name for f in self.fields]})"


class _Ref:
    __slots__ = ("kind", "obj", "tdef", "child", "keys", "holes")

    def __init__(self, kind: int, obj: Any, tdef: TypeDef | None = None,
                 child: FieldType | None = None) -> None:
        self.kind = kind
        self.obj = obj
        self.tdef = tdef
        self.child = child
        self.keys: dict[int, str] = {}
        self.holes = False


def _bootstrap_types() -> dict[int, TypeDef]:
    """The fixed classes the handshake itself is written with (PROTOCOL §5.5)."""
    reflection, rtype, rfield, quantized = TypeDef(0), TypeDef(1), TypeDef(2), TypeDef(3)
    prim = PRIMITIVES
    quantized.fields = [FieldType("min", PRIM, prim["float64"]), FieldType("max", PRIM, prim["float64"]),
                        FieldType("bits", PRIM, prim["uint8"]), FieldType("mode", PRIM, prim["uint8"])]
    rfield.fields = [FieldType("name", PRIM, prim["string"]), FieldType("type", PRIM, prim["string"]),
                     FieldType("referencedType", PRIM, prim["number"]),
                     FieldType("childPrimitive", PRIM, prim["string"]),
                     FieldType("quantized", REF, schema=quantized)]
    rtype.fields = [FieldType("id", PRIM, prim["number"]), FieldType("extendsId", PRIM, prim["number"]),
                    FieldType("fields", ARRAY, child=FieldType("", REF, schema=rfield))]
    reflection.fields = [FieldType("types", ARRAY, child=FieldType("", REF, schema=rtype)),
                         FieldType("rootType", PRIM, prim["number"])]
    return {0: reflection, 1: rtype, 2: rfield, 3: quantized}


def types_from_reflection(reflection: dict[str, Any]) -> tuple[dict[int, TypeDef], int]:
    """Build the client's type table from a decoded handshake (either dialect)."""
    described = {t["id"]: t for t in reflection.get("types", [])}
    types = {type_id: TypeDef(type_id) for type_id in described}

    def field_type(f: dict[str, Any]) -> FieldType:
        name, kind_name = f["name"], f["type"]
        referenced = f.get("referencedType")
        if "quantized" in f or kind_name == "quantized":
            raise DecodeError(f"field {name!r}: quantized fields are not supported")
        if referenced is None:
            prim = PRIMITIVES.get(kind_name)
            if prim is None:
                raise DecodeError(f"field {name!r}: unknown type {kind_name!r}")
            return FieldType(name, PRIM, prim)
        target = types.get(referenced)
        if kind_name == "ref":
            if target is None:
                raise DecodeError(f"field {name!r}: unknown referenced type {referenced}")
            return FieldType(name, REF, schema=target)
        child_primitive = f.get("childPrimitive")
        if target is None:
            kind_name, _, child_name = kind_name.partition(":")
            child_name = child_primitive or child_name
            prim = PRIMITIVES.get(child_name)
            if prim is None:
                raise DecodeError(f"field {name!r}: unknown collection child type {child_name!r}")
            child = FieldType("", PRIM, prim)
        else:
            child = FieldType("", REF, schema=target)
        if kind_name not in ("map", "array"):
            raise DecodeError(f"field {name!r}: {kind_name!r} collections are not supported")
        return FieldType(name, MAP if kind_name == "map" else ARRAY, child=child)

    for type_id, described_type in described.items():
        chain = []
        current: dict[str, Any] | None = described_type
        while current is not None:
            chain.append(current)
            current = described.get(current["extendsId"]) if "extendsId" in current else None
        fields: list[FieldType] = []
        for ancestor in reversed(chain):
            fields.extend(field_type(f) for f in ancestor.get("fields", []))
        types[type_id].fields = fields
    return types, int(reflection.get("rootType", 0))


class StateDecoder:
    """Applies ROOM_STATE / ROOM_STATE_PATCH bodies; ``state`` is the live plain-Python state.

    Two ways to use it: ``StateDecoder.from_handshake(bytes)`` then ``decode(body)`` per frame;
    or, as ``greenroom.client`` expects of a state decoder, ``StateDecoder()`` then
    ``handshake(bytes)``, ``full(body)`` and ``patch(body)`` (``state`` is None before the
    handshake). A full state always replaces what was decoded before, as a reconnection needs.
    """

    def __init__(self, types: dict[int, TypeDef] | None = None, root_type: int = 0,
                 strict: bool = True) -> None:
        self.types = types
        self.root_type = root_type
        self.strict = strict
        self.state: dict[str, Any] | None = None
        if types is not None:
            self._reset()

    @classmethod
    def from_handshake(cls, handshake: bytes, strict: bool = True) -> StateDecoder:
        """A decoder for the state described by the handshake of JOIN_ROOM."""
        decoder = cls(strict=strict)
        decoder.handshake(handshake)
        return decoder

    def handshake(self, data: bytes) -> None:
        """Learn the state's types from a JOIN_ROOM handshake (either dialect); resets the state."""
        reader = StateDecoder(_bootstrap_types(), 0, strict=True)
        reader.decode(data)
        types, root_type = types_from_reflection(reader.state)
        if root_type not in types:
            raise DecodeError(f"handshake names root type {root_type}, which it does not describe")
        self.types, self.root_type = types, root_type
        self._reset()

    def full(self, data: bytes) -> None:
        """Apply a ROOM_STATE body."""
        self.decode_full(data)

    def patch(self, data: bytes) -> None:
        """Apply a ROOM_STATE_PATCH body."""
        self.decode(data)

    def _reset(self) -> None:
        self.state = {}
        root = _Ref(REF, self.state, self.types[self.root_type])
        self._refs: dict[int, _Ref] = {0: root}
        self._refid_of: dict[int, int] = {id(self.state): 0}
        self._count: dict[int, int] = {0: 1}
        self._deleted: set[int] = set()           # refIds whose count reached 0 this frame
        self._deleted_order: list[int] = []        # ... in the order they did

    def refid_of(self, obj: Any) -> int | None:
        """The refId a decoded dict or list had on the wire (a migrated room keeps its refIds)."""
        return self._refid_of.get(id(obj))

    def decode_full(self, data: bytes) -> dict[str, Any]:
        """Apply a full state from scratch (a reconnection's ROOM_STATE), dropping what was there."""
        if self.types is None:
            raise DecodeError("no handshake yet: the decoder does not know the state's types")
        self._reset()
        return self.decode(data)

    def decode(self, data: bytes) -> dict[str, Any]:
        """Apply one frame body and return the (same, updated) state."""
        if self.types is None:
            raise DecodeError("no handshake yet: the decoder does not know the state's types")
        try:
            self._decode(memoryview(data).tobytes() if not isinstance(data, bytes) else data)
        except (IndexError, struct.error, UnicodeDecodeError, ValueError) as exc:
            if isinstance(exc, DecodeError):
                raise
            raise DecodeError(f"malformed state frame: {exc}") from exc
        return self.state

    # -- the frame loop --------------------------------------------------------------------------

    def _decode(self, buf: bytes) -> None:
        refs = self._refs
        n = len(buf)
        pos = 0
        current = refs[0]
        while pos < n:
            if buf[pos] == SWITCH:
                self._leave(current)
                refid, pos = decode_number(buf, pos + 1)
                target = refs.get(refid)
                if target is None:
                    self._warn(f'"refId" not found: {refid}')
                    pos = self._skip(buf, pos)
                    continue
                current = target
                continue
            if current.kind == REF:
                pos = self._schema_op(current, buf, pos)
            elif current.kind == MAP:
                pos = self._map_op(current, buf, pos)
            else:
                pos = self._array_op(current, buf, pos)
        self._leave(current)
        self._collect()

    def _skip(self, buf: bytes, pos: int) -> int:
        """Skip to the next SWITCH to a known structure, as the official decoder does."""
        n = len(buf)
        while pos < n:
            if buf[pos] == SWITCH:
                try:
                    refid, _ = decode_number(buf, pos + 1)
                except (IndexError, ValueError, struct.error):
                    refid = -1
                if refid in self._refs:
                    return pos
            pos += 1
        return pos

    def _warn(self, message: str) -> None:
        if self.strict:
            raise DecodeError(message)
        log.warning("schema decoder: %s", message)

    @staticmethod
    def _leave(ref: _Ref) -> None:
        if ref.holes:
            ref.obj[:] = [v for v in ref.obj if v is not _HOLE]
            ref.holes = False

    # -- operations ------------------------------------------------------------------------------

    def _schema_op(self, ref: _Ref, buf: bytes, pos: int) -> int:
        first = buf[pos]
        pos += 1
        op = (first >> 6) << 6
        index = first % (op or 255)
        fields = ref.tdef.fields
        if index >= len(fields):
            self._warn(f"field not defined at index {index} (type {ref.tdef.id})")
            return self._skip(buf, pos)
        ftype = fields[index]
        obj = ref.obj
        previous = obj.get(ftype.name)
        if op & _DELETE and op != _DNA:
            obj.pop(ftype.name, None)
        value, pos = self._value(op, previous, ftype, buf, pos)
        if value is not None:
            obj[ftype.name] = value
        return pos

    def _map_op(self, ref: _Ref, buf: bytes, pos: int) -> int:
        op = buf[pos]
        pos += 1
        obj = ref.obj
        if op == _CLEAR:
            self._release_children(ref)
            obj.clear()
            ref.keys.clear()
            return pos
        index, pos = decode_number(buf, pos)
        if op & _ADD:
            key, pos = decode_string(buf, pos)
            ref.keys[index] = key
        else:
            key = ref.keys.get(index)
        previous = obj.get(key) if key is not None else None
        if op & _DELETE and op != _DNA and key is not None:
            del obj[key]
            del ref.keys[index]
        value, pos = self._value(op, previous, ref.child, buf, pos)
        if value is not None:
            if key is None:
                self._warn(f"map index {index} not found")
            else:
                obj[key] = value
        return pos

    def _array_op(self, ref: _Ref, buf: bytes, pos: int) -> int:
        op = buf[pos]
        pos += 1
        items = ref.obj
        if op == _CLEAR:
            self._release_children(ref)
            items.clear()
            ref.holes = False
            return pos
        if op == _REVERSE:
            items.reverse()
            return pos
        if op == _DELETE_BY_REFID:
            refid, pos = decode_number(buf, pos)
            target = self._refs.get(refid)
            if target is None:
                return pos
            self._remove_ref(refid)
            for i, value in enumerate(items):
                if value is target.obj:
                    items[i] = _HOLE
                    ref.holes = True
                    break
            return pos
        if op == _ADD_BY_REFID:
            refid, pos = decode_number(buf, pos)
            target = self._refs.get(refid)
            index = len(items)
            if target is not None:
                index = next((i for i, v in enumerate(items) if v is target.obj), index)
        else:
            index, pos = decode_number(buf, pos)
        previous = items[index] if index < len(items) else None
        if previous is _HOLE:
            previous = None
        if op & _DELETE and op != _DNA and index < len(items):
            items[index] = _HOLE
            ref.holes = True
        value, pos = self._value(op, previous, ref.child, buf, pos)
        if value is not None and value is not previous:
            if index < len(items) and items[index] is not _HOLE and op == _ADD:
                items.insert(index, value)
            elif index < len(items):
                items[index] = value
            else:
                if index > len(items):
                    items.extend([_HOLE] * (index - len(items)))
                    ref.holes = True
                items.append(value)
        return pos

    def _value(self, op: int, previous: Any, ftype: FieldType, buf: bytes, pos: int) -> tuple[Any, int]:
        """Decode the value of an operation, keeping reference counts as the official decoder does."""
        if op & _DELETE and isinstance(previous, (dict, list)):
            previous_refid = self._refid_of.get(id(previous))
            if previous_refid is not None:
                self._remove_ref(previous_refid)
        if op == _DELETE:
            return None, pos
        kind = ftype.kind
        if kind == PRIM:
            return ftype.primitive.decode(buf, pos)
        refid, pos = decode_number(buf, pos)
        known = self._refs.get(refid)
        if kind == REF:
            if not op & _ADD:
                return (known.obj if known is not None else None), pos
            tdef = ftype.schema
            if pos < len(buf) and buf[pos] == TYPE_ID:
                type_id, pos = decode_number(buf, pos + 1)
                tdef = self.types.get(type_id, tdef)
            if known is None:
                known = _Ref(REF, {}, tdef)
            value = known.obj
            self._add_ref(refid, known, value is not previous or op == _DNA)
            return value, pos
        if known is None:
            known = _Ref(kind, {} if kind == MAP else [], child=ftype.child)
        value = known.obj
        if isinstance(previous, (dict, list)) and previous is not value and not op & _DELETE:
            previous_refid = self._refid_of.get(id(previous))
            if previous_refid is not None and previous_refid != refid:
                self._remove_ref(previous_refid)
        self._add_ref(refid, known, value is not previous or op == _DNA)
        return value, pos

    # -- reference counting ----------------------------------------------------------------------

    def _add_ref(self, refid: int, ref: _Ref, increment: bool) -> None:
        self._refs[refid] = ref
        self._refid_of[id(ref.obj)] = refid
        if increment:
            self._count[refid] = self._count.get(refid, 0) + 1
        self._deleted.discard(refid)

    def _remove_ref(self, refid: int) -> None:
        count = self._count.get(refid)
        if count is None:
            self._warn(f"trying to remove refId that doesn't exist: {refid}")
            return
        if count == 0:
            self._warn(f"trying to remove refId '{refid}' with 0 refCount")
            return
        self._count[refid] = count - 1
        if count - 1 <= 0 and refid not in self._deleted:
            self._deleted.add(refid)
            self._deleted_order.append(refid)

    def _release_children(self, ref: _Ref) -> None:
        if ref.child.kind == PRIM:
            return
        values = ref.obj.values() if ref.kind == MAP else ref.obj
        for value in list(values):
            if value is _HOLE:
                continue
            refid = self._refid_of.get(id(value))
            if refid is not None:
                self._remove_ref(refid)

    def _collect(self) -> None:
        """Drop structures no longer referenced, and what only they referenced (end of frame)."""
        deleted, order = self._deleted, self._deleted_order
        i = 0
        while i < len(order):
            refid = order[i]
            i += 1
            if refid not in deleted or self._count.get(refid, 0) > 0:
                continue
            ref = self._refs.get(refid)
            if ref is None:
                continue
            if ref.kind == REF:
                children = [v for v in ref.obj.values() if isinstance(v, (dict, list))]
            elif ref.child.kind != PRIM:
                children = list(ref.obj.values() if ref.kind == MAP else ref.obj)
            else:
                children = []
            for child in children:
                child_refid = self._refid_of.get(id(child))
                if child_refid and child_refid not in deleted:
                    self._remove_ref(child_refid)
            del self._refs[refid]
            self._count.pop(refid, None)
            self._refid_of.pop(id(ref.obj), None)
        deleted.clear()
        order.clear()
