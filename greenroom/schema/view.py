"""``StateView``: which private parts of the state one client sees.

A field declared with ``view=True`` (or an int tag) is private. The rule, in one sentence: a
private field reaches a client when the client's view holds the instance that owns the field
(added with that tag, for a tagged field); an entry of a private *map of Schema* reaches it when
the view holds the entry itself, or the map's owner. Everything else is shared.

Typical uses::

    class Player(Schema):
        name = field("string")
        hand = field(["string"], view=True)        # only the player's own client sees it

    class State(Schema):
        players = field({"map": Player})
        items = field({"map": Item}, view=True)    # each client sees the items it was shown

    def on_join(self, client, options, auth):
        client.view = StateView()
        client.view.add(player)                    # reveals player.hand to this client
        client.view.add(self.state.items["sword"])

Give each client its own StateView (the serializer keeps the client's view bookkeeping in it).
Changes of a view take effect at the next patch, like changes of the state.
"""

from __future__ import annotations

from typing import Any

from .fields import DEFAULT_TAG, is_schema_class


class StateView:
    """The set of Schema instances (optionally with tags) whose private data a client sees."""

    def __init__(self) -> None:
        self._items: dict[int, tuple[Any, set[int]]] = {}
        self._changed: dict[int, Any] = {}
        self._open: set[int] = set()   # serializer bookkeeping: private slots this client holds
        self._tracker: Any = None

    def add(self, obj: Any, tag: int | None = None) -> StateView:
        """Show ``obj``'s private fields (those with ``tag``, if given) and, if it is an entry of a
        private map, ``obj`` itself."""
        if not is_schema_class(type(obj)):
            raise TypeError(f"StateView.add() takes a Schema instance, got {type(obj).__name__}")
        entry = self._items.get(id(obj))
        if entry is None:
            entry = self._items[id(obj)] = (obj, set())
        entry[1].add(DEFAULT_TAG if tag is None else tag)
        self._changed[id(obj)] = obj
        return self

    def remove(self, obj: Any, tag: int | None = None) -> StateView:
        """Hide ``obj`` again (only what ``tag`` showed, if given)."""
        entry = self._items.get(id(obj))
        if entry is None:
            return self
        if tag is None:
            del self._items[id(obj)]
        else:
            entry[1].discard(tag)
            if not entry[1]:
                del self._items[id(obj)]
        self._changed[id(obj)] = obj
        return self

    def has(self, obj: Any, tag: int | None = None) -> bool:
        entry = self._items.get(id(obj))
        return entry is not None and (tag is None or tag in entry[1])

    def __contains__(self, obj: Any) -> bool:
        return id(obj) in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        for obj, _ in self._items.values():
            self._changed[id(obj)] = obj
        self._items.clear()

    def __repr__(self) -> str:
        return f"<StateView of {len(self._items)} instance(s)>"


def field_visible(view: StateView | None, owner: Any, tag: int) -> bool:
    """Does this view show a private field with ``tag`` of ``owner``?"""
    if view is None:
        return False
    entry = view._items.get(id(owner))
    return entry is not None and (tag == DEFAULT_TAG or tag in entry[1])


def entry_visible(view: StateView | None, value: Any, owner: Any, tag: int) -> bool:
    """Does this view show ``value``, an entry of a private map owned by ``owner``?"""
    if view is None:
        return False
    return id(value) in view._items or field_visible(view, owner, tag)
