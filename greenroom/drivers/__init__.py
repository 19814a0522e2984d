"""Drivers: the catalogue of room listings every matchmaker queries (docs/architecture.md, "Processes and leases").

Backends are imported on first use: redis-py and pymongo must only be imported after
``monkey.patch_all()`` (docs/architecture.md, "Boot order"), and a single-process server needs neither.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .base import Driver, DriverUnavailable, SortSpec
from .listing import RoomListing
from .local import LocalDriver

if TYPE_CHECKING:
    from .mongo import MongoDriver
    from .redis import RedisDriver

__all__ = [
    "Driver",
    "DriverUnavailable",
    "LocalDriver",
    "MongoDriver",
    "RedisDriver",
    "RoomListing",
    "SortSpec",
    "from_env",
    "from_url",
    "mongo_uri_from_env",
]

MONGO_URI_VARIABLES = ("GREENROOM_MONGO_URI", "MONGO_URI")


def mongo_uri_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    environ = os.environ if environ is None else environ
    for variable in MONGO_URI_VARIABLES:
        if environ.get(variable):
            return environ[variable]
    return None


def from_url(url: str | None, **options: Any) -> Driver:
    """LocalDriver for None, MongoDriver for mongodb://, RedisDriver for redis:// URLs.

    Raises DriverUnavailable, naming the URL, when the server does not answer.
    """
    if not url:
        return LocalDriver()
    scheme = urlsplit(url).scheme
    if scheme in ("mongodb", "mongodb+srv"):
        from .mongo import MongoDriver

        driver: Any = MongoDriver(url, **options)
    elif scheme in ("redis", "rediss", "unix"):
        from .redis import RedisDriver

        driver = RedisDriver(url, **options)
    else:
        raise ValueError(
            f"unsupported driver URL scheme {scheme!r}: expected mongodb:// or redis://"
        )
    # Fail at start, naming the URL, rather than on the first join.
    try:
        driver.ping()
    except DriverUnavailable:
        driver.close()
        raise
    return driver


def from_env(environ: Mapping[str, str] | None = None, **options: Any) -> Driver:
    """MongoDB if GREENROOM_MONGO_URI/MONGO_URI is set, else Redis if GREENROOM_REDIS_URL/
    REDIS_URL is set, else local: listings live where the deployment already keeps its state."""
    from ..presence import redis_url_from_env

    return from_url(mongo_uri_from_env(environ) or redis_url_from_env(environ), **options)


_LAZY = {"MongoDriver": ".mongo", "RedisDriver": ".redis"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
