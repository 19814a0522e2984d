"""Settings read from the environment, and the error a bad one raises.

A bad value is an operator's typo, not a bug: ``greenroom serve`` turns a ``ConfigurationError``
into one line naming the setting and the values it accepts, and exits 2, where a traceback used
to be (``GREENROOM_HEARTBEAT=abc``, a lease shorter than two heartbeats).
"""

from __future__ import annotations

import os

#: Defaults of the connection limits (greenroom/web/limits.py), here so that the cluster's
#: master, which never imports gevent, can check them.
HEADER_TIMEOUT = 10.0
MAX_CONNECTIONS = 10_000


class ConfigurationError(ValueError):
    """A setting (an argument or an environment variable) has a value greenroom cannot use."""


def env_seconds(name: str, default: float) -> float:
    """The positive number of seconds in ``$name``, else ``default``."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ConfigurationError(f"{name}={raw!r}: expected a positive number of seconds "
                                 f"(default {default:g})")
    return value


def env_count(name: str, default: int) -> int:
    """The positive whole number in ``$name``, else ``default``."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigurationError(f"{name}={raw!r}: expected a positive whole number "
                                 f"(default {default})")
    return value
