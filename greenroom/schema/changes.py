"""Change tracking: refIds, attachment of structures to a state, and the pending-operation queue.

Every Schema instance, MapSchema and ArraySchema carries a ``Node``. While the structure is part of
a tracked state the node has a refId and records, per field/entry, what the client held at the
last patch (a *marker*); the encoder turns "marker + current value" into one operation, which is
how PROTOCOL §5.4's merge rules fall out without an operation log:

* marker ``ABSENT``: the slot was empty at the last patch (so ADD, or nothing if empty again);
* marker ``PRESENT``: it held a primitive (so REPLACE/ADD, or DELETE if now empty);
* marker >= 0: it held the structure with that refId (DELETE_AND_ADD when another one is there now).

A structure attached during a tick is *new*: it records nothing and is sent whole, right after the
operation that introduces it. A structure whose last link is removed is detached and forgets its
refId; attached again it gets a fresh one, so a client never sees a refId whose contents it might
hold stale (refIds are never reused).

``Node.full`` caches the structure's full-state block (encoder.full_block). Every mutation of a
tracked, not-new structure creates ``pending``, a block is cached only while ``pending`` is None,
and every place that resets ``pending`` (or attaches/detaches) drops the cache: so a cached block
is always that of the current contents, without any cost on the assignment path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..protocol.primitives import encode_number
from .fields import GATE_ENTRIES, REF, is_schema_class

if TYPE_CHECKING:
    from .fields import Field

SCHEMA_NODE, MAP_NODE, ARRAY_NODE = 0, 1, 2

ABSENT = -1
PRESENT = -2


class Node:
    """Tracking data of one structure; lives at ``structure._gr``."""

    __slots__ = ("ref", "kind", "tracker", "refid", "rid", "head", "refcount", "pending", "new",
                 "parent", "pindex", "len0", "cleared", "gate", "full")

    def __init__(self, ref: Any, kind: int) -> None:
        self.ref = ref
        self.kind = kind
        self.tracker: ChangeTracker | None = None
        self.refid = -1
        self.rid = b""         # the refId as encoded on the wire
        self.head = b""        # SWITCH_TO_STRUCTURE + refId
        self.refcount = 0
        # slot index -> marker; a dict, or for a Schema instance whose first change this tick
        # came through the compiled __setattr__ a _speedups.Pending with the same dict
        # operations (sp_pending.c says why)
        self.pending: dict[int, int] | None = None
        self.new = False
        self.parent: Node | None = None
        self.pindex = -1
        self.len0 = 0          # arrays: length when first touched this tick
        self.cleared = False   # arrays: an operation other than append/set/pop happened this tick
        self.gate: Field | None = None  # maps: the private field whose entries are filtered
        # encode_all's cache: (the slots as ADD, child nodes), see encoder.full_block
        self.full: tuple[bytes, list[Node]] | None = None

    def __repr__(self) -> str:
        return f"<Node {type(self.ref).__name__} refId={self.refid}>"


def child_nodes(node: Node) -> list[tuple[Node, int]]:
    """The structures directly below ``node`` with their slot index (field index, map index, position)."""
    ref = node.ref
    kind = node.kind
    if kind == SCHEMA_NODE:
        d = ref.__dict__
        return [(v._gr, fd.index) for fd in ref._gr_ref_fields if (v := d[fd.name]) is not None]
    spec = ref._gr_spec
    if spec is None or spec.child.kind != REF:
        return []
    if kind == MAP_NODE:
        index = ref._gr_index
        return [(v._gr, index[k]) for k, v in ref._gr_items.items()]
    return [(v._gr, i) for i, v in enumerate(ref._gr_items)]


class ChangeTracker:
    """The tracked state of one room: refId counter, touched structures, structures added this tick."""

    def __init__(self, state: Any) -> None:
        from .reflection import discover_types

        if not is_schema_class(type(state)):
            raise TypeError(f"a room state must be a Schema instance, got {type(state).__name__}")
        self.state = state
        self.root_cls = type(state)
        self.types = discover_types(self.root_cls)
        self.type_ids = {cls: i for i, cls in enumerate(self.types)}
        self.filtered = any(cls._gr_gated_fields or cls._gr_entry_gates for cls in self.types)
        self._may_gate: dict[type, bool] = {}
        self.next_refid = 0
        self.queue: list[Node] = []
        self.new_nodes: list[Node] = []
        self.dead_refids: list[int] = []
        old = state._gr.tracker
        if old is not None:
            old.close()
        validate_attach(self, state._gr)
        attach(self, state._gr, None, -1, None)

    def may_gate(self, cls: type) -> bool:
        """Can an instance of ``cls`` hold private data anywhere below it (subclasses included)?"""
        result = self._may_gate.get(cls)
        if result is None:
            from .reflection import discover_types

            result = self._may_gate[cls] = any(
                c._gr_gated_fields or c._gr_entry_gates for c in discover_types(cls))
        return result

    def close(self) -> None:
        """Stop tracking: the whole state is detached (a room replaced or disposed of its state)."""
        root = self.state._gr
        if root.tracker is self:
            root.refcount = 1
            detach(root)
        self.queue = []
        self.new_nodes = []

    def has_changes(self) -> bool:
        return bool(self.queue) or any(n.new and n.tracker is self for n in self.new_nodes)

    def discard_changes(self) -> None:
        """Forget pending operations: every client is about to receive the full state anyway."""
        for node in self.queue:
            node.pending = None
            node.cleared = False
            node.full = None
        for node in self.new_nodes:
            node.new = False
        self.queue = []
        self.new_nodes = []
        self.dead_refids = []

    def end_tick(self, reset_pending: bool = True) -> None:
        """Called by the encoders once the tick's operations have been turned into bytes."""
        if reset_pending:
            for node in self.queue:
                node.pending = None
                node.cleared = False
                node.full = None
        for node in self.new_nodes:
            node.new = False
        self.queue = []
        self.new_nodes = []


def validate_attach(tracker: ChangeTracker, node: Node) -> None:
    """Refuse, before anything is mutated, a structure that cannot join this state."""
    if node.tracker is tracker:
        if tracker.filtered:
            raise ValueError(
                f"{type(node.ref).__name__} (refId {node.refid}) is already in the state: a state "
                f"with private (view) fields keeps each structure in one place; remove it first")
        return
    if node.tracker is not None:
        raise ValueError(f"this {type(node.ref).__name__} belongs to another room's state")
    if node.kind == SCHEMA_NODE and type(node.ref) not in tracker.type_ids:
        raise TypeError(
            f"{type(node.ref).__name__} is not part of the handshake of {tracker.root_cls.__name__}: "
            f"declare it in a field (or subclass a declared class) before the state is created")
    for child, _ in child_nodes(node):
        validate_attach(tracker, child)


def attach(tracker: ChangeTracker, node: Node, parent: Node | None, pindex: int,
           gate: Field | None) -> None:
    """Link ``node`` below ``parent``; a structure joining the state gets a refId, recursively."""
    if node.tracker is tracker:
        node.refcount += 1
        return
    node.tracker = tracker
    node.refcount = 1
    node.refid = refid = tracker.next_refid
    tracker.next_refid += 1
    node.rid = encode_number(refid)
    node.head = b"\xff" + node.rid
    node.new = True
    tracker.new_nodes.append(node)
    node.parent = parent
    node.pindex = pindex
    node.pending = None
    node.cleared = False
    node.gate = gate
    node.full = None
    ref = node.ref
    if node.kind == SCHEMA_NODE:
        d = ref.__dict__
        for fd in ref._gr_ref_fields:
            value = d[fd.name]
            if value is not None:
                attach(tracker, value._gr, node, fd.index,
                       fd if fd.gate == GATE_ENTRIES else None)
    else:
        for child, index in child_nodes(node):
            attach(tracker, child, node, index, None)


def detach(node: Node) -> None:
    """Unlink ``node`` from one parent; with no parent left it leaves the state, recursively."""
    node.refcount -= 1
    if node.refcount > 0:
        return
    tracker = node.tracker
    if tracker is not None and tracker.filtered:
        tracker.dead_refids.append(node.refid)
    node.tracker = None
    node.refid = -1
    node.pending = None
    node.new = False
    node.parent = None
    node.cleared = False
    node.gate = None
    node.full = None
    for child, _ in child_nodes(node):
        if child.tracker is tracker:
            detach(child)

