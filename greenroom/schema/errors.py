"""Exceptions of the schema package, split by when they surface.

Mistakes in a class body must stop the program at import time, wrong values must fail at the
assignment that introduced them (where the traceback points at the culprit), and anything that
still goes wrong while encoding must name the structure so the room's log is actionable.
"""

from __future__ import annotations


class SchemaDefinitionError(TypeError):
    """A Schema class cannot be described on the wire (bad type, too many fields, ...)."""


class EncodeError(RuntimeError):
    """The state could not be encoded; the message names the structure involved."""


class DecodeError(ValueError):
    """Bytes that a faithful decoder cannot apply (unknown refId, undefined field, ...)."""
