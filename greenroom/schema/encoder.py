"""Full states (§5.3) and patches (§5.4) for states without private fields: one body for everyone.

Bodies exclude the frame code byte. A patch walks the structures touched this tick in the order
they were first touched; a structure attached this tick is written whole right after the block
that introduces it (depth-first), so every refId is introduced by an ADD before its first
``ff <refId>``, whatever the order of the mutations was.
"""

from __future__ import annotations

import heapq
from typing import Any

from ..protocol.dialect import Dialect
from ..protocol.primitives import encode_number, encode_string
from . import speedups
from .changes import ABSENT, MAP_NODE, PRESENT, SCHEMA_NODE, ChangeTracker, Node
from .errors import EncodeError
from .fields import OP_ADD, OP_CLEAR, OP_DELETE, OP_DELETE_AND_ADD, OP_REPLACE, REF, TYPE_ID
from .types import INT_BYTES as _INT_BYTES
from .types import INT_TABLE_SIZE as _INT_TABLE_SIZE
from .types import fast_number, fast_string

_ADD = bytes([OP_ADD])
_REPLACE = bytes([OP_REPLACE])
_DELETE = bytes([OP_DELETE])
_DNA = bytes([OP_DELETE_AND_ADD])
_CLEAR = bytes([OP_CLEAR])
_TYPE_ID = bytes([TYPE_ID])

num = encode_number


def type_id_suffix(value: Any, declared: type, type_ids: dict[type, int]) -> bytes:
    """``d5 <typeId>`` when an instance's class differs from the declared one (inheritance)."""
    if value.__class__ is declared:
        return b""
    return _TYPE_ID + num(type_ids[value.__class__])


def write_full(node: Node, out: bytearray, type_ids: dict[type, int], children: list[Node]) -> None:
    """Every populated slot of ``node`` as ADD (no SWITCH header); child structures go to ``children``."""
    ref = node.ref
    kind = node.kind
    if kind == SCHEMA_NODE:
        d = ref.__dict__
        for name, add_op, encode, fd in ref._gr_wire:
            value = d[name]
            if value is None:
                continue
            out += add_op
            if encode is not None:
                out += encode(value)
                continue
            child = value._gr
            out += child.rid
            if fd.schema_cls is not None and value.__class__ is not fd.schema_cls:
                out += type_id_suffix(value, fd.schema_cls, type_ids)
            children.append(child)
        return
    spec = ref._gr_spec.child
    items = ref._gr_items
    if kind == MAP_NODE:
        heads = ref._gr_heads
        if spec.kind == REF:
            declared = spec.schema
            for key, value in items.items():
                head = heads.get(key)
                if head is None:
                    head = _entry_head(ref, key)
                out += _ADD
                out += head
                child = value._gr
                out += child.rid
                if value.__class__ is not declared:
                    out += type_id_suffix(value, declared, type_ids)
                children.append(child)
        else:
            encode = spec.primitive.encode
            for key, value in items.items():
                head = heads.get(key)
                if head is None:
                    head = _entry_head(ref, key)
                out += _ADD
                out += head
                out += encode(value)
        return
    _write_array_adds(items, 0, out, spec, type_ids, children)


def _entry_head(ref: Any, key: str) -> bytes:
    """A map entry's index and key as ADD writes them, cached until the key is deleted."""
    head = ref._gr_heads[key] = num(ref._gr_index[key]) + encode_string(key)
    return head


def _write_array_adds(items: list[Any], start: int, out: bytearray, spec: Any,
                      type_ids: dict[type, int], children: list[Node]) -> None:
    if spec.kind == REF:
        declared = spec.schema
        for i in range(start, len(items)):
            value = items[i]
            out += _ADD
            out += num(i)
            child = value._gr
            out += child.rid
            if value.__class__ is not declared:
                out += type_id_suffix(value, declared, type_ids)
            children.append(child)
    else:
        encode = spec.primitive.encode
        for i in range(start, len(items)):
            out += _ADD
            out += num(i)
            out += encode(items[i])


def write_pending(node: Node, pending: dict[int, int], out: bytearray, type_ids: dict[type, int],
                  children: list[Node]) -> None:
    """The operations that bring a client from the markers of ``pending`` to the current values."""
    ref = node.ref
    kind = node.kind
    if kind == SCHEMA_NODE:
        _schema_pending(node, pending, out, type_ids, children)
        return
    spec = ref._gr_spec.child
    is_ref = spec.kind == REF
    declared = spec.schema
    encode = None if is_ref else spec.primitive.encode
    if kind == MAP_NODE:
        keys = ref._gr_keys
        items = ref._gr_items
        for idx, marker in pending.items():
            key = keys.get(idx)
            if key is None:
                if marker != ABSENT:
                    out += _DELETE
                    out += num(idx)
                continue
            value = items[key]
            if is_ref:
                child = value._gr
                if marker == child.refid:
                    continue
                out += _ADD if marker == ABSENT else _DNA
                out += ref._gr_heads.get(key) or _entry_head(ref, key)
                out += child.rid
                if value.__class__ is not declared:
                    out += type_id_suffix(value, declared, type_ids)
                children.append(child)
            elif marker == ABSENT:
                out += _ADD
                out += ref._gr_heads.get(key) or _entry_head(ref, key)
                out += encode(value)
            else:
                out += _REPLACE
                out += num(idx)
                out += encode(value)
        return
    items = ref._gr_items
    if node.cleared:
        out += _CLEAR
        _write_array_adds(items, 0, out, spec, type_ids, children)
        return
    n = len(items)
    for i, marker in pending.items():
        if i >= n:
            out += _DELETE
            out += num(i)
            continue
        value = items[i]
        if is_ref:
            child = value._gr
            if marker == child.refid:
                continue
            out += _DNA
            out += num(i)
            out += child.rid
            if value.__class__ is not declared:
                out += type_id_suffix(value, declared, type_ids)
            children.append(child)
        else:
            out += _REPLACE
            out += num(i)
            out += encode(value)
    if n > node.len0:
        _write_array_adds(items, node.len0, out, spec, type_ids, children)


def schema_pending(node: Node, pending: dict[int, int], out: bytearray,
                   type_ids: dict[type, int], children: list[Node]) -> None:
    """write_pending for a Schema instance; the reference for ``_speedups.schema_pending``."""
    ref = node.ref
    d = ref.__dict__
    wire = ref._gr_wire
    for index, marker in pending.items():
        name, add_op, encode, fd = wire[index]
        value = d[name]
        if value is None:
            if marker != ABSENT:
                out += fd.delete_op
        elif encode is not None:
            out += add_op
            out += encode(value)
        else:
            child = value._gr
            if marker == child.refid:
                continue
            out += add_op if marker == ABSENT else fd.dna_op
            out += child.rid
            if fd.schema_cls is not None and value.__class__ is not fd.schema_cls:
                out += type_id_suffix(value, fd.schema_cls, type_ids)
            children.append(child)


def _emit_new(node: Node, out: bytearray, type_ids: dict[type, int]) -> None:
    """Write a structure attached this tick, then the new structures it introduces."""
    node.new = False
    start = len(out)
    if start or node.refid:
        out += node.head
    mark = len(out)
    children: list[Node] = []
    write_full(node, out, type_ids, children)
    if len(out) == mark:
        del out[start:]
    for child in children:
        if child.new:
            _emit_new(child, out, type_ids)


def tracker_of(state: Any) -> ChangeTracker:
    """The ChangeTracker of a tracked state (encoders accept either)."""
    if isinstance(state, ChangeTracker):
        return state
    node = getattr(state, "_gr", None)
    if isinstance(node, Node) and node.tracker is not None and node.refid == 0:
        return node.tracker
    raise TypeError(f"{type(state).__name__} is not a tracked state: create a ChangeTracker(state) "
                    f"(a room's SchemaSerializer does) before encoding it")


def encode_patch(state: ChangeTracker | Any) -> bytes:
    """The ROOM_STATE_PATCH body for every client, and the start of a new tick.

    ``state`` is a ChangeTracker or the tracked root state. Empty bytes mean nothing changed.
    Raises EncodeError naming the structure on failure (the tick's changes are dropped then:
    send full states to resynchronise clients).
    """
    tracker = tracker_of(state)
    where: list[Node | None] = [None]
    if _encode_patch is not None:    # the same steps in C, the end of the tick included
        try:
            return _encode_patch(tracker, where)
        except Exception as exc:
            tracker.end_tick(reset_pending=True)
            raise EncodeError(f"cannot encode the patch{_where(where[0])}: {exc!r}") from exc
    out = bytearray()
    done = False
    try:
        root = tracker.state._gr
        if root.new:
            _emit_new(root, out, tracker.type_ids)
        _patch_loop(tracker, out, where)
        done = True
    except Exception as exc:
        raise EncodeError(f"cannot encode the patch{_where(where[0])}: {exc!r}") from exc
    finally:
        tracker.end_tick(reset_pending=not done)   # the loop already reset what it encoded
    return bytes(out)


def patch_loop(tracker: ChangeTracker, out: bytearray, where: list[Node | None]) -> None:
    """The operations of every structure touched this tick, in ``tracker.queue`` order.

    The reference for ``_speedups.patch_loop``, which does the same: each structure through
    ``write_pending`` (the C loop writes Schema instances itself, with the code behind
    ``_speedups.schema_pending``), then the structures it introduced through ``_emit_new``.
    ``where[0]`` is the node being written, for the error message.
    """
    type_ids = tracker.type_ids
    children: list[Node] = []
    for node in tracker.queue:
        where[0] = node
        pending = node.pending
        if pending is None or node.new or node.tracker is not tracker:
            continue
        node.pending = None
        node.full = None           # its full-state block changed (changes.py)
        start = len(out)
        if start or node.refid:
            out += node.head
        mark = len(out)
        write_pending(node, pending, out, type_ids, children)
        node.cleared = False
        if len(out) == mark:
            del out[start:]
        if children:
            for child in children:
                if child.new:
                    _emit_new(child, out, type_ids)
            children.clear()


def encode_all(state: ChangeTracker | Any, order: Dialect | str = Dialect.V5) -> bytes:
    """The ROOM_STATE body: the whole current state, independent of pending changes.

    ``order`` only picks which valid structure order to use: V5 is depth-first (the 0.18 server's
    bytes), V3 is by refId (the 0.16 server's bytes); every official decoder accepts both.
    """
    tracker = tracker_of(state)
    dialect = Dialect.parse(order)
    if _encode_all_v5 is not None and dialect == Dialect.V5:   # the same traversal in C
        where: list[Node | None] = [None]
        try:
            return _encode_all_v5(tracker, where)
        except Exception as exc:
            raise EncodeError(f"cannot encode the full state{_where(where[0])}: {exc!r}") from exc
    parts: list[bytes] = []
    append = parts.append
    type_ids = tracker.type_ids
    root = tracker.state._gr
    node = root
    try:
        if dialect == Dialect.V3:
            seen = {root.refid}
            heap: list[tuple[int, Node]] = [(root.refid, root)]
            while heap:
                _, node = heapq.heappop(heap)
                full = node.full
                if full is None or node.pending is not None:
                    full = full_block(node, type_ids)
                block, children = full
                if block:
                    if parts or node.refid:
                        append(node.head)
                    append(block)
                for child in children:
                    if child.refid not in seen:
                        seen.add(child.refid)
                        heapq.heappush(heap, (child.refid, child))
        else:
            seen = {root.refid}
            stack: list[Node] = [root]
            pop = stack.pop
            push = stack.append
            while stack:
                node = pop()
                full = node.full
                if full is None or node.pending is not None:
                    full = full_block(node, type_ids)
                block, children = full
                if block:
                    if parts or node.refid:
                        append(node.head)
                    append(block)
                if children:
                    for child in reversed(children):
                        if child.refid not in seen:
                            seen.add(child.refid)
                            push(child)
    except Exception as exc:
        raise EncodeError(f"cannot encode the full state{_where(node)}: {exc!r}") from exc
    return b"".join(parts)


_NO_CHILDREN: list[Node] = []


def full_block(node: Node, type_ids: dict[type, int]) -> tuple[bytes, list[Node]]:
    """``node``'s slots as ADD (no SWITCH header) and its child structures, cached on the node.

    The cache is kept only while the node has no pending operations (see changes.py for why it
    is then always current); the returned list must not be modified.
    """
    if node.kind:                      # MAP_NODE / ARRAY_NODE (SCHEMA_NODE is 0)
        out = bytearray()
        children: list[Node] = []
        write_full(node, out, type_ids, children)
        full = (bytes(out), children or _NO_CHILDREN)
    else:                              # SCHEMA_NODE
        full = _schema_block(node, type_ids)
    if node.pending is None and not node.new:
        node.full = full
    return full


def schema_block(node: Node, type_ids: dict[type, int]) -> tuple[bytes, list[Node]]:
    """A Schema instance's block for full_block (write_full's loop, specialised), uncached.

    The reference for ``_speedups.schema_block``.
    """
    ref = node.ref
    d = ref.__dict__
    parts: list[bytes] = []
    append = parts.append
    children = _NO_CHILDREN
    for name, add_op, number, encode, fd in ref._gr_patch:
        value = d[name]
        if value is None:
            continue
        append(add_op)
        if number is not None:
            if number and value.__class__ is int and 0 <= value < _INT_TABLE_SIZE:
                append(_INT_BYTES[value])
            else:
                append(encode(value))
            continue
        child = value._gr
        append(child.rid)
        if fd.schema_cls is not None and value.__class__ is not fd.schema_cls:
            append(type_id_suffix(value, fd.schema_cls, type_ids))
        if children is _NO_CHILDREN:
            children = []
        children.append(child)
    return b"".join(parts), children


def _where(node: Node | None) -> str:
    if node is None:
        return ""
    return f" at {type(node.ref).__name__} refId {node.refid}"


if speedups.compiled is not None:
    speedups.compiled.configure(Node, write_pending, _emit_new, type_id_suffix, _NO_CHILDREN,
                                ABSENT, PRESENT, full_block, fast_string)
    speedups.compiled.configure_collections(_entry_head, fast_number, REF, OP_ADD, OP_REPLACE,
                                            OP_DELETE, OP_DELETE_AND_ADD, OP_CLEAR)
    _patch_loop = speedups.compiled.patch_loop
    _encode_patch = speedups.compiled.encode_patch
    _encode_all_v5 = speedups.compiled.encode_all_v5
    _schema_block = speedups.compiled.schema_block
    _schema_pending = speedups.compiled.schema_pending
else:
    _patch_loop = patch_loop
    _encode_patch = None
    _encode_all_v5 = None
    _schema_block = schema_block
    _schema_pending = schema_pending
