"""MapSchema and ArraySchema: a dict and a list that record what a patch must tell the clients.

Maps give every key a wire index when it is inserted (monotonic, never reused, PROTOCOL §5.2).
Arrays follow the portable recipe of §5.2: append = ADD at the end, item assignment = REPLACE,
pop of the last item = DELETE; any other mutation (insert, remove, sort, ...) marks the array
*cleared* and the next patch sends CLEAR followed by every item, which all three official
decoders apply the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .changes import (
    ABSENT,
    ARRAY_NODE,
    MAP_NODE,
    PRESENT,
    Node,
    attach,
    detach,
    validate_attach,
)
from .fields import ARRAY, MAP, PRIM, REF, Field, TypeSpec, parse_type

_NONE: Any = object()


def _check_item(spec: TypeSpec | None, value: Any, where: str) -> Any:
    """Validate one entry against the collection's child type (nothing to check before adoption)."""
    if value is None:
        raise TypeError(f"{where}: a collection cannot hold None")
    if spec is None:
        return value
    child = spec.child
    if child.kind == PRIM:
        try:
            return child.primitive.check(value)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}: {exc}") from None
    if not isinstance(value, child.schema):
        raise TypeError(f"{where}: expected {child.schema.__name__}, got {type(value).__name__}")
    return value


def _spec_from(child: Any, kind: int, where: str) -> TypeSpec | None:
    if child is None:
        return None
    return parse_type({"map" if kind == MAP else "array": child}, where)


class _Collection:
    __slots__ = ()

    def _gr_adopt(self, spec: TypeSpec, where: str) -> None:
        """Take the child type of the field the collection is assigned to, checking what it holds."""
        current = self._gr_spec
        if current is not None:
            if current != spec:
                raise TypeError(f"{where}: expected {spec.describe()}, got {current.describe()}")
            return
        for value in self._gr_values():
            _check_item(spec, value, where)
        self._gr_spec = spec
        self._gr_where = where

    def _gr_is_ref(self) -> bool:
        spec = self._gr_spec
        return spec is not None and spec.child.kind == REF


class MapSchema(_Collection):
    """A str-keyed dict whose changes reach the clients; the value type comes from its field."""

    __slots__ = ("_gr", "_gr_items", "_gr_index", "_gr_keys", "_gr_heads", "_gr_next", "_gr_spec",
                 "_gr_where")

    def __init__(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
                 child: Any = None) -> None:
        self._gr = Node(self, MAP_NODE)
        self._gr_items: dict[str, Any] = {}
        self._gr_index: dict[str, int] = {}
        self._gr_keys: dict[int, str] = {}
        self._gr_heads: dict[str, bytes] = {}   # encoder cache: index + key as on the wire
        self._gr_next = 0
        self._gr_where = "MapSchema"
        self._gr_spec = _spec_from(child, MAP, "MapSchema")
        if items:
            self.update(items)

    def _gr_values(self) -> Iterable[Any]:
        return self._gr_items.values()

    # -- mutations -------------------------------------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        if key.__class__ is not str:
            if not isinstance(key, str):
                raise TypeError(f"{self._gr_where}: map keys must be str, got {type(key).__name__}")
            key = str(key)
        spec = self._gr_spec
        value = _check_item(spec, value, self._gr_where)
        items = self._gr_items
        old = items.get(key, _NONE)
        if old is value:
            return
        is_ref = spec is not None and spec.child.kind == REF
        if old is not _NONE and not is_ref and old == value and old.__class__ is value.__class__:
            return
        node = self._gr
        tracker = node.tracker
        if is_ref and tracker is not None:
            validate_attach(tracker, value._gr)
        if old is _NONE:
            idx = self._gr_next
            self._gr_next = idx + 1
            self._gr_index[key] = idx
            self._gr_keys[idx] = key
            marker = ABSENT
        else:
            idx = self._gr_index[key]
            marker = old._gr.refid if is_ref else PRESENT
        items[key] = value
        if tracker is None:
            return
        if not node.new:
            pending = node.pending
            if pending is None:
                node.pending = {idx: marker}
                tracker.queue.append(node)
            elif idx not in pending:
                pending[idx] = marker
        if is_ref:
            if old is not _NONE:
                detach(old._gr)
            attach(tracker, value._gr, node, idx, None)

    def set(self, key: str, value: Any) -> MapSchema:
        """``map.set(k, v)`` as in the JavaScript API; returns the map."""
        self[key] = value
        return self

    def __delitem__(self, key: str) -> None:
        old = self._gr_items.pop(key)
        idx = self._gr_index.pop(key)
        del self._gr_keys[idx]
        self._gr_heads.pop(key, None)
        node = self._gr
        tracker = node.tracker
        if tracker is None:
            return
        is_ref = self._gr_is_ref()
        if not node.new:
            marker = old._gr.refid if is_ref else PRESENT
            pending = node.pending
            if pending is None:
                node.pending = {idx: marker}
                tracker.queue.append(node)
            elif idx not in pending:
                pending[idx] = marker
        if is_ref:
            detach(old._gr)

    def delete(self, key: str) -> bool:
        """``map.delete(k)`` as in the JavaScript API: False when the key was absent."""
        if key not in self._gr_items:
            return False
        del self[key]
        return True

    def pop(self, key: str, default: Any = _NONE) -> Any:
        if key not in self._gr_items:
            if default is _NONE:
                raise KeyError(key)
            return default
        value = self._gr_items[key]
        del self[key]
        return value

    def setdefault(self, key: str, default: Any) -> Any:
        if key not in self._gr_items:
            self[key] = default
        return self._gr_items[key]

    def update(self, other: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), **kwargs: Any) -> None:
        pairs = other.items() if isinstance(other, (Mapping, MapSchema)) else other
        for key, value in pairs:
            self[key] = value
        for key, value in kwargs.items():
            self[key] = value

    def clear(self) -> None:
        for key in list(self._gr_items):
            del self[key]

    # -- reading ---------------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self._gr_items[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._gr_items.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._gr_items

    def __len__(self) -> int:
        return len(self._gr_items)

    def __iter__(self) -> Iterator[str]:
        return iter(self._gr_items)

    def keys(self) -> Any:
        return self._gr_items.keys()

    def values(self) -> Any:
        return self._gr_items.values()

    def items(self) -> Any:
        return self._gr_items.items()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MapSchema):
            return self._gr_items == other._gr_items
        if isinstance(other, Mapping):
            return self._gr_items == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MapSchema({self._gr_items!r})"

    def to_json(self) -> dict[str, Any]:
        return {k: _to_json(v) for k, v in self._gr_items.items()}


class ArraySchema(_Collection):
    """A list whose changes reach the clients; the item type comes from its field."""

    __slots__ = ("_gr", "_gr_items", "_gr_spec", "_gr_where")

    def __init__(self, items: Iterable[Any] | None = None, child: Any = None) -> None:
        self._gr = Node(self, ARRAY_NODE)
        self._gr_where = "ArraySchema"
        self._gr_spec = _spec_from(child, ARRAY, "ArraySchema")
        self._gr_items: list[Any] = []
        if items:
            self.extend(items)

    def _gr_values(self) -> Iterable[Any]:
        return self._gr_items

    def _gr_touch(self) -> Node | None:
        """The node to record into, having noted the length before this tick's first change."""
        node = self._gr
        tracker = node.tracker
        if tracker is None or node.new:
            return None
        if node.pending is None:
            node.pending = {}
            node.len0 = len(self._gr_items)
            tracker.queue.append(node)
        return node

    # -- the three operations with a direct wire form --------------------------------------------

    def append(self, value: Any) -> None:
        value = _check_item(self._gr_spec, value, self._gr_where)
        node = self._gr
        tracker = node.tracker
        items = self._gr_items
        if tracker is None:
            items.append(value)
            return
        is_ref = self._gr_is_ref()
        if is_ref:
            validate_attach(tracker, value._gr)
        self._gr_touch()
        items.append(value)
        if is_ref:
            attach(tracker, value._gr, node, len(items) - 1, None)

    def push(self, *values: Any) -> int:
        """``array.push(...)`` as in the JavaScript API; returns the new length."""
        for value in values:
            self.append(value)
        return len(self._gr_items)

    def extend(self, values: Iterable[Any]) -> None:
        for value in list(values):
            self.append(value)

    def __iadd__(self, values: Iterable[Any]) -> ArraySchema:
        self.extend(values)
        return self

    def pop(self, index: int = -1) -> Any:
        items = self._gr_items
        n = len(items)
        if not n:
            raise IndexError("pop from empty ArraySchema")
        i = index + n if index < 0 else index
        if not 0 <= i < n:
            raise IndexError("ArraySchema index out of range")
        if i != n - 1:
            return self._gr_rewrite(lambda lst: lst.pop(i))
        node = self._gr_touch()
        old = items[i]
        if node is not None and not node.cleared and i < node.len0 and i not in node.pending:
            node.pending[i] = old._gr.refid if self._gr_is_ref() else PRESENT
        items.pop()
        if self._gr.tracker is not None and self._gr_is_ref():
            detach(old._gr)
        return old

    def __setitem__(self, index: int | slice, value: Any) -> None:
        if isinstance(index, slice):
            values = [_check_item(self._gr_spec, v, self._gr_where) for v in value]
            self._gr_rewrite(lambda lst: lst.__setitem__(index, values))
            return
        items = self._gr_items
        n = len(items)
        i = index + n if index < 0 else index
        if not 0 <= i < n:
            raise IndexError("ArraySchema assignment index out of range")
        value = _check_item(self._gr_spec, value, self._gr_where)
        old = items[i]
        if old is value:
            return
        is_ref = self._gr_is_ref()
        if not is_ref and old == value and old.__class__ is value.__class__:
            return
        tracker = self._gr.tracker
        if tracker is None:
            items[i] = value
            return
        if is_ref:
            validate_attach(tracker, value._gr)
        node = self._gr_touch()
        if node is not None and not node.cleared and i < node.len0 and i not in node.pending:
            node.pending[i] = old._gr.refid if is_ref else PRESENT
        items[i] = value
        if is_ref:
            detach(old._gr)
            attach(tracker, value._gr, self._gr, i, None)

    def __delitem__(self, index: int | slice) -> None:
        n = len(self._gr_items)
        if isinstance(index, int) and (index == n - 1 or index == -1) and n:
            self.pop()
            return
        self._gr_rewrite(lambda lst: lst.__delitem__(index))

    # -- everything else: CLEAR + re-ADD on the next patch ---------------------------------------

    def _gr_rewrite(self, operation: Any) -> Any:
        """Apply a list operation with no direct wire form; the next patch resends the whole array."""
        items = self._gr_items
        node = self._gr
        tracker = node.tracker
        if tracker is None or not self._gr_is_ref():
            if tracker is not None:
                touched = self._gr_touch()
                result = operation(items)
                if touched is not None:
                    touched.cleared = True
                return result
            return operation(items)
        after = list(items)
        result = operation(after)
        objects = {id(v): v for v in items}
        objects.update((id(v), v) for v in after)
        before_count = Counter(id(v) for v in items)
        after_count = Counter(id(v) for v in after)
        for oid, count in after_count.items():
            if count > before_count[oid]:
                validate_attach(tracker, objects[oid]._gr)
        touched = self._gr_touch()
        items[:] = after
        if touched is not None:
            touched.cleared = True
        for oid, obj in objects.items():
            for _ in range(before_count[oid] - after_count[oid]):
                detach(obj._gr)
        for oid, obj in objects.items():
            for _ in range(after_count[oid] - before_count[oid]):
                attach(tracker, obj._gr, node, 0, None)
        return result

    def insert(self, index: int, value: Any) -> None:
        n = len(self._gr_items)
        if index >= n:
            self.append(value)
            return
        value = _check_item(self._gr_spec, value, self._gr_where)
        self._gr_rewrite(lambda lst: lst.insert(index, value))

    def remove(self, value: Any) -> None:
        i = self.index(value)
        if i == len(self._gr_items) - 1:
            self.pop()
        else:
            self._gr_rewrite(lambda lst: lst.pop(i))

    def clear(self) -> None:
        self._gr_rewrite(lambda lst: lst.clear())

    def sort(self, *, key: Any = None, reverse: bool = False) -> None:
        self._gr_rewrite(lambda lst: lst.sort(key=key, reverse=reverse))

    def reverse(self) -> None:
        self._gr_rewrite(lambda lst: lst.reverse())

    # -- reading ---------------------------------------------------------------------------------

    def __getitem__(self, index: int | slice) -> Any:
        return self._gr_items[index]

    def __len__(self) -> int:
        return len(self._gr_items)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._gr_items)

    def __contains__(self, value: object) -> bool:
        return value in self._gr_items

    def index(self, value: Any, *args: Any) -> int:
        return self._gr_items.index(value, *args)

    def count(self, value: Any) -> int:
        return self._gr_items.count(value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ArraySchema):
            return self._gr_items == other._gr_items
        if isinstance(other, (list, tuple)):
            return self._gr_items == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ArraySchema({self._gr_items!r})"

    def to_json(self) -> list[Any]:
        return [_to_json(v) for v in self._gr_items]


def _to_json(value: Any) -> Any:
    to_json = getattr(value, "to_json", None)
    return to_json() if to_json is not None and not isinstance(value, type) else value


def coerce_value(fd: Field, value: Any, copy: bool = False) -> Any:
    """The structure a ref field will hold for ``value`` (plain dicts/lists become collections)."""
    spec = fd.spec
    where = f"{fd.owner.__name__}.{fd.name}"
    if spec.kind == REF:
        if isinstance(value, spec.schema):
            return value
        raise TypeError(f"{where}: expected {spec.schema.__name__}, got {type(value).__name__}")
    if spec.kind == MAP:
        if isinstance(value, MapSchema) and not copy:
            value._gr_adopt(spec, where)
            return value
        if isinstance(value, (Mapping, MapSchema)):
            result = MapSchema()
            result._gr_spec = spec
            result._gr_where = where
            result.update(value)
            return result
        raise TypeError(f"{where}: expected MapSchema or dict, got {type(value).__name__}")
    assert spec.kind == ARRAY
    if isinstance(value, ArraySchema) and not copy:
        value._gr_adopt(spec, where)
        return value
    if isinstance(value, (list, tuple, ArraySchema)):
        result = ArraySchema()
        result._gr_spec = spec
        result._gr_where = where
        result.extend(value)
        return result
    raise TypeError(f"{where}: expected ArraySchema or list, got {type(value).__name__}")
