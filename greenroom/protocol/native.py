"""Which implementation of the wire's hot paths runs: the compiled one or the Python reference.

``_wire`` (C, built at install time when a compiler is there) parses the usual ROOM_DATA frame
and encodes the usual reply; frames.py's Python functions are the reference, and the C code hands
them every frame or value outside its subset, so both give the same results and the same errors.
``GREENROOM_PURE_PYTHON=1`` runs the reference only (as for the schema encoder); ``compiled`` is
None then, and also when the extension was not built.
"""

from __future__ import annotations

import os
from types import ModuleType


def switched_off() -> bool:
    """Did the environment ask for the Python reference (``GREENROOM_PURE_PYTHON=1``)?"""
    return os.environ.get("GREENROOM_PURE_PYTHON", "").strip() not in ("", "0")


compiled: ModuleType | None
if switched_off():
    compiled = None
else:
    try:
        from . import _wire as compiled
    except ImportError:  # built without a C compiler: the Python reference runs
        compiled = None
