"""The listening sockets: bound once by the master, inherited by every worker.

One socket per ``--bind``, shared by all workers (each worker's gevent server accepts from it,
one connection per wake-up: see ``ACCEPT_PER_WAKEUP``). The master keeps its copy open for its
whole life, so a connection that arrives while no worker is accepting (a reload, a respawn)
waits in the kernel's backlog instead of being refused.
"""

from __future__ import annotations

import os
import socket
import stat
from dataclasses import dataclass

__all__ = ["ACCEPT_PER_WAKEUP", "BACKLOG", "Address", "Listener", "parse_address"]

BACKLOG = 2048
#: Connections a worker accepts per wake-up of its listener. gevent's default (100) lets the
#: first worker to wake take a whole burst; 1 spreads bursts over the workers (benchmarks/
#: accept_balance.py measured it against SO_REUSEPORT; README "Several workers").
ACCEPT_PER_WAKEUP = 1

Address = tuple[str, int] | str  # (host, port) or a Unix socket path


def parse_address(value: str) -> Address:
    """``HOST:PORT``, ``[::1]:PORT``, ``:PORT``, ``PORT`` or ``unix:/path``."""
    if value.startswith("unix:"):
        path = value[5:]
        if not path:
            raise ValueError(f"{value!r}: expected unix:PATH")
        return path
    host, _, port = value.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"{value!r}: expected HOST:PORT or unix:PATH") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"{value!r}: port out of range")
    return (host.strip("[]") or "0.0.0.0"), number


def describe(address: Address) -> str:
    if isinstance(address, str):
        return f"unix:{address}"
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class Listener:
    """A bound, listening, inheritable socket and what it was asked to bind."""

    address: Address
    sock: socket.socket

    @classmethod
    def bind(cls, address: Address) -> Listener:
        if isinstance(address, str):
            sock = cls._bind_unix(address)
        else:
            sock = cls._bind_tcp(address)
        sock.listen(BACKLOG)
        sock.set_inheritable(True)
        return cls(address, sock)

    @staticmethod
    def _bind_unix(path: str) -> socket.socket:
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)  # left by a server that died; a live one would hold the name
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        return sock

    @staticmethod
    def _bind_tcp(address: tuple[str, int]) -> socket.socket:
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        return sock

    @property
    def bound(self) -> str:
        """Where it really listens (the port the kernel picked for port 0)."""
        if isinstance(self.address, str):
            return describe(self.address)
        host, port = self.sock.getsockname()[:2]
        return describe((host, port))

    def close(self) -> None:
        """Close the socket; a Unix socket's path is unlinked (the next bind would find it)."""
        self.sock.close()
        if isinstance(self.address, str):
            try:
                os.unlink(self.address)
            except FileNotFoundError:
                pass
