"""A decoded state (plain dicts and lists, greenroom.schema.decoder) made Schema instances again,
with the refIds it had on the wire: how a room moving to new code keeps its state.

The clients of a moving room keep their decoders (the SDKs reconnect without a new handshake),
and a decoder reuses the instance it holds for a refId. So the rebuilt state must use the very
refIds the old one used, not a fresh numbering: ``renumber`` gives each structure its old refId
after the new ChangeTracker has attached it, and continues the old numbering for new ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..protocol.primitives import encode_number
from .fields import ARRAY, MAP, PRIM, REF

__all__ = ["rebuild", "renumber"]

RefidOf = Callable[[Any], "int | None"]


def rebuild(cls: type, plain: dict[str, Any], refid_of: RefidOf) -> tuple[Any, list[tuple[Any, int]]]:
    """An instance of ``cls`` holding ``plain``; and (structure, old refId) for each structure."""
    builder = _Builder(refid_of)
    return builder.schema(cls, plain), builder.refids


class _Builder:
    def __init__(self, refid_of: RefidOf) -> None:
        self.refid_of = refid_of
        self.refids: list[tuple[Any, int]] = []
        self._built: dict[int, Any] = {}  # one decoded object referenced twice stays one

    def _note(self, obj: Any, plain: Any) -> None:
        refid = self.refid_of(plain)
        if refid is not None:
            self.refids.append((obj, refid))

    def schema(self, cls: type, plain: dict[str, Any]) -> Any:
        known = self._built.get(id(plain))
        if known is not None:
            return known
        obj = self._built[id(plain)] = cls()
        self._note(obj, plain)
        by_name = cls._gr_by_name
        for name, value in plain.items():
            fd = by_name.get(name)
            if fd is None or value is None:
                continue
            spec = fd.spec
            if spec.kind == PRIM:
                setattr(obj, name, value)
            elif spec.kind == REF:
                setattr(obj, name, self.schema(spec.schema, value))
            elif spec.kind == MAP:
                setattr(obj, name, {k: self.item(spec.child, v) for k, v in value.items()})
                self._note(getattr(obj, name), value)
            elif spec.kind == ARRAY:
                setattr(obj, name, [self.item(spec.child, v) for v in value])
                self._note(getattr(obj, name), value)
        return obj

    def item(self, spec: Any, value: Any) -> Any:
        return self.schema(spec.schema, value) if spec.kind == REF else value


def renumber(tracker: Any, refids: list[tuple[Any, int]], next_refid: int) -> None:
    """Give each structure of ``tracker``'s state its old refId (see the module docstring)."""
    for obj, refid in refids:
        node = obj._gr
        if node.tracker is not tracker:
            continue
        node.refid = refid
        node.rid = encode_number(refid)
        node.head = b"\xff" + node.rid
    tracker.next_refid = max(next_refid, tracker.next_refid)
