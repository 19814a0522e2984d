"""One client's frame of a state with private fields: the bytes that leave that client's
decoder holding exactly the structures it may see (the rules: ``filtered.py``).

This is the half of filtered encoding done once per client: each private slot is judged against
what the client held after its last frame (``view._open``) and written as ADD, DELETE or the
ordinary operation. The half done once per tick, what every client gets alike, is the plan in
``filtered.py``; blocks of structures without private slots are cached in ``shared`` and reused
by every client's frame.
"""

from __future__ import annotations

from typing import Any

from ..protocol.primitives import encode_number, encode_string
from .changes import ABSENT, MAP_NODE, SCHEMA_NODE, ChangeTracker, Node
from .encoder import _ADD, _DELETE, _DNA, type_id_suffix, write_full, write_pending
from .fields import GATE_FIELD
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
