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
Here: the tick's plan (what every client receives alike) and the two entry points; one client's
share of the work is its frame (``filtered_frame.py``).
"""

from __future__ import annotations

import heapq
from typing import Any

from ..protocol.dialect import Dialect
from .changes import MAP_NODE, SCHEMA_NODE, ChangeTracker, Node
from .encoder import write_full, write_pending
from .errors import EncodeError
from .fields import GATE_FIELD, REF
from .filtered_frame import _Frame, _has_gates
from .view import StateView


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
