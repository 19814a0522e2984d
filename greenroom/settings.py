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
#: Defaults of a process's registry beat and its listings' lease (``GREENROOM_HEARTBEAT``,
#: ``GREENROOM_LEASE``), here for the same reason.
HEARTBEAT = 2.0
LEASE = 10.0
#: Default bound on a matchmaking request's body (``GREENROOM_MAX_BODY_SIZE``, bytes; over it:
#: 413), greenroom/web/http.py.
MAX_BODY_SIZE = 64 * 1024


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
    return _whole_number(name, raw, f"default {default}") if raw else default


def env_limit(name: str) -> int | None:
    """The positive whole number in ``$name``, else None (no limit)."""
    raw = os.environ.get(name)
    return _whole_number(name, raw, "unset: no limit") if raw else None


def positive_whole_number(raw: str) -> int:
    """``raw`` as a whole number of at least 1; ValueError otherwise (the caller names it)."""
    value = int(raw)
    if value < 1:
        raise ValueError(f"{value} is not positive")
    return value


def _whole_number(name: str, raw: str, when_unset: str) -> int:
    try:
        return positive_whole_number(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r}: expected a positive whole number "
                                 f"({when_unset})") from None


def check_lease(heartbeat: float, lease: float) -> None:
    """A lease shorter than two heartbeats expires between two renewals of a healthy process,
    so its rooms would vanish from the listings while they play on."""
    if lease < 2 * heartbeat:
        raise ConfigurationError(
            f"lease ({lease:g}s, GREENROOM_LEASE) must cover at least two heartbeats "
            f"({heartbeat:g}s each, GREENROOM_HEARTBEAT): set a lease of {2 * heartbeat:g}s or more")


def check_environment() -> None:
    """Every setting the environment holds for a Server, checked where gevent is not loaded
    (the cluster's master), so that a bad one is one line there and not in every worker."""
    env_limit("GREENROOM_MAX_ROOMS")
    env_limit("GREENROOM_MAX_CLIENTS")
    env_seconds("GREENROOM_HEADER_TIMEOUT", HEADER_TIMEOUT)
    env_count("GREENROOM_MAX_CONNECTIONS", MAX_CONNECTIONS)
    check_lease(env_seconds("GREENROOM_HEARTBEAT", HEARTBEAT), env_seconds("GREENROOM_LEASE", LEASE))
    env_count("GREENROOM_MAX_BODY_SIZE", MAX_BODY_SIZE)
    from .web.origins import OriginPolicy  # standard library only, like this module

    OriginPolicy.from_environment()
