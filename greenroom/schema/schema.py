"""``Schema``: a class whose ``field()`` attributes are synchronised to the clients.

Values live in the instance ``__dict__`` so reading ``player.x`` costs what any attribute read
costs; only assignment goes through ``__setattr__``, which checks the value and records the change.
Field indices (the wire identity of a field) are fixed when the class is created: inherited fields
first, then the class's own in declaration order.
"""

from __future__ import annotations

from typing import Any, ClassVar

from . import speedups
from .changes import ABSENT, PRESENT, SCHEMA_NODE, Node, attach, detach, validate_attach
from .collections import coerce_value
from .errors import SchemaDefinitionError
from .fields import GATE_ENTRIES, GATE_FIELD, MAX_FIELDS, Field
from .types import fast_number


class Schema:
    """Base class of synchronised state; declare attributes with ``field()``."""

    _gr_is_schema: ClassVar[bool] = True
    _gr_fields: ClassVar[tuple[Field, ...]] = ()
    _gr_own_fields: ClassVar[tuple[Field, ...]] = ()
    _gr_by_name: ClassVar[dict[str, Field]] = {}
    _gr_ref_fields: ClassVar[tuple[Field, ...]] = ()
    _gr_gated_fields: ClassVar[tuple[Field, ...]] = ()
    _gr_entry_gates: ClassVar[tuple[Field, ...]] = ()
    _gr_gated_indexes: ClassVar[frozenset[int]] = frozenset()
    _gr_base: ClassVar[type | None] = None
    _gr_wire: ClassVar[tuple[tuple[str, bytes, Any, Field], ...]] = ()
    _gr_patch: ClassVar[tuple[tuple[str, bytes, int | None, Any, Field], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        bases = [b for b in cls.__bases__ if isinstance(b, type) and issubclass(b, Schema)]
        if len(bases) != 1:
            raise SchemaDefinitionError(
                f"{cls.__name__}: a Schema class can extend only one Schema class "
                f"(the wire format has single inheritance)")
        base = bases[0]
        inherited = base._gr_fields
        own = [value for value in vars(cls).values() if isinstance(value, Field)]
        names = {f.name for f in inherited}
        for fd in own:
            if fd.name in names:
                raise SchemaDefinitionError(
                    f"{cls.__name__}.{fd.name}: already declared by a parent class; a subclass "
                    f"can only add fields")
            if fd.name.startswith("_"):
                raise SchemaDefinitionError(f"{cls.__name__}.{fd.name}: field names cannot start with '_'")
        if len(inherited) + len(own) > MAX_FIELDS:
            raise SchemaDefinitionError(
                f"{cls.__name__} has {len(inherited) + len(own)} fields (including inherited "
                f"ones); the wire format allows at most {MAX_FIELDS} per class (indices 0..62). "
                f"Group some of them into a child Schema.")
        for i, fd in enumerate(own):
            fd.bind(cls, len(inherited) + i)
        fields = inherited + tuple(own)
        cls._gr_base = base if base is not Schema else None
        cls._gr_own_fields = tuple(own)
        cls._gr_fields = fields
        cls._gr_by_name = {fd.name: fd for fd in fields}
        cls._gr_ref_fields = tuple(fd for fd in fields if fd.is_ref)
        cls._gr_gated_fields = tuple(fd for fd in fields if fd.gate == GATE_FIELD)
        cls._gr_entry_gates = tuple(fd for fd in fields if fd.gate == GATE_ENTRIES)
        cls._gr_gated_indexes = frozenset(fd.index for fd in cls._gr_gated_fields)
        # what write_full and the filtered encoders read per field, unpacked from one tuple
        # (name, ADD byte, value encoder or None for structures, the Field)
        cls._gr_wire = tuple((fd.name, fd.add_op, fd.encode, fd) for fd in fields)
        # encode_patch's and full_block's view of a field: (name, ADD byte, 1 for "number"
        # (encoded inline) / 0 for another primitive / None for a structure, value encoder,
        # the Field)
        cls._gr_patch = tuple(
            (fd.name, fd.add_op, None if fd.is_ref else int(fd.encode is fast_number), fd.encode, fd)
            for fd in fields)
        # the fast assignment path, unless the class (or a parent) defines its own __setattr__
        if _is_generated(cls.__setattr__) or cls.__setattr__ is Schema.__setattr__:
            cls.__setattr__ = _fast_setattr(cls)

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is Schema:
            raise TypeError("Schema is a base class: subclass it and declare field()s")
        self = object.__new__(cls)
        d = self.__dict__
        d["_gr"] = Node(self, SCHEMA_NODE)
        for fd in cls._gr_fields:
            d[fd.name] = fd.make_default()
        return self

    def __init__(self, **values: Any) -> None:
        by_name = self._gr_by_name
        for name, value in values.items():
            if name not in by_name:
                raise TypeError(f"{type(self).__name__} has no field {name!r}")
            setattr(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        fd = self._gr_by_name.get(name)
        if fd is None:
            if name == "_gr":
                raise AttributeError("_gr is reserved for change tracking")
            object.__setattr__(self, name, value)
            return
        if fd.is_ref:
            self._gr_set_ref(fd, value)
            return
        if value.__class__ not in fd.fast and value is not None:
            try:
                value = fd.check(value)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{type(self).__name__}.{name}: {exc}") from None
        d = self.__dict__
        old = d[name]
        if old == value and (old is value or old.__class__ is value.__class__):
            return
        d[name] = value
        _record(d["_gr"], fd.index, ABSENT if old is None else PRESENT)

    def _gr_set_ref(self, fd: Field, value: Any) -> None:
        if value is not None:
            value = coerce_value(fd, value)
        d = self.__dict__
        old = d[fd.name]
        if value is old:
            return
        node = d["_gr"]
        tracker = node.tracker
        if tracker is None:
            d[fd.name] = value
            return
        if value is not None:
            validate_attach(tracker, value._gr)
        _record(node, fd.index, ABSENT if old is None else old._gr.refid)
        d[fd.name] = value
        if old is not None:
            detach(old._gr)
        if value is not None:
            attach(tracker, value._gr, node, fd.index, fd if fd.gate == GATE_ENTRIES else None)

    def __delattr__(self, name: str) -> None:
        if name in self._gr_by_name:
            setattr(self, name, None)
        else:
            object.__delattr__(self, name)

    def to_json(self) -> dict[str, Any]:
        """The state as plain dicts/lists, fields without a value left out (as clients see it)."""
        d = self.__dict__
        result = {}
        for fd in self._gr_fields:
            value = d[fd.name]
            if value is not None:
                result[fd.name] = value.to_json() if fd.is_ref else value
        return result

    def __repr__(self) -> str:
        d = self.__dict__
        inner = ", ".join(f"{fd.name}={d[fd.name]!r}" for fd in self._gr_fields)
        return f"{type(self).__name__}({inner})"


def _record(node: Node, index: int, marker: int) -> None:
    """Note slot ``index``'s first change this tick with what the client held (changes.py)."""
    pending = node.pending
    if pending is not None:          # already touched this tick (so tracked, not new)
        if index not in pending:
            pending[index] = marker
    elif node.tracker is not None and not node.new:
        node.pending = {index: marker}
        node.tracker.queue.append(node)


def _is_generated(method: Any) -> bool:
    return getattr(method, "_gr_generated", False) or (
        speedups.compiled is not None and isinstance(method, speedups.compiled.FastSetattr))


def _fast_setattr(cls: type[Schema]) -> Any:
    """``cls.__setattr__``: ``Schema.__setattr__`` with the primitive-field path specialised.

    Assigning a primitive field is what game code does most; this version finds the field's
    facts in one dict lookup with the class's tables bound in the closure (no attribute lookups
    on the instance or the Field) and records the change as ``Schema.__setattr__`` does.
    Structures, other attributes and values that need a check go to ``Schema.__setattr__``
    (so does the compiled version). A class that defines its own
    ``__setattr__`` keeps it (and its subclasses do not get a generated one either).
    """
    generic = Schema.__setattr__
    qualname = f"{cls.__qualname__}.__setattr__"
    if speedups.compiled is not None:
        # the same steps in C; it hands whatever needs a check or a conversion to ``generic``
        # (index, classes that need no check, integer bounds within which an int needs none)
        fast = {fd.name: (fd.index, fd.fast, fd.spec.primitive.bounds)
                for fd in cls._gr_fields if not fd.is_ref}
        return speedups.compiled.FastSetattr(fast, generic, qualname)
    table = {fd.name: (fd.index, fd.fast) for fd in cls._gr_fields if not fd.is_ref}
    get = table.get

    def __setattr__(self: Schema, name: str, value: Any) -> None:
        entry = get(name)
        if entry is None or (value.__class__ not in entry[1] and value is not None):
            generic(self, name, value)   # not a primitive field, or the value needs a check
            return
        d = self.__dict__
        old = d[name]
        if old == value and (old is value or old.__class__ is value.__class__):
            return
        d[name] = value
        _record(d["_gr"], entry[0], ABSENT if old is None else PRESENT)

    __setattr__._gr_generated = True  # type: ignore[attr-defined]
    __setattr__.__qualname__ = qualname
    return __setattr__
