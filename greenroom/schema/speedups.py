"""Which implementation of the schema hot paths runs: the compiled one or the Python reference.

``_speedups`` (C, built at install time when a compiler is there) holds the patch loop, a
Schema's full-state block and the primitive-field ``__setattr__``; the Python functions in
encoder.py and schema.py are the reference and produce the same bytes. Set
``GREENROOM_PURE_PYTHON=1`` to run the reference (for debugging, or to compare); ``compiled`` is
None then, and also when the extension was not built.
"""

from __future__ import annotations

from types import ModuleType

from ..protocol.native import switched_off  # one switch for both extensions

__all__ = ["compiled", "implementation", "switched_off"]

compiled: ModuleType | None
if switched_off():
    compiled = None
else:
    try:
        from . import _speedups as compiled
    except ImportError:  # built without a C compiler: the Python reference runs
        compiled = None


def implementation() -> str:
    """``"compiled"`` or ``"python"``: what this process encodes with (shown by ``/health``)."""
    return "compiled" if compiled is not None else "python"
