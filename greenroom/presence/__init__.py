"""Presence: what rooms and matchmakers share across processes (docs/architecture.md,
"Processes and leases").

Backends are imported on first use, not here: a worker must be able to import greenroom before
``monkey.patch_all()`` has run, and redis-py must only be imported after it (docs/architecture.md,
"Boot order").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..urls import redact_url
from .base import Listener, Presence, PresenceUnavailable

if TYPE_CHECKING:
    from .local import LocalPresence
    from .redis import RedisPresence
    from .rpc import (
        RPC,
        Idempotent,
        RemoteCallError,
        RemoteCallFailed,
        RemoteCallTimeout,
        RemoteProcessGone,
    )

__all__ = [
    "Idempotent",
    "Listener",
    "LocalPresence",
    "Presence",
    "PresenceUnavailable",
    "RPC",
    "RedisPresence",
    "RemoteCallError",
    "RemoteCallFailed",
    "RemoteCallTimeout",
    "RemoteProcessGone",
    "from_env",
    "from_url",
    "redact_url",
    "redis_url_from_env",
]

REDIS_URL_VARIABLES = ("GREENROOM_REDIS_URL", "REDIS_URL")


def redis_url_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    environ = os.environ if environ is None else environ
    for variable in REDIS_URL_VARIABLES:
        if environ.get(variable):
            return environ[variable]
    return None


def from_url(url: str | None, **options: Any) -> Presence:
    """LocalPresence for None, RedisPresence for a redis://, rediss:// or unix:// URL.

    A Redis presence is pinged here so a wrong URL fails at start with the URL in the message,
    not on the first join.
    """
    if not url:
        from .local import LocalPresence

        return LocalPresence()
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"unsupported presence URL {redact_url(url)!r}: expected redis://")
    from .redis import RedisPresence

    presence = RedisPresence(url, **options)
    try:
        presence.ping()
    except PresenceUnavailable:
        presence.close()
        raise
    return presence


def from_env(environ: Mapping[str, str] | None = None, **options: Any) -> Presence:
    """The presence configured by GREENROOM_REDIS_URL (or REDIS_URL); local when unset."""
    return from_url(redis_url_from_env(environ), **options)


_LAZY = {
    "LocalPresence": ".local",
    "RedisPresence": ".redis",
    "RPC": ".rpc",
    "Idempotent": ".rpc",
    "RemoteCallError": ".rpc",
    "RemoteCallFailed": ".rpc",
    "RemoteCallTimeout": ".rpc",
    "RemoteProcessGone": ".rpc",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
