"""Which web pages may use this server: an optional allow-list of browser Origins, checked on
room-socket upgrades and matchmaking requests (CORS preflights included).

A browser attaches the page's origin (``https://game.example.com``) to every WebSocket upgrade
and every cross-site ``fetch``; cookies and credentials travel with them, and nothing else stops
a page on another site from opening sockets to the game with its visitors' browsers. A request
without an ``Origin`` header is not a browser's (a native client, a bot, a server): the list
does not apply to it. Default: no list, every origin is served, as before.

``GREENROOM_ALLOWED_ORIGINS`` (or ``Server(allowed_origins=[...])``): comma-separated origins,
``scheme://host[:port]``, compared as browsers write them (scheme and host in lower case, no
default port); ``*`` allows all. A refused upgrade or request is answered 403 before anything
else happens (no room is made, no seat reserved or claimed), with one log line.

Imports only the standard library: the cluster's master checks the setting before it forks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from urllib.parse import urlsplit

from ..settings import ConfigurationError

__all__ = ["ENV", "OriginPolicy"]

ENV = "GREENROOM_ALLOWED_ORIGINS"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_EXAMPLE = "https://game.example.com,http://localhost:5173"


def normalise(origin: str) -> str | None:
    """``origin`` as a browser serialises it, or None if it is not ``scheme://host[:port]``."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username or parts.password:
        return None
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


class OriginPolicy:
    """The allowed origins (None: all)."""

    def __init__(self, allowed: Iterable[str] | None = None, *, what: str = "allowed_origins") -> None:
        self.allowed: frozenset[str] | None = None
        if allowed is None:
            return
        entries = [entry.strip() for entry in allowed if entry.strip()]
        if "*" in entries:
            return
        if not entries:
            raise ConfigurationError(f"{what}: an empty list would refuse every browser; give "
                                     f"origins, scheme://host[:port] (e.g. {_EXAMPLE}), or * "
                                     "for any")
        normalised = set()
        for entry in entries:
            origin = normalise(entry)
            if origin is None:
                raise ConfigurationError(f"{what}: {entry!r} is not an origin: expected "
                                         "scheme://host[:port] with scheme http or https and no "
                                         f"path (e.g. {_EXAMPLE}), or * for any")
            normalised.add(origin)
        self.allowed = frozenset(normalised)

    @classmethod
    def from_environment(cls, allowed: Iterable[str] | str | None = None) -> OriginPolicy:
        """The argument first (a list, or a comma-separated string), then ``$GREENROOM_ALLOWED_ORIGINS``."""
        if allowed is not None:
            if isinstance(allowed, str):
                allowed = allowed.split(",")
            return cls(allowed)
        raw = os.environ.get(ENV)
        if raw is None or not raw.strip():
            return cls(None)
        return cls(raw.split(","), what=f"{ENV}={raw!r}")

    @property
    def restricted(self) -> bool:
        return self.allowed is not None

    def refused(self, environ: dict[str, object]) -> str | None:
        """The request's Origin when the list refuses it; None when it may go on (no list, no
        Origin header, or an allowed one)."""
        if self.allowed is None:
            return None
        origin = environ.get("HTTP_ORIGIN")
        if origin is None:
            return None
        origin = str(origin)
        if normalise(origin) in self.allowed:
            return None
        return origin[:200]

    def __repr__(self) -> str:
        return f"<OriginPolicy {'*' if self.allowed is None else sorted(self.allowed)}>"
