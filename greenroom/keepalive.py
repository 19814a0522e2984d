"""TCP keepalive: how a connection nobody writes to notices that its peer vanished.

A host that loses power or network never sends a FIN or a RST, so an idle connection to it
looks open forever; the kernel's keepalive probes are the only thing that ends it. Used for the
presence's pub/sub connection and for room sockets (a backstop there: WebSocket pings notice it
sooner). Probe after 15 s idle, every 5 s, give up after 3 misses: ~30 s in all.
"""

from __future__ import annotations

import socket
from typing import Any

OPTIONS: dict[int, int] = {
    option: value
    for name, value in (("TCP_KEEPIDLE", 15), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
    if (option := getattr(socket, name, None)) is not None
}


def enable(sock: Any) -> bool:
    """Turn keepalive on for a TCP socket; False (and nothing done) for any other socket."""
    if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in OPTIONS.items():
            sock.setsockopt(socket.IPPROTO_TCP, option, value)
    except OSError:
        return False  # already closed
    return True
