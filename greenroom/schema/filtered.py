"""Per-client full states and patches for states with private fields (see ``view.py``).

Each client's decoder must hold exactly the structures it can see, with reference counts that
match, or it warns and drops data. So per client we keep ``view._open``: the private slots
(``refId << 32 | slot``) the client held after its last frame. A patch then is, per client:

1. the tick's operations on structures the client holds (a structure is held when every private
   link on its path from the root is open), with private slots compared to ``_open``: newly
   visible → ADD and the whole subtree; no longer visible → DELETE (the client then drops the
   subtree itself); still visible → the ordinary operation;
2. the same comparison for the private slots touched by the view's own changes (add/remove).

Slots of structures that need no filtering are encoded once per frame and reused for every client.
"""

from __future__ import annotations

import heapq
from typing import Any

from ..protocol.dialect import Dialect
from ..protocol.primitives import encode_number, encode_string
from .changes import ABSENT, MAP_NODE, SCHEMA_NODE, ChangeTracker, Node
from .encoder import _ADD, _DELETE, _DNA, type_id_suffix, write_full, write_pending
from .errors import EncodeError
from .fields import GATE_FIELD, REF
from .view import StateView, entry_visible, field_visible

num = encode_number


def _has_gates(node: Node) -> bool:
    if node.kind == SCHEMA_NODE:
        return bool(node.ref._gr_gated_fields)
    return node.kind == MAP_NODE and node.gate is not None


class _Frame:
    """One client's frame under construction."""

    __slots__ = ("tracker", "view", "open", "delta", "full", "out", "cur", "shared")

    def __init__(self, tracker: ChangeTracker, view: StateView | None, shared: dict[int, Any]) -> None:
        self.tracker = tracker
        self.view = view
        self.open: set[int] = view._open if view is not None else set()
        self.delta: dict[int, bool] = {}
        self.full: set[int] = set()
        self.out = bytearray()
        self.cur = 0          # the decoder starts on the root
        self.shared = shared  # refId -> (bytes, children): blocks identical for every client

    def switch(self, node: Node) -> None:
        if self.cur != node.refid:
            self.out += node.head
            self.cur = node.refid

    def was_open(self, key: int) -> bool:
        value = self.delta.get(key)
        return (key in self.open) if value is None else value

    def held(self, node: Node) -> bool:
        """Did the client hold ``node`` when this frame started?"""
        child, parent = node, node.parent
        while parent is not None:
            if parent.kind == SCHEMA_NODE:
                gated = parent.ref._gr_fields[child.pindex].gate == GATE_FIELD
            else:
                gated = parent.kind == MAP_NODE and parent.gate is not None
            if gated and (parent.refid << 32 | child.pindex) not in self.open:
                return False
            child, parent = parent, parent.parent
        return True

    # -- whole structures ------------------------------------------------------------------------

    def emit_full(self, node: Node) -> None:
        """Send ``node`` and everything visible below it (the client has none of it)."""
        if node.refid in self.full:
            return
        self.full.add(node.refid)
        children: list[Node] = []
        if _has_gates(node):
            self._write_full_filtered(node, children)
        else:
            cached = self.shared.get(("full", node.refid))
            if cached is None:
                block = bytearray()
                write_full(node, block, self.tracker.type_ids, children)
                cached = self.shared[("full", node.refid)] = (bytes(block), children)
            block, children = cached
            if block:
                self.switch(node)
                self.out += block
        for child in children:
            self.emit_full(child)

    def _write_full_filtered(self, node: Node, children: list[Node]) -> None:
        ref = node.ref
        view = self.view
        type_ids = self.tracker.type_ids
        if node.kind == SCHEMA_NODE:
            d = ref.__dict__
            for fd in ref._gr_fields:
                value = d[fd.name]
                if fd.gate == GATE_FIELD:
                    visible = field_visible(view, ref, fd.tag)
                    self.delta[node.refid << 32 | fd.index] = visible
                    if not visible:
                        continue
                if value is None:
                    continue
                self.switch(node)
                self._write_field(fd, value, fd.add_op, children)
            return
        gate = node.gate
        owner = node.parent.ref
        declared = ref._gr_spec.child.schema
        index = ref._gr_index
        for key, value in ref._gr_items.items():
            idx = index[key]
            visible = entry_visible(view, value, owner, gate.tag)
            self.delta[node.refid << 32 | idx] = visible
            if visible:
                self.switch(node)
                self._write_entry(_ADD, idx, key, value, declared, type_ids, children)

    def _write_field(self, fd: Any, value: Any, op: bytes, children: list[Node]) -> None:
        out = self.out
        out += op
        if fd.is_ref:
            child = value._gr
            out += child.rid
            if fd.schema_cls is not None and value.__class__ is not fd.schema_cls:
                out += type_id_suffix(value, fd.schema_cls, self.tracker.type_ids)
            children.append(child)
        else:
            out += fd.encode(value)

    def _write_entry(self, op: bytes, idx: int, key: str, value: Any, declared: type,
                     type_ids: dict[type, int], children: list[Node]) -> None:
        out = self.out
        out += op
        out += num(idx)
        out += encode_string(key)
        child = value._gr
        out += child.rid
        if value.__class__ is not declared:
            out += type_id_suffix(value, declared, type_ids)
        children.append(child)

    # -- the tick's operations -------------------------------------------------------------------

    def emit_pending(self, node: Node, pending: dict[int, int]) -> None:
        children: list[Node] = []
        reveals: list[Node] = []
        if _has_gates(node):
            if node.kind == SCHEMA_NODE:
                self._schema_pending(node, pending, children, reveals)
            else:
                self._map_pending(node, pending, children, reveals)
        else:
            cached = self.shared.get(("ops", node.refid))
            if cached is None:
                block = bytearray()
                write_pending(node, pending, block, self.tracker.type_ids, children)
                cached = self.shared[("ops", node.refid)] = (bytes(block), children)
            block, children = cached
            if block:
                self.switch(node)
                self.out += block
        for child in children:
            if child.new:
                self.emit_full(child)
        for child in reveals:
            self.emit_full(child)

    def _schema_pending(self, node: Node, pending: dict[int, int], children: list[Node],
                        reveals: list[Node]) -> None:
        ref = node.ref
        d = ref.__dict__
        fields = ref._gr_fields
        for index, marker in pending.items():
            fd = fields[index]
            value = d[fd.name]
            if fd.gate == GATE_FIELD:
                key = node.refid << 32 | index
                was = self.was_open(key)
                now = field_visible(self.view, ref, fd.tag)
                self.delta[key] = now
                if not now:
                    if was and marker != ABSENT:
                        self.switch(node)
                        self.out += fd.delete_op
                    continue
                if not was:
                    if value is not None:
                        self.switch(node)
                        self._write_field(fd, value, fd.add_op, reveals)
                    continue
            if value is None:
                if marker != ABSENT:
                    self.switch(node)
                    self.out += fd.delete_op
                continue
            if fd.is_ref:
                if marker == value._gr.refid:
                    continue
                self.switch(node)
                self._write_field(fd, value, fd.add_op if marker == ABSENT else fd.dna_op, children)
            else:
                self.switch(node)
                self._write_field(fd, value, fd.add_op, children)

    def _map_pending(self, node: Node, pending: dict[int, int], children: list[Node],
                     reveals: list[Node]) -> None:
        ref = node.ref
        keys = ref._gr_keys
        items = ref._gr_items
        owner = node.parent.ref
        tag = node.gate.tag
        declared = ref._gr_spec.child.schema
        type_ids = self.tracker.type_ids
        for idx, marker in pending.items():
            link = node.refid << 32 | idx
            was = self.was_open(link) and marker != ABSENT
            key = keys.get(idx)
            value = items[key] if key is not None else None
            now = value is not None and entry_visible(self.view, value, owner, tag)
            self.delta[link] = now
            if not now:
                if was:
                    self.switch(node)
                    self.out += _DELETE
                    self.out += num(idx)
                continue
            if not was:
                self.switch(node)
                self._write_entry(_ADD, idx, key, value, declared, type_ids, reveals)
            elif marker != value._gr.refid:
                self.switch(node)
                self._write_entry(_DNA, idx, key, value, declared, type_ids, children)

    # -- the view's own changes ------------------------------------------------------------------

    def emit_view_changes(self, changed: list[Any]) -> None:
        tracker = self.tracker
        for obj in changed:
            node = obj._gr
            if node.tracker is not tracker or node.new or node.refid in self.full:
                continue
            cls = type(obj)
            if (cls._gr_gated_fields or cls._gr_entry_gates) and self.held(node):
                for fd in cls._gr_gated_fields:
                    self._reconsider_field(node, fd)
                d = obj.__dict__
                for fd in cls._gr_entry_gates:
                    collection = d[fd.name]
                    if collection is None:
                        continue
                    mnode = collection._gr
                    if mnode.refid in self.full:
                        continue
                    index = collection._gr_index
                    for key, value in collection._gr_items.items():
                        self._reconsider_entry(mnode, index[key], key, value)
            parent = node.parent
            if (parent is not None and parent.kind == MAP_NODE and parent.gate is not None
                    and parent.refid not in self.full and self.held(parent)):
                key = parent.ref._gr_keys.get(node.pindex)
                if key is not None:
                    self._reconsider_entry(parent, node.pindex, key, obj)

    def _reconsider_field(self, node: Node, fd: Any) -> None:
        key = node.refid << 32 | fd.index
        now = field_visible(self.view, node.ref, fd.tag)
        if self.was_open(key) == now:
            return
        self.delta[key] = now
        value = node.ref.__dict__[fd.name]
        if value is None:
            return
        self.switch(node)
        if now:
            reveals: list[Node] = []
            self._write_field(fd, value, fd.add_op, reveals)
            for child in reveals:
                self.emit_full(child)
        else:
            self.out += fd.delete_op

    def _reconsider_entry(self, mnode: Node, idx: int, key: str, value: Any) -> None:
        link = mnode.refid << 32 | idx
        now = entry_visible(self.view, value, mnode.parent.ref, mnode.gate.tag)
        if self.was_open(link) == now:
            return
        self.delta[link] = now
        self.switch(mnode)
        if now:
            reveals: list[Node] = []
            self._write_entry(_ADD, idx, key, value, mnode.ref._gr_spec.child.schema,
                              self.tracker.type_ids, reveals)
            for child in reveals:
                self.emit_full(child)
        else:
            self.out += _DELETE
            self.out += num(idx)

    def commit(self) -> None:
        """The client now holds what this frame sent."""
        opened = self.open
        for key, value in self.delta.items():
            if value:
                opened.add(key)
            else:
                opened.discard(key)


def _bind(view: StateView | None, tracker: ChangeTracker) -> None:
    if view is not None and view._tracker is not tracker:
        view._tracker = tracker
        view._open = set()


class _Chunk:
    """Consecutive blocks that every client holding them receives identically."""

    __slots__ = ("data", "last", "full")

    def __init__(self, data: bytes, last: int, full: list[int]) -> None:
        self.data = data
        self.last = last
        self.full = full


def _may_gate(tracker: ChangeTracker, node: Node) -> bool:
    """Could anything at or below ``node`` be private (so a new subtree needs per-client care)?"""
    if node.kind == SCHEMA_NODE:
        return tracker.may_gate(type(node.ref))
    if node.kind == MAP_NODE and node.gate is not None:
        return True
    child = node.ref._gr_spec.child
    return child.kind == REF and tracker.may_gate(child.schema)


def _plan(tracker: ChangeTracker) -> list[Any]:
    """The tick's work, split once per frame: shared chunks and nodes each client must judge.

    A touched structure is shared when no private link leads to it, its changed slots are not
    private and the structures it introduces hold nothing private: then its bytes are the same
    for every client and are encoded once.
    """
    plan: list[Any] = []
    type_ids = tracker.type_ids
    ungated: dict[int, bool] = {}
    chunk = bytearray()
    chunk_full: list[int] = []
    last = 0

    def path_ungated(node: Node) -> bool:
        """No private link from the root to ``node`` (parents' answers are kept: they repeat)."""
        parent = node.parent
        if parent is None:
            return True
        if parent.kind == SCHEMA_NODE:
            if parent.ref._gr_fields[node.pindex].gate == GATE_FIELD:
                return False
        elif parent.gate is not None:
            return False
        known = ungated.get(parent.refid)
        if known is None:
            known = ungated[parent.refid] = path_ungated(parent)
        return known

    def emit_new(node: Node) -> None:
        nonlocal last
        chunk_full.append(node.refid)
        children: list[Node] = []
        block = bytearray()
        write_full(node, block, type_ids, children)
        if block:
            chunk.extend(node.head)
            chunk.extend(block)
            last = node.refid
        for child in children:
            emit_new(child)

    def flush() -> None:
        nonlocal chunk, chunk_full
        if chunk or chunk_full:
            plan.append(_Chunk(bytes(chunk), last, chunk_full))
            chunk, chunk_full = bytearray(), []

    root = tracker.state._gr
    if root.new:
        plan.append(root)
    children: list[Node] = []
    for node in tracker.queue:
        pending = node.pending
        if pending is None or node.new or node.tracker is not tracker:
            continue
        if node.kind == SCHEMA_NODE:
            private = not node.ref._gr_gated_indexes.isdisjoint(pending)
        else:
            private = node.kind == MAP_NODE and node.gate is not None
        if not private and path_ungated(node):
            # written straight into the chunk, taken back if a new child may hold private data
            start = len(chunk)
            chunk += node.head
            mark = len(chunk)
            write_pending(node, pending, chunk, type_ids, children)
            if not any(child.new and _may_gate(tracker, child) for child in children):
                if len(chunk) == mark:
                    del chunk[start:]
                else:
                    last = node.refid
                for child in children:
                    if child.new:
                        emit_new(child)
                children.clear()
                continue
            del chunk[start:]
            children.clear()
        flush()
        plan.append((node, pending))
    flush()
    return plan


def encode_patches_filtered(tracker: ChangeTracker, views: list[StateView | None]) -> list[bytes]:
    """One patch body per entry of ``views`` (None: a client without a view sees shared data only)."""
    shared: dict[Any, Any] = {}
    bodies: list[bytes] = []
    anonymous: bytes | None = None
    try:
        plan = _plan(tracker)
        dead = set(tracker.dead_refids)
        for view in views:
            if view is None and anonymous is not None:
                bodies.append(anonymous)
                continue
            _bind(view, tracker)
            if view is not None and dead:
                view._open = {k for k in view._open if k >> 32 not in dead}
            frame = _Frame(tracker, view, shared)
            for entry in plan:
                if entry.__class__ is _Chunk:
                    data = entry.data
                    if data:
                        if not frame.out and data[:2] == b"\xff\x00":
                            data = data[2:]      # the decoder starts on the root
                        frame.out += data
                        frame.cur = entry.last
                    frame.full.update(entry.full)
                elif entry.__class__ is Node:
                    frame.emit_full(entry)       # the root, when the state is new
                else:
                    node, pending = entry
                    if node.refid not in frame.full and frame.held(node):
                        frame.emit_pending(node, pending)
            if view is not None and view._changed:
                frame.emit_view_changes(list(view._changed.values()))
            frame.commit()
            body = bytes(frame.out)
            if view is None:
                anonymous = body
            bodies.append(body)
    except Exception as exc:
        raise EncodeError(f"cannot encode the filtered patch: {exc!r}") from exc
    finally:
        for view in views:
            if view is not None:
                view._changed.clear()
        tracker.dead_refids = []
        tracker.end_tick()
    return bodies


def encode_all_filtered(tracker: ChangeTracker, view: StateView | None,
                        order: Dialect | str = Dialect.V5) -> bytes:
    """The full state as ``view`` shows it; resets the view's bookkeeping to match."""
    _bind(view, tracker)
    frame = _Frame(tracker, view, {})
    frame.open = set()
    root = tracker.state._gr
    frame.full.add(root.refid)
    try:
        if Dialect.parse(order) == Dialect.V3:
            heap: list[tuple[int, Node]] = [(root.refid, root)]
            while heap:
                _, node = heapq.heappop(heap)
                for child in _full_block(frame, node):
                    if child.refid not in frame.full:
                        frame.full.add(child.refid)
                        heapq.heappush(heap, (child.refid, child))
        else:
            stack = [root]
            while stack:
                node = stack.pop()
                for child in reversed(_full_block(frame, node)):
                    if child.refid not in frame.full:
                        frame.full.add(child.refid)
                        stack.append(child)
    except Exception as exc:
        raise EncodeError(f"cannot encode the filtered full state: {exc!r}") from exc
    if view is not None:
        view._open = {key for key, value in frame.delta.items() if value}
    return bytes(frame.out)


def _full_block(frame: _Frame, node: Node) -> list[Node]:
    children: list[Node] = []
    if _has_gates(node):
        frame._write_full_filtered(node, children)
    else:
        block = bytearray()
        write_full(node, block, frame.tracker.type_ids, children)
        if block:
            frame.switch(node)
            frame.out += block
    return children

