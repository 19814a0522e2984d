"""``field()``: declaring a synchronised attribute, and the per-field facts the encoder needs.

A field is described once, when its class is created; everything the patch loop would otherwise
recompute per operation (the op bytes, the value encoder, whether it holds a structure) is stored
on the ``Field`` so the hot path only reads attributes.
"""

from __future__ import annotations

from typing import Any

from .errors import SchemaDefinitionError
from .types import PRIMITIVES, Primitive

# Kinds of value a field or a collection entry holds.
PRIM, REF, MAP, ARRAY = 0, 1, 2, 3

# Operation codes (PROTOCOL §5.2).
OP_ADD = 0x80
OP_REPLACE = 0x00
OP_DELETE = 0x40
OP_DELETE_AND_ADD = 0xC0
OP_CLEAR = 0x0A
SWITCH = 0xFF
TYPE_ID = 0xD5

# A class may have at most 63 fields (indices 0..62): DELETE_AND_ADD | 63 would be SWITCH (0xff).
MAX_FIELDS = 63

DEFAULT_TAG = -1
"""View tag of ``field(..., view=True)``: visible once the owner is in the view, whatever tag."""

# What a private field hides: the field itself, or (a map of Schema) each of its entries.
GATE_FIELD, GATE_ENTRIES = 1, 2

_MISSING: Any = object()


class TypeSpec:
    """A parsed field type: a primitive, a child Schema class, or a map/array of either."""

    __slots__ = ("kind", "primitive", "schema", "child")

    def __init__(self, kind: int, primitive: Primitive | None = None, schema: type | None = None,
                 child: TypeSpec | None = None) -> None:
        self.kind = kind
        self.primitive = primitive
        self.schema = schema
        self.child = child

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, TypeSpec) and self.kind == other.kind
                and self.primitive is other.primitive and self.schema is other.schema
                and self.child == other.child)

    def __hash__(self) -> int:
        return hash((self.kind, self.primitive, self.schema, self.child))

    def describe(self) -> str:
        if self.kind == PRIM:
            return self.primitive.name
        if self.kind == REF:
            return self.schema.__name__
        return f"{'map' if self.kind == MAP else 'array'}<{self.child.describe()}>"

    __repr__ = describe


def is_schema_class(obj: Any) -> bool:
    return isinstance(obj, type) and getattr(obj, "_gr_is_schema", False)


def parse_type(spec: Any, where: str) -> TypeSpec:
    """Turn the user's notation (``"string"``, ``Player``, ``{"map": Player}``, ``["string"]``) into a TypeSpec."""
    if isinstance(spec, str):
        prim = PRIMITIVES.get(spec)
        if prim is None:
            raise SchemaDefinitionError(
                f"{where}: unknown type {spec!r}; use one of {', '.join(PRIMITIVES)}, a Schema "
                f"subclass, {{'map': T}} or [T]")
        return TypeSpec(PRIM, primitive=prim)
    if is_schema_class(spec):
        return TypeSpec(REF, schema=spec)
    if isinstance(spec, dict) and len(spec) == 1:
        ((kind, child),) = spec.items()
        if kind in ("map", "array"):
            return TypeSpec(MAP if kind == "map" else ARRAY, child=_parse_child(child, where))
    if isinstance(spec, list) and len(spec) == 1:
        return TypeSpec(ARRAY, child=_parse_child(spec[0], where))
    raise SchemaDefinitionError(
        f"{where}: cannot use {spec!r} as a field type; use a primitive name, a Schema subclass, "
        f"{{'map': T}} or [T]")


def _parse_child(child: Any, where: str) -> TypeSpec:
    spec = parse_type(child, where)
    if spec.kind in (MAP, ARRAY):
        raise SchemaDefinitionError(
            f"{where}: a collection of collections cannot be sent; wrap the inner one in a Schema")
    return spec


class Field:
    """A declared attribute of a Schema class (see ``field``)."""

    __slots__ = ("type", "default", "view", "name", "index", "owner", "spec", "kind", "is_ref",
                 "schema_cls", "check", "encode", "fast", "add_op", "replace_op", "delete_op",
                 "dna_op", "gate", "tag")

    def __init__(self, type: Any, default: Any = _MISSING, view: bool | int | None = None) -> None:
        self.type = type
        self.default = default
        self.view = view
        self.name = ""
        self.index = -1
        self.owner: type | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, cls: type | None = None) -> Any:
        if obj is None:
            return self
        raise AttributeError(f"{type(obj).__name__}.{self.name} has no value (was Schema.__new__ bypassed?)")

    def __repr__(self) -> str:
        where = f"{self.owner.__name__}." if self.owner else ""
        return f"<field {where}{self.name}: {getattr(self, 'spec', self.type)!r}>"

    def bind(self, owner: type, index: int) -> None:
        """Resolve the type once the owning class exists, and precompute what encoding needs."""
        if self.owner is not None:
            raise SchemaDefinitionError(
                f"{owner.__name__}.{self.name}: this field object already belongs to "
                f"{self.owner.__name__}; call field() once per attribute")
        where = f"{owner.__name__}.{self.name}"
        self.owner = owner
        self.index = index
        self.spec = spec = parse_type(self.type, where)
        self.kind = spec.kind
        self.is_ref = spec.kind != PRIM
        self.schema_cls = spec.schema
        self.check = spec.primitive.check if spec.kind == PRIM else None
        self.encode = spec.primitive.encode if spec.kind == PRIM else None
        self.fast = spec.primitive.fast if spec.kind == PRIM else ()
        self.add_op = bytes([OP_ADD | index])
        self.replace_op = bytes([OP_REPLACE | index])
        self.delete_op = bytes([OP_DELETE | index])
        # DELETE_AND_ADD of field 21 is the byte 0xd5, which a decoder reads as TYPE_ID when it
        # follows a child reference: send it as DELETE + ADD instead (same effect on the client).
        dna = OP_DELETE_AND_ADD | index
        self.dna_op = self.delete_op + self.add_op if dna == TYPE_ID else bytes([dna])
        self._bind_view(where)
        if spec.kind == PRIM and self.default is not _MISSING and self.default is not None \
                and not callable(self.default):
            try:
                self.default = self.check(self.default)
            except (TypeError, ValueError) as exc:
                raise SchemaDefinitionError(f"{where}: bad default {self.default!r}: {exc}") from None

    def _bind_view(self, where: str) -> None:
        view = self.view
        if view is None or view is False:
            self.gate = 0
            self.tag = None
            return
        if view is True:
            self.tag = DEFAULT_TAG
        elif isinstance(view, int) and not isinstance(view, bool) and view >= 0:
            self.tag = view
        else:
            raise SchemaDefinitionError(f"{where}: view must be True or a tag (int >= 0), got {view!r}")
        spec = self.spec
        self.gate = GATE_ENTRIES if spec.kind == MAP and spec.child.kind == REF else GATE_FIELD

    def make_default(self) -> Any:
        """A fresh default value for a new instance (collections are never shared between instances)."""
        default = self.default
        if self.kind == PRIM:
            if default is _MISSING or default is None:
                return None
            return self.check(default()) if callable(default) else default
        if default is _MISSING:
            if self.kind == REF:
                return None
            default = {} if self.kind == MAP else []
        elif default is None:
            return None
        elif callable(default) and not isinstance(default, (list, dict, tuple)):
            default = default()
            if default is None:
                return None
        from .collections import coerce_value
        return coerce_value(self, default, copy=True)


def field(type: Any, default: Any = _MISSING, *, view: bool | int | None = None) -> Any:
    """Declare a synchronised attribute of a Schema subclass.

    ``type`` is a primitive name (``"string"``, ``"number"``, ``"boolean"``, ``"int8"`` ..
    ``"uint64"``, ``"float32"``, ``"float64"``), a Schema subclass, ``{"map": T}`` or ``[T]``
    (``{"array": T}``). Primitives and child schemas default to None (not sent); maps and arrays
    start empty. ``default`` may be a value or a zero-argument factory.

    ``view=True`` (or an int tag) makes the field private, see ``StateView``: the field reaches
    only clients whose view holds the instance owning it; for a map of Schema it is the entries
    that are private, each reaching the clients whose view holds it (or holds the owner).
    """
    return Field(type, default, view)
