"""What one process spends on connections: how long a connection may take to send its request
head, and how many connections it serves at once (issue 13, slow and hostile peers).

Without them a slowloris (connections that send their HTTP head a byte at a time, or nothing)
holds a greenlet and a file descriptor per connection for as long as it likes, and enough of
them exhaust the process's descriptors, so that real players cannot connect.

* ``header_timeout`` (``GREENROOM_HEADER_TIMEOUT``, 10 s): from waiting for a request's first
  byte to having its complete head. It also ends a keep-alive connection idle between requests
  for that long, and greenroom's routes wait that long again for a request body (then 408).
  A room socket's life is not covered: once the head is in, the app runs without a deadline.
* ``max_connections`` (``GREENROOM_MAX_CONNECTIONS``, 10,000): connections served at once, room
  sockets included. At the limit the process stops accepting (the kernel's listen backlog holds
  newcomers) until a connection ends; one log line says so. A socket another worker hands in
  counts too; at the limit it is answered 503, since a hand-off cannot wait.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gevent.pool import Pool

from ..settings import HEADER_TIMEOUT, MAX_CONNECTIONS, ConfigurationError, env_count, env_seconds

log = logging.getLogger("greenroom.web")


class ConnectionPool(Pool):
    """The greenlets serving one process's connections, at most ``size``; says once when full."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self._said_full = False

    def full(self) -> bool:
        full = super().full()
        if full and not self._said_full:
            log.warning("%d connections open, the limit (GREENROOM_MAX_CONNECTIONS): not accepting "
                        "more until one closes", self.size)
        self._said_full = full
        return full


@dataclass
class ConnectionLimits:
    header_timeout: float = HEADER_TIMEOUT
    max_connections: int = MAX_CONNECTIONS

    def __post_init__(self) -> None:
        if not self.header_timeout > 0:
            raise ConfigurationError(f"header_timeout={self.header_timeout!r}: expected a positive "
                                     "number of seconds")
        if self.max_connections < 1:
            raise ConfigurationError(f"max_connections={self.max_connections!r}: expected a "
                                     "positive whole number")
        self.pool = ConnectionPool(self.max_connections)

    @classmethod
    def from_environment(cls, header_timeout: float | None = None,
                         max_connections: int | None = None) -> ConnectionLimits:
        """Arguments first, then ``GREENROOM_HEADER_TIMEOUT`` / ``GREENROOM_MAX_CONNECTIONS``."""
        return cls(header_timeout or env_seconds("GREENROOM_HEADER_TIMEOUT", HEADER_TIMEOUT),
                   max_connections or env_count("GREENROOM_MAX_CONNECTIONS", MAX_CONNECTIONS))

    def attach(self, wsgi_server: Any) -> None:
        """Apply these limits to a (not yet started) WSGIServer; all servers of a process given
        the same limits share one connection count."""
        wsgi_server.set_spawn(self.pool)
        wsgi_server.header_timeout = self.header_timeout
