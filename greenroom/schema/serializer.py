"""``SchemaSerializer``: the "schema" serializer a Room drives (see greenroom/serializer.py).

Call order the serializer relies on (PROTOCOL §4.1), per patch tick and per join:

1. ``encode_patches(joined_clients)`` — every tick (also with no clients, so changes never pile
   up), and once more right before step 2 when a client has just acknowledged JOIN_ROOM;
2. ``full_state(new_client)`` — then add the client to ``joined_clients``.

A full state already contains the tick's pending operations; a client that received one must
not get a patch replaying them (an array ADD replayed is an insert in schema 5). Flushing
pending operations to the others first guarantees that.

``client.view`` (a StateView, or absent/None) selects private data, and ``client.dialect``
(``Dialect.V3``/``V5``, default V5) only picks the structure order of full states.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from ..protocol.dialect import Dialect
from ..serializer import Serializer
from .changes import ChangeTracker
from .encoder import encode_all, encode_patch
from .filtered import encode_all_filtered, encode_patches_filtered
from .reflection import reflection_of_types
from .view import StateView


class SchemaSerializer(Serializer):
    """Serializer "schema": room.state becomes the client's room.state."""

    id = "schema"

    def __init__(self, state: Any = None) -> None:
        self.tracker: ChangeTracker | None = None
        self._views: weakref.WeakSet[StateView] = weakref.WeakSet()
        if state is not None:
            self.reset(state)

    def reset(self, state: Any) -> None:
        """Adopt a new state; its current contents count as known (clients get full states).

        Assigning the state object already in use changes nothing. A *different* state object
        is numbered afresh, so it suits a room whose clients have not joined yet: clients that
        already hold the old state are not migrated.
        """
        if self.tracker is not None and self.tracker.state is state:
            return
        if self.tracker is not None:
            self.tracker.close()
        self.tracker = ChangeTracker(state) if state is not None else None
        if self.tracker is not None:
            self.tracker.discard_changes()

    def handshake(self, dialect: Dialect) -> bytes:
        if self.tracker is None:
            return b""
        return reflection_of_types(tuple(self.tracker.types), Dialect.parse(dialect))

    def full_state(self, client: Any) -> bytes | None:
        tracker = self.tracker
        if tracker is None:
            return None
        order = getattr(client, "dialect", Dialect.V5) or Dialect.V5
        if not tracker.filtered:
            return encode_all(tracker, order)
        view = _view_of(client)
        if view is not None:
            self._views.add(view)
        return encode_all_filtered(tracker, view, order)

    def has_changes(self) -> bool:
        tracker = self.tracker
        if tracker is None:
            return False
        return tracker.has_changes() or any(view._changed for view in self._views)

    def encode_patches(self, clients: Sequence[Any]) -> list[tuple[Sequence[Any], bytes]]:
        tracker = self.tracker
        if tracker is None:
            return []
        if not tracker.filtered:
            body = encode_patch(tracker)
            return [(clients, body)] if body and clients else []
        views = [_view_of(client) for client in clients]
        seen: set[int] = set()
        for view in views:
            if view is not None:
                if id(view) in seen:
                    raise ValueError("two clients share one StateView: give each client its own")
                seen.add(id(view))
                self._views.add(view)
        bodies = encode_patches_filtered(tracker, views)
        groups: dict[bytes, list[Any]] = {}
        for client, body in zip(clients, bodies, strict=True):
            if body:
                groups.setdefault(body, []).append(client)
        return [(members, body) for body, members in groups.items()]


def _view_of(client: Any) -> StateView | None:
    view = getattr(client, "view", None)
    if view is not None and not isinstance(view, StateView):
        raise TypeError(f"client.view must be a StateView, got {type(view).__name__}")
    return view
