"""The handshake: a description of the state's classes that clients build their decoders from (§5.5).

It is itself a schema-encoded state (Reflection → types → fields), written here directly as
bytes because it is computed once per root class and dialect. Type ids follow the official
discovery order (root first, then subclasses, parents and field types depth-first) so that the
bytes equal those of the reference servers; v3 and v5 differ in how a collection of primitives is
named and in the order the official encoders happened to write some fields.
"""

from __future__ import annotations

from functools import lru_cache

from ..protocol.dialect import Dialect
from ..protocol.primitives import encode_number, encode_string
from .fields import MAP, PRIM, REF, Field, is_schema_class


def discover_types(root_cls: type) -> list[type]:
    """Every class the state may contain, in type-id order (index = type id; the root is 0)."""
    found: dict[type, None] = {}

    def visit(cls: type) -> None:
        if cls in found:
            return
        found[cls] = None
        for sub in cls.__subclasses__():
            if is_schema_class(sub) and "_gr_fields" in vars(sub):   # skip failed definitions
                visit(sub)
        base = cls._gr_base
        while base is not None:
            visit(base)
            base = base._gr_base
        for fd in cls._gr_fields:
            spec = fd.spec
            target = spec.schema if spec.kind == REF else (spec.child.schema if spec.kind != PRIM else None)
            if target is not None:
                visit(target)

    visit(root_cls)
    return list(found)


def _ordered_types(types: list[type]) -> list[type]:
    """Types in reflection order: parents before their subclasses, otherwise by type id."""
    included: set[type] = set()
    waiting: dict[type, list[type]] = {}
    ordered: list[type] = []

    def add(cls: type) -> None:
        base = cls._gr_base
        if base is None or base in included:
            included.add(cls)
            ordered.append(cls)
            for child in waiting.pop(cls, []):
                add(child)
        else:
            waiting.setdefault(base, []).append(cls)

    for cls in types:
        add(cls)
    for rest in waiting.values():
        ordered.extend(rest)
    return ordered


def _field_description(fd: Field, ids: dict[type, int], dialect: Dialect) -> tuple[str, int | None, str | None]:
    """(type string, referencedType, childPrimitive) of one field in the given dialect."""
    spec = fd.spec
    if spec.kind == PRIM:
        return spec.primitive.name, None, None
    if spec.kind == REF:
        return "ref", ids[spec.schema], None
    kind = "map" if spec.kind == MAP else "array"
    child = spec.child
    if child.kind == REF:
        return kind, ids[child.schema], None
    if dialect == Dialect.V3:
        return f"{kind}:{child.primitive.name}", -1, None
    return kind, -1, child.primitive.name


def encode_reflection(root_cls: type, dialect: Dialect | str = Dialect.V5) -> bytes:
    """The handshake bytes for a state of class ``root_cls`` (goes inside JOIN_ROOM).

    v3 (colyseus.js 0.16, @colyseus/sdk 0.17) names a primitive collection ``"array:string"``;
    v5 (@colyseus/sdk 0.18) sends ``"array"`` plus ``childPrimitive``. Each decoder rejects the
    other form, so the dialect must match the client.
    """
    return reflection_of_types(tuple(discover_types(root_cls)), Dialect.parse(dialect))


@lru_cache(maxsize=256)
def reflection_of_types(types: tuple[type, ...], dialect: Dialect) -> bytes:
    """The handshake for an already discovered type list (the one a ChangeTracker numbers TYPE_IDs with)."""
    v3 = dialect == Dialect.V3
    ids = {cls: i for i, cls in enumerate(types)}
    num = encode_number
    out = bytearray()

    # refIds: 0 Reflection, 1 its types array, then per type: the type, its fields array, its
    # fields (the order the official encoder attaches them in).
    ordered = _ordered_types(list(types))
    layout = []
    next_ref = 2
    for cls in ordered:
        type_ref, fields_ref = next_ref, next_ref + 1
        own = cls._gr_own_fields
        field_refs = list(range(next_ref + 2, next_ref + 2 + len(own)))
        next_ref += 2 + len(own)
        layout.append((cls, type_ref, fields_ref, own, field_refs))

    out += b"\x80" + num(1)                       # types → refId 1 (rootType is 0: omitted)
    out += b"\xff" + num(1)
    for i, (_, type_ref, _, _, _) in enumerate(layout):
        out += b"\x80" + num(i) + num(type_ref)
    for cls, type_ref, fields_ref, own, field_refs in layout:
        out += b"\xff" + num(type_ref)
        base = cls._gr_base
        id_op = b"\x80" + num(ids[cls])
        extends_op = b"\x81" + num(ids[base]) if base is not None else b""
        fields_op = b"\x82" + num(fields_ref)
        out += (fields_op + id_op + extends_op) if v3 else (id_op + extends_op + fields_op)
        if own:
            out += b"\xff" + num(fields_ref)
            for i, ref in enumerate(field_refs):
                out += b"\x80" + num(i) + num(ref)
        for fd, ref in zip(own, field_refs, strict=True):
            type_name, referenced, child_primitive = _field_description(fd, ids, dialect)
            out += b"\xff" + num(ref) + b"\x80" + encode_string(fd.name)
            type_op = b"\x81" + encode_string(type_name)
            ref_op = b"\x82" + num(referenced) if referenced is not None else b""
            out += (ref_op + type_op) if v3 else (type_op + ref_op)
            if child_primitive is not None:
                out += b"\x83" + encode_string(child_primitive)
    return bytes(out)
